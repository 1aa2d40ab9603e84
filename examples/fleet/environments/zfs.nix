# ZFS pools with snapshots and scrubs: cortex-alpha, storage-array, local-nas.
# Each host sets its own networking.hostId.
{ lib, ... }:
{
  imports = [ ../hardware/zfs.nix ];

  services.zfs = {
    autoScrub = {
      enable = true;
      interval = "monthly";
    };
    autoSnapshot = {
      enable = true;
      frequent = 4;
      hourly = 24;
      daily = 7;
      weekly = 4;
      monthly = 6;
    };
    trim.enable = true;
  };
  services.prometheus.exporters.zfs.enable = true;
}

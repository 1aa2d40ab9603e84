# local-nas: Office NAS: ZFS pool replicated to storage-array.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/zfs.nix
    ../../environments/storage.nix
    ../../environments/monitoring-client.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICgzLlllT2WaDxM8Y00dNeNpWudtvmT0Oda4YoGa3M1V root@local-nas";
  secrix.system.secrets.wg-local-nas.encrypted.file = ../../secrets/wg-local-nas.age;

  networking.hostId = "b7d04a6e";
  fileSystems."/" = {
    device = "rpool/root";
    fsType = "zfs";
  };
  boot.zfs.extraPools = [ "tank" ];
}

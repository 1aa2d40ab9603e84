# storage-array: Main storage server: ZFS pool, NFS, replication target.
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

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICGbTGGgvFxOMx/DuPtA7Ixvw0uliXO5+GN9InfnnILW root@storage-array";
  secrix.system.secrets.wg-storage-array.encrypted.file = ../../secrets/wg-storage-array.age;

  networking.hostId = "1c9e7f02";
  fileSystems."/" = {
    device = "rpool/root";
    fsType = "zfs";
  };
  boot.zfs.extraPools = [ "tank" ];
}

# Boot support for ZFS root pools.
{ lib, ... }:
{
  boot.supportedFilesystems = [ "zfs" ];
  boot.zfs.forceImportRoot = false;
  boot.zfs.devNodes = "/dev/disk/by-id";
  boot.kernelParams = [ "zfs.zfs_arc_max=17179869184" ];
}

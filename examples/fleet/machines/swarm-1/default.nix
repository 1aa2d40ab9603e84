# swarm-1: Build swarm member.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/builder.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIE6rvAmbrnAW4/SU+CE/opdBd5A3eS8RnkkunkJIU4R root@swarm-1";
  secrix.system.secrets.wg-swarm-1.encrypted.file = ../../secrets/wg-swarm-1.age;

  nix.settings.max-jobs = 32;
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  fileSystems."/nix" = {
    device = "/dev/disk/by-label/nix";
    fsType = "xfs";
  };
}

# swarm-2: Build swarm member.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/builder.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID5mnFGv+HbXgrZAYv4yrPzoIGxZC3Nrc0U7ImRWRVUY root@swarm-2";
  secrix.system.secrets.wg-swarm-2.encrypted.file = ../../secrets/wg-swarm-2.age;

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

# swarm-0: Build swarm member.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/builder.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIG+qNh62/947UCBVJqeZ94uDGeEaw2bKlp6sXpHTb25 root@swarm-0";
  secrix.system.secrets.wg-swarm-0.encrypted.file = ../../secrets/wg-swarm-0.age;

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

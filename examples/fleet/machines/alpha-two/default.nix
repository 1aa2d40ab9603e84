# alpha-two: Workstation in lab alpha.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/workstation.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF886ZkgVMAqx6BFDxGtqRm80qI8DYM4thLFLuevUinG root@alpha-two";
  secrix.system.secrets.wg-alpha-two.encrypted.file = ../../secrets/wg-alpha-two.age;

  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
}

# alpha-one: Workstation in lab alpha.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/workstation.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2j0dNdpE7u5LogxgqhdJMZ2R3lwyBBQLUZO6WBUTxt root@alpha-one";
  secrix.system.secrets.wg-alpha-one.encrypted.file = ../../secrets/wg-alpha-one.age;

  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
}

# linda: Linda's workstation.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/workstation.nix
    ../../environments/ai.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIWIrVTXam/PYr9bDTqLqwHtTwRuXo7cnVqvsnXSbR3w root@linda";
  secrix.system.secrets.wg-linda.encrypted.file = ../../secrets/wg-linda.age;

  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  time.timeZone = "Europe/Berlin";
}

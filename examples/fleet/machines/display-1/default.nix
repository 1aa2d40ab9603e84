# display-1: Wall display 1 (ARM board, kiosk).
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/arm-display.nix
    ../../environments/display.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII6G9RQFgcKuYiehBgwvGyMPG1dltvgcFR/8pz6yDJHi root@display-1";
  secrix.system.secrets.wg-display-1.encrypted.file = ../../secrets/wg-display-1.age;

  services.cage.environment.KIOSK_SCREEN = "ops";
}

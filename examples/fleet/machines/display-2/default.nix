# display-2: Wall display 2 (ARM board, kiosk).
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/arm-display.nix
    ../../environments/display.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIItSBv27MTCPCcn2QDG8N7j7DxdwDwG8psIbKroEc3Ff root@display-2";
  secrix.system.secrets.wg-display-2.encrypted.file = ../../secrets/wg-display-2.age;

  services.cage.environment.KIOSK_SCREEN = "workshop";
}

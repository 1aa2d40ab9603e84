# display-0: Wall display 0 (ARM board, kiosk).
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/arm-display.nix
    ../../environments/display.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOzGpBMVtPu6HbX1vXZ9m9OTKZF6hM/bohAhpSMg+CBD root@display-0";
  secrix.system.secrets.wg-display-0.encrypted.file = ../../secrets/wg-display-0.age;

  services.cage.environment.KIOSK_SCREEN = "lobby";
}

# ARM wall displays (display-0, display-1, display-2): a kiosk browser on
# wifi. The kiosk configuration is a plain file referenced by path.
{ config, lib, name, ... }:
{
  networking.wireless = {
    enable = true;
    secretsFile = config.secrix.system.secrets.wifi-psk.decrypted.path;
    networks."fleet-iot".pskRaw = "ext:psk_fleet_iot";
  };
  secrix.system.secrets.wifi-psk.encrypted.file = ../secrets/wifi-psk.age;

  environment.etc."kiosk/kiosk.conf".source = ./kiosk.conf;

  services.cage = {
    enable = true;
    user = "kiosk";
    program = "firefox --kiosk https://dashboards.fleet.example.org/${name}";
  };
  users.users.kiosk.isNormalUser = true;

  hardware.graphics.enable = true;
  powerManagement.cpuFreqGovernor = "ondemand";
  nix.gc.options = lib.mkForce "--delete-older-than 3d";
}

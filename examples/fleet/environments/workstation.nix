# Desktops: linda, alpha-one, alpha-two, obs-box. Backups with restic.
{ config, lib, name, ... }:
{
  services.xserver.enable = true;
  services.displayManager.sddm.enable = true;
  services.desktopManager.plasma6.enable = true;
  services.pipewire = {
    enable = true;
    pulse.enable = true;
  };
  hardware.bluetooth.enable = true;
  programs.firefox.enable = true;
  environment.systemPackages = [ "firefox" "thunderbird" "libreoffice" ];

  services.restic.backups.home = {
    repository = "sftp:backup@storage-array.mesh:/tank/backup/${name}";
    passwordFile = config.secrix.system.secrets.restic-password.decrypted.path;
    paths = [ "/home" ];
    timerConfig.OnCalendar = "daily";
  };
  secrix.system.secrets.restic-password.encrypted.file = ../secrets/restic-password.age;
}

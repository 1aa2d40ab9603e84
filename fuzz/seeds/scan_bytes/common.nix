# Imported by every host.
{ lib, name, ... }:
{
  networking.hostName = name;
  networking.domain = "fleet.example.org";
  networking.firewall.enable = true;
  time.timeZone = lib.mkDefault "UTC";
  i18n.defaultLocale = "en_US.UTF-8";

  services.openssh = {
    enable = true;
    settings.PasswordAuthentication = false;
    settings.PermitRootLogin = "prohibit-password";
  };
  users.users.root.openssh.authorizedKeys.keyFiles = [ ../keys/admins.pub ];

  nix.settings = {
    experimental-features = [ "nix-command" "flakes" ];
    trusted-users = [ "root" "@wheel" ];
  };
  nix.gc = {
    automatic = true;
    options = "--delete-older-than 14d";
  };

  environment.systemPackages = [ "git" "htop" "tmux" "vim" ];
  system.stateVersion = lib.mkDefault "24.05";
}

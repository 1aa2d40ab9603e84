# obs-box: Streaming workstation (OBS).
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/workstation.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICy368ewxifavq/TPirpQRF5+Jiw2OZbyS+4eV4yrsIg root@obs-box";
  secrix.system.secrets.wg-obs-box.encrypted.file = ../../secrets/wg-obs-box.age;

  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  programs.obs-studio.enable = true;
  boot.extraModulePackages = [ "v4l2loopback" ];
  hardware.nvidia.open = true;
}

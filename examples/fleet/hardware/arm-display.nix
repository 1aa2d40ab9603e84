# Raspberry Pi 4 style boards driving the wall displays. The platform is data
# only here: the example builds every host as x86_64-linux.
{ lib, ... }:
{
  nixpkgs.hostPlatform = "aarch64-linux";
  boot.loader.grub.enable = false;
  boot.loader.generic-extlinux-compatible.enable = true;
  boot.initrd.availableKernelModules = [ "usbhid" "usb_storage" "vc4" "pcie_brcmstb" ];
  hardware.deviceTree.filter = "bcm2711-rpi-4*.dtb";
  fileSystems."/" = {
    device = "/dev/disk/by-label/NIXOS_SD";
    fsType = "ext4";
  };
}

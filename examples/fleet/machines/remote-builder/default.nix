# remote-builder: Remote Nix builder for the workstations.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/builder.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICbPtFLvgL9H395J583nb+5JoxZch2f6frbOKS0QwrUa root@remote-builder";
  secrix.system.secrets.wg-remote-builder.encrypted.file = ../../secrets/wg-remote-builder.age;

  nix.settings.max-jobs = 16;
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  fileSystems."/nix" = {
    device = "/dev/disk/by-label/nix";
    fsType = "xfs";
  };
}

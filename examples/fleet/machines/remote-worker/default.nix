# remote-worker: Remote Nix worker (CI jobs).
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/builder.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM4olGTIiss5Zap1vfteK7MlMw4/rH5EvpdM6G1jOnlS root@remote-worker";
  secrix.system.secrets.wg-remote-worker.encrypted.file = ../../secrets/wg-remote-worker.age;

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

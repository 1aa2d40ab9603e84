# Nix remote builders: remote-worker, remote-builder, swarm-*.
{ config, lib, name, ... }:
{
  imports = [ ../services/prometheus.nix ];

  nix.settings = {
    max-jobs = lib.mkDefault 8;
    cores = 0;
    system-features = [ "big-parallel" "kvm" "nixos-test" ];
    secret-key-files = [ config.secrix.system.secrets.nix-signing-key.decrypted.path ];
    trusted-users = [ "nixbuild" ];
  };
  secrix.system.secrets.nix-signing-key.encrypted.file = ../secrets/nix-signing-key.age;

  users.users.nixbuild = {
    isNormalUser = true;
    openssh.authorizedKeys.keyFiles = [ ../keys/nixbuild.pub ];
  };

  boot.binfmt.emulatedSystems = [ "aarch64-linux" ];
  services.prometheus.exporters.node.enabledCollectors = [ "systemd" "pressure" ];
}

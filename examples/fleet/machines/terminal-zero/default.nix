# terminal-zero: Edge router: PPPoE uplink, NAT, DHCP for the LAN.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/router.nix
    ../../environments/monitoring-client.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClqzrc8CYMTTCNm+GvtGKLjViXmXKGudUC1plhanDOf root@terminal-zero";
  secrix.system.secrets.wg-terminal-zero.encrypted.file = ../../secrets/wg-terminal-zero.age;

  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  services.openssh.openFirewall = false;
}

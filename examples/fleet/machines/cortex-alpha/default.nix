# cortex-alpha: VPN hub, ACME certificates, LDAP directory, ZFS pool.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../environments/vpn-hub.nix
    ../../environments/acme.nix
    ../../environments/ldap.nix
    ../../environments/zfs.nix
    ../../environments/monitoring-client.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7Qtf8mf+FjBoeYaBiwNrJ9tm7BJgwdLi+hjqyoGQdt root@cortex-alpha";
  secrix.system.secrets.wg-cortex-alpha.encrypted.file = ../../secrets/wg-cortex-alpha.age;

  networking.hostId = "8425e349";
  fileSystems."/" = {
    device = "rpool/root";
    fsType = "zfs";
  };

  services.nginx = {
    enable = true;
    configFile = ./nginx.conf;
  };
  networking.firewall.allowedTCPPorts = [ 80 443 ];
}

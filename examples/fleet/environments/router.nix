# Edge router (terminal-zero): PPPoE uplink, NAT for the LAN, nftables.
{ config, lib, ... }:
{
  boot.kernel.sysctl."net.ipv4.ip_forward" = 1;
  boot.kernel.sysctl."net.ipv6.conf.all.forwarding" = 1;

  networking.nat = {
    enable = true;
    externalInterface = "ppp0";
    internalInterfaces = [ "lan0" "wg-mesh" ];
  };
  networking.nftables = {
    enable = true;
    ruleset = builtins.readFile ./router.nft;
  };

  services.pppd = {
    enable = true;
    peers.uplink.config = ''
      plugin pppoe.so wan0
      name "fleet@isp.example"
      file ${config.secrix.services.pppd-uplink.secrets.pppoe-password.decrypted.path}
      persist
      defaultroute
    '';
  };
  secrix.services.pppd-uplink.secrets.pppoe-password.encrypted.file = ../secrets/pppoe-password.age;

  services.kea.dhcp4 = {
    enable = true;
    settings.subnet4 = [
      {
        id = 1;
        subnet = "192.168.40.0/24";
        pools = [ { pool = "192.168.40.100 - 192.168.40.250"; } ];
      }
    ];
  };
}

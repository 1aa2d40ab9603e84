# WireGuard mesh 10.88.127.0/24, imported by every host.
#
# Addresses and public keys of all hosts live in wg-peers.json; each host's
# private key is a secrix secret declared in its own module
# (secrix.system.secrets."wg-<host>").
{ config, lib, name, ... }:
let
  peers = lib.importJSON ./wg-peers.json;
  me = peers.${name} or (throw "host ${name} has no entry in lib/wg-peers.json");
  others = lib.filterAttrs (n: _: n != name) peers;
in
{
  networking.wireguard.interfaces.wg-mesh = {
    ips = [ "${me.ip}/24" ];
    listenPort = 51820;
    privateKeyFile = config.secrix.system.secrets."wg-${name}".decrypted.path;
    peers = lib.mapAttrsToList
      (peer: p: {
        name = peer;
        publicKey = p.publicKey;
        allowedIPs = [ "${p.ip}/32" ];
      } // lib.optionalAttrs (p ? endpoint) {
        endpoint = p.endpoint;
        persistentKeepalive = 25;
      })
      others;
  };

  networking.firewall.allowedUDPPorts = [ 51820 ];
  networking.firewall.trustedInterfaces = [ "wg-mesh" ];
  networking.hosts.${me.ip} = [ "${name}.mesh" ];
}

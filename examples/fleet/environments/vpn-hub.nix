# The WireGuard hub of the mesh (cortex-alpha): forwards between peers and is
# the only peer with a public endpoint (see lib/wg-peers.json).
{ lib, ... }:
{
  boot.kernel.sysctl."net.ipv4.ip_forward" = 1;
  networking.wireguard.interfaces.wg-mesh.listenPort = 51820;
  networking.firewall.allowedUDPPorts = [ 51820 ];
  networking.nat = {
    enable = true;
    internalInterfaces = [ "wg-mesh" ];
  };
}

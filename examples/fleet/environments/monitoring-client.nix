# Plain node exporter on the mesh for servers that are not builders.
{ ... }:
{
  services.prometheus.exporters.node = {
    enable = true;
    port = 9100;
    listenAddress = "0.0.0.0";
    enabledCollectors = [ "systemd" ];
  };
  networking.firewall.interfaces.wg-mesh.allowedTCPPorts = [ 9100 ];
}

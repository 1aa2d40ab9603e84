# Prometheus node exporter behind basic auth, plus the shared scrape password.
# Imported by the builders (through environments/builder.nix) and by the
# monitoring host (which also runs the server, see environments/monitoring.nix).
{ config, lib, name, ... }:
let
  basicAuth = config.secrix.services.prometheus.secrets.prometheus-basic-auth.decrypted.path;
in
{
  services.prometheus.exporters.node = {
    enable = true;
    port = 9100;
    listenAddress = "0.0.0.0";
    openFirewall = false;
    basicAuth = {
      username = "metrics";
      passwordFile = basicAuth;
    };
  };

  secrix.services.prometheus.secrets.prometheus-basic-auth.encrypted.file =
    ../secrets/prometheus-basic-auth.age;

  networking.firewall.interfaces.wg-mesh.allowedTCPPorts = [ 9100 ];
}

# The monitoring server (host monitor): Prometheus scraping the mesh, Grafana.
{ config, lib, ... }:
let
  scrapeAuth = config.secrix.services.prometheus.secrets.prometheus-basic-auth.decrypted.path;
  builders = [ "remote-worker" "remote-builder" "swarm-0" "swarm-1" "swarm-2" ];
  clients = [ "cortex-alpha" "terminal-zero" "storage-array" "local-nas" ];
in
{
  imports = [ ../services/prometheus.nix ];

  services.prometheus = {
    enable = true;
    port = 9090;
    retentionTime = "90d";
    ruleFiles = [ ../services/alert-rules.yml ];
    scrapeConfigs = [
      {
        job_name = "builders";
        basic_auth = {
          username = "metrics";
          password_file = scrapeAuth;
        };
        static_configs = [ { targets = map (h: "${h}.mesh:9100") builders; } ];
      }
      {
        job_name = "servers";
        static_configs = [ { targets = map (h: "${h}.mesh:9100") clients; } ];
      }
    ];
  };

  services.grafana = {
    enable = true;
    settings.server.http_addr = "monitor.mesh";
    settings.security.admin_password =
      "$__file{${config.secrix.services.grafana.secrets.grafana-admin.decrypted.path}}";
  };
  secrix.services.grafana.secrets.grafana-admin.encrypted.file = ../secrets/grafana-admin.age;

  networking.firewall.interfaces.wg-mesh.allowedTCPPorts = [ 3000 9090 ];
}

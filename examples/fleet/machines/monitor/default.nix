# monitor: Monitoring: Prometheus and Grafana for the whole mesh.
{ config, lib, ... }:
{
  imports = [
    ../../lib/enable-wg.nix
    ../../environments/common.nix
    ../../hardware/x86.nix
    ../../services/prometheus.nix
    ../../environments/monitoring.nix
  ];

  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDCEJvdjBi6pP2kPu70puE68IpWEb3tiIGQdARTPEOJM root@monitor";
  secrix.system.secrets.wg-monitor.encrypted.file = ../../secrets/wg-monitor.age;

  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  fileSystems."/var/lib/prometheus2" = {
    device = "/dev/disk/by-label/metrics";
    fsType = "xfs";
  };
}

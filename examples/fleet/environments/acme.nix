# Let's Encrypt certificates via DNS-01 (cortex-alpha).
{ config, lib, ... }:
{
  security.acme = {
    acceptTerms = true;
    defaults = {
      email = "hostmaster@fleet.example.org";
      dnsProvider = "rfc2136";
      environmentFile = config.secrix.services.acme-fleet.secrets.acme-dns-token.decrypted.path;
    };
    certs."fleet.example.org" = {
      extraDomainNames = [ "*.fleet.example.org" ];
      group = "nginx";
    };
  };
  secrix.services.acme-fleet.secrets.acme-dns-token.encrypted.file = ../secrets/acme-dns-token.age;
}

# OpenLDAP directory for the fleet's users (cortex-alpha).
{ config, lib, ... }:
{
  services.openldap = {
    enable = true;
    urlList = [ "ldap:///" "ldaps:///" ];
    settings.children."cn=schema".includes = [ ];
    settings.children."olcDatabase={1}mdb".attrs = {
      olcSuffix = "dc=fleet,dc=example,dc=org";
      olcRootDN = "cn=admin,dc=fleet,dc=example,dc=org";
      olcRootPW.path = config.secrix.services.openldap.secrets.ldap-bind.decrypted.path;
    };
    # The fleet's own schema, read at evaluation time.
    extraSchema = builtins.readFile ./ldap-schema.ldif;
  };
  secrix.services.openldap.secrets.ldap-bind.encrypted.file = ../secrets/ldap-bind.age;
  networking.firewall.interfaces.wg-mesh.allowedTCPPorts = [ 389 636 ];
}

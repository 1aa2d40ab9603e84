# NAS role (storage-array, local-nas): NFS exports and syncoid replication
# from local-nas to storage-array.
{ config, lib, name, ... }:
{
  services.nfs.server = {
    enable = true;
    exports = ''
      /tank/share 10.88.127.0/24(rw,no_subtree_check)
    '';
  };
  services.syncoid = {
    enable = true;
    sshKey = config.secrix.system.secrets.nas-replication.decrypted.path;
    commands = lib.optionalAttrs (name == "local-nas") {
      "tank/share".target = "syncoid@storage-array.mesh:tank/replica/local-nas";
    };
  };
  secrix.system.secrets.nas-replication.encrypted.file = ../secrets/nas-replication.age;
  networking.firewall.interfaces.wg-mesh.allowedTCPPorts = [ 2049 ];
}

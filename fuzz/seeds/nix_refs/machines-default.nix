# Every directory next to this file is a host; its default.nix is the entry
# module. Adding a directory adds a host to nixosConfigurations.
let
  entries = builtins.readDir ./.;
  hostNames = builtins.filter (n: entries.${n} == "directory") (builtins.attrNames entries);
in
builtins.listToAttrs (map (n: { name = n; value = ./. + "/${n}"; }) hostNames)

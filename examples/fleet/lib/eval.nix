# A tiny stand-in for `nixpkgs.lib.nixosSystem`, so the example fleet
# evaluates and builds offline without nixpkgs.
#
#   import ./eval.nix { name, modules, specialArgs ? { }, system ? "x86_64-linux" }
#   => { config = <merged config>; options = { }; graph = <module graph>; }
#
# Modules are paths (a directory means its default.nix), attribute sets, or
# functions called with `{ config, lib, name, pkgs, options } // specialArgs`.
# `imports` are collected recursively before `config` exists (so they may use
# specialArgs but not config) and de-duplicated by key: the path for file
# modules, `key` when a module sets one, otherwise the position in its parent.
# A module's definitions are its `config` attribute when it has `config` or
# `options`, else the module without `imports`, `options`, `key`, `_file`.
#
# Merge semantics (per attribute path, over all modules in collection order:
# the entry modules first, then breadth-first through their imports):
#   * attribute sets merge recursively;
#   * lists concatenate (in collection order);
#   * anything else: every definition must be equal, otherwise evaluation
#     throws "conflicting definitions";
#   * `lib.mkDefault` (priority 1000), `lib.mkForce` (50) and `lib.mkOverride`
#     wrap a value with a priority (plain definitions are 100); only the
#     definitions with the best (lowest) priority take part, as in NixOS.
#     Priorities on an attribute set apply to each of its attributes.
#   * `lib.mkIf cond x` is `if cond then x else { }`: `cond` must not read
#     `config` (no option declarations exist to fix the shape of `config`).
#   * `lib.mkMerge [ a b ]` merges its arguments like separate modules.
# `config` is the lazy fixpoint of the merge: values may read other values
# (config.networking.hostName, config.secrix...decrypted.path, ...).
# secrix's read-only options are emulated: every declared secret gets
# `decrypted.path` = "/run/system-keys/<name>" (system secrets) or
# "/run/<service>-keys/<name>" (service secrets), plus name/mode/user/group.
#
# `config.system.build.toplevel` is a derivation whose environment holds the
# host name, `builtins.toJSON` of the whole config without `system.build`
# (path values are copied to the store, so referenced files count with their
# contents) and the sha256 of every imported module file and of this file.
# Its drvPath therefore changes when any file the host reads changes. Its
# closure holds one derivation per `environment.systemPackages` entry.
# `config.system.build.vm` depends on the toplevel. Setting
# `system.build.fail = true;` makes the toplevel build fail.
# The builders use /bin/sh builtins only.
#
# `graph` has the shape of nixpkgs' `lib.evalModules` result: the imports
# tree as collected, one `{ key, file, disabled, imports }` per module
# (`file` is the module's file as a string, null for inline modules).
{ name, modules, specialArgs ? { }, system ? "x86_64-linux" }:
let
  inherit (builtins)
    attrNames concatMap filter foldl' genericClosure isAttrs isFunction isList
    isPath length listToAttrs hashFile;

  lib = rec {
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    mkIf = cond: content: if cond then content else { };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalString = cond: s: if cond then s else "";
    optionalAttrs = cond: as: if cond then as else { };
    concatStringsSep = builtins.concatStringsSep;
    concatMapStringsSep = sep: f: xs: builtins.concatStringsSep sep (map f xs);
    genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
    mapAttrs = builtins.mapAttrs;
    mapAttrsToList = f: as: map (n: f n as.${n}) (attrNames as);
    filterAttrs = pred: as:
      listToAttrs (concatMap (n: if pred n as.${n} then [ { name = n; value = as.${n}; } ] else [ ]) (attrNames as));
    attrNames = builtins.attrNames;
    attrValues = builtins.attrValues;
    elem = builtins.elem;
    hasPrefix = pre: s: builtins.substring 0 (builtins.stringLength pre) s == pre;
    importJSON = file: builtins.fromJSON (builtins.readFile file);
    imap0 = f: xs: builtins.genList (i: f i (builtins.elemAt xs i)) (length xs);
  };

  # `nixpkgs.overlays` apply to `pkgs` as in nixpkgs (final: prev: ...);
  # they are functions, so they stay out of the JSON of the config.
  pkgs = foldl' (prev: overlay: prev // overlay pkgs prev) { inherit system; }
    (merged.nixpkgs.overlays or [ ]);
  args = { inherit config lib name pkgs; options = { }; } // specialArgs;

  isDir = p: (builtins.readDir (dirOf p)).${baseNameOf p} or null == "directory";

  # One collected module: { key, file, imports, defs }.
  load = parentKey: index: m:
    if isPath m || builtins.isString m then
      let file = if isDir m then m + "/default.nix" else m;
      in shape (toString file) file (import file)
    else
      shape "${parentKey}:${toString index}" null m;

  shape = key: file: m:
    let
      v = if isFunction m then m args else m;
      _check = if isAttrs v then v else throw "module ${key} of host ${name} is not an attribute set";
    in
    {
      key = _check.key or key;
      inherit file;
      imports = v.imports or [ ];
      defs =
        if v ? config || v ? options then v.config or { }
        else removeAttrs v [ "imports" "options" "key" "_file" ];
    };

  collected = genericClosure {
    startSet = lib.imap0 (load "<entry>") modules;
    operator = item: lib.imap0 (load item.key) item.imports;
  };

  # Definitions as { prio, value } pairs; mkMerge is flattened.
  flatten = prio: d:
    if isAttrs d && d ? _type then
      if d._type == "override" then flatten d.priority d.content
      else if d._type == "merge" then concatMap (flatten prio) d.contents
      else [ { inherit prio; value = d; } ]
    else [ { inherit prio; value = d; } ];

  isPlainSet = v: isAttrs v && !(v ? _type) && (v.type or null) != "derivation";

  merge = path: defs:
    let
      flat = concatMap (d: flatten d.prio d.value) defs;
      best = foldl' (acc: d: if d.prio < acc then d.prio else acc) 10000 flat;
      winners = filter (d: d.prio == best) flat;
      values = map (d: d.value) winners;
      where = builtins.concatStringsSep "." path;
    in
    if flat == [ ] then throw "no definitions for ${where} in host ${name}"
    else if builtins.all isPlainSet values then
      let
        # Priorities apply per attribute: recurse with every set definition.
        sets = filter (d: isPlainSet d.value) flat;
        names = attrNames (foldl' (acc: d: acc // d.value) { } sets);
      in
      listToAttrs (map
        (n: {
          name = n;
          value = merge (path ++ [ n ])
            (map (d: { inherit (d) prio; value = d.value.${n}; }) (filter (d: d.value ? ${n}) sets));
        })
        names)
    else if builtins.all isList values then builtins.concatLists values
    else if builtins.all (v: v == builtins.head values) values then builtins.head values
    else throw "conflicting definitions for ${where} in host ${name}";

  merged = merge [ ] (map (m: { prio = 100; value = m.defs; }) collected);

  # secrix's read-only `decrypted` options (path, name, mode, owner), so
  # modules can write `passwordFile = config.secrix...decrypted.path;`.
  withDecrypted = dir: n: secret: secret // {
    decrypted = {
      name = n;
      path = "/run/${dir}/${n}";
      mode = "0400";
      user = "0";
      group = "0";
    } // (secret.decrypted or { });
  };
  secrixDefaults = s: s
    // lib.optionalAttrs (s ? system) {
      system = s.system // {
        secrets = builtins.mapAttrs (withDecrypted "system-keys") (s.system.secrets or { });
      };
    }
    // lib.optionalAttrs (s ? services) {
      services = builtins.mapAttrs
        (svc: sv: sv // { secrets = builtins.mapAttrs (withDecrypted "${svc}-keys") (sv.secrets or { }); })
        s.services;
    };

  withoutBuild = merged
    // lib.optionalAttrs (merged ? secrix) { secrix = secrixDefaults merged.secrix; }
    // { system = removeAttrs (merged.system or { }) [ "build" ]; }
    // lib.optionalAttrs (merged ? nixpkgs) { nixpkgs = removeAttrs merged.nixpkgs [ "overlays" ]; };

  config = withoutBuild // {
    system = withoutBuild.system // {
      build = (merged.system.build or { }) // { inherit toplevel vm; };
    };
  };

  # The imports tree, not de-duplicated (as nixpkgs' `graph`).
  toGraph = parentKey: index: m:
    let l = load parentKey index m;
    in {
      inherit (l) key;
      file = if l.file == null then null else toString l.file;
      disabled = false;
      imports = lib.imap0 (toGraph l.key) l.imports;
    };
  graph = lib.imap0 (toGraph "<entry>") modules;

  moduleFiles = filter (f: f != null) (map (m: m.file) collected);
  sourceHashes = builtins.concatStringsSep " "
    ([ (hashFile "sha256" ./eval.nix) ] ++ map (hashFile "sha256") moduleFiles);

  fail = merged.system.build.fail or false;

  # `environment.systemPackages`: each entry names a package ("htop" or
  # "htop-3.3.0") that becomes a small derivation in the toplevel's closure,
  # so hosts' closures differ by package versions as NixOS systems' do.
  packages = map
    (p: derivation {
      name = p;
      inherit system;
      builder = "/bin/sh";
      args = [ "-c" "echo ${p} > $out" ];
    })
    (merged.environment.systemPackages or [ ]);

  toplevel = derivation {
    name = "nixos-system-${name}";
    inherit system;
    builder = "/bin/sh";
    args = [
      "-c"
      ''
        ${if fail then "echo 'system.build.fail is set for ${name}' >&2; exit 1" else ""}
        IFS= read -r config < "$configPath" || true
        printf '%s\n' "host $hostName" "modules $sourceHashes" "packages $packages" "$config" > "$out"
      ''
    ];
    hostName = name;
    inherit packages;
    inherit sourceHashes;
    config = builtins.toJSON withoutBuild;
    passAsFile = [ "config" ];
  };

  vm = derivation {
    name = "nixos-vm-${name}";
    inherit system toplevel;
    builder = "/bin/sh";
    args = [ "-c" "printf '%s\\n' \"vm of $toplevel\" > \"$out\"" ];
  };
in
{
  inherit config graph;
  options = { };
}

//! Host discovery on the flake layouts real fleets use, one small real git
//! repository each, and the refusal to pass silently when there are none.

use crate::support::TempRepo;

/// The sorted NixOS host names `guard affected --all` reports.
fn hosts_of(repo: &TempRepo) -> Vec<String> {
    let out = repo.guard(&["affected", "--all", "--format", "json"]);
    out.assert_code(0);
    let mut names: Vec<String> = out.json()["all_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The hosts `guard affected --commit HEAD` names.
fn changed_hosts(repo: &TempRepo) -> Vec<String> {
    let j = repo
        .guard(&["affected", "--commit", "HEAD", "--format", "json"])
        .json();
    j["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect()
}

fn repo(files: &[(&str, &str)]) -> TempRepo {
    let r = TempRepo::new();
    for (path, text) in files {
        r.write(path, text);
    }
    r.commit_all("fleet");
    r
}

const MODULE: &str = "{ ... }: { }\n";

#[test]
fn helper_called_with_literal_names_from_an_input() {
    let r = repo(&[
        (
            "flake.nix",
            r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  inputs.helpers.url = "github:example/helpers";
  outputs = { self, nixpkgs, helpers, ... }:
    let mkSystem = import ./lib/mksystem.nix { inherit nixpkgs; };
    in {
      nixosConfigurations.alpha = mkSystem "alpha" { system = "x86_64-linux"; };
      nixosConfigurations.display-0 = helpers.lib.mkArm "display-0" { };
      darwinConfigurations.mac = mkSystem "mac" { darwin = true; };
    };
}"#,
        ),
        (
            "lib/mksystem.nix",
            "{ nixpkgs }: name: { system ? \"x\", darwin ? false }:\n  nixpkgs.lib.nixosSystem { modules = [ ../machines/${name}.nix ]; }\n",
        ),
        ("machines/alpha.nix", MODULE),
        ("machines/mac.nix", MODULE),
        ("machines/stray.nix", MODULE),
    ]);
    assert_eq!(hosts_of(&r), ["alpha", "display-0"]);
    let j = r.guard(&["affected", "--all", "--format", "json"]).json();
    assert_eq!(j["other_targets"]["darwin"], serde_json::json!(["mac"]));
}

#[test]
fn gen_attrs_over_read_dir_with_filters() {
    let r = repo(&[
        (
            "flake.nix",
            r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  outputs = inputs@{ nixpkgs, ... }:
    let
      inherit (nixpkgs) lib;
      entries = builtins.readDir ./hosts;
      names = builtins.filter (n: entries.${n} == "directory" && n != "common")
        (builtins.attrNames entries);
    in {
      nixosConfigurations = lib.genAttrs names (name: lib.nixosSystem {
        modules = [ ./hosts/${name}/configuration.nix ];
      });
    };
}"#,
        ),
        ("hosts/web/configuration.nix", MODULE),
        ("hosts/db/configuration.nix", MODULE),
        ("hosts/common/users.nix", MODULE),
        ("hosts/networks.nix", MODULE),
    ]);
    assert_eq!(hosts_of(&r), ["db", "web"]);
}

#[test]
fn flake_parts_modules_define_hosts() {
    let r = repo(&[
        (
            "flake.nix",
            r#"{
  inputs.flake-parts.url = "github:hercules-ci/flake-parts";
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  outputs = inputs: inputs.flake-parts.lib.mkFlake { inherit inputs; } {
    systems = [ "x86_64-linux" ];
    imports = [ ./parts/hosts.nix ./parts/devshell.nix ];
  };
}"#,
        ),
        (
            "parts/hosts.nix",
            r#"{ inputs, lib, ... }:
let
  mk = name: inputs.nixpkgs.lib.nixosSystem { modules = [ ../machines/${name} ]; };
in {
  imports = [ ./more.nix ];
  flake.nixosConfigurations = lib.mkMerge [
    (lib.genAttrs [ "router" "vpn-hub" ] mk)
    (lib.mkIf false { never = mk "never"; })
  ];
}"#,
        ),
        (
            "parts/more.nix",
            "{ inputs, ... }: { flake = { config, ... }: { nixosConfigurations.builder = inputs.nixpkgs.lib.nixosSystem { modules = [ ]; }; }; }\n",
        ),
        (
            "parts/devshell.nix",
            "{ ... }: { perSystem = { pkgs, ... }: { devShells.default = pkgs.mkShell { }; }; }\n",
        ),
        ("machines/router/default.nix", MODULE),
        ("machines/vpn-hub/default.nix", MODULE),
    ]);
    assert_eq!(hosts_of(&r), ["builder", "router", "vpn-hub"]);
}

#[test]
fn nixos_unified_autowiring() {
    let r = repo(&[
        (
            "flake.nix",
            r#"{
  inputs.flake-parts.url = "github:hercules-ci/flake-parts";
  inputs.nixos-unified.url = "github:srid/nixos-unified";
  outputs = inputs@{ self, ... }: inputs.flake-parts.lib.mkFlake { inherit inputs; } {
    imports = [ inputs.nixos-unified.flakeModules.default inputs.nixos-unified.flakeModules.autoWire ];
  };
}"#,
        ),
        ("configurations/nixos/laptop/default.nix", MODULE),
        ("configurations/nixos/server.nix", MODULE),
        ("configurations/nixos/notes.md", "not a host\n"),
        ("configurations/darwin/mac.nix", MODULE),
    ]);
    assert_eq!(hosts_of(&r), ["laptop", "server"]);
}

#[test]
fn clan_machines_inventory_and_classes() {
    let r = repo(&[
        (
            "flake.nix",
            r#"{
  inputs.clan-core.url = "github:clan/clan-core";
  outputs = { self, clan-core, ... }:
    let clan = clan-core.lib.clan {
      inherit self;
      inventory.machines = { web01 = { }; mac01 = { machineClass = "darwin"; }; extra = { }; };
    };
    in { inherit (clan.config) nixosConfigurations darwinConfigurations; };
}"#,
        ),
        ("machines/web01/configuration.nix", MODULE),
        ("machines/db01/configuration.nix", MODULE),
        ("machines/mac01/configuration.nix", MODULE),
    ]);
    assert_eq!(hosts_of(&r), ["db01", "extra", "web01"]);
}

#[test]
fn registry_in_toml_and_with_scopes() {
    let r = repo(&[
        (
            "flake.nix",
            r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  outputs = { nixpkgs, ... }:
    let
      systems = builtins.fromTOML (builtins.readFile ./systems.toml);
      linux = nixpkgs.lib.filterAttrs (_: s: s.platform == "linux" && !(s.iso or false)) systems;
    in with nixpkgs.lib; {
      nixosConfigurations = mapAttrs (name: s: nixosSystem { modules = [ ./nixos/${name} ]; }) linux;
    };
}"#,
        ),
        (
            "systems.toml",
            "[alpha]\nplatform = \"linux\"\n[beta]\nplatform = \"darwin\"\n[gamma]\nplatform = \"linux\"\niso = true\n[delta]\nplatform = \"linux\"\n",
        ),
        ("nixos/alpha/default.nix", MODULE),
        ("nixos/delta/default.nix", MODULE),
    ]);
    assert_eq!(hosts_of(&r), ["alpha", "delta"]);
}

#[test]
fn host_keeps_its_own_directory_as_entry() {
    let r = repo(&[
        (
            "flake.nix",
            r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  outputs = { nixpkgs, ... }: {
    nixosConfigurations = nixpkgs.lib.genAttrs [ "a" "b" ] (n:
      nixpkgs.lib.nixosSystem { modules = [ ./common.nix ./hosts/${n} ]; });
  };
}"#,
        ),
        ("common.nix", MODULE),
        (
            "hosts/a/default.nix",
            "{ ... }: { imports = [ ./hw.nix ]; }\n",
        ),
        ("hosts/a/hw.nix", MODULE),
        ("hosts/b/default.nix", MODULE),
    ]);
    // A change to one host's directory names that host alone.
    r.write("hosts/a/hw.nix", "{ ... }: { boot.x = 1; }\n");
    r.commit_all("a only");
    assert_eq!(changed_hosts(&r), ["a"]);
}

/// nmasur/dotfiles' layout: each host's module is the value of `import`
/// of its directory (listed from hosts/<system>/), placed in the modules
/// list after a long listing of shared modules. The imported file is the
/// host's entry, its directory its own: a change there names it alone.
#[test]
fn imported_host_module_after_many_shared_modules_is_the_entry() {
    let mut files: Vec<(String, String)> = vec![
        (
            "flake.nix".into(),
            r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  outputs = { nixpkgs, ... }:
    let
      lib = nixpkgs.lib;
      hosts = builtins.listToAttrs (map (n: { name = n; value = import (./hosts/x86_64-linux + "/${n}"); })
        (builtins.attrNames (builtins.readDir ./hosts/x86_64-linux)));
    in {
      nixosConfigurations = builtins.mapAttrs (name: module: lib.nixosSystem {
        modules = [ { imports = lib.filesystem.listFilesRecursive ./platforms; } module ];
      }) hosts;
    };
}"#
            .into(),
        ),
        (
            "hosts/x86_64-linux/a/default.nix".into(),
            "{ networking.hostName = \"a\"; }\n".into(),
        ),
        (
            "hosts/x86_64-linux/b/default.nix".into(),
            "{ networking.hostName = \"b\"; }\n".into(),
        ),
    ];
    for i in 0..80 {
        files.push((format!("platforms/m{i:02}.nix"), MODULE.into()));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let r = repo(&refs);
    assert_eq!(hosts_of(&r), ["a", "b"]);
    let dry = r.guard(&["init", "--dry-run"]);
    assert!(
        dry.stdout
            .contains("a = \"hosts/x86_64-linux/a/default.nix\""),
        "{}",
        dry.stdout
    );
    r.write(
        "hosts/x86_64-linux/a/default.nix",
        "{ networking.hostName = \"a\"; boot.x = 1; }\n",
    );
    r.commit_all("a only");
    assert_eq!(changed_hosts(&r), ["a"]);
}

/// A flake without NixOS hosts, where every command must refuse.
fn hostless() -> TempRepo {
    repo(&[
        (
            "flake.nix",
            r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  outputs = { nixpkgs, ... }: { packages.x86_64-linux.default = nixpkgs.hello; };
}"#,
        ),
        ("README.md", "no hosts here\n"),
    ])
}

#[test]
fn no_hosts_is_exit_2_with_a_hint_in_every_gate() {
    let r = hostless();
    r.write("README.md", "changed\n");
    r.git(&["add", "README.md"]);
    for args in [
        &["affected", "--all"][..],
        &["affected", "--commit", "HEAD"],
        &["check", "--all", "--level", "none"],
        &["check", "--staged"],
        &["pre-commit"],
        &["build", "--all", "--level", "eval"],
        &["ci", "--base", "HEAD"],
    ] {
        let out = r.guard(args);
        assert_eq!(
            out.code, 2,
            "guard {args:?} must refuse a fleet without hosts\nstdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        );
        assert!(
            out.stderr.contains("no NixOS hosts found in flake.nix")
                && out.stderr.contains("[hosts]"),
            "guard {args:?}: the message says what was looked at and how to fix it:\n{}",
            out.stderr
        );
    }
}

#[test]
fn configured_hosts_override_discovery() {
    let r = hostless();
    r.write("guard.toml", "[hosts]\nkiosk = \"kiosk.nix\"\n");
    r.write("kiosk.nix", MODULE);
    r.commit_all("configure");
    assert_eq!(hosts_of(&r), ["kiosk"]);
}

#[test]
fn explain_resolves_paths_as_git_does_and_says_not_found() {
    let repo = crate::support::fleet_repo();
    repo.write("NOTES.md", "not nix\n");
    repo.commit_all("notes");
    let sub = repo.path().join("machines");
    let run = |args: &[&str]| -> crate::support::GuardOutput {
        let mut c = crate::support::guard_cmd(&sub);
        c.arg("-C").arg(&sub).args(args);
        c.output().unwrap().into()
    };
    // Relative to the directory guard runs in, as git resolves it.
    let found = run(&["explain", "monitor/default.nix"]);
    found.assert_code(0);
    assert!(found.stdout.starts_with("monitor\n"), "{}", found.stdout);
    assert!(
        !found.stdout.contains("uses every input"),
        "no unrelated chains: {}",
        found.stdout
    );
    let missing = run(&["explain", "nope.nix"]);
    missing.assert_code(1);
    assert!(
        missing.stderr.contains("machines/nope.nix: not tracked"),
        "{}",
        missing.stderr
    );
    let outside = run(&["explain", "../../../etc/passwd"]);
    outside.assert_code(1);
    assert!(
        outside.stderr.contains("outside the repository"),
        "{}",
        outside.stderr
    );
    let unread = run(&["explain", "../NOTES.md"]);
    unread.assert_code(1);
    assert!(
        unread.stdout.contains("no host reads NOTES.md"),
        "{}",
        unread.stdout
    );
}

#[test]
fn counts_say_paths_and_truncation_is_marked() {
    let mut files: Vec<(String, String)> = vec![(
        "flake.nix".into(),
        r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  outputs = { nixpkgs, ... }: {
    nixosConfigurations.solo = nixpkgs.lib.nixosSystem { modules = [ ./hosts/solo ]; };
  };
}"#
        .into(),
    )];
    let imports: Vec<String> = (0..20).map(|i| format!("./m{i}.nix")).collect();
    files.push((
        "hosts/solo/default.nix".into(),
        format!("{{ ... }}: {{ imports = [ {} ]; }}\n", imports.join(" ")),
    ));
    for i in 0..20 {
        files.push((format!("hosts/solo/m{i}.nix"), MODULE.into()));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let r = repo(&refs);
    for i in 0..20 {
        r.write(
            &format!("hosts/solo/m{i}.nix"),
            "{ ... }: { boot.x = 1; }\n",
        );
    }
    r.commit_all("twenty");
    let j = r
        .guard(&["affected", "--commit", "HEAD", "--format", "json"])
        .json();
    let host = &j["hosts"][0];
    let listed = host["reasons"].as_array().unwrap().len();
    assert_eq!(
        listed + host["truncated"].as_u64().unwrap() as usize,
        20,
        "{host}"
    );
    assert!(
        host["truncated"].as_u64().unwrap() > 0,
        "the cap is marked: {host}"
    );
    let human = r.guard(&["affected", "--commit", "HEAD"]);
    assert!(
        human.stdout.contains("(+19 more paths)"),
        "{}",
        human.stdout
    );
}

#[test]
fn verify_hosts_failure_is_a_warning_and_nix_wins_in_ci() {
    // nix cannot evaluate this flake offline (its input cannot be fetched):
    // a warning with nix's reason, the static list stands, exit 0.
    let _ = crate::support::nix_cmd();
    let r = repo(&[
        (
            "flake.nix",
            r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  outputs = { nixpkgs, ... }: {
    nixosConfigurations.only = nixpkgs.lib.nixosSystem { modules = [ ./only.nix ]; };
  };
}"#,
        ),
        ("only.nix", MODULE),
    ]);
    let out = r.guard(&["affected", "--all", "--verify-hosts", "--format", "json"]);
    out.assert_code(0);
    let j = out.json();
    assert_eq!(j["all_hosts"], serde_json::json!(["only"]));
    assert!(
        j["warnings"]
            .to_string()
            .contains("nix could not list nixosConfigurations"),
        "{j}"
    );

    // In CI at a nix level, nix's list wins over a static list that lacks
    // hosts (here a [hosts] table naming one of 17).
    let fleet = crate::support::fleet_repo();
    fleet.write(
        "guard.toml",
        "[hosts]\nlinda = \"machines/linda/default.nix\"\n",
    );
    fleet.commit_all("pin one host");
    fleet.write("services/prometheus.nix", "{ ... }: { }\n");
    fleet.commit_all("change a service");
    let out = fleet.guard(&[
        "ci", "--base", "HEAD~1", "--level", "eval", "--format", "json",
    ]);
    let j = out.json();
    assert_eq!(
        j["affected"]["all_hosts"].as_array().map(Vec::len),
        Some(17),
        "nix's list wins: {}",
        out.stdout
    );
    assert!(
        j["affected"]["warnings"]
            .to_string()
            .contains("monitor exists in nixosConfigurations"),
        "{}",
        out.stdout
    );
}

#[test]
fn init_dry_run_shows_how_and_init_refuses_an_empty_host_list() {
    let r = repo(&[
        (
            "flake.nix",
            r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  outputs = { nixpkgs, ... }: {
    nixosConfigurations = nixpkgs.lib.genAttrs [ "a" "b" ] (n:
      nixpkgs.lib.nixosSystem { modules = [ ./hosts/${n}/configuration.nix ]; });
  };
}"#,
        ),
        ("hosts/a/configuration.nix", MODULE),
        ("hosts/b/configuration.nix", MODULE),
    ]);
    let before = r.state();
    let dry = r.guard(&["init", "--dry-run"]);
    dry.assert_code(0);
    assert!(
        dry.stdout
            .contains("2 hosts (by evaluating the flake's outputs statically)")
            && dry.stdout.contains("hosts/a/configuration.nix"),
        "{}",
        dry.stdout
    );
    assert_eq!(r.state(), before, "--dry-run writes nothing");

    let empty = hostless();
    let before = empty.state();
    let out = empty.guard(&["init"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("found no NixOS hosts") && out.stderr.contains("[hosts]"),
        "{}",
        out.stderr
    );
    assert_eq!(
        empty.state(),
        before,
        "no guard.toml with an empty host list"
    );
}

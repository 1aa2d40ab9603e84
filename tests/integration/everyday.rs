//! Everyday use on real repositories (issue 20): `guard graph --host` shows
//! the wiring `affected` uses and stays readable in a step summary; reads
//! outside the repository warn once per file, only where a host reaches them.

use std::collections::BTreeSet;

use crate::real_fleets::{fleet, fleet_head};
use crate::support::{GuardOutput, TempRepo, guard_in};

/// The fleet at the commit these expectations were derived from.
fn pinned(name: &str, head: &str) -> std::path::PathBuf {
    let dir = fleet(name);
    assert_eq!(
        fleet_head(name),
        head,
        "{name}: the mirror moved; re-derive these expectations"
    );
    dir
}

const SRID: &str = "srid+nixos-config";
const SRID_HEAD: &str = "66ed7369c139252b10850edaa64d989843102825";
const EMERGENT: &str = "EmergentMind+nix-config";
const EMERGENT_HEAD: &str = "9f488753bc067f103c8583f56bdff617fdcdc1dc";
const WIMPY: &str = "wimpysworld+nix-config";
const WIMPY_HEAD: &str = "931f27996f189a7ec56f6bb01ede3b51157cb2b1";

fn strs(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn warnings(out: &GuardOutput) -> Vec<String> {
    format!("{}{}", out.stdout, out.stderr)
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(String::from)
        .collect()
}

/// Mermaid node ids (`n<hex>`) and the host node of a `graph` output.
fn mermaid_nodes(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for w in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        if w.len() > 1 && w.starts_with('n') && w[1..].chars().all(|c| c.is_ascii_hexdigit()) {
            ids.insert(w.to_string());
        }
    }
    ids
}

#[test]
fn graph_host_shows_the_wiring_and_no_other_hosts_files_on_srid() {
    let dir = pinned(SRID, SRID_HEAD);
    let out = guard_in(&dir, &["graph", "--host", "myolai", "--format", "json"]);
    out.assert_code(0);
    let j = out.json();
    let files = strs(&j["files"]);
    let wiring = strs(&j["wiring"]);
    // The wiring `affected` makes every host depend on is in the graph.
    assert!(wiring.contains("flake.nix"), "{wiring:?}");
    assert!(
        wiring.contains("modules/flake-parts/nixos-flake.nix"),
        "{wiring:?}"
    );
    assert!(
        wiring.is_subset(&files),
        "wiring {wiring:?} not in {files:?}"
    );
    // The host's own imports, through `self + /modules/...`.
    for f in [
        "configurations/nixos/myolai/default.nix",
        "modules/nixos/linux/incus/guest.nix",
        "modules/home/cli/git.nix",
    ] {
        assert!(files.contains(f), "{f} missing from {files:?}");
    }
    // No other host's (or home/darwin target's) files: `self + /x` is not
    // a computed path below the whole tree.
    let others: Vec<&String> = files
        .iter()
        .filter(|f| {
            f.starts_with("configurations/") && !f.starts_with("configurations/nixos/myolai/")
        })
        .collect();
    assert!(others.is_empty(), "other hosts' files: {others:?}");
    // Edges are labelled with how they were found.
    let kinds: BTreeSet<&str> = j["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains("computed"), "{kinds:?}");
    assert!(!kinds.contains("copy"), "{kinds:?}");

    // mermaid and dot connect the host to the wiring.
    let m = guard_in(&dir, &["graph", "--host", "myolai", "--format", "mermaid"]);
    m.assert_code(0);
    assert!(
        m.stdout
            .lines()
            .any(|l| l.contains("-->|wiring|") && l.contains("[\"flake.nix\"]")),
        "{}",
        m.stdout
    );
    let d = guard_in(&dir, &["graph", "--host", "myolai"]);
    assert!(
        d.stdout
            .contains("\"host:myolai\" -> \"flake.nix\" [label=\"wiring\"];"),
        "{}",
        d.stdout
    );

    // What `explain` says about a module is drawn in the graph.
    let e = guard_in(&dir, &["explain", "modules/nixos/linux/incus/guest.nix"]);
    e.assert_code(0);
    let hosts: Vec<&str> = e.stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(hosts, ["myolai"], "{}", e.stdout);
    for chain in e.stdout.lines().filter(|l| l.starts_with(' ')) {
        for f in chain.trim().split(" → ") {
            assert!(files.contains(f), "{f} of {chain} not in the graph");
        }
    }
}

#[test]
fn graph_host_edge_from_the_wiring_is_labelled_host() {
    let r = TempRepo::new();
    r.write(
        "flake.nix",
        r#"{
  outputs = { self, nixpkgs }: {
    nixosConfigurations = builtins.mapAttrs
      (name: _: nixpkgs.lib.nixosSystem { modules = [ (./hosts + "/${name}") ./common.nix ]; })
      (builtins.readDir ./hosts);
  };
}"#,
    );
    r.write("common.nix", "{ imports = [ ./lib/users.nix ]; }\n");
    r.write("lib/users.nix", "{ }\n");
    r.write("hosts/alpha/default.nix", "{ imports = [ ./hw.nix ]; }\n");
    r.write("hosts/alpha/hw.nix", "{ }\n");
    r.write(
        "hosts/beta/default.nix",
        "{ imports = [ ../../lib/users.nix ]; }\n",
    );
    r.commit_all("fleet");
    let out = r.guard(&["graph", "--host", "alpha", "--format", "json"]);
    out.assert_code(0);
    let j = out.json();
    let files = strs(&j["files"]);
    assert!(files.contains("common.nix") && files.contains("lib/users.nix"));
    assert!(files.contains("hosts/alpha/hw.nix"));
    assert!(
        !files.iter().any(|f| f.starts_with("hosts/beta")),
        "{files:?}"
    );
    let edges: BTreeSet<(String, String, String)> = j["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        edges.contains(&(
            "flake.nix".into(),
            "hosts/alpha/default.nix".into(),
            "host".into()
        )),
        "{edges:?}"
    );
    assert!(
        // `modules = [ ... ]`: the module system imports each path.
        edges.contains(&("flake.nix".into(), "common.nix".into(), "file".into())),
        "{edges:?}"
    );
    // Inside the host's own directory an import is an import.
    assert!(
        edges.contains(&(
            "hosts/alpha/default.nix".into(),
            "hosts/alpha/hw.nix".into(),
            "file".into()
        )),
        "{edges:?}"
    );
}

#[test]
fn graph_mermaid_collapses_directories_and_says_so_on_wimpysworld() {
    let dir = pinned(WIMPY, WIMPY_HEAD);
    let full = guard_in(
        &dir,
        &[
            "graph",
            "--host",
            "atrius",
            "--format",
            "mermaid",
            "--collapse",
            "0",
        ],
    );
    full.assert_code(0);
    assert!(
        full.stdout.lines().count() > 1000,
        "the uncollapsed graph is big"
    );
    assert!(!full.stdout.contains("note["));

    let m = guard_in(&dir, &["graph", "--host", "atrius", "--format", "mermaid"]);
    m.assert_code(0);
    let nodes = mermaid_nodes(&m.stdout);
    // 40 nodes at most, plus the host node.
    assert!(nodes.len() <= 41, "{} nodes:\n{}", nodes.len(), m.stdout);
    assert!(m.stdout.lines().count() < 150, "{}", m.stdout);
    let note = m
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("note["))
        .unwrap_or_else(|| panic!("no note:\n{}", m.stdout));
    assert!(
        note.contains("at most 40 nodes") && note.contains("guard graph --collapse 0"),
        "{note}"
    );
    // The host, its entry and flake.nix stay visible; merged directories
    // say how many files they hold.
    for s in [
        "([\"atrius\"])",
        "[\"nixos/atrius/default.nix\"]",
        "[\"flake.nix\"]",
    ] {
        assert!(m.stdout.contains(s), "{s} missing:\n{}", m.stdout);
    }
    assert!(m.stdout.contains(" files)\"]"), "{}", m.stdout);

    // A smaller bound is honoured, and dot says so too.
    let d = guard_in(&dir, &["graph", "--host", "atrius", "--collapse", "15"]);
    d.assert_code(0);
    assert!(
        d.stdout.contains("label=\"at most 15 nodes"),
        "{}",
        d.stdout
    );
    let dot_nodes: BTreeSet<&str> = d
        .stdout
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .flat_map(|(a, b)| {
            [
                a.trim(),
                b.split(" [").next().unwrap().trim_end_matches(';'),
            ]
        })
        .collect();
    assert!(dot_nodes.len() <= 16, "{dot_nodes:?}");
    // JSON is for tools: every file, whatever --collapse says.
    let j = guard_in(
        &dir,
        &[
            "graph",
            "--host",
            "atrius",
            "--format",
            "json",
            "--collapse",
            "5",
        ],
    )
    .json();
    assert!(j["files"].as_array().unwrap().len() > 300);
}

#[test]
fn nixpkgs_default_argument_is_quiet_on_emergentmind() {
    let dir = pinned(EMERGENT, EMERGENT_HEAD);
    let out = guard_in(&dir, &["affected", "--all"]);
    out.assert_code(0);
    let w = warnings(&out);
    // `{ pkgs ? import <nixpkgs> { } }:` in pkgs/default.nix: every caller
    // passes pkgs, so it is not news.
    assert!(!w.iter().any(|l| l.contains("<nixpkgs>")), "{w:#?}");
    // A host module reading a file in a home directory is.
    assert_eq!(
        w,
        [
            "warning: hosts/ghost/default.nix:105:13: `/home/ta/sync/wallpaper/1126712.png` \
          reads outside the repository; guard cannot see changes to it"
        ],
    );
    // -v shows every lookup, saying why it was quiet.
    let v = guard_in(&dir, &["-v", "affected", "--all"]);
    v.assert_code(0);
    let w = warnings(&v);
    assert!(
        w.iter()
            .any(|l| l.contains("pkgs/default.nix:4:17: `<nixpkgs>`")
                && l.contains("argument default")),
        "{w:#?}"
    );
}

#[test]
fn self_plus_absolute_path_is_not_outside_the_repository_on_srid() {
    let dir = pinned(SRID, SRID_HEAD);
    let out = guard_in(&dir, &["affected", "--all"]);
    out.assert_code(0);
    let w = warnings(&out);
    assert!(
        !w.iter().any(|l| l.contains("outside the repository")),
        "{w:#?}"
    );
}

#[test]
fn reads_outside_the_repository_warn_once_per_file_where_a_host_reaches_them() {
    let r = TempRepo::new();
    r.write(
        "flake.nix",
        r#"{
  outputs = { self, nixpkgs }: {
    nixosConfigurations.alpha = nixpkgs.lib.nixosSystem { modules = [ ./hosts/alpha.nix ]; };
    packages.x86_64-linux = import ./pkgs { pkgs = nixpkgs.legacyPackages.x86_64-linux; };
    devShells.x86_64-linux.default = import ./shell.nix;
  };
}"#,
    );
    r.write(
        "hosts/alpha.nix",
        "{ pkgs, ... }: {\n  a = builtins.readFile /etc/machine-id;\n  b = import <home-manager>;\n  c = builtins.readFile /etc/machine-id;\n}\n",
    );
    r.write(
        "pkgs/default.nix",
        "{ pkgs ? import <nixpkgs> { } }: { hello = pkgs.hello; }\n",
    );
    r.write(
        "shell.nix",
        "let pkgs = import <nixpkgs> { }; in pkgs.mkShell { }\n",
    );
    r.commit_all("fleet");

    let out = r.guard(&["affected", "--all", "--format", "json"]);
    out.assert_code(0);
    let w: Vec<(String, String)> = out.json()["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["path"].as_str().unwrap_or("").to_string(),
                w["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        w,
        [(
            "hosts/alpha.nix:2:25".to_string(),
            "`/etc/machine-id`, `<home-manager>` read outside the repository; \
             guard cannot see changes to them"
                .to_string()
        )],
    );
    // The same run twice says the same: nothing accumulates.
    let again = r.guard(&["affected", "--all", "--format", "json"]);
    assert_eq!(again.json()["warnings"], out.json()["warnings"]);

    // -v: each lookup, the quiet ones marked.
    let v = r.guard(&["-v", "affected", "--all"]);
    v.assert_code(0);
    let w = warnings(&v);
    assert_eq!(w.len(), 5, "{w:#?}");
    assert_eq!(
        w.iter()
            .filter(|l| l.contains("no host's evaluation reaches it"))
            .count(),
        2,
        "{w:#?}"
    );
    assert!(
        w.iter().any(|l| l.starts_with("warning: shell.nix:1:19:")),
        "{w:#?}"
    );
}

//! Which hosts a commit *changes*, on the real fleets of `../shared/fleets`
//! (issue 13): pinned commits with the expected changed set, each traced by
//! the module-graph oracle of `../shared/fleets/truth` ("nix-oracle": the
//! hosts whose evaluated module graph holds a changed file) or by reading
//! ("reading": what the oracle cannot see, a flake.lock input or a file
//! read through an option value). Restamped hosts (only a stamp changes)
//! are checked apart. The full figures over 30 commits per repository are
//! `scripts/bench-precision` (BENCHMARKS.md).

use std::collections::BTreeSet;

use crate::real_fleets::{fleet, scratch_clone};
use crate::support::guard_in;

struct Pin {
    fleet: &'static str,
    commit: &'static str,
    evidence: &'static str,
    changed: &'static [&'static str],
    /// Hosts listed as restamped (None: not pinned).
    restamped: Option<&'static [&'static str]>,
}

const PINS: &[Pin] = &[
    // One shared optional module imported by one host: only it changes;
    // the others are restamped (hosts/common/core/nix.nix passes `inputs`
    // whole into the registry, which holds `self`).
    Pin {
        fleet: "EmergentMind+nix-config",
        commit: "40cee10e34a36b038dc5586c875c5b1a6871aaed",
        evidence: "nix-oracle",
        changed: &["ghost"],
        restamped: Some(&["grief", "guppy", "gusto"]),
    },
    // README only: nothing changes (relativeToRoot = lib.path.append ../.
    // no longer reads the whole tree).
    Pin {
        fleet: "EmergentMind+nix-config",
        commit: "d134be8caf6c7817731c36dc6bf48e121bb21dca",
        evidence: "reading",
        changed: &[],
        restamped: Some(&["ghost", "grief", "guppy", "gusto"]),
    },
    // A CI check file (checks/default.nix feeds `checks` only).
    Pin {
        fleet: "EmergentMind+nix-config",
        commit: "083bc93ec54418e1d89cf04ebf000f325b7e3a3c",
        evidence: "nix-oracle",
        changed: &[],
        restamped: None,
    },
    // The one host defined inline in flake.nix (`garfield = nixosSystem {
    // modules = [ ./hosts/nixos/garfield ]; }`): that host alone.
    Pin {
        fleet: "dustinlyons+nixos-config",
        commit: "a35155b0ba31a276f20440f8b2a74bb994761144",
        evidence: "nix-oracle",
        changed: &["garfield"],
        restamped: Some(&[]),
    },
    // A script an `apps` output links through `${self}/apps/...` (a let
    // binding used only in `apps`): no host.
    Pin {
        fleet: "dustinlyons+nixos-config",
        commit: "421cb450ae70292a3ba10e50fd2be9adf87a4b42",
        evidence: "nix-oracle",
        changed: &[],
        restamped: Some(&[]),
    },
    Pin {
        fleet: "dustinlyons+nixos-config",
        commit: "9022b2b3b1573c9ab4d666e1feb1a81bd81135d3",
        evidence: "reading",
        changed: &[],
        restamped: Some(&[]),
    },
    // nixos-unified autowiring: one host's directory.
    Pin {
        fleet: "srid+nixos-config",
        commit: "e5f5c139fd3072a9378e9cec17fd1c82442201e4",
        evidence: "nix-oracle",
        changed: &["myolai"],
        restamped: None,
    },
    // flake.lock bumps input `olai`: only the two hosts that use it
    // (configurations/nixos/{myolai,naiveintent}; pureintent never names it).
    Pin {
        fleet: "srid+nixos-config",
        commit: "d8c0ddc8826ec8f391324cb6ff24463273f9d722",
        evidence: "reading",
        changed: &["myolai", "naiveintent"],
        restamped: None,
    },
    Pin {
        fleet: "srid+nixos-config",
        commit: "364e019e329d83651a4ec45b07c6e831cd331c5a",
        evidence: "reading",
        changed: &[],
        restamped: None,
    },
    // clan: a module of `flake.nixosModules.web01` (modules/flake-module.nix),
    // which only machines/web01/configuration.nix imports
    // (`self.nixosModules.web01`).
    Pin {
        fleet: "clan-lol+clan-infra",
        commit: "fd6312e84d89241c1a075e550967c23e40b08968",
        evidence: "reading",
        changed: &["web01"],
        restamped: None,
    },
    // A CI workflow only.
    Pin {
        fleet: "colemickens+nixcfg",
        commit: "31710fcec98977034211b9dd0cac4e8a9804d6d6",
        evidence: "reading",
        changed: &[],
        restamped: None,
    },
];

fn names(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pinned_commits_name_exactly_the_changed_hosts() {
    let mut wrong = Vec::new();
    for pin in PINS {
        let repo = fleet(pin.fleet);
        let out = guard_in(
            &repo,
            &["affected", "--commit", pin.commit, "--format", "json"],
        );
        out.assert_code(0);
        let v = out.json();
        let changed = names(&v["hosts"]);
        let want: BTreeSet<String> = pin.changed.iter().map(|s| s.to_string()).collect();
        if changed != want {
            wrong.push(format!(
                "{} {} ({}): changed {changed:?}, expected {want:?}",
                pin.fleet, pin.commit, pin.evidence
            ));
        }
        if let Some(r) = pin.restamped {
            let got = names(&v["restamped"]);
            let want: BTreeSet<String> = r.iter().map(|s| s.to_string()).collect();
            if got != want {
                wrong.push(format!(
                    "{} {}: restamped {got:?}, expected {want:?}",
                    pin.fleet, pin.commit
                ));
            }
        }
        // Changed and restamped never overlap, and together with the
        // unaffected hosts they are every host.
        let restamped = names(&v["restamped"]);
        assert!(
            changed.is_disjoint(&restamped),
            "{} {}",
            pin.fleet,
            pin.commit
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn doctor_names_every_stamp_with_file_and_line_on_real_fleets() {
    // srid/nixos-config reads a secret as `self + /secrets/...`: a path
    // inside the whole source's store path; the fix is a path literal.
    let out = guard_in(&fleet("srid+nixos-config"), &["doctor", "--format", "json"]);
    out.assert_code(0);
    let v = out.json();
    let advice = v["advice"].as_array().unwrap();
    let juspay = advice
        .iter()
        .find(|a| a["file"] == "modules/home/claude-code/juspay.nix")
        .unwrap_or_else(|| panic!("no advice for juspay.nix: {}", out.stdout));
    assert_eq!(juspay["kind"], "whole-tree-path");
    assert!(juspay["line"].as_u64().is_some());
    let fix = juspay["fix"].as_str().unwrap();
    assert!(
        fix.contains("../../../secrets/juspay-anthropic-api-key.age"),
        "{fix}"
    );
    // TUM links the whole source into every system that imports
    // commonModules (`ln -s ${self}`): reported for those hosts, with the
    // line; the two install ISOs (pkgs/install-iso) do not import it.
    let out = guard_in(
        &fleet("TUM-DSE+doctor-cluster-config"),
        &["doctor", "--format", "json"],
    );
    out.assert_code(0);
    let v = out.json();
    let n_hosts = v["hosts"].as_array().unwrap().len();
    let link = v["advice"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["file"] == "modules/register-flake.nix" && a["kind"] == "whole-tree-path")
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let hosts: Vec<&str> = link["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(hosts.len(), n_hosts - 2, "{hosts:?}");
    assert!(!hosts.iter().any(|h| h.starts_with("install-iso")));
    assert!(link["line"].as_u64().is_some());
}

/// TUM-DSE reads each host's sops file as
/// `./. + "/hosts/${config.networking.hostName}.yml"`, and each host sets
/// `networking.hostName = "<name>"`: a change to one host's file changes
/// that host alone.
#[test]
fn a_path_computed_from_the_host_name_is_that_hosts_file() {
    let repo = scratch_clone("TUM-DSE+doctor-cluster-config");
    let p = repo.path().join("hosts/ace.yml");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("\n# touched\n");
    std::fs::write(&p, text).unwrap();
    let rev = repo.commit_all("touch ace's sops file");
    let out = guard_in(
        repo.path(),
        &["affected", "--commit", &rev, "--format", "json"],
    );
    out.assert_code(0);
    let v = out.json();
    assert_eq!(
        names(&v["hosts"]),
        BTreeSet::from(["ace".to_string()]),
        "{}",
        out.stdout
    );
}

//! Host discovery on the real fleets of `../shared/fleets`: at each
//! mirror's HEAD, `guard affected --all --format json` lists exactly the
//! NixOS hosts nix lists as `nixosConfigurations`, and the other target
//! kinds apart.
//!
//! The expected lists were derived once per repository, with the commit
//! pinned: by nix itself through the module-graph oracle of
//! `../shared/fleets/truth` (inputs stubbed, frameworks real) where it
//! evaluates, and by reading the flake where it does not (clan: machines/
//! directories, the inventory and inventory.json, split by machineClass).

use crate::real_fleets::{fleet, fleet_head};
use crate::support::guard_in;

struct Expected {
    fleet: &'static str,
    head: &'static str,
    /// How the list was derived: "nix-oracle" or "reading".
    evidence: &'static str,
    nixos: &'static [&'static str],
    darwin: &'static [&'static str],
    home: &'static [&'static str],
    deploy_nodes: &'static [&'static str],
}

const EXPECTED: &[Expected] = &[
    Expected {
        fleet: "EmergentMind+nix-config",
        head: "9f488753bc067f103c8583f56bdff617fdcdc1dc",
        evidence: "nix-oracle",
        nixos: &["ghost", "grief", "guppy", "gusto"],
        darwin: &[],
        home: &[],
        deploy_nodes: &[],
    },
    Expected {
        fleet: "TUM-DSE+doctor-cluster-config",
        head: "63ccb9eea37a3834ffd705dee8fe73b78eb1f75b",
        evidence: "nix-oracle",
        nixos: &[
            "ace",
            "adelaide",
            "amy",
            "astrid",
            "christina",
            "clara",
            "dan",
            "doctor",
            "donna",
            "eliza",
            "graham",
            "ian",
            "install-iso-aarch64-linux",
            "install-iso-x86_64-linux",
            "irene",
            "jack",
            "jackson",
            "jamie",
            "joy",
            "martha",
            "mickey",
            "polly",
            "river",
            "rose",
            "ruby",
            "ryan",
            "steve",
            "tegan",
            "vicki",
            "vislor",
            "wilfred",
            "xavier",
            "yasmin",
        ],
        darwin: &[],
        home: &[],
        deploy_nodes: &[],
    },
    Expected {
        fleet: "badele+nix-homelab",
        head: "d747820e42b0e5749247acfb2bf0b27f1fe8028f",
        evidence: "reading",
        nixos: &[
            "airlock",
            "badxps",
            "constellation",
            "gagarin",
            "hangar16",
            "hangar16-vm",
            "houston",
        ],
        darwin: &[],
        home: &[],
        deploy_nodes: &[],
    },
    Expected {
        fleet: "clan-lol+clan-infra",
        head: "4dea42ac1dd2276caba7e3b0576a326e94ddb617",
        evidence: "reading",
        nixos: &[
            "build-x86-01",
            "build01",
            "jitsi01",
            "storinator01",
            "web01",
            "web02",
        ],
        darwin: &["build02", "build04"],
        home: &[],
        deploy_nodes: &[],
    },
    Expected {
        fleet: "colemickens+nixcfg",
        head: "2e6fc42415717c237afecb0033afc90a93734153",
        evidence: "nix-oracle",
        nixos: &["installer-riscv64", "jupitertwo", "raisin"],
        darwin: &["manzana"],
        home: &[],
        deploy_nodes: &[],
    },
    Expected {
        fleet: "dustinlyons+nixos-config",
        head: "24dddbd9a86c22b3d85420c41ac82c2ad0020faa",
        evidence: "nix-oracle",
        nixos: &["aarch64-linux", "garfield", "x86_64-linux"],
        darwin: &["aarch64-darwin", "x86_64-darwin"],
        home: &[],
        deploy_nodes: &[],
    },
    Expected {
        fleet: "mitchellh+nixos-config",
        head: "d314004d9f51543f91a7a080ab2fe7f6f62b1280",
        evidence: "nix-oracle",
        nixos: &["vm-aarch64", "vm-aarch64-utm", "wsl"],
        darwin: &["macbook-pro-m1"],
        home: &[],
        deploy_nodes: &[],
    },
    Expected {
        fleet: "nmasur+dotfiles",
        head: "a979036462f9a1b0f4bff105d4992bab38fe673c",
        evidence: "nix-oracle",
        nixos: &["arrow", "flame", "hydra", "staff", "swan", "tempest"],
        darwin: &["lookingglass"],
        home: &[
            "arrow",
            "flame",
            "hydra",
            "lookingglass",
            "staff",
            "swan",
            "tempest",
        ],
        deploy_nodes: &[],
    },
    Expected {
        fleet: "oddlama+nix-config",
        head: "d406dd8d472c95f4e085b6c3e585aa62db47a1d7",
        evidence: "nix-oracle",
        nixos: &[
            "envoy",
            "kroma",
            "nom",
            "sausebiene",
            "sentinel",
            "sire",
            "ward",
        ],
        darwin: &[],
        home: &[],
        deploy_nodes: &[],
    },
    Expected {
        fleet: "ryan4yin+nix-config",
        head: "9ee947dc0ac4bcb594889f5cde2dc65d1b995488",
        evidence: "nix-oracle",
        nixos: &[
            "ai-niri",
            "akane",
            "aquamarine",
            "k3s-prod-1-master-1",
            "k3s-prod-1-master-2",
            "k3s-prod-1-master-3",
            "k3s-prod-1-worker-1",
            "k3s-prod-1-worker-2",
            "k3s-prod-1-worker-3",
            "k3s-test-1-master-1",
            "k3s-test-1-master-2",
            "k3s-test-1-master-3",
            "kana",
            "kubevirt-shoryu",
            "kubevirt-shushou",
            "kubevirt-youko",
            "ruby",
            "shoukei-niri",
        ],
        darwin: &["fern", "frieren"],
        home: &[],
        deploy_nodes: &[
            "akane",
            "aquamarine",
            "k3s-prod-1-master-1",
            "k3s-prod-1-master-2",
            "k3s-prod-1-master-3",
            "k3s-prod-1-worker-1",
            "k3s-prod-1-worker-2",
            "k3s-prod-1-worker-3",
            "k3s-test-1-master-1",
            "k3s-test-1-master-2",
            "k3s-test-1-master-3",
            "kana",
            "kubevirt-shoryu",
            "kubevirt-shushou",
            "kubevirt-youko",
            "ruby",
        ],
    },
    Expected {
        fleet: "srid+nixos-config",
        head: "66ed7369c139252b10850edaa64d989843102825",
        evidence: "nix-oracle",
        nixos: &["myolai", "naiveintent", "pureintent"],
        darwin: &["infinitude-macos"],
        home: &[
            "srid@sincereintent",
            "srid@thismoment",
            "srid@zest",
            "toor@kolu-bot",
        ],
        deploy_nodes: &[],
    },
    Expected {
        fleet: "wimpysworld+nix-config",
        head: "931f27996f189a7ec56f6bb01ede3b51157cb2b1",
        evidence: "nix-oracle",
        nixos: &[
            "atrius", "bane", "cognus", "crawler", "dagger", "felkor", "malak", "maul", "nihilus",
            "ravi", "revan", "shaa", "sidious", "skrye", "tanis", "zannah",
        ],
        darwin: &[],
        home: &[
            "deck@steamdeck",
            "martin@atrius",
            "martin@bane",
            "martin@blackace",
            "martin@cognus",
            "martin@crawler",
            "martin@dagger",
            "martin@defender",
            "martin@felkor",
            "martin@fighter",
            "martin@malak",
            "martin@maul",
            "martin@palpatine",
            "martin@ravi",
            "martin@revan",
            "martin@shaa",
            "martin@sidious",
            "martin@skrye",
            "martin@tanis",
            "martin@zannah",
        ],
        deploy_nodes: &[],
    },
];

fn names(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn owned(x: &[&str]) -> Vec<String> {
    x.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_real_fleet_lists_exactly_its_hosts() {
    let mut failures = Vec::new();
    for e in EXPECTED {
        let dir = fleet(e.fleet);
        assert_eq!(
            fleet_head(e.fleet),
            e.head,
            "{}: the mirror moved; re-derive its expected hosts",
            e.fleet
        );
        let out = guard_in(&dir, &["affected", "--all", "--format", "json"]);
        out.assert_code(0);
        let j = out.json();
        let got = names(&j["all_hosts"]);
        if got != owned(e.nixos) {
            failures.push(format!(
                "{} ({}): NixOS hosts\n  expected {:?}\n  got      {:?}",
                e.fleet, e.evidence, e.nixos, got
            ));
        }
        for (kind, want) in [
            ("darwin", e.darwin),
            ("home", e.home),
            ("deploy-nodes", e.deploy_nodes),
        ] {
            let got = names(&j["other_targets"][kind]);
            if got != owned(want) {
                failures.push(format!(
                    "{}: {kind} targets\n  expected {want:?}\n  got      {got:?}",
                    e.fleet
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn other_target_kinds_never_join_the_host_list() {
    // clan-infra keeps darwin machines next to NixOS ones in machines/.
    let dir = fleet("clan-lol+clan-infra");
    let j = guard_in(&dir, &["affected", "--all", "--format", "json"]).json();
    let hosts = names(&j["all_hosts"]);
    for darwin in names(&j["other_targets"]["darwin"]) {
        assert!(
            !hosts.contains(&darwin),
            "{darwin} is darwin, not a NixOS host"
        );
    }
    assert!(!names(&j["other_targets"]["darwin"]).is_empty());
}

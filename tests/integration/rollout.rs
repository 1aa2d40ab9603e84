//! `guard plan`: the changed hosts in waves with the deploy commands of the
//! tool each flake uses, snapshotted on the example fleet (nixinate-style
//! apps), on ryan4yin/nix-config (colmena, pinned commits) and on a small
//! deploy-rs flake made here.

use crate::real_fleets;
use crate::support::{GuardOutput, TempRepo, fleet_repo, guard_in};

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s
}

fn shown(out: &GuardOutput) -> String {
    format!("exit {}\n{}{}", out.code, out.stdout, out.stderr)
}

/// The hosts of each wave, from `--format json`.
fn waves(out: &GuardOutput) -> Vec<(String, Vec<String>)> {
    out.assert_code(0);
    out.json()["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["hosts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn example_fleet_waves_with_nixinate_apps() {
    let repo = fleet_repo();
    repo.write(
        "guard.toml",
        "[build]\ncritical = [\"monitor\", \"swarm-2\"]\n\n[rollout]\ncanary = [\"swarm-0\"]\n",
    );
    repo.commit_all("rollout");
    let p = repo.path().join("services/prometheus.nix");
    let mut t = std::fs::read_to_string(&p).unwrap();
    t.push_str("# scrape every 30 s\n");
    std::fs::write(&p, t).unwrap();
    repo.commit_all("prometheus");

    let human = repo.guard(&["plan", "--commit", "HEAD"]);
    let json = repo.guard(&["plan", "--commit", "HEAD", "--format", "json"]);
    // The builders and the monitor read prometheus.nix: swarm-0 first,
    // the critical monitor and swarm-2 last.
    let w = waves(&json);
    let names: Vec<&str> = w.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["canary", "main", "critical"]);
    assert_eq!(w[0].1, ["swarm-0"]);
    assert_eq!(w[2].1, ["monitor", "swarm-2"]);
    assert_eq!(json.json()["tool"], "nixinate");
    settings().bind(|| {
        insta::assert_snapshot!("plan_example_fleet", shown(&human));
        insta::assert_snapshot!("plan_example_fleet_json", shown(&json));
    });
}

/// ryan4yin/nix-config deploys with colmena: one `colmena apply --on` per
/// wave; the two hosts that are no colmena node get nixos-rebuild.
#[test]
fn colmena_fleet_waves() {
    const FLEET: &str = "ryan4yin+nix-config";
    // A commit that changes every host, and one that only restamps them.
    const CHANGES_ALL: &str = "9ee947dc0ac4bcb594889f5cde2dc65d1b995488";
    const RESTAMPS_ONLY: &str = "b1e2bb7e0991de5e170001a2b7bc450d5bbf316e";
    let dir = real_fleets::fleet(FLEET);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[build]\ncritical = [\"k3s-prod-1-master-1\", \"k3s-prod-1-master-2\", \"k3s-prod-1-master-3\"]\n\n\
         [rollout]\ncanary = [\"k3s-test-*\"]\n",
    )
    .unwrap();
    let cfg = config.path().to_str().unwrap();
    let all = guard_in(&dir, &["--config", cfg, "plan", "--commit", CHANGES_ALL]);
    let json = guard_in(
        &dir,
        &[
            "--config",
            cfg,
            "plan",
            "--commit",
            CHANGES_ALL,
            "--format",
            "json",
        ],
    );
    let w = waves(&json);
    assert_eq!(json.json()["tool"], "colmena");
    assert_eq!(w.len(), 3);
    assert_eq!(
        w[0].1,
        [
            "k3s-test-1-master-1",
            "k3s-test-1-master-2",
            "k3s-test-1-master-3"
        ]
    );
    assert_eq!(
        w[2].1,
        [
            "k3s-prod-1-master-1",
            "k3s-prod-1-master-2",
            "k3s-prod-1-master-3"
        ]
    );
    let v = json.json();
    let first = v["waves"][0]["commands"][0].as_str().unwrap().to_string();
    assert_eq!(
        first,
        "colmena apply --on k3s-test-1-master-1,k3s-test-1-master-2,k3s-test-1-master-3"
    );
    let restamped = guard_in(&dir, &["--config", cfg, "plan", "--commit", RESTAMPS_ONLY]);
    restamped.assert_code(0);
    settings().bind(|| {
        insta::assert_snapshot!("plan_colmena_fleet", shown(&all));
        insta::assert_snapshot!("plan_colmena_restamped_only", shown(&restamped));
    });
}

/// A small deploy-rs flake: `deploy .#<host>` for its nodes, nixos-rebuild
/// for a host that is no node.
#[test]
fn deploy_rs_flake_waves() {
    let repo = TempRepo::new();
    repo.write(
        "flake.nix",
        r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
  inputs.deploy-rs.url = "github:serokell/deploy-rs";
  outputs = { self, nixpkgs, deploy-rs }:
    let
      mkHost = name: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [ ./hosts/${name}.nix ./hosts/common.nix ];
      };
      node = name: {
        hostname = "${name}.example.org";
        profiles.system.path = deploy-rs.lib.x86_64-linux.activate.nixos self.nixosConfigurations.${name};
      };
    in {
      nixosConfigurations = {
        web = mkHost "web";
        db = mkHost "db";
        cache = mkHost "cache";
      };
      deploy.nodes = {
        web = node "web";
        db = node "db";
      };
    };
}
"#,
    );
    for h in ["web", "db", "cache"] {
        repo.write(
            &format!("hosts/{h}.nix"),
            format!("{{ ... }}: {{ networking.hostName = \"{h}\"; }}\n"),
        );
    }
    repo.write(
        "hosts/common.nix",
        "{ ... }: { services.openssh.enable = true; }\n",
    );
    repo.write(
        "guard.toml",
        "[build]\ncritical = [\"db\"]\n\n[rollout]\ncanary = [\"web\"]\n",
    );
    repo.commit_all("fleet");
    repo.write(
        "hosts/common.nix",
        "{ ... }: { services.openssh.enable = true; services.fail2ban.enable = true; }\n",
    );
    repo.commit_all("fail2ban everywhere");
    let human = repo.guard(&["plan", "--base", "HEAD~1"]);
    let json = repo.guard(&["plan", "--base", "HEAD~1", "--format", "json"]);
    let w = waves(&json);
    assert_eq!(
        w,
        [
            ("canary".to_string(), vec!["web".to_string()]),
            ("main".to_string(), vec!["cache".to_string()]),
            ("critical".to_string(), vec!["db".to_string()]),
        ]
    );
    assert_eq!(json.json()["waves"][0]["commands"][0], "deploy .#web");
    settings().bind(|| {
        insta::assert_snapshot!("plan_deploy_rs", shown(&human));
    });
}

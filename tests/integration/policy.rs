//! Fleet policy (`[policy]` in guard.toml) through the built binary on real
//! git repositories: an input critical hosts must not reach, on the example
//! fleet (its second nixpkgs reaches linda through environments/ai.nix),
//! and flake.lock hygiene on crafted lock files.

use crate::support::{GuardOutput, TempRepo, fleet_repo};

const CRITICAL_POLICY: &str = r#"[build]
critical = ["linda", "cortex-alpha"]

[[policy.rules]]
hosts = ["critical"]
forbid_inputs = ["nixpkgs_unstable"]
"#;

/// The policy section's findings of a `--format json` check.
fn policy_findings(out: &GuardOutput) -> Vec<serde_json::Value> {
    out.json()["policy"]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no policy section:\n{}", out.stdout))
        .clone()
}

fn of_rule<'a>(fs: &'a [serde_json::Value], rule: &str) -> Vec<&'a serde_json::Value> {
    fs.iter().filter(|f| f["rule"] == rule).collect()
}

fn message(f: &serde_json::Value) -> &str {
    f["message"].as_str().unwrap()
}

#[test]
fn forbidden_input_fails_exactly_the_critical_hosts_that_import_it() {
    let repo = fleet_repo();
    repo.write("guard.toml", CRITICAL_POLICY);
    // obs-box (not critical) imports the environment too: allowed.
    let obs = std::fs::read_to_string(repo.path().join("machines/obs-box/default.nix")).unwrap();
    let with_ai = obs.replacen(
        "../../environments/common.nix",
        "../../environments/common.nix\n    ../../environments/ai.nix",
        1,
    );
    assert_ne!(obs, with_ai, "obs-box imports common.nix");
    repo.write("machines/obs-box/default.nix", &with_ai);
    repo.commit_all("policy");

    let out = repo.guard(&["check", "--all", "--level", "none", "--format", "json"]);
    out.assert_code(1);
    let fs = policy_findings(&out);
    let forbidden = of_rule(&fs, "forbidden-input");
    assert_eq!(forbidden.len(), 1, "{fs:#?}");
    let f = forbidden[0];
    assert_eq!(f["severity"], "error");
    assert_eq!(f["path"], "environments/ai.nix");
    assert_eq!(f["line"], 8, "the line that uses the input");
    assert!(message(f).starts_with("host linda reaches input nixpkgs_unstable"));
    assert!(
        message(f)
            .contains("machines/linda/default.nix → environments/ai.nix → inputs.nixpkgs_unstable"),
        "{}",
        message(f)
    );
    // The human form names the chain too.
    let human = repo.guard(&["check", "--all", "--level", "none"]);
    human.assert_code(1);
    assert!(human.stdout.contains("── fleet policy"), "{}", human.stdout);
    assert!(human.stdout.contains("error[forbidden-input]"));

    // Removing the import makes it pass.
    let linda = std::fs::read_to_string(repo.path().join("machines/linda/default.nix")).unwrap();
    repo.write(
        "machines/linda/default.nix",
        linda.replace("    ../../environments/ai.nix\n", ""),
    );
    repo.commit_all("linda without ai");
    let out = repo.guard(&["check", "--all", "--level", "none", "--format", "json"]);
    out.assert_code(0);
    assert!(of_rule(&policy_findings(&out), "forbidden-input").is_empty());
}

#[test]
fn forbidden_input_in_pre_commit_ci_sarif_and_only_via() {
    let repo = fleet_repo();
    // Policy first, without the offending import; the change adds it.
    let linda = std::fs::read_to_string(repo.path().join("machines/linda/default.nix")).unwrap();
    repo.write(
        "machines/linda/default.nix",
        linda.replace("    ../../environments/ai.nix\n", ""),
    );
    repo.write("guard.toml", CRITICAL_POLICY);
    repo.commit_all("policy");
    repo.git(&["branch", "base"]);
    repo.write("machines/linda/default.nix", &linda);
    repo.git(&["add", "machines/linda/default.nix"]);

    let hook = repo.guard(&["pre-commit"]);
    hook.assert_code(1);
    assert!(hook.stderr.contains("forbidden-input"), "{}", hook.stderr);

    repo.commit_all("linda runs ai");
    let sarif = repo.path().join("out.sarif");
    let ci = repo.guard(&[
        "ci",
        "--base",
        "base",
        "--level",
        "none",
        "--sarif",
        sarif.to_str().unwrap(),
    ]);
    ci.assert_code(1);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    let run = &doc["runs"][0];
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"forbidden-input"), "{rules:?}");
    let results = run["results"].as_array().unwrap();
    let hit = results
        .iter()
        .find(|r| r["ruleId"] == "forbidden-input")
        .expect("a SARIF result for the policy finding");
    assert_eq!(
        hit["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "environments/ai.nix"
    );

    // GitHub annotations.
    let gh = repo.guard(&[
        "ci", "--base", "base", "--level", "none", "--format", "github",
    ]);
    gh.assert_code(1);
    let annotation = gh
        .stdout
        .lines()
        .find(|l| l.contains("forbidden-input"))
        .unwrap_or_else(|| panic!("no annotation:\n{}", gh.stdout));
    assert!(
        annotation.starts_with("::error file=environments/ai.nix,line=8"),
        "{annotation}"
    );

    // Allowed through the environment: passes; as a warning: passes too.
    repo.write(
        "guard.toml",
        format!("{CRITICAL_POLICY}only_via = [\"environments/ai.nix\"]\n"),
    );
    repo.commit_all("allow ai.nix");
    repo.guard(&["check", "--all", "--level", "none"])
        .assert_code(0);
    repo.write(
        "guard.toml",
        format!("{CRITICAL_POLICY}\n[policy.severity]\nforbidden-input = \"warning\"\n"),
    );
    repo.commit_all("warn only");
    let out = repo.guard(&["check", "--all", "--level", "none", "--format", "json"]);
    out.assert_code(0);
    let fs = policy_findings(&out);
    assert_eq!(of_rule(&fs, "forbidden-input")[0]["severity"], "warning");
}

/// A two-host flake: web uses home-manager (through `inputs`), db does
/// not; both are built by nixpkgs.
fn lock_fleet(lock: &str) -> TempRepo {
    let repo = TempRepo::new();
    repo.write(
        "flake.nix",
        r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
  inputs.home-manager.url = "github:nix-community/home-manager";
  inputs.floating.url = "git+https://example.org/tools.git";
  outputs = inputs@{ self, nixpkgs, ... }: {
    nixosConfigurations.web = nixpkgs.lib.nixosSystem {
      specialArgs = { inherit inputs; };
      modules = [ ./hosts/web.nix ];
    };
    nixosConfigurations.db = nixpkgs.lib.nixosSystem {
      specialArgs = { inherit inputs; };
      modules = [ ./hosts/db.nix ];
    };
  };
}
"#,
    );
    repo.write(
        "hosts/web.nix",
        "{ inputs, ... }: {\n  imports = [ inputs.home-manager.nixosModules.home-manager ];\n  networking.hostName = \"web\";\n}\n",
    );
    repo.write(
        "hosts/db.nix",
        "{ ... }: {\n  networking.hostName = \"db\";\n}\n",
    );
    repo.write("guard.toml", "[policy]\n");
    repo.write("flake.lock", lock);
    repo.commit_all("fleet");
    repo
}

/// The tests' commits are dated 2026-01-01T00:00:00Z (support::git_cmd);
/// lock ages are measured at the judged commit's time.
const COMMIT_TIME: i64 = 1_767_225_600;

/// A lock: nixpkgs on `branch` from `days` ago; home-manager with its own
/// nixpkgs (`nixpkgs_2`) unless `follows`; floating locked or not.
fn lock(branch: &str, days: i64, follows: bool, hm_rev: &str, floating_locked: bool) -> String {
    let t = COMMIT_TIME - days * 86_400;
    let hm_nixpkgs = if follows {
        r#"["nixpkgs"]"#.to_string()
    } else {
        r#""nixpkgs_2""#.to_string()
    };
    let floating = if floating_locked {
        r#""locked": {"type": "git", "url": "https://example.org/tools.git", "rev": "0123456789abcdef0123456789abcdef01234567", "narHash": "sha256-F"},"#
    } else {
        r#""locked": {"type": "git", "url": "https://example.org/tools.git"},"#
    };
    format!(
        r#"{{
  "nodes": {{
    "floating": {{
      {floating}
      "original": {{"type": "git", "url": "https://example.org/tools.git"}}
    }},
    "home-manager": {{
      "inputs": {{"nixpkgs": {hm_nixpkgs}}},
      "locked": {{"type": "github", "owner": "nix-community", "repo": "home-manager", "rev": "{hm_rev}", "narHash": "sha256-H", "lastModified": {t}}},
      "original": {{"type": "github", "owner": "nix-community", "repo": "home-manager"}}
    }},
    "nixpkgs": {{
      "locked": {{"type": "github", "owner": "NixOS", "repo": "nixpkgs", "rev": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "narHash": "sha256-A", "lastModified": {t}}},
      "original": {{"type": "github", "owner": "NixOS", "repo": "nixpkgs", "ref": "{branch}"}}
    }},
    "nixpkgs_2": {{
      "locked": {{"type": "github", "owner": "NixOS", "repo": "nixpkgs", "rev": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "narHash": "sha256-B", "lastModified": {t}}},
      "original": {{"type": "github", "owner": "NixOS", "repo": "nixpkgs", "ref": "nixos-unstable"}}
    }},
    "root": {{
      "inputs": {{"floating": "floating", "home-manager": "home-manager", "nixpkgs": "nixpkgs"}}
    }}
  }},
  "root": "root",
  "version": 7
}}
"#
    )
}

fn check_all(repo: &TempRepo) -> GuardOutput {
    repo.guard(&["check", "--all", "--level", "none", "--format", "json"])
}

#[test]
fn a_clean_lock_has_no_findings() {
    let repo = lock_fleet(&lock("nixos-unstable", 3, true, "h1", true));
    let out = check_all(&repo);
    out.assert_code(0);
    assert_eq!(policy_findings(&out), Vec::<serde_json::Value>::new());
}

#[test]
fn an_unlocked_input_is_an_error() {
    let repo = lock_fleet(&lock("nixos-unstable", 3, true, "h1", false));
    let out = check_all(&repo);
    out.assert_code(1);
    let fs = policy_findings(&out);
    let unlocked = of_rule(&fs, "unlocked-input");
    assert_eq!(unlocked.len(), 1, "{fs:#?}");
    assert_eq!(unlocked[0]["severity"], "error");
    assert_eq!(unlocked[0]["path"], "flake.lock");
    assert_eq!(unlocked[0]["line"], 3, "the floating node");
    assert!(message(unlocked[0]).contains("input floating (git https://example.org/tools.git)"));
}

#[test]
fn an_old_nixpkgs_on_an_unsupported_branch_warns() {
    let repo = lock_fleet(&lock("nixos-20.09", 200, true, "h1", true));
    let out = check_all(&repo);
    out.assert_code(0);
    let fs = policy_findings(&out);
    let old = of_rule(&fs, "nixpkgs-outdated");
    assert_eq!(old.len(), 1, "{fs:#?}");
    assert_eq!(old[0]["severity"], "warning");
    assert!(message(old[0]).contains("nixpkgs input nixpkgs is locked to a commit 200 days old"));
    let branch = of_rule(&fs, "nixpkgs-unsupported-branch");
    assert_eq!(branch.len(), 1, "{fs:#?}");
    assert!(message(branch[0]).contains("follows branch nixos-20.09"));
    // The age limit is configurable.
    repo.write("guard.toml", "[policy.lock]\nmax_age_days = 365\n");
    repo.commit_all("a year is fine");
    let fs = policy_findings(&check_all(&repo));
    assert!(of_rule(&fs, "nixpkgs-outdated").is_empty(), "{fs:#?}");
}

#[test]
fn a_duplicate_nixpkgs_names_the_hosts_that_pull_it_in() {
    let repo = lock_fleet(&lock("nixos-unstable", 3, false, "h1", true));
    let out = check_all(&repo);
    out.assert_code(0);
    let fs = policy_findings(&out);
    let dup = of_rule(&fs, "duplicate-nixpkgs");
    assert_eq!(dup.len(), 1, "{fs:#?}");
    let m = message(dup[0]);
    assert!(
        m.contains("comes in through home-manager and is pulled in by 1 host: web."),
        "{m}"
    );
    assert!(m.contains("inputs.home-manager.inputs.nixpkgs.follows = \"nixpkgs\";"));
    assert!(!m.contains("db"), "db does not use home-manager: {m}");
}

#[test]
fn a_bumped_input_is_reported_with_the_hosts_it_reaches() {
    let repo = lock_fleet(&lock("nixos-unstable", 3, true, "h1", true));
    repo.write("flake.lock", lock("nixos-unstable", 3, true, "h2", true));
    repo.commit_all("bump home-manager");
    let out = repo.guard(&[
        "check", "--commit", "HEAD", "--level", "none", "--format", "json",
    ]);
    out.assert_code(0);
    let fs = policy_findings(&out);
    let bumped = of_rule(&fs, "input-changed");
    assert_eq!(bumped.len(), 1, "{fs:#?}");
    assert_eq!(bumped[0]["severity"], "info");
    let m = message(bumped[0]);
    assert!(m.starts_with("input home-manager bumped (h1 of "), "{m}");
    assert!(m.ends_with("it reaches 1 host: web"), "{m}");
    // And the affected set agrees: only web.
    let v = out.json();
    let hosts: Vec<&str> = v["affected"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["web"]);
}

#[test]
fn a_rule_that_names_nothing_real_is_a_warning_not_a_silent_pass() {
    let repo = lock_fleet(&lock("nixos-unstable", 3, true, "h1", true));
    repo.write(
        "guard.toml",
        "[[policy.rules]]\nhosts = [\"critical\", \"wbe\"]\nforbid_inputs = [\"home-manger\"]\n\
         only_via = [\"hosts/nope.nix\"]\n",
    );
    repo.commit_all("typos");
    let out = check_all(&repo);
    out.assert_code(0);
    let v = out.json();
    let warnings: Vec<String> = v["policy"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            format!(
                "{}: {}",
                w["path"].as_str().unwrap(),
                w["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        warnings,
        [
            "guard.toml [[policy.rules]] #1: forbid_inputs: \"home-manger\" is no input of this flake (inputs: floating, home-manager, nixpkgs)",
            "guard.toml [[policy.rules]] #1: only_via: \"hosts/nope.nix\" is not a tracked file",
            "guard.toml [[policy.rules]] #1: hosts: \"critical\" selects no host of this flake",
            "guard.toml [[policy.rules]] #1: hosts: \"wbe\" selects no host of this flake",
        ]
    );
    // The human form shows them too.
    let human = repo.guard(&["check", "--all", "--level", "none"]);
    assert!(
        human
            .stdout
            .contains("warning: guard.toml [[policy.rules]] #1: forbid_inputs"),
        "{}",
        human.stdout
    );
}

//! `guard ci` under a fabricated GitHub Actions environment (event payload
//! files for push and pull_request, `GITHUB_OUTPUT` and
//! `GITHUB_STEP_SUMMARY` files), SARIF output, and the onboarding command
//! `guard init` (on the example fleet and on a generated one).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{GuardOutput, TempRepo, fleet_repo, git_cmd, guard_cmd};

/// An AWS access key id shaped value (the documented example, one letter changed).
const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLF";

/// The files of one fabricated Actions step.
struct Actions {
    dir: tempfile::TempDir,
}

impl Actions {
    fn new() -> Actions {
        Actions {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn output(&self) -> String {
        std::fs::read_to_string(self.path("output")).unwrap_or_default()
    }
    fn summary(&self) -> String {
        std::fs::read_to_string(self.path("summary")).unwrap_or_default()
    }
    /// One `name=value` output.
    fn out(&self, name: &str) -> String {
        let prefix = format!("{name}=");
        self.output()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(String::from))
            .unwrap_or_else(|| panic!("no output {name} in:\n{}", self.output()))
    }

    /// Runs `guard ci <args>` as a step of `event` with `payload`.
    fn run(&self, repo: &Path, event: &str, payload: &Value, args: &[&str]) -> GuardOutput {
        let event_path = self.path("event.json");
        std::fs::write(&event_path, serde_json::to_vec(payload).unwrap()).unwrap();
        let mut c = guard_cmd(repo);
        c.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_EVENT_NAME", event)
            .env("GITHUB_EVENT_PATH", &event_path)
            .env("GITHUB_OUTPUT", self.path("output"))
            .env("GITHUB_STEP_SUMMARY", self.path("summary"))
            .arg("-C")
            .arg(repo)
            .arg("ci")
            .args(args);
        c.output().unwrap().into()
    }
}

fn append(repo: &TempRepo, rel: &str, text: &str) {
    let mut t = std::fs::read_to_string(repo.path().join(rel)).unwrap();
    t.push_str(text);
    repo.write(rel, t);
}

const PROMETHEUS_HOSTS: [&str; 6] = [
    "monitor",
    "remote-builder",
    "remote-worker",
    "swarm-0",
    "swarm-1",
    "swarm-2",
];

#[test]
fn push_event_writes_outputs_summary_and_a_fenced_log() {
    let repo = fleet_repo();
    let before = repo.rev("HEAD");
    append(&repo, "services/prometheus.nix", "# tuned\n");
    let after = repo.commit_all("tune prometheus");
    let state = repo.state();
    let gh = Actions::new();
    let o = gh.run(
        repo.path(),
        "push",
        &json!({"before": before, "after": after, "ref": "refs/heads/main",
                "repository": {"default_branch": "main"}}),
        &["--level", "none"],
    );
    o.assert_code(0);
    assert_eq!(repo.state(), state, "guard ci modifies nothing");

    let hosts: Vec<String> = serde_json::from_str(&gh.out("hosts")).unwrap();
    assert_eq!(hosts, PROMETHEUS_HOSTS);
    assert_eq!(gh.out("count"), "6");
    assert_eq!(gh.out("findings"), "0");
    assert_eq!(gh.out("base"), before);
    assert_eq!(gh.out("head"), after);

    let s = gh.summary();
    assert!(
        s.starts_with("## ✅ guard: 6 hosts of 17 affected, 0 findings"),
        "{s}"
    );
    assert!(s.contains("(push to refs/heads/main)"), "{s}");
    assert!(
        s.contains("| remote-builder | services/prometheus.nix | machines/remote-builder/default.nix → environments/builder.nix → services/prometheus.nix |"),
        "{s}"
    );
    assert!(
        s.contains("```mermaid\ngraph LR\n  f0[\"services/prometheus.nix\"]\n  f0 --> h0\n"),
        "{s}"
    );
    assert!(s.contains("  h5([\"swarm-2\"])"), "{s}");

    // Everything guard prints from the repository is inside stop-commands.
    let first = o.stdout.lines().next().unwrap();
    let token = first
        .strip_prefix("::stop-commands::")
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(o.stdout.trim_end().ends_with(&format!("::{token}::")));
    assert!(o.stdout.contains("6 hosts of 17 affected"));
}

/// A repository with a pull request branch `feature` adding a key in
/// `lib/aws.nix`, checked out at the PR head.
fn leaky_pull_request() -> (TempRepo, String, String) {
    let repo = fleet_repo();
    let base = repo.rev("HEAD");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    append(&repo, "environments/builder.nix", "# builders\n");
    repo.commit_all("builders");
    repo.write(
        "lib/aws.nix",
        format!("{{\n  backup.s3 = {{\n    accessKeyId = \"{AWS_KEY}\";\n  }};\n}}\n"),
    );
    let head = repo.commit_all("backup keys");
    // main moved on meanwhile: the PR is judged from the merge base.
    repo.git(&["checkout", "-q", "main"]);
    repo.write("README.md", "fleet\n");
    let main = repo.commit_all("readme");
    repo.git(&["checkout", "-q", "feature"]);
    assert_ne!(main, base);
    (repo, main, head)
}

#[test]
fn pull_request_annotates_findings_and_writes_sarif() {
    let (repo, base, head) = leaky_pull_request();
    let gh = Actions::new();
    let sarif = gh.path("guard.sarif");
    let o = gh.run(
        repo.path(),
        "pull_request",
        &json!({"number": 7, "pull_request": {"number": 7,
                 "base": {"sha": base, "ref": "main"}, "head": {"sha": head, "ref": "feature"}}}),
        &["--level", "none", "--sarif", sarif.to_str().unwrap()],
    );
    o.assert_code(1);

    // The annotation points at the exact file, line and column.
    let ann = o
        .stdout
        .lines()
        .find(|l| l.starts_with("::error file=lib/aws.nix,"))
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(
        ann.starts_with("::error file=lib/aws.nix,line=3,col=20,title=guard%3A "),
        "{ann}"
    );
    assert!(ann.contains("AKIA…(redacted)"), "{ann}");
    let fence = o.stdout.find("::stop-commands::").unwrap();
    assert!(
        o.stdout.find("::error file=").unwrap() < fence,
        "annotations come before the fenced log"
    );

    // 4 builder hosts via environments/builder.nix; the README commit on main is not in the PR.
    let hosts: Vec<String> = serde_json::from_str(&gh.out("hosts")).unwrap();
    assert_eq!(
        hosts,
        [
            "remote-builder",
            "remote-worker",
            "swarm-0",
            "swarm-1",
            "swarm-2"
        ][..]
    );
    assert_eq!(gh.out("count"), "5");
    assert_eq!(gh.out("findings"), "1");
    let s = gh.summary();
    assert!(
        s.starts_with("## ❌ guard: 5 hosts of 17 affected, 1 finding"),
        "{s}"
    );
    assert!(s.contains("(pull request #7)"), "{s}");
    assert!(s.contains("| error | lib/aws.nix:3:20 (commit `"), "{s}");
    assert!(s.contains("guard:allow"), "{s}");

    // SARIF 2.1.0 with the fields code scanning requires.
    let text = std::fs::read_to_string(&sarif).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "guard");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(!rules.is_empty());
    for r in rules {
        for field in [
            "/id",
            "/shortDescription/text",
            "/fullDescription/text",
            "/help/text",
        ] {
            let s = r.pointer(field).and_then(Value::as_str).unwrap_or_default();
            assert!(!s.is_empty(), "rule lacks {field}: {r}");
        }
    }
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    let rule_id = r["ruleId"].as_str().unwrap();
    assert!(
        rules.iter().any(|x| x["id"] == rule_id),
        "ruleId {rule_id} is described"
    );
    assert!(!r["message"]["text"].as_str().unwrap().is_empty());
    let loc = &r["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "lib/aws.nix");
    assert_eq!(loc["region"]["startLine"], 3);
    assert_eq!(loc["region"]["startColumn"], 20);
    assert_eq!(loc["region"]["endLine"], 3);
    assert_eq!(loc["region"]["endColumn"], 20 + AWS_KEY.len());

    // The key itself appears nowhere.
    for (what, s) in [
        ("stdout", &o.stdout),
        ("stderr", &o.stderr),
        ("summary", &s),
        ("sarif", &text),
        ("outputs", &gh.output()),
    ] {
        assert!(!s.contains(&AWS_KEY[4..]), "{what} shows the key");
    }
}

#[test]
fn a_new_branch_is_compared_with_the_default_branch() {
    let (repo, _, head) = leaky_pull_request();
    let zero = "0".repeat(40);
    let gh = Actions::new();
    let o = gh.run(
        repo.path(),
        "push",
        &json!({"before": zero, "after": head, "created": true, "ref": "refs/heads/feature",
                "repository": {"default_branch": "main"}}),
        &["--level", "none"],
    );
    o.assert_code(1);
    assert_eq!(gh.out("count"), "5");
    assert!(
        gh.summary()
            .contains("a new branch: compared with the default branch")
    );
    assert!(
        o.stdout.contains("::notice title=guard::a new branch"),
        "{}",
        o.stdout
    );

    // The default branch's own first push has nothing to compare with:
    // everything, and it says so.
    repo.git(&["checkout", "-q", "main"]);
    let gh = Actions::new();
    let main = repo.rev("HEAD");
    let o = gh.run(
        repo.path(),
        "push",
        &json!({"before": zero, "after": main, "created": true, "ref": "refs/heads/main",
                "repository": {"default_branch": "main"}}),
        &["--level", "none"],
    );
    o.assert_code(0);
    assert_eq!(gh.out("count"), "17");
    assert!(
        gh.summary().contains("judging everything"),
        "{}",
        gh.summary()
    );
}

#[test]
fn a_force_push_with_a_lost_previous_tip_falls_back() {
    let repo = fleet_repo();
    append(&repo, "services/prometheus.nix", "# tuned\n");
    let head = repo.commit_all("tune");
    let gh = Actions::new();
    let o = gh.run(
        repo.path(),
        "push",
        &json!({"before": "1234567890123456789012345678901234567890", "after": head,
                "forced": true, "ref": "refs/heads/feature",
                "repository": {"default_branch": "main"}}),
        &["--level", "none"],
    );
    // main is HEAD here, so the merge base is HEAD itself: nothing changed.
    o.assert_code(0);
    assert!(gh.summary().contains("force push"), "{}", gh.summary());
    assert_eq!(gh.out("count"), "0");
}

#[test]
fn a_deleted_branch_judges_nothing() {
    let repo = fleet_repo();
    let gh = Actions::new();
    let o = gh.run(
        repo.path(),
        "push",
        &json!({"before": repo.rev("HEAD"), "after": "0".repeat(40), "deleted": true,
                "ref": "refs/heads/gone"}),
        &["--level", "none"],
    );
    o.assert_code(0);
    assert_eq!(gh.out("hosts"), "[]");
    assert_eq!(gh.out("count"), "0");
    assert!(gh.summary().contains("deleted"), "{}", gh.summary());
}

#[test]
fn explicit_base_and_head_outside_actions() {
    let repo = fleet_repo();
    let base = repo.rev("HEAD");
    append(&repo, "services/prometheus.nix", "# tuned\n");
    repo.commit_all("tune");
    let o = repo.guard(&["ci", "--base", &base, "--level", "none", "--format", "json"]);
    o.assert_code(0);
    let v = o.json();
    let hosts: Vec<&str> = v["affected"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, PROMETHEUS_HOSTS);
    assert!(v["scan"]["findings"].as_array().unwrap().is_empty());

    // Without --base and without an event there is nothing to compare.
    let o = repo.guard(&["ci", "--level", "none"]);
    o.assert_code(2);
    assert!(o.stderr.contains("--base"), "{}", o.stderr);
}

#[test]
fn a_shallow_clone_says_how_to_fetch_history() {
    let repo = fleet_repo();
    let before = repo.rev("HEAD");
    append(&repo, "services/prometheus.nix", "# tuned\n");
    let after = repo.commit_all("tune");
    let clone_dir = tempfile::tempdir().unwrap();
    let clone = clone_dir.path().join("clone");
    let url = format!("file://{}", repo.path().display());
    let o = git_cmd(clone_dir.path())
        .args(["clone", "-q", "--depth", "1", &url])
        .arg(&clone)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gh = Actions::new();
    let o = gh.run(
        &clone,
        "push",
        &json!({"before": before, "after": after, "ref": "refs/heads/main"}),
        &["--level", "none"],
    );
    o.assert_code(2);
    assert!(o.stderr.contains("fetch-depth: 0"), "{}", o.stderr);
    assert!(o.stderr.contains("shallow"), "{}", o.stderr);
}

/// A shallow checkout (actions/checkout's default) of one commit: nix is
/// asked for it with `shallow=1` (Nix before 2.20 refuses a shallow
/// repository otherwise), and every host evaluates.
#[test]
fn a_shallow_checkout_evaluates_with_nix() {
    let repo = fleet_repo();
    append(&repo, "services/prometheus.nix", "# tuned\n");
    repo.commit_all("tune");
    let clone_dir = tempfile::tempdir().unwrap();
    let clone = clone_dir.path().join("clone");
    let url = format!("file://{}", repo.path().display());
    let o = git_cmd(clone_dir.path())
        .args(["clone", "-q", "--depth", "1", &url])
        .arg(&clone)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(clone.join(".git/shallow").is_file());
    let o = crate::support::guard_in(
        &clone,
        &["build", "--all", "--level", "eval", "--format", "json"],
    );
    o.assert_code(0);
    let v = o.json();
    let v = v.get("build").unwrap_or(&v);
    let hosts = v["hosts"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(hosts.len(), 17, "{v}");
    assert!(hosts.iter().all(|h| h["status"] == "ok"), "{v}");
}

#[test]
fn workflow_dispatch_judges_everything() {
    let repo = fleet_repo();
    let gh = Actions::new();
    let o = gh.run(
        repo.path(),
        "workflow_dispatch",
        &json!({}),
        &["--level", "none"],
    );
    o.assert_code(0);
    assert_eq!(gh.out("count"), "17");
    assert!(
        gh.summary().contains("no base revision"),
        "{}",
        gh.summary()
    );
}

#[test]
fn eval_level_reports_a_broken_host_in_annotations_and_summary() {
    crate::support::nix_cmd(); // fails loudly when nix is missing
    let repo = fleet_repo();
    let before = repo.rev("HEAD");
    // monitor no longer evaluates; the other prometheus hosts still do.
    let entry = "machines/monitor/default.nix";
    let text = std::fs::read_to_string(repo.path().join(entry)).unwrap();
    repo.write(
        entry,
        text.replacen(
            "{\n  imports",
            "{\n  boot.broken = throw \"monitor is broken on purpose\";\n  imports",
            1,
        ),
    );
    append(&repo, "services/prometheus.nix", "# tuned\n");
    let after = repo.commit_all("break monitor");
    let gh = Actions::new();
    let mut c = guard_cmd(repo.path());
    let event = gh.path("event.json");
    std::fs::write(
        &event,
        json!({"before": before, "after": after, "ref": "refs/heads/main"}).to_string(),
    )
    .unwrap();
    c.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "push")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_OUTPUT", gh.path("output"))
        .env("GITHUB_STEP_SUMMARY", gh.path("summary"))
        .args(["-q", "ci", "--level", "eval"]);
    let o = GuardOutput::from(c.output().unwrap());
    o.assert_code(1);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with("::error title=guard%3A monitor failed at level eval::")),
        "{}",
        o.stdout
    );
    let s = gh.summary();
    assert!(s.contains("1 failed build"), "{s}");
    assert!(s.contains("| monitor | eval | ❌ failed |"), "{s}");
    assert!(s.contains("| swarm-0 | eval | ✅ ok |"), "{s}");
    assert_eq!(gh.out("count"), "6");
    // `guard build` annotates the same failure with the same title (it
    // used to say "guard build monitor (eval)").
    let b = repo.guard(&[
        "build", "--commit", "HEAD", "--level", "eval", "--format", "github",
    ]);
    b.assert_code(1);
    let titles: Vec<&str> = b
        .stdout
        .lines()
        .filter(|l| l.starts_with("::error title="))
        .collect();
    assert_eq!(
        titles.len(),
        1,
        "one annotation for the one failed host: {}",
        b.stdout
    );
    assert!(
        titles[0].starts_with("::error title=guard%3A monitor failed at level eval::"),
        "{}",
        b.stdout
    );
}

// ---- guard init ----------------------------------------------------------

/// `guard affected --all --format json` on a repository.
fn affected_all(dir: &Path) -> Value {
    let o = crate::support::guard_in(dir, &["affected", "--all", "--format", "json"]);
    o.assert_code(0);
    o.json()
}

#[track_caller]
fn assert_init_lists_every_host(dir: &Path) {
    let before = affected_all(dir);
    let hosts: Vec<&str> = before["all_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(!hosts.is_empty());
    let o = crate::support::guard_in(dir, &["init"]);
    o.assert_code(0);
    assert!(
        o.stdout.contains(&format!("{} hosts", hosts.len())),
        "{}",
        o.stdout
    );
    let text = std::fs::read_to_string(dir.join("guard.toml")).unwrap();
    for h in &hosts {
        assert!(
            text.lines()
                .any(|l| l.starts_with("#   ") && l[4..].starts_with(&format!("{h} "))),
            "guard.toml does not list {h}:\n{text}"
        );
    }
    // guard loads it and sees the same hosts, without any warning.
    let after = affected_all(dir);
    assert_eq!(after["all_hosts"], before["all_hosts"]);
    assert_eq!(after["warnings"], json!([]), "{}", after["warnings"]);
    // A second init refuses to overwrite; --force replaces it.
    let o = crate::support::guard_in(dir, &["init"]);
    o.assert_code(2);
    assert!(o.stderr.contains("--force"), "{}", o.stderr);
    std::fs::write(dir.join("guard.toml"), "[broken\n").unwrap();
    crate::support::guard_in(dir, &["init", "--force"]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(dir.join("guard.toml")).unwrap(),
        text
    );
}

#[test]
fn init_on_the_example_fleet() {
    let repo = fleet_repo();
    assert_init_lists_every_host(repo.path());
    let text = std::fs::read_to_string(repo.path().join("guard.toml")).unwrap();
    // The example's secrix secrets are found, with the hosts using them.
    assert!(text.contains("secrets/"), "{text}");
    assert!(text.contains("(used by "), "{text}");
    // guard's other commands accept it.
    repo.guard(&["scan", "--all", "--format", "json"])
        .assert_code(0);
}

#[test]
fn init_on_a_generated_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let spec = fleetgen::Spec {
        hosts: 30,
        modules: 40,
        files: 200,
        commits: 0,
        seed: 5,
    };
    fleetgen::generate(&root, &spec).unwrap();
    assert_init_lists_every_host(&root);
}

#[test]
fn completions_and_man_page_need_no_repository() {
    let outside = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o: GuardOutput = guard_cmd(outside.path())
            .args(["completions", shell])
            .output()
            .unwrap()
            .into();
        o.assert_code(0);
        assert!(o.stdout.contains("pre-commit"), "{shell}: {}", o.stdout);
    }
    let o: GuardOutput = guard_cmd(outside.path())
        .arg("man")
        .output()
        .unwrap()
        .into();
    o.assert_code(0);
    assert!(
        o.stdout.contains(".TH guard 1"),
        "{}",
        &o.stdout[..200.min(o.stdout.len())]
    );
    let o: GuardOutput = guard_cmd(outside.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap()
        .into();
    o.assert_code(2);
}

/// `guard ci --sarif` describes every rule its findings use from the one
/// rule registry: age rules too (they used to read "guard rule age-…").
#[test]
fn sarif_describes_age_rules_like_scan_rules() {
    let repo = fleet_repo();
    let base = repo.rev("HEAD");
    repo.write("secrets/wg-linda.age", "hunter2\n");
    repo.commit_all("decrypted by mistake");
    let sarif = tempfile::tempdir().unwrap();
    let file = sarif.path().join("guard.sarif");
    let mut c = guard_cmd(repo.path());
    c.env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .arg("-C")
        .arg(repo.path())
        .args(["ci", "--base", &base, "--level", "none", "--format", "json"])
        .arg("--sarif")
        .arg(&file);
    let out: GuardOutput = c.output().unwrap().into();
    out.assert_code(1);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    let rule = rules
        .iter()
        .find(|r| r["id"] == "age-plaintext")
        .unwrap_or_else(|| panic!("no age-plaintext rule in {rules:#?}"));
    assert_eq!(
        rule["shortDescription"]["text"],
        "Plaintext where age ciphertext belongs"
    );
    for r in rules {
        let text = r["shortDescription"]["text"].as_str().unwrap();
        assert!(!text.starts_with("guard rule "), "{r:#}");
    }
    // The scan's rules are still described (both sections are in the run).
    assert!(
        rules.iter().any(|r| r["id"] == "aws-access-key-id"),
        "{rules:#?}"
    );
}

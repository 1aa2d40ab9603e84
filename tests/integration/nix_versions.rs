//! The flake URLs and errors guard hands to nix, on every nix the suite
//! runs (scripts/test runs the nix-backed modules once per nix version):
//! repository paths with `+`, a space or non-ASCII characters, branches
//! other than `master`, a detached HEAD, and a flake input that cannot be
//! fetched.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::{
    GuardOutput, copy_tree, example_fleet, git_cmd, guard_in, nix_cmd, nix_version,
};

/// Hosts that import services/prometheus.nix in the example fleet.
const PROMETHEUS: [&str; 6] = [
    "monitor",
    "remote-builder",
    "remote-worker",
    "swarm-0",
    "swarm-1",
    "swarm-2",
];

/// (major, minor) of the nix the tests run.
fn release() -> (u32, u32) {
    let v = nix_version();
    let last = v.split_whitespace().last().unwrap_or_default().to_string();
    let mut it = last.split('.');
    let major = it.next().and_then(|m| m.parse().ok());
    let minor = it.next().and_then(|m| {
        m.trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()
    });
    match (major, minor) {
        (Some(a), Some(b)) => (a, b),
        _ => panic!("cannot read the version of {v:?}"),
    }
}

/// A repository named `name` (inside a temporary directory) holding the
/// example fleet on branch `branch`, with a second commit that changes
/// services/prometheus.nix.
struct OddRepo {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl OddRepo {
    fn new(name: &str, branch: &str) -> OddRepo {
        let dir = tempfile::Builder::new()
            .prefix("guard-nixv-")
            .tempdir()
            .unwrap();
        let path = dir.path().join(name);
        copy_tree(&example_fleet(), &path);
        let repo = OddRepo { _dir: dir, path };
        repo.git(&["init", "-q", "-b", branch]);
        repo.git(&["config", "user.name", "Guard Test"]);
        repo.git(&["config", "user.email", "guard@example.invalid"]);
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "fleet"]);
        let p = repo.path.join("services/prometheus.nix");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("{text}# tuned {name}\n")).unwrap();
        repo.git(&["commit", "-q", "-am", "tune prometheus"]);
        repo
    }

    fn git(&self, args: &[&str]) -> String {
        let out = git_cmd(&self.path).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn guard(&self, args: &[&str]) -> GuardOutput {
        guard_in(&self.path, args)
    }
}

fn statuses(out: &GuardOutput) -> BTreeMap<String, (String, String)> {
    let v = out.json();
    v["hosts"]
        .as_array()
        .unwrap_or_else(|| panic!("no hosts array: {v}\n{}", out.stderr))
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                (
                    h["status"].as_str().unwrap().to_string(),
                    h["reason"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

/// `guard build --commit HEAD` evaluates the six affected hosts, and so
/// does the work tree with `--hosts` (nix reads the work tree itself).
fn assert_evaluates(repo: &OddRepo, work_tree_readable: bool) {
    let out = repo.guard(&["build", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(0);
    let st = statuses(&out);
    let ok: Vec<&str> = st
        .iter()
        .filter(|(_, (s, _))| s == "ok")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(ok, PROMETHEUS, "{}: {}", repo.path.display(), out.stdout);

    // The work tree, with an uncommitted change nix must see.
    let p = repo.path.join("services/prometheus.nix");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}# uncommitted\n")).unwrap();
    let out = repo.guard(&["build", "--format", "json"]);
    let st = statuses(&out);
    if work_tree_readable {
        out.assert_code(0);
        assert_eq!(st.len(), 6, "{}", out.stdout);
        assert!(st.values().all(|(s, _)| s == "ok"), "{}", out.stdout);
    } else {
        // Nix before 2.10 cannot read such a work tree: one clear error
        // that says what works instead, for every host, nix never started.
        out.assert_code(1);
        for (h, (s, reason)) in &st {
            assert_eq!(s, "failed", "{h}");
            assert!(reason.contains("cannot read the work tree"), "{reason}");
            assert!(reason.contains("--staged or --commit"), "{reason}");
        }
    }
    std::fs::write(&p, text).unwrap();
}

#[test]
fn a_repository_path_with_a_plus_on_a_feature_branch_evaluates() {
    let _ = nix_cmd();
    let repo = OddRepo::new("c++ fleet+x", "feature/wg-mesh");
    // The space makes 2.8 see a remote repository; see the next tests for
    // `+` alone.
    assert_evaluates(&repo, release() >= (2, 10));
    let plus = OddRepo::new("fleet+plus", "feature/wg-mesh");
    assert_evaluates(&plus, true);
}

#[test]
fn a_repository_path_with_a_space_evaluates() {
    let _ = nix_cmd();
    let repo = OddRepo::new("my fleet", "main");
    assert_evaluates(&repo, release() >= (2, 10));
}

#[test]
fn a_repository_path_with_unicode_evaluates() {
    let _ = nix_cmd();
    let repo = OddRepo::new("flotte-ü-艦隊", "trunk");
    assert_evaluates(&repo, release() >= (2, 10));
}

#[test]
fn a_detached_head_evaluates_without_warnings() {
    let _ = nix_cmd();
    let repo = OddRepo::new("fleet", "main");
    repo.git(&["checkout", "-q", "--detach", "HEAD"]);
    assert_evaluates(&repo, true);
    // Nix 2.26 warns "could not read HEAD ref" at a detached HEAD unless
    // the URL names the ref; the commit target names it.
    let out = repo.guard(&["build", "--commit", "HEAD"]);
    out.assert_code(0);
    assert!(
        !out.stderr.contains("could not read HEAD") && !out.stdout.contains("could not read HEAD"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn a_commit_behind_head_on_another_branch_with_a_space_in_the_path_evaluates() {
    let _ = nix_cmd();
    // The commit judged is not HEAD and HEAD is on another branch: nix 2.8
    // fetches such a path (it does not decode `%20`) through the ref the URL
    // names (HEAD), whose history holds the commit.
    let repo = OddRepo::new("old fleet", "release-24.05");
    let judged = repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    repo.git(&["checkout", "-q", "-b", "next"]);
    repo.git(&["commit", "-q", "--allow-empty", "-m", "later"]);
    let out = repo.guard(&["build", "--commit", &judged, "--format", "json"]);
    out.assert_code(0);
    assert_eq!(statuses(&out).len(), 6, "{}", out.stdout);
}

#[test]
fn an_unreachable_input_fails_once_fast_with_its_name() {
    let _ = nix_cmd();
    let repo = OddRepo::new("fleet", "main");
    // A closed port on loopback: nix's fetch fails at once (then retries
    // with backoff, ~5 s per attempt in all), like an input with no network.
    let flake = repo.path.join("flake.nix");
    let text = std::fs::read_to_string(&flake).unwrap();
    let patched = text
        .replace(
            "  inputs = {\n",
            "  inputs = {\n    unreachable-pkgs = {\n      url = \"http://127.0.0.1:9/unreachable-pkgs.tar.gz\";\n      flake = false;\n    };\n",
        )
        .replace(
            "outputs = inputs@{ self, ... }:",
            "outputs = inputs@{ self, unreachable-pkgs, ... }:",
        );
    assert!(
        patched.contains("unreachable-pkgs = {")
            && patched.contains("{ self, unreachable-pkgs, ... }"),
        "{patched}"
    );
    std::fs::write(&flake, patched).unwrap();
    repo.git(&["commit", "-q", "-am", "add an input"]);
    let p = repo.path.join("services/prometheus.nix");
    let t = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{t}# again\n")).unwrap();
    repo.git(&["commit", "-q", "-am", "tune again"]);

    let start = Instant::now();
    let out = repo.guard(&["build", "--commit", "HEAD", "--format", "json"]);
    let took = start.elapsed();
    out.assert_code(1);
    let st = statuses(&out);
    assert_eq!(st.len(), 6, "{}", out.stdout);
    for (h, (s, reason)) in &st {
        assert_eq!(s, "failed", "{h}");
        assert!(
            reason.contains("cannot fetch flake input 'unreachable-pkgs'"),
            "{h}: {reason}"
        );
    }
    let v = out.json();
    let excerpt = v["hosts"][0]["log_excerpt"].to_string();
    assert!(excerpt.contains("--offline"), "{excerpt}");
    assert!(excerpt.contains("127.0.0.1:9"), "{excerpt}");
    // One fetch (two at once: the commit and its parent), not one per host:
    // six hosts one by one would take over 15 s.
    assert!(took < Duration::from_secs(12), "took {took:?}");
}

//! `guard bisect` with real git and real nix on generated fleets.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{RepoState, git_cmd, guard_in};

/// A generated fleet plus a history written with plain git on top of it.
struct History {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    fleet: fleetgen::Fleet,
    target: String,
    /// Modules in the target's closure / not in it.
    inside: Vec<String>,
    outside: Vec<String>,
    n: usize,
}

impl History {
    fn new(seed: u64) -> History {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fleet");
        let spec = fleetgen::Spec {
            hosts: 16,
            modules: 30,
            files: 200,
            commits: 0,
            seed,
        };
        let fleet = fleetgen::generate(&root, &spec).unwrap();
        // The host with the smallest closure: few commits touch it.
        let target = fleet
            .closure
            .iter()
            .min_by_key(|(_, c)| c.len())
            .map(|(h, _)| h.clone())
            .unwrap();
        let closure = &fleet.closure[&target];
        let all_closures: BTreeSet<&String> = fleet.closure.values().flatten().collect();
        let inside: Vec<String> = fleet
            .modules()
            .into_iter()
            .filter(|m| closure.contains(m))
            .collect();
        // Modules some other host reads but the target does not.
        let outside: Vec<String> = fleet
            .modules()
            .into_iter()
            .filter(|m| !closure.contains(m) && all_closures.contains(m))
            .collect();
        assert!(!inside.is_empty() && !outside.is_empty());
        History {
            _dir: dir,
            root,
            fleet,
            target,
            inside,
            outside,
            n: 0,
        }
    }

    fn commit(&mut self, msg: &str) -> String {
        self.n += 1;
        let run = |args: &[&str]| {
            let out = git_cmd(&self.root).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        run(&["add", "-A"]);
        run(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            msg,
        ]);
        run(&["rev-parse", "HEAD"]).trim().to_string()
    }

    fn append(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        let mut s = std::fs::read_to_string(&p).unwrap();
        s.push_str(text);
        std::fs::write(p, s).unwrap();
    }

    /// An edit no host reads.
    fn unrelated(&mut self, i: usize) -> String {
        let fillers = self.fleet.filler_files();
        let f = fillers[i % fillers.len()].clone();
        if i % 3 == 0 {
            let m = self.outside[i % self.outside.len()].clone();
            self.append(&m, &format!("\n# other host's module, edit {i}\n"));
        } else {
            self.append(&f, &format!("\nedit {i}\n"));
        }
        self.commit(&format!("unrelated {i}"))
    }

    /// An edit of the target's closure that keeps it working.
    fn touching(&mut self, i: usize) -> String {
        let m = self.inside[i % self.inside.len()].clone();
        self.append(&m, &format!("\n# target edit {i}\n"));
        self.commit(&format!("touch target {i}"))
    }

    /// Breaks the target at evaluation time.
    fn break_eval(&mut self) -> String {
        let m = self.inside[0].clone();
        std::fs::write(self.root.join(&m), "throw \"BROKEN on purpose\"\n").unwrap();
        self.commit("break the target")
    }

    fn guard(&self, args: &[&str]) -> crate::support::GuardOutput {
        guard_in(&self.root, args)
    }
}

fn head(root: &Path) -> String {
    let out = git_cmd(root).args(["rev-parse", "HEAD"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs a history of `len` commits where `touching` of them touch the
/// target and the break is the `break_at`-th touching commit; checks the
/// answer and the number of nix evaluations.
fn scenario(seed: u64, len: usize, touching: usize, break_at: usize) {
    let mut h = History::new(seed);
    let good = head(&h.root);
    let every = len / touching;
    let mut expected = None;
    let mut t = 0;
    for i in 0..len {
        if i % every == every / 2 && t < touching {
            let c = if t == break_at {
                h.break_eval()
            } else {
                h.touching(i)
            };
            if t == break_at {
                expected = Some(c);
            }
            t += 1;
        } else {
            h.unrelated(i);
        }
    }
    let expected = expected.unwrap();
    let before = RepoState::capture(&h.root);
    let out = h.guard(&[
        "bisect", "--host", &h.target, "--good", &good, "--level", "eval", "--format", "json",
    ]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["first_bad"], expected.as_str(), "{}", out.stderr);
    assert_eq!(v["range_commits"], len);
    let candidates = v["candidates"].as_u64().unwrap();
    assert_eq!(candidates, touching as u64, "{}", out.stderr);
    let builds = v["builds"].as_u64().unwrap();
    let bound = (candidates as f64).log2().ceil() as u64 + 2;
    assert!(builds <= bound, "{builds} evaluations > {bound}");
    assert_eq!(
        RepoState::capture(&h.root),
        before,
        "bisect changed the repository"
    );
    eprintln!(
        "seed {seed}: {len} commits, {candidates} candidates, {builds} evaluations (git bisect run: ~{} tests)",
        (len as f64).log2().ceil() as u64
    );
}

#[test]
fn break_at_the_start_of_64_commits() {
    scenario(1, 64, 6, 0);
}

#[test]
fn break_in_the_middle_of_64_commits() {
    scenario(2, 64, 6, 3);
}

#[test]
fn break_at_the_end_of_512_commits() {
    scenario(3, 512, 8, 7);
}

#[test]
fn shared_module_break_then_unrelated_revert_and_replay() {
    let mut h = History::new(4);
    let good = head(&h.root);
    let early = h.touching(1);
    h.unrelated(2);
    // Break lib/common.nix, which every host imports.
    h.append(fleetgen::COMMON, "\n# x\n");
    let p = h.root.join(fleetgen::COMMON);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        format!("builtins.seq (throw \"common broke\") ({text})"),
    )
    .unwrap();
    let culprit = h.commit("break the shared module");
    h.unrelated(3);
    // Revert an earlier, unrelated-to-the-break edit: still broken.
    let out = git_cmd(&h.root)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "revert",
            "--no-edit",
            &early,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.unrelated(5);

    let log = h.root.parent().unwrap().join("bisect.log");
    let log_s = log.to_str().unwrap();
    let out = h.guard(&[
        "bisect", "--host", &h.target, "--good", &good, "--level", "eval", "--log", log_s,
    ]);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains(&format!("first bad commit for {}: {culprit}", h.target)),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("lib/common.nix"),
        "the chain names the module: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("common broke"),
        "the failure is shown: {}",
        out.stdout
    );

    // Replaying the log decides everything without nix.
    let out = h.guard(&[
        "bisect", "--host", &h.target, "--good", &good, "--level", "eval", "--replay", log_s,
        "--format", "json",
    ]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["first_bad"], culprit.as_str());
    assert_eq!(v["builds"], 0, "{}", out.stderr);
    assert!(
        v["tested"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["how"] == "replayed")
    );
}

#[test]
fn identical_drv_paths_are_not_built_twice() {
    let mut h = History::new(5);
    let good = head(&h.root);
    let m = h.inside[0].clone();
    let original = std::fs::read_to_string(h.root.join(&m)).unwrap();
    // Flip a module between two contents: every candidate's drvPath is one
    // of two, so at most two of them are ever built.
    for i in 0..12 {
        if i % 2 == 0 {
            h.append(&m, "\n# variant\n");
        } else {
            std::fs::write(h.root.join(&m), &original).unwrap();
        }
        h.commit(&format!("flip {i}"));
    }
    h.break_eval();
    let out = h.guard(&[
        "bisect", "--host", &h.target, "--good", &good, "--level", "build", "--format", "json",
    ]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["candidates"], 13);
    let tested = v["tested"].as_array().unwrap();
    let deduped = tested.iter().filter(|t| t["how"] == "eval-deduped").count();
    let built = tested.iter().filter(|t| t["how"] == "built").count();
    assert!(built <= 2, "built {built} times: {}", out.stdout);
    assert!(deduped >= 1, "{}", out.stdout);
}

#[test]
fn skips_around_the_culprit_with_run() {
    let mut h = History::new(6);
    let good = head(&h.root);
    // Eight candidates; the search's first probe is the fourth, which
    // cannot be tested; the culprit is the sixth.
    let mut skipped = String::new();
    for i in 0..5 {
        let c = h.touching(i);
        if i == 3 {
            skipped = c;
        }
    }
    let culprit = h.break_eval();
    h.touching(6);
    h.touching(7);
    // A test command: bad when the module throws, skip at one commit.
    let cmd = format!(
        "if grep -rq 'BROKEN on purpose' modules; then exit 1; fi; if [ \"$GUARD_BISECT_COMMIT\" = {skipped} ]; then exit 125; fi; exit 0"
    );
    let out = h.guard(&[
        "bisect", "--host", &h.target, "--good", &good, "--run", &cmd, "--format", "json",
    ]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["first_bad"], culprit.as_str(), "{}", out.stderr);
    assert_eq!(v["ambiguous"], false);
    assert!(
        v["tested"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["commit"] == skipped.as_str() && t["result"] == "skip"),
        "the skip was exercised: {}",
        out.stdout
    );

    // Skip the culprit itself: the answer is a range, as git bisect gives.
    let cmd = format!(
        "if [ \"$GUARD_BISECT_COMMIT\" = {culprit} ]; then exit 125; fi; if grep -rq 'BROKEN on purpose' modules; then exit 1; fi; exit 0"
    );
    let out = h.guard(&[
        "bisect", "--host", &h.target, "--good", &good, "--run", &cmd, "--format", "json",
    ]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["ambiguous"], true);
    let range: Vec<&str> = v["first_bad_range"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(range.contains(&culprit.as_str()), "{range:?}");
    // No temporary checkout is left in the git dir.
    assert!(!h.root.join(".git/guard").exists());
}

#[test]
fn good_not_good_and_bad_not_bad_are_clear() {
    let mut h = History::new(7);
    let good = head(&h.root);
    h.touching(1);
    let broken = h.break_eval();
    h.unrelated(2);
    // --good is broken.
    let out = h.guard(&[
        "bisect", "--host", &h.target, "--good", &broken, "--level", "eval",
    ]);
    out.assert_code(2);
    assert!(out.stderr.contains("is not good"), "{}", out.stderr);
    // --bad is fine: nothing to bisect, exit 1.
    let out = h.guard(&[
        "bisect", "--host", &h.target, "--good", &good, "--bad", "HEAD~2", "--level", "eval",
    ]);
    out.assert_code(1);
    assert!(out.stdout.contains("nothing to bisect"), "{}", out.stdout);
    // Unknown host.
    let out = h.guard(&[
        "bisect", "--host", "nope", "--good", &good, "--level", "eval",
    ]);
    out.assert_code(2);
    assert!(out.stderr.contains("no host named"), "{}", out.stderr);
}

#[test]
fn a_failure_guard_build_saw_is_not_built_again() {
    let mut h = History::new(8);
    let good = head(&h.root);
    h.touching(1);
    let m = h.inside[0].clone();
    std::fs::write(h.root.join(&m), "{ system.build.fail = true; }\n").unwrap();
    let culprit = h.commit("break the build");
    h.unrelated(2);
    // What the user saw first: guard (or CI) reporting the host broken.
    h.guard(&["build", "--hosts", &h.target, "--level", "build"])
        .assert_code(1);
    let out = h.guard(&[
        "bisect", "--host", &h.target, "--good", &good, "--level", "build", "--format", "json",
    ]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["first_bad"], culprit.as_str(), "{}", out.stderr);
    let tested = v["tested"].as_array().unwrap();
    assert!(
        tested.iter().any(|t| t["how"] == "known-failure"),
        "{}",
        out.stdout
    );
    assert!(
        !tested
            .iter()
            .any(|t| t["how"] == "built" && t["result"] == "bad"),
        "the known failure was built again: {}",
        out.stdout
    );
}

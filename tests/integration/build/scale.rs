//! Build at scale, against real nix: bounded evaluation workers replaced
//! past their memory limit, the evaluation cache keyed by content, one
//! `nix build` per batch, and each built host's closure difference.

use crate::support::{GuardOutput, TempRepo, fleet_repo, nix_cmd};

use super::{add_definition, statuses, unique};

/// A fresh definition in `rel` (any number per file).
fn touch_module(repo: &TempRepo, rel: &str) {
    let u = unique();
    add_definition(
        repo,
        rel,
        &format!("environment.etc.\"guard-test-{u}\".text = \"{u}\";"),
    );
}

/// Every host of the example fleet.
fn all_hosts(repo: &TempRepo) -> Vec<String> {
    let mut h: Vec<String> = std::fs::read_dir(repo.path().join("machines"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    h.sort();
    h
}

/// Makes every host's evaluation allocate (and keep, while its worker
/// lives) `n` list elements: ~25 MB per host at 400,000.
fn weigh_hosts(repo: &TempRepo, n: u32) {
    add_definition(
        repo,
        "environments/common.nix",
        &format!(
            "environment.etc.\"eval-weight\".text = toString (builtins.foldl' (a: b: a + b) (builtins.stringLength name) (builtins.genList (i: i) {n}));"
        ),
    );
}

fn eval_all(repo: &TempRepo, hosts: &[String], extra: &[&str]) -> GuardOutput {
    let list = hosts.join(",");
    let mut args = vec![
        "build", "--hosts", &list, "--level", "eval", "--format", "json",
    ];
    args.extend_from_slice(extra);
    repo.guard(&args)
}

fn drv_paths(out: &GuardOutput) -> Vec<(String, String)> {
    let v = out.json();
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["drv_path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_worker_past_its_memory_limit_is_replaced_and_the_run_completes() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    weigh_hosts(&repo, 400_000);
    touch_module(&repo, "environments/common.nix");
    repo.commit_all("weighted hosts");
    let hosts = all_hosts(&repo);

    // Unbounded: one worker evaluates all 17 hosts, its memory growing.
    let free = eval_all(
        &repo,
        &hosts,
        &["--eval-workers", "1", "--eval-max-memory", "100000"],
    );
    free.assert_code(0);
    let fv = free.json();
    assert_eq!(fv["eval"]["started"], 1, "{fv}");
    assert_eq!(fv["eval"]["replaced"], 0, "{fv}");
    let grown = fv["eval"]["peak_worker_memory"].as_u64().unwrap();

    // A limit below what one worker reaches over all hosts (but above what
    // one host needs): workers are replaced, every host still evaluates, to
    // the same drvPaths.
    let limit_mib = (grown / (1 << 20)) * 2 / 3;
    let limit = limit_mib.to_string();
    let bounded = eval_all(
        &repo,
        &hosts,
        &["--eval-workers", "1", "--eval-max-memory", &limit],
    );
    bounded.assert_code(0);
    let bv = bounded.json();
    let replaced = bv["eval"]["replaced"].as_u64().unwrap();
    assert!(replaced >= 1, "no worker was replaced: {bv}");
    assert_eq!(
        bv["eval"]["started"].as_u64().unwrap(),
        replaced + 1,
        "{bv}"
    );
    assert!(
        bv["eval"]["peak_worker_memory"].as_u64().unwrap() < grown,
        "{bv}"
    );
    let st = statuses(&bounded);
    assert!(st.values().all(|(s, _)| s == "ok"), "{st:?}");
    assert_eq!(drv_paths(&bounded), drv_paths(&free));
    assert!(
        bv["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["message"]
                .as_str()
                .unwrap()
                .contains("replaced past --eval-max-memory")),
        "{bv}"
    );
}

#[test]
fn a_host_alone_over_the_limit_is_reported_as_such() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    // linda alone allocates a lot; the others stay small.
    add_definition(
        &repo,
        "machines/linda/default.nix",
        &format!(
            "environment.etc.\"eval-weight\".text = toString (builtins.length (builtins.genList (i: \"{}-${{toString i}}\") 3000000));",
            unique()
        ),
    );
    repo.commit_all("linda is heavy");
    let hosts = vec!["linda".to_string(), "monitor".to_string()];
    let out = eval_all(
        &repo,
        &hosts,
        &["--eval-workers", "1", "--eval-max-memory", "120"],
    );
    out.assert_code(1);
    let st = statuses(&out);
    assert_eq!(st["monitor"].0, "ok", "{st:?}");
    assert_eq!(st["linda"].0, "failed", "{st:?}");
    assert!(
        st["linda"]
            .1
            .contains("alone needs more memory than --eval-max-memory 120 MiB"),
        "{st:?}"
    );
}

/// `guard check --commit HEAD --level eval --format json`: the build section.
fn check_eval(repo: &TempRepo, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "check", "--commit", "HEAD", "--level", "eval", "--format", "json",
    ];
    args.extend_from_slice(extra);
    let out = repo.guard(&args);
    out.assert_code(0);
    out.json()["build"].clone()
}

fn stat(b: &serde_json::Value, field: &str) -> u64 {
    b["eval"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no eval.{field}: {b}"))
}

fn host_drvs(b: &serde_json::Value) -> Vec<(String, String)> {
    b["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["drv_path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn the_base_is_not_evaluated_when_cached_and_closure_changes_miss() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    touch_module(&repo, "environments/zfs.nix");
    repo.commit_all("a");
    // Cold: the 3 zfs hosts at HEAD and at its parent.
    let a = check_eval(&repo, &[]);
    assert_eq!((stat(&a, "evaluated"), stat(&a, "cached")), (6, 0), "{a}");

    // The next change's base is the commit evaluated above: only the new
    // revision is evaluated.
    touch_module(&repo, "environments/zfs.nix");
    repo.commit_all("b");
    let b = check_eval(&repo, &[]);
    assert_eq!((stat(&b, "evaluated"), stat(&b, "cached")), (3, 3), "{b}");
    // Run again: nothing left to evaluate, the same answers.
    let again = check_eval(&repo, &[]);
    assert_eq!(
        (stat(&again, "evaluated"), stat(&again, "cached")),
        (0, 6),
        "{again}"
    );
    assert_eq!(host_drvs(&again), host_drvs(&b));
    // --no-eval-cache: nix answers everything.
    let off = check_eval(&repo, &["--no-eval-cache"]);
    assert_eq!(
        (stat(&off, "evaluated"), stat(&off, "cached")),
        (6, 0),
        "{off}"
    );
    assert_eq!(host_drvs(&off), host_drvs(&b));

    // A file deeper in the zfs hosts' closure (imported by zfs.nix) changes:
    // their keys at the new revision miss, though no file they import
    // directly changed.
    touch_module(&repo, "hardware/zfs.nix");
    repo.commit_all("c");
    let c = check_eval(&repo, &[]);
    let n = c["hosts"].as_array().unwrap().len() as u64;
    assert!(n >= 3, "{c}");
    assert_eq!(stat(&c, "evaluated"), n, "the new revision missed: {c}");
    assert_eq!(stat(&c, "cached"), n, "the base (b) hit: {c}");
    for ((h, new), (_, old)) in host_drvs(&c).iter().zip(host_drvs(&b).iter()) {
        assert_ne!(
            new, old,
            "{h}: its drvPath changed, so the cache must not answer"
        );
    }

    // A comment in flake.nix: every host is affected, no drvPath changes.
    // With both revisions answered by the cache, the hosts are still
    // recognised as unchanged.
    let flake = std::fs::read_to_string(repo.path().join("flake.nix")).unwrap();
    repo.write("flake.nix", format!("# {}\n{flake}", unique()));
    repo.commit_all("d");
    let d1 = check_eval(&repo, &[]);
    let d2 = check_eval(&repo, &[]);
    assert_eq!(stat(&d2, "evaluated"), 0, "{d2}");
    assert_eq!(stat(&d2, "cached"), 34, "{d2}");
    for d in [&d1, &d2] {
        let hosts = d["hosts"].as_array().unwrap();
        assert_eq!(hosts.len(), 17, "{d}");
        assert!(
            hosts.iter().all(|h| h["reason"] == "unchanged drvPath"),
            "{d}"
        );
    }
}

#[test]
fn verify_cache_reports_a_planted_mismatch_as_a_guard_bug() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    touch_module(&repo, "environments/zfs.nix");
    repo.commit_all("a");
    let a = check_eval(&repo, &[]);
    let other = host_drvs(&a)[0].1.clone();
    // Every entry now claims another host's (existing) derivation.
    let dir = repo.path().join(".git/guard/cache/eval");
    let mut planted = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        if v["drv"] != other {
            v["drv"] = other.clone().into();
            planted += 1;
        }
        std::fs::write(e.path(), serde_json::to_vec(&v).unwrap()).unwrap();
    }
    assert!(planted >= 2, "{planted}");
    let out = repo.guard(&[
        "check",
        "--commit",
        "HEAD",
        "--level",
        "eval",
        "--verify-cache",
        "--format",
        "json",
    ]);
    out.assert_code(0);
    let b = out.json()["build"].clone();
    let bugs: Vec<String> = b["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["message"].as_str())
        .filter(|m| m.starts_with("guard bug: the evaluation cache held"))
        .map(String::from)
        .collect();
    assert_eq!(bugs.len(), planted, "{b}");
    // nix's answers won, and replaced the planted entries.
    assert_eq!(host_drvs(&b), host_drvs(&a));
    let clean = check_eval(&repo, &["--verify-cache"]);
    assert!(!clean.to_string().contains("guard bug"), "{clean}");
}

#[test]
fn a_used_inputs_lock_change_misses_the_cache() {
    let _ = nix_cmd();
    // An input the hosts use: a plain git repository holding one file.
    let extra = TempRepo::new();
    extra.write("value.txt", "one\n");
    extra.commit_all("one");
    let repo = fleet_repo();
    let flake = std::fs::read_to_string(repo.path().join("flake.nix")).unwrap();
    let patched = flake
        .replace(
            "  inputs = {\n",
            &format!(
                "  inputs = {{\n    extra = {{ url = \"git+file://{}\"; flake = false; }};\n",
                extra.path().display()
            ),
        )
        .replace(
            "outputs = inputs@{ self, ... }:",
            "outputs = inputs@{ self, extra, ... }:",
        )
        .replace(
            "specialArgs = { inherit self inputs; };",
            "specialArgs = { inherit self inputs extra; };",
        );
    assert!(
        patched.contains("inherit self inputs extra")
            && patched.contains("{ self, extra, ... }")
            && patched.contains("extra = { url"),
        "{patched}"
    );
    let flake = patched;
    repo.write("flake.nix", flake);
    add_definition(
        &repo,
        "machines/linda/default.nix",
        "environment.etc.\"extra\".text = builtins.readFile \"${extra}/value.txt\";",
    );
    let linda = repo.path().join("machines/linda/default.nix");
    let text = std::fs::read_to_string(&linda).unwrap();
    std::fs::write(
        &linda,
        text.replace("{ config, lib, ... }:", "{ config, lib, extra, ... }:"),
    )
    .unwrap();
    let lock = |repo: &TempRepo, args: &[&str]| {
        let out = nix_cmd()
            .current_dir(repo.path())
            .args(["flake", "lock"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    repo.git(&["add", "-A"]);
    lock(&repo, &[]);
    repo.commit_all("extra input");
    touch_module(&repo, "lib/enable-wg.nix");
    repo.commit_all("every host");
    let p = check_eval(&repo, &[]);
    let hosts = p["hosts"].as_array().unwrap().len() as u64;
    assert_eq!(hosts, 17, "{p}");

    // Only the lock changes (the input moved on).
    extra.write("value.txt", "two\n");
    extra.commit_all("two");
    lock(&repo, &["--update-input", "extra"]);
    repo.commit_all("update extra");
    let l = check_eval(&repo, &[]);
    // flake.nix passes the input to every host: all 17 are affected, their
    // keys at the new revision all miss; the base (above) hits.
    assert_eq!(l["hosts"].as_array().unwrap().len() as u64, hosts, "{l}");
    assert_eq!(stat(&l, "evaluated"), hosts, "{l}");
    assert_eq!(stat(&l, "cached"), hosts, "{l}");
    let linda = |b: &serde_json::Value| {
        host_drvs(b)
            .into_iter()
            .find(|(h, _)| h == "linda")
            .unwrap()
            .1
    };
    assert_ne!(linda(&l), linda(&p), "linda reads the input");
}

#[test]
fn one_nix_build_for_all_hosts_with_a_log_per_host() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    touch_module(&repo, "environments/zfs.nix");
    touch_module(&repo, "environments/display.nix");
    repo.commit_all("zfs and displays");
    // A nix that records each invocation, then runs the real one.
    let calls = repo.path().join(".git/nix-calls");
    let wrapper = repo.path().join(".git/nix-wrapper");
    let real = crate::support::nix_program();
    let real = which(&real.to_string_lossy());
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            calls.display(),
            real
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = crate::support::guard_cmd(repo.path())
        .env("GUARD_NIX", &wrapper)
        .args(["-C"])
        .arg(repo.path())
        .args([
            "build", "--commit", "HEAD", "--level", "build", "--format", "json",
        ])
        .output()
        .unwrap();
    let out = GuardOutput::from(out);
    out.assert_code(0);
    let st = statuses(&out);
    assert_eq!(st.len(), 6, "{st:?}");
    assert!(st.values().all(|(s, _)| s == "ok"), "{st:?}");
    let calls = std::fs::read_to_string(&calls).unwrap();
    let builds: Vec<&str> = calls.lines().filter(|l| l.contains(" build ")).collect();
    assert_eq!(builds.len(), 1, "{calls}");
    assert_eq!(builds[0].matches(".drv").count(), 6, "{calls}");
    // Each host's log holds its own build, not the others'.
    let v = out.json();
    for h in v["hosts"].as_array().unwrap() {
        let name = h["name"].as_str().unwrap();
        assert_eq!(h["built_on"], serde_json::json!(["local"]), "{h}");
        let log = std::fs::read_to_string(h["log"].as_str().unwrap()).unwrap();
        assert!(
            log.contains(&format!("nixos-system-{name}")),
            "{name}: {log}"
        );
        for other in st.keys().filter(|o| *o != name) {
            assert!(
                !log.contains(&format!("nixos-system-{other}.drv")),
                "{name}'s log shows {other}: {log}"
            );
        }
    }
}

/// The absolute path of a program (PATH lookup for a bare name).
fn which(program: &str) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    let p = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!p.is_empty(), "{program} not found on PATH");
    p
}

/// A token of fixed length, new every run: outputs are fresh store paths
/// (always built), their sizes the same every run.
fn fixed_len_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:016x}",
        (nanos as u64) ^ ((std::process::id() as u64) << 40)
    )
}

fn snapshot_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"/nix/store/[0-9a-z]{32}-", "/nix/store/[hash]-");
    s.add_filter(r"\b\d+(\.\d+)?m?s\b", "[time]");
    s.add_filter(r"commit [0-9a-f]{7}\b", "commit [rev]");
    s.add_filter(r"\b[0-9a-f]{40}\b", "[rev]");
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn closure_diff_after_a_package_version_change() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    let token = fixed_len_token();
    add_definition(
        &repo,
        "environments/zfs.nix",
        &format!("environment.etc.\"guard-token\".text = \"{token}\";"),
    );
    add_definition(
        &repo,
        "environments/zfs.nix",
        "environment.systemPackages = [ \"openssl-3.0.13\" \"zfs-2.2.3\" ];",
    );
    repo.commit_all("openssl 3.0.13");
    // The base toplevels are in the store, as after a deployment or an
    // earlier CI run.
    repo.guard(&["build", "--commit", "HEAD", "--level", "build", "-q"])
        .assert_code(0);
    let p = repo.path().join("environments/zfs.nix");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace(
            "\"openssl-3.0.13\" \"zfs-2.2.3\"",
            "\"openssl-3.0.14\" \"zfs-2.2.3\" \"zfs-tools-1.0\"",
        ),
    )
    .unwrap();
    repo.commit_all("openssl 3.0.14, zfs-tools");

    let summary = repo.path().join(".git/summary.md");
    let comment = repo.path().join(".git/comment.md");
    let ci = GuardOutput::from(
        crate::support::guard_cmd(repo.path())
            .env("GITHUB_STEP_SUMMARY", &summary)
            .args(["-C"])
            .arg(repo.path())
            .args([
                "ci",
                "--base",
                "HEAD~1",
                "--head",
                "HEAD",
                "--level",
                "build",
                "--format",
                "json",
                "--comment-file",
            ])
            .arg(&comment)
            .output()
            .unwrap(),
    );
    ci.assert_code(0);
    let v = ci.json();
    let hosts: Vec<serde_json::Value> = v["build"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| serde_json::json!({"name": h["name"], "status": h["status"], "closure_diff": h["closure_diff"]}))
        .collect();
    let d = &hosts[0]["closure_diff"];
    assert_eq!(d["packages"][0]["name"], "openssl", "{}", ci.stdout);
    let human = repo.guard(&["check", "--commit", "HEAD", "--level", "build"]);
    human.assert_code(0);
    let nix_section = human.stdout[human.stdout.find("── nix").unwrap()..].to_string();
    let summary = std::fs::read_to_string(&summary).unwrap();
    let builds = summary[summary.find("### Builds").unwrap()..].to_string();
    let comment = std::fs::read_to_string(&comment).unwrap();
    assert!(
        comment.starts_with("<!-- guard:build-comment -->\n"),
        "{comment}"
    );
    snapshot_settings().bind(|| {
        insta::assert_snapshot!("closure_diff_human", nix_section);
        insta::assert_snapshot!(
            "closure_diff_json",
            serde_json::to_string_pretty(&hosts).unwrap()
        );
        insta::assert_snapshot!("closure_diff_summary", builds);
        insta::assert_snapshot!("closure_diff_comment", comment);
    });
}

#[test]
fn a_path_declared_global_is_part_of_every_key() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    repo.write("guard.toml", "[affected]\nglobal = [\"VERSION\"]\n");
    repo.write("VERSION", "1\n");
    touch_module(&repo, "lib/enable-wg.nix");
    repo.commit_all("every host, VERSION 1");
    let a = check_eval(&repo, &[]);
    assert_eq!(a["hosts"].as_array().unwrap().len(), 17, "{a}");
    // Only the global path changes: nix may read it in ways the graph
    // cannot see, so no host's key at the new revision may hit.
    repo.write("VERSION", "2\n");
    repo.commit_all("VERSION 2");
    let b = check_eval(&repo, &[]);
    assert_eq!(b["hosts"].as_array().unwrap().len(), 17, "{b}");
    assert_eq!((stat(&b, "evaluated"), stat(&b, "cached")), (17, 17), "{b}");
}

//! `guard build` and `guard check` against real nix on copies of the
//! example fleet (and a tiny flake with a slow builder for Ctrl-C): exactly
//! the importing hosts are evaluated and built, failures stay with their
//! hosts, unchanged drvPaths are skipped, the staged snapshot is what gets
//! built, and nothing of the user's repository state changes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{GuardOutput, TempRepo, fleet_repo, guard_cmd, nix_cmd};

mod remote;
mod scale;

const ZFS: [&str; 3] = ["cortex-alpha", "local-nas", "storage-array"];
const DISPLAYS: [&str; 3] = ["display-0", "display-1", "display-2"];

/// A value no earlier run has used, so every output is a fresh store path
/// (the nix store outlives test runs).
fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// Adds `line` as the first definition of a module whose body starts with
/// a line holding only `{` (every module of the example fleet).
fn add_definition(repo: &TempRepo, rel: &str, line: &str) {
    let path = repo.path().join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\n{\n"), "{rel} has no body line");
    let text = text.replacen("\n{\n", &format!("\n{{\n  {line}\n"), 1);
    std::fs::write(path, text).unwrap();
}

/// A fresh value in `rel`, under an attribute named after the file (two
/// touched modules of one host never conflict).
fn touch_module(repo: &TempRepo, rel: &str) {
    let stem = Path::new(rel).file_stem().unwrap().to_string_lossy();
    add_definition(
        repo,
        rel,
        &format!(
            "environment.etc.\"guard-test-{stem}\".text = \"{}\";",
            unique()
        ),
    );
}

/// Makes every host that imports `rel` fail to evaluate.
fn break_module(repo: &TempRepo, rel: &str, message: &str) {
    add_definition(
        repo,
        rel,
        &format!("environment.etc.\"guard-broken\".text = throw \"{message}\";"),
    );
}

/// host -> (status, reason) from `guard build --format json` output.
fn statuses(out: &GuardOutput) -> BTreeMap<String, (String, String)> {
    let v = out.json();
    let v = v.get("build").unwrap_or(&v);
    v["hosts"]
        .as_array()
        .unwrap_or_else(|| panic!("no hosts array: {v}"))
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

fn names(m: &BTreeMap<String, (String, String)>, status: &str) -> Vec<String> {
    m.iter()
        .filter(|(_, (s, _))| s == status)
        .map(|(n, _)| n.clone())
        .collect()
}

fn strings(hosts: &[&str]) -> Vec<String> {
    hosts.iter().map(|h| h.to_string()).collect()
}

fn guard_refs(repo: &TempRepo) -> String {
    repo.git(&["for-each-ref", "refs/guard/"])
}

#[test]
fn one_module_change_builds_exactly_the_hosts_that_import_it() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    touch_module(&repo, "environments/zfs.nix");
    repo.commit_all("zfs: new value");
    let before = repo.state();

    let out = repo.guard(&[
        "build", "--commit", "HEAD", "--level", "build", "--format", "json",
    ]);
    out.assert_code(0);
    let st = statuses(&out);
    assert_eq!(st.keys().cloned().collect::<Vec<_>>(), strings(&ZFS));
    assert_eq!(names(&st, "ok"), strings(&ZFS), "{}", out.stdout);
    let v = out.json();
    for h in v["hosts"].as_array().unwrap() {
        assert_eq!(h["level"], "build");
        let outp = h["out_path"].as_str().unwrap();
        assert!(Path::new(outp).exists(), "{outp} was not built");
        assert!(h["drv_path"].as_str().unwrap().ends_with(".drv"));
        let log = h["log"].as_str().unwrap();
        assert!(
            log.starts_with(&repo.path().join(".git").display().to_string()),
            "logs live under the git dir: {log}"
        );
    }
    assert_eq!(repo.state(), before);

    // The same change at level eval: the same hosts, evaluated only, and
    // the second build finds everything built already.
    let out = repo.guard(&["build", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(0);
    let st = statuses(&out);
    assert_eq!(names(&st, "ok"), strings(&ZFS));
    let out = repo.guard(&[
        "build", "--commit", "HEAD", "--level", "build", "--format", "json",
    ]);
    out.assert_code(0);
    let st = statuses(&out);
    assert_eq!(names(&st, "skipped"), strings(&ZFS));
    assert!(st.values().all(|(_, r)| r == "already built"), "{st:?}");
    assert_eq!(repo.state(), before);
}

#[test]
fn a_module_that_throws_fails_only_its_hosts_with_the_error_shown() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    let message = format!("zfs is broken {}", unique());
    break_module(&repo, "environments/zfs.nix", &message);
    touch_module(&repo, "environments/display.nix");
    repo.commit_all("break zfs, touch displays");

    let out = repo.guard(&["build", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(1);
    let st = statuses(&out);
    assert_eq!(names(&st, "failed"), strings(&ZFS), "{}", out.stdout);
    assert_eq!(names(&st, "ok"), strings(&DISPLAYS), "{}", out.stdout);
    for h in ZFS {
        assert!(st[h].1.contains(&message), "{h}: {:?}", st[h]);
    }
    // The excerpt points at the module that threw.
    let v = out.json();
    let zfs = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "local-nas")
        .unwrap();
    let excerpt: Vec<&str> = zfs["log_excerpt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        excerpt.iter().any(|l| l.contains("environments/zfs.nix")),
        "{excerpt:?}"
    );

    // A person sees the error too.
    let human = repo.guard(&["build", "--commit", "HEAD"]);
    human.assert_code(1);
    assert!(human.stdout.contains(&message), "{}", human.stdout);
    assert!(human.stdout.contains("failed"), "{}", human.stdout);
}

#[test]
fn an_error_try_eval_cannot_catch_still_fails_only_its_hosts() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    // A type error (which builtins.tryEval cannot catch) fails only the
    // hosts whose evaluation reaches it: workers evaluate host by host.
    add_definition(
        &repo,
        "environments/zfs.nix",
        "environment.etc.\"guard-type-error\".text = 1 + \"a\";",
    );
    touch_module(&repo, "environments/display.nix");
    repo.commit_all("type error in zfs.nix");
    let out = repo.guard(&["build", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(1);
    let st = statuses(&out);
    assert_eq!(names(&st, "failed"), strings(&ZFS), "{}", out.stdout);
    assert_eq!(names(&st, "ok"), strings(&DISPLAYS), "{}", out.stdout);
    assert!(
        st["local-nas"].1.contains("cannot add"),
        "{:?}",
        st["local-nas"]
    );
    let v = out.json();
    // Every affected host was answered by an evaluation worker (no
    // fallback to one nix process per host).
    assert_eq!(v["eval"]["evaluated"], 12, "{v}");
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| !w["message"].as_str().unwrap().contains("one by one")),
        "{v}"
    );
}

#[test]
fn a_failing_builder_fails_that_host_and_keep_going_decides_the_rest() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    add_definition(
        &repo,
        "machines/linda/default.nix",
        "system.build.fail = true;",
    );
    // Every host imports lib/enable-wg.nix: all 17 are built.
    touch_module(&repo, "lib/enable-wg.nix");
    repo.commit_all("linda fails to build");
    let before = repo.state();

    let out = repo.guard(&[
        "build", "--commit", "HEAD", "--level", "build", "--jobs", "1", "--format", "json",
    ]);
    out.assert_code(1);
    let st = statuses(&out);
    assert_eq!(st.len(), 17);
    assert_eq!(names(&st, "failed"), vec!["linda"]);
    assert!(
        st["linda"].1.contains("failed with exit code 1"),
        "{:?}",
        st["linda"]
    );
    // One `nix build` for all hosts: without --keep-going nix stops at
    // linda's failure; every other host was built before that or is
    // reported as not built because of linda.
    for (h, (s, r)) in &st {
        assert!(
            h == "linda" || s == "ok" || (s == "skipped" && r.contains("linda failed first")),
            "{h}: {s} {r}"
        );
    }
    let log = std::fs::read_to_string(repo.path().join(".git/guard/logs/linda.log")).unwrap();
    assert!(log.contains("system.build.fail is set for linda"), "{log}");
    assert_eq!(repo.state(), before);

    // --keep-going builds every other host (those built before linda in
    // the first run are found in the store).
    let out = repo.guard(&[
        "build",
        "--commit",
        "HEAD",
        "--level",
        "build",
        "--keep-going",
        "--format",
        "json",
    ]);
    out.assert_code(1);
    let st = statuses(&out);
    assert_eq!(names(&st, "failed"), vec!["linda"]);
    for (h, (s, r)) in &st {
        assert!(
            h == "linda" || s == "ok" || r == "already built",
            "{h}: {s} {r}"
        );
    }
    assert_eq!(repo.state(), before);

    // A person sees the tail of linda's log.
    let out = repo.guard(&["build", "--commit", "HEAD", "--level", "build"]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("system.build.fail is set for linda"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("0 ok, 1 failed, 16 skipped"),
        "{}",
        out.stdout
    );
}

#[test]
fn hosts_with_an_unchanged_drv_path_are_skipped() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    let flake = std::fs::read_to_string(repo.path().join("flake.nix")).unwrap();
    repo.write("flake.nix", format!("# {}\n{flake}", unique()));
    repo.commit_all("comment in flake.nix");

    let out = repo.guard(&[
        "build", "--commit", "HEAD", "--level", "build", "--format", "json",
    ]);
    out.assert_code(0);
    let st = statuses(&out);
    // flake.nix is read by every host, so all 17 are statically affected,
    // but a comment changes no derivation.
    assert_eq!(st.len(), 17);
    assert_eq!(names(&st, "skipped").len(), 17, "{st:?}");
    assert!(st.values().all(|(_, r)| r == "unchanged drvPath"), "{st:?}");
    let v = out.json();
    assert!(v["base"].as_str().is_some());
}

#[test]
fn the_staged_snapshot_is_what_gets_built() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    let original = std::fs::read_to_string(repo.path().join("environments/zfs.nix")).unwrap();

    // A breaking change is staged, then undone in the work tree only.
    let message = format!("staged breakage {}", unique());
    break_module(&repo, "environments/zfs.nix", &message);
    repo.git(&["add", "environments/zfs.nix"]);
    repo.write("environments/zfs.nix", &original);
    let before = repo.state();
    let out = repo.guard(&["build", "--staged", "--format", "json"]);
    out.assert_code(1);
    let st = statuses(&out);
    assert_eq!(names(&st, "failed"), strings(&ZFS), "{}", out.stdout);
    assert!(st["cortex-alpha"].1.contains(&message));
    let v = out.json();
    assert!(
        v["flake"].as_str().unwrap().contains("ref=refs/guard/"),
        "{}",
        v["flake"]
    );
    assert_eq!(repo.state(), before, "work tree, index or refs changed");
    assert_eq!(guard_refs(&repo), "");

    // The reverse: a good change staged, the work tree broken.
    repo.git(&["reset", "-q"]);
    repo.git(&["checkout", "--", "."]);
    touch_module(&repo, "environments/zfs.nix");
    repo.git(&["add", "environments/zfs.nix"]);
    break_module(&repo, "environments/zfs.nix", &message);
    let before = repo.state();
    let out = repo.guard(&["build", "--staged", "--level", "build", "--format", "json"]);
    out.assert_code(0);
    assert_eq!(
        names(&statuses(&out), "ok"),
        strings(&ZFS),
        "{}",
        out.stdout
    );
    // The work tree is what --worktree builds, and it says so.
    let wt = repo.guard(&["build", "--worktree"]);
    wt.assert_code(1);
    assert!(wt.stdout.contains("work tree"), "{}", wt.stdout);
    assert_eq!(repo.state(), before, "work tree, index or refs changed");
    assert_eq!(guard_refs(&repo), "");
}

#[test]
fn check_reports_affected_and_build_with_one_exit_code() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    break_module(
        &repo,
        "environments/zfs.nix",
        &format!("check {}", unique()),
    );
    repo.commit_all("broken");
    let before = repo.state();

    let out = repo.guard(&["check", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(1);
    let v = out.json();
    assert_eq!(v["affected"]["hosts"].as_array().unwrap().len(), 3);
    assert_eq!(names(&statuses(&out), "failed"), strings(&ZFS));

    // Level none: no nix at all, so no build section and nothing fails.
    let out = repo.guard(&[
        "check", "--commit", "HEAD", "--level", "none", "--format", "json",
    ]);
    out.assert_code(0);
    let v = out.json();
    assert!(v.get("build").is_none(), "{v}");
    assert_eq!(repo.state(), before);
}

#[test]
fn flake_check_runs_when_configured() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    repo.write("guard.toml", "[build]\nflake_check = true\n");
    touch_module(&repo, "environments/zfs.nix");
    repo.commit_all("zfs + flake check");
    // `nix flake check` rejects nixinate-style `apps.nixinate.<host>`
    // ("nixinate" is no system), as on the fleets that use nixinate: the
    // check fails, with nix's reason.
    let out = repo.guard(&["build", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(1);
    let v = out.json();
    assert_eq!(v["flake_check"]["status"], "failed", "{v}");
    let why = v["flake_check"].to_string();
    assert!(
        why.contains("'nixinate' is not a valid system type"),
        "{why}"
    );
    // Without the deploy apps the flake checks clean.
    let flake = std::fs::read_to_string(repo.path().join("flake.nix")).unwrap();
    let line = "      apps.nixinate = builtins.mapAttrs deployApp hosts;\n";
    assert!(flake.contains(line), "{flake}");
    repo.write("flake.nix", flake.replace(line, ""));
    repo.commit_all("no deploy apps");
    let out = repo.guard(&["build", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["flake_check"]["status"], "ok", "{v}");
    assert_eq!(v["flake_check"]["level"], "eval");
    assert!(
        repo.path()
            .join(".git/guard/logs/@flake-check.log")
            .is_file()
    );
    // A GitHub run annotates nothing when all is well and fences the report.
    let gh = repo.guard(&["build", "--commit", "HEAD", "--format", "github"]);
    gh.assert_code(0);
    assert!(!gh.stdout.contains("::error"), "{}", gh.stdout);
    assert!(gh.stdout.contains("::stop-commands::"), "{}", gh.stdout);
}

#[test]
fn critical_hosts_are_built_as_vms() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    repo.write(
        "guard.toml",
        "[build]\nlevel = \"eval\"\ncritical = [\"cortex-alpha\"]\n",
    );
    touch_module(&repo, "environments/zfs.nix");
    repo.commit_all("zfs + guard.toml");
    let out = repo.guard(&["build", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(0);
    let v = out.json();
    let level = |n: &str| {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == n)
            .unwrap()["level"]
            .clone()
    };
    assert_eq!(level("cortex-alpha"), "vm");
    assert_eq!(level("local-nas"), "eval");
    let vm = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "cortex-alpha")
        .unwrap();
    assert!(
        vm["drv_path"]
            .as_str()
            .unwrap()
            .contains("nixos-vm-cortex-alpha"),
        "{vm}"
    );
    assert!(Path::new(vm["out_path"].as_str().unwrap()).exists());
}

#[test]
fn named_hosts_are_validated_and_must_exist() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    let out = repo.guard(&["build", "--hosts", "linda,a\"b"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("not a valid host name"),
        "{}",
        out.stderr
    );

    let before = repo.state();
    let out = repo.guard(&["build", "--hosts", "linda,no-such-host", "--format", "json"]);
    out.assert_code(1);
    let st = statuses(&out);
    assert_eq!(st["linda"].0, "ok");
    assert_eq!(st["no-such-host"].0, "failed");
    assert!(st["no-such-host"].1.contains("no host named"), "{st:?}");
    assert_eq!(repo.state(), before);
}

#[test]
fn temporary_commits_of_the_index_match_git_and_leave_no_ref() {
    let repo = TempRepo::new();
    repo.write("a.txt", "one\n");
    repo.write("dir/b.nix", "{ }\n");
    repo.commit_all("base");
    repo.write("a.txt", "two\n");
    repo.git(&["add", "a.txt"]);
    repo.write("dir/b.nix", "{ unstaged = true; }\n");
    repo.write("c.txt", "intent to add\n");
    repo.git(&["add", "-N", "c.txt"]);
    // What `git commit` would record (write-tree leaves i-t-a entries out).
    let expected_tree = repo.git(&["write-tree"]).trim().to_string();
    let head = repo.rev("HEAD");
    let before = repo.state();

    let g = guard::git::Repo::discover(repo.path()).unwrap();
    let t = g.temp_commit_of_index().unwrap();
    assert!(t.name().starts_with("refs/guard/"), "{}", t.name());
    let commit = t.commit().to_string();
    assert_eq!(repo.rev(t.name()), commit);
    assert_eq!(repo.rev(&format!("{commit}^{{tree}}")), expected_tree);
    assert_eq!(repo.rev(&format!("{commit}^")), head);
    // Deterministic: the same index gives the same commit.
    let t2 = g.temp_commit_of_index().unwrap();
    assert_eq!(t2.commit(), t.commit());
    assert_ne!(t2.name(), t.name());
    drop(t);
    drop(t2);
    assert_eq!(guard_refs(&repo), "");
    assert!(!repo.path().join(".git/logs/refs/guard").exists());
    assert_eq!(repo.state(), before);

    // The signal-handler path removes refs that are still alive.
    let t3 = g.temp_commit_of_index().unwrap();
    assert_ne!(guard_refs(&repo), "");
    guard::git::remove_all_temp_refs();
    assert_eq!(guard_refs(&repo), "");
    drop(t3);
    assert_eq!(repo.state(), before);
}

/// Processes whose command line contains `needle` (other than this one).
fn processes_with(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            found.push(format!("{name}: {cmd}"));
        }
    }
    found
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A one-host flake whose toplevel builder sleeps; `guard.toml` names the
/// host. Returns the repository (base committed) and writes a staged
/// version that sleeps `seconds`; the marker is in the derivation name.
fn slow_repo(toml: &str, marker: &str, seconds: &str) -> TempRepo {
    let repo = TempRepo::new();
    repo.write(
        "flake.nix",
        "{\n  outputs = { self }: {\n    nixosConfigurations.slow = import ./hosts/slow.nix;\n  };\n}\n",
    );
    repo.write(
        "guard.toml",
        format!("[hosts]\nslow = \"hosts/slow.nix\"\n{toml}"),
    );
    let slow = |marker: &str, seconds: &str| {
        format!(
            "{{\n  config.system.build.toplevel = derivation {{\n    name = \"slow-{marker}\";\n    system = \"x86_64-linux\";\n    builder = \"/bin/sh\";\n    args = [ \"-c\" \"/bin/sleep {seconds}; echo done > $out\" ];\n  }};\n}}\n"
        )
    };
    repo.write("hosts/slow.nix", slow(&format!("base{marker}"), "1"));
    repo.commit_all("slow host");
    repo.write("hosts/slow.nix", slow(marker, seconds));
    repo.git(&["add", "hosts/slow.nix"]);
    repo
}

/// A unique marker of digits and the unique sleep duration built from it.
fn slow_marker() -> (String, String) {
    let marker = unique().replace('-', "");
    let digits = marker[marker.len() - 9..].to_string();
    let seconds = format!("30.{digits}");
    (digits, seconds)
}

#[test]
fn ctrl_c_stops_nix_and_removes_the_temporary_ref() {
    let _ = nix_cmd();
    let (marker, seconds) = slow_marker();
    let repo = slow_repo("", &marker, &seconds);
    let before = repo.state();

    let out_file = tempfile::NamedTempFile::new().unwrap();
    let err_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = guard_cmd(repo.path())
        .arg("-C")
        .arg(repo.path())
        .args(["build", "--staged", "--level", "build"])
        .stdout(Stdio::from(out_file.reopen().unwrap()))
        .stderr(Stdio::from(err_file.reopen().unwrap()))
        .spawn()
        .unwrap();
    wait_for("the slow builder to start", Duration::from_secs(60), || {
        !processes_with(&seconds).is_empty()
    });
    assert!(
        guard_refs(&repo).contains("refs/guard/"),
        "the staged snapshot is built from a temporary ref"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("guard did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    err_file
        .reopen()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut stdout = String::new();
    out_file
        .reopen()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(130), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("interrupted"), "{stdout}");
    // nix build of the slow derivation, its builder and the sleep: all gone.
    let left = processes_with(&marker);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(guard_refs(&repo), "");
    assert_eq!(repo.state(), before);
}

#[test]
fn a_host_that_exceeds_its_timeout_fails_and_leaves_nothing_running() {
    let _ = nix_cmd();
    let (marker, seconds) = slow_marker();
    let repo = slow_repo("[build]\ntimeout_secs = 1\n", &marker, &seconds);
    let before = repo.state();
    let start = Instant::now();
    let out = repo.guard(&["build", "--staged", "--level", "build", "--format", "json"]);
    out.assert_code(1);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the timeout did not stop nix"
    );
    let st = statuses(&out);
    assert_eq!(st["slow"].0, "failed");
    assert!(
        st["slow"].1.contains("timed out after 1s"),
        "{:?}",
        st["slow"]
    );
    let left = processes_with(&marker);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(guard_refs(&repo), "");
    assert_eq!(repo.state(), before);
}

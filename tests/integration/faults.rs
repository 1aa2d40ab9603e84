//! Faults around guard: nix missing, the log directory unusable or full,
//! nix killed mid-build, SIGTERM during check/build/bisect. Each ends with
//! a clear message and the documented exit code, nothing left running, no
//! `refs/guard/` ref, no temporary checkout, and the repository unchanged.
//! (A build that hangs past `[build].timeout_secs` is
//! `build::a_host_that_exceeds_its_timeout_fails_and_leaves_nothing_running`.)

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::hostile::sane;
use crate::support::{GuardOutput, TempRepo, guard_cmd, nix_cmd};

/// A one-host flake whose toplevel builder runs `script` (sh); the marker
/// makes the derivation (and its processes) unique to this test.
fn flake_repo(marker: &str, script: &str) -> TempRepo {
    let repo = TempRepo::new();
    repo.write(
        "flake.nix",
        "{\n  outputs = { self }: {\n    nixosConfigurations.h = import ./hosts/h.nix;\n  };\n}\n",
    );
    repo.write("guard.toml", "[hosts]\nh = \"hosts/h.nix\"\n");
    repo.write(
        "hosts/h.nix",
        host(&format!("base-{marker}"), "echo base > $out"),
    );
    repo.commit_all("base");
    repo.write("hosts/h.nix", host(marker, script));
    repo.commit_all("change");
    repo
}

fn host(name: &str, script: &str) -> String {
    format!(
        "{{\n  config.system.build.toplevel = derivation {{\n    name = \"h-{name}\";\n    system = \"x86_64-linux\";\n    builder = \"/bin/sh\";\n    args = [ \"-c\" {script:?} ];\n  }};\n}}\n"
    )
}

fn unique() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}{}", std::process::id(), t % 1_000_000_000)
}

fn guard_refs(repo: &TempRepo) -> String {
    repo.git(&["for-each-ref", "refs/guard/"])
}

/// Host statuses of a JSON build report: name -> (status, reason).
fn status_of(out: &GuardOutput, host: &str) -> (String, String) {
    let v = out.json();
    let h = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == host)
        .unwrap_or_else(|| panic!("no host {host}: {}", out.stdout))
        .clone();
    (
        h["status"].as_str().unwrap_or_default().to_string(),
        h["reason"].as_str().unwrap_or_default().to_string(),
    )
}

/// Processes whose command line contains `needle` (other than this one).
fn processes_with(needle: &str) -> Vec<(i32, String)> {
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
            found.push((name.parse().unwrap(), cmd));
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

/// Waits (at most 60 s) until nothing with `marker` in its command line
/// runs any more: a leftover builder fails the test.
fn assert_nothing_left(marker: &str) {
    let start = Instant::now();
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "left behind: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running guard with stdout/stderr going to temporary files.
struct Running {
    child: Child,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

fn spawn_guard(dir: &Path, args: &[&str]) -> Running {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let child = guard_cmd(dir)
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdout(Stdio::from(out.reopen().unwrap()))
        .stderr(Stdio::from(err.reopen().unwrap()))
        .spawn()
        .unwrap();
    Running { child, out, err }
}

impl Running {
    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the exit (at most `secs`), returns the output.
    fn finish(mut self, secs: u64) -> GuardOutput {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let _ = self.child.kill();
                panic!("guard did not exit within {secs}s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stdout = String::new();
        self.out
            .reopen()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let mut stderr = String::new();
        self.err
            .reopen()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        GuardOutput {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}

/// A directory holding only a `git` link: PATH without nix.
fn path_without_nix() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let git = which("git").expect("git on PATH");
    std::os::unix::fs::symlink(git, dir.path().join("git")).unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    (dir, path)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

#[test]
fn nix_missing_from_path_is_a_clear_error_and_level_none_still_works() {
    let repo = crate::support::fleet_repo();
    repo.write("services/prometheus.nix", "{ ... }: { }\n");
    repo.commit_all("change");
    let before = repo.state();
    let (_dir, path) = path_without_nix();
    let run = |args: &[&str]| -> GuardOutput {
        guard_cmd(repo.path())
            .env("PATH", &path)
            .env_remove("GUARD_NIX")
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    for args in [
        &["check", "--commit", "HEAD", "--level", "eval"][..],
        &["build", "--commit", "HEAD", "--level", "build"],
        &[
            "bisect", "--host", "monitor", "--good", "HEAD~1", "--level", "eval",
        ],
    ] {
        let out = run(args);
        sane(&out, &[2]);
        assert!(
            out.stderr.contains("nix was not found on PATH") && out.stderr.contains("install"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = run(&[
        "check", "--commit", "HEAD", "--level", "none", "--format", "json",
    ]);
    sane(&out, &[0]);
    assert!(out.stdout.contains("monitor"), "{}", out.stdout);
    assert_eq!(repo.state(), before);
}

#[test]
fn a_log_directory_that_cannot_be_created_is_a_warning_and_the_result_stands() {
    let _ = nix_cmd();
    let marker = unique();
    let repo = flake_repo(&marker, "echo failing-{marker}; exit 1");
    let before = repo.state();
    // A file where the log directory belongs (root ignores read-only
    // permissions, a file stops everyone).
    std::fs::create_dir_all(repo.path().join(".git/guard")).unwrap();
    std::fs::write(repo.path().join(".git/guard/logs"), "not a directory").unwrap();
    let out = repo.guard(&[
        "build", "--commit", "HEAD", "--level", "build", "--format", "json",
    ]);
    sane(&out, &[1]);
    let (status, reason) = status_of(&out, "h");
    assert_eq!(status, "failed", "{reason}");
    assert!(
        out.stdout.contains("cannot create the log directory"),
        "the warning is in the report: {}",
        out.stdout
    );
    // The failure is still shown, from memory.
    assert!(out.stdout.contains("exit 1") || out.stdout.contains("failed with exit code 1"));
    assert_eq!(
        std::fs::read_to_string(repo.path().join(".git/guard/logs")).unwrap(),
        "not a directory"
    );
    assert_eq!(repo.state(), before);
}

/// Unmounts a tmpfs when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_log_directory_is_a_warning_and_the_result_stands() {
    let _ = nix_cmd();
    let marker = unique();
    // ~200 KiB of log output into a 16 KiB file system.
    let repo = flake_repo(
        &marker,
        "i=0; while [ $i -lt 4000 ]; do echo line $i of a long build log padding padding; i=$((i+1)); done; echo ok > $out",
    );
    let before = repo.state();
    let logs = repo.path().join(".git/guard/logs");
    std::fs::create_dir_all(&logs).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(&logs)
        .status()
        .unwrap();
    assert!(st.success(), "mounting a tiny tmpfs needs root");
    let _mount = Mount(logs.clone());
    let out = repo.guard(&[
        "build", "--commit", "HEAD", "--level", "build", "--format", "json",
    ]);
    sane(&out, &[0]);
    let (status, reason) = status_of(&out, "h");
    assert_eq!(status, "ok", "{reason}\n{}", out.stderr);
    let warnings = out.json()["warnings"].to_string();
    assert!(
        warnings.contains("log") && warnings.contains("No space left"),
        "the full disk is reported: {warnings}"
    );
    drop(_mount);
    assert_eq!(repo.state(), before);
}

#[test]
fn nix_killed_mid_build_fails_that_host_with_a_reason() {
    let _ = nix_cmd();
    let marker = unique();
    let seconds = format!("30.{marker}");
    let repo = flake_repo(&marker, &format!("/bin/sleep {seconds}; echo done > $out"));
    let before = repo.state();
    let run = spawn_guard(
        repo.path(),
        &[
            "build", "--commit", "HEAD", "--level", "build", "--format", "json",
        ],
    );
    wait_for("the slow builder", Duration::from_secs(60), || {
        !processes_with(&seconds).is_empty()
    });
    // The `nix build` guard started (its command line names the
    // derivation, whose name carries the marker).
    let nix: Vec<(i32, String)> = processes_with(&marker)
        .into_iter()
        .filter(|(_, c)| {
            c.split(' ')
                .next()
                .is_some_and(|a| a == "nix" || a.ends_with("/nix"))
                && c.contains(" build ")
        })
        .collect();
    assert_eq!(nix.len(), 1, "{nix:?}");
    // SAFETY: kill(2) on a process this test started (through guard).
    unsafe {
        libc::kill(nix[0].0, libc::SIGKILL);
    }
    let out = run.finish(60);
    sane(&out, &[1]);
    let (status, reason) = status_of(&out, "h");
    assert_eq!(status, "failed");
    assert!(
        reason.contains("signal") || reason.contains("killed"),
        "the reason says nix was killed: {reason:?}"
    );
    assert_eq!(guard_refs(&repo), "");
    // The builder of a nix that was SIGKILLed was orphaned (nix never got to
    // stop it; it runs in its own session); guard, its subreaper, stops it.
    let left = processes_with(&seconds);
    for (pid, _) in &left {
        // SAFETY: kill(2) on a builder this test caused (clean up before
        // failing, so a failure leaves nothing running).
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
        }
    }
    assert!(left.is_empty(), "builder left running: {left:?}");
    assert_eq!(repo.state(), before);
}

/// What guard may leave under `<git-dir>/guard`: its cache and logs, no
/// temporary checkout.
fn assert_no_temp_dirs(repo: &TempRepo) {
    let Ok(rd) = std::fs::read_dir(repo.path().join(".git/guard")) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(n == "cache" || n == "logs", "left behind: .git/guard/{n}");
    }
    assert_eq!(repo.git(&["worktree", "list"]).lines().count(), 1);
}

fn sigterm_during(args: &[&str], staged: bool) {
    let _ = nix_cmd();
    let marker = unique();
    let seconds = format!("30.{marker}");
    let repo = flake_repo(&marker, &format!("/bin/sleep {seconds}; echo done > $out"));
    if staged {
        repo.write(
            "hosts/h.nix",
            host(
                &format!("staged-{marker}"),
                &format!("/bin/sleep {seconds}; echo s > $out"),
            ),
        );
        repo.git(&["add", "hosts/h.nix"]);
    }
    let before = repo.state();
    let run = spawn_guard(repo.path(), args);
    wait_for("the slow builder", Duration::from_secs(60), || {
        !processes_with(&seconds).is_empty()
    });
    run.signal(libc::SIGTERM);
    let out = run.finish(30);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(
        out.code, 130,
        "{args:?}\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_nothing_left(&seconds);
    assert_eq!(guard_refs(&repo), "");
    assert_no_temp_dirs(&repo);
    assert_eq!(repo.state(), before);
}

#[test]
fn sigterm_during_a_staged_build_exits_130_and_cleans_up() {
    sigterm_during(&["build", "--staged", "--level", "build"], true);
}

#[test]
fn sigterm_during_check_exits_130_and_cleans_up() {
    sigterm_during(&["check", "--commit", "HEAD", "--level", "build"], false);
}

#[test]
fn sigterm_during_bisect_run_exits_130_and_removes_the_checkout() {
    let marker = unique();
    let seconds = format!("30.{marker}");
    let repo = flake_repo(&marker, "echo x > $out");
    let good = repo.rev("HEAD~1");
    let before = repo.state();
    let cmd = format!("/bin/sleep {seconds}");
    let run = spawn_guard(
        repo.path(),
        &["bisect", "--host", "h", "--good", &good, "--run", &cmd],
    );
    wait_for("the --run command", Duration::from_secs(60), || {
        !processes_with(&seconds)
            .iter()
            .all(|(_, c)| c.contains("guard"))
    });
    run.signal(libc::SIGTERM);
    let out = run.finish(30);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(
        out.code, 130,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert_nothing_left(&format!("sleep {seconds}"));
    assert_no_temp_dirs(&repo);
    assert_eq!(repo.state(), before);
}

//! Shared helpers for the integration tests: real git repositories in temp
//! dirs, the built `guard` binary, real `nix` configured for offline use, and
//! a fingerprint of the user-visible repository state.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A real git repository in a temporary directory.
pub struct TempRepo {
    pub dir: tempfile::TempDir,
}

impl TempRepo {
    /// `git init` with a fixed identity and default branch `main`.
    pub fn new() -> TempRepo {
        let dir = tempfile::Builder::new()
            .prefix("guard-test-")
            .tempdir()
            .unwrap();
        let repo = TempRepo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Guard Test"]);
        repo.git(&["config", "user.email", "guard@example.invalid"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the repository; panics with its stderr when it fails.
    pub fn git(&self, args: &[&str]) -> String {
        let out = git_cmd(self.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Writes a file (creating parent directories) relative to the work tree.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path().join(rel)).unwrap();
    }

    /// `git add -A && git commit -m msg`, returns the new commit id.
    pub fn commit_all(&self, msg: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.rev("HEAD")
    }

    pub fn rev(&self, rev: &str) -> String {
        self.git(&["rev-parse", rev]).trim().to_string()
    }

    /// Runs the built guard binary with `-C <repo>` and the given args.
    pub fn guard(&self, args: &[&str]) -> GuardOutput {
        guard_in(self.path(), args)
    }

    /// Fingerprint of everything guard must never modify.
    pub fn state(&self) -> RepoState {
        RepoState::capture(self.path())
    }
}

/// A `git` command with a clean environment (no inherited GIT_* variables,
/// no user or system config) so tests are independent of the machine.
pub fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("GIT_") {
            c.env_remove(k);
        }
    }
    if let Some(nix) = chosen_nix() {
        // A hook started by this git runs guard, which runs this nix.
        c.env("GUARD_NIX", nix);
    }
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z");
    c
}

/// What running guard produced.
#[derive(Debug)]
pub struct GuardOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl GuardOutput {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for GuardOutput {
    fn from(o: Output) -> Self {
        GuardOutput {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// The guard binary built by cargo for this test run.
pub fn guard_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_guard"))
}

/// A guard command with a clean git environment and nix configured offline.
pub fn guard_cmd(dir: &Path) -> Command {
    let mut c = Command::new(guard_bin());
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("GIT_") {
            c.env_remove(k);
        }
    }
    if let Some(nix) = chosen_nix() {
        c.env("GUARD_NIX", nix);
    }
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("NO_COLOR", "1")
        .env("NIX_CONFIG", NIX_CONFIG);
    c
}

pub fn guard_in(dir: &Path, args: &[&str]) -> GuardOutput {
    let mut c = guard_cmd(dir);
    c.arg("-C").arg(dir).args(args);
    c.output().unwrap().into()
}

/// Offline nix: no substituters, no sandbox, flakes on, no build users (the
/// tests run as one user against a local store).
pub const NIX_CONFIG: &str = "experimental-features = nix-command flakes\n\
substituters =\n\
sandbox = false\n\
build-users-group =\n\
warn-dirty = false\n";

/// The nix binary the tests run, when one is chosen: `$GUARD_TEST_NIX`
/// (scripts/test runs the nix-backed tests a second time with it set to the
/// current Nix that scripts/install-nix unpacks). Unset: `nix` on PATH.
/// guard is pointed at the same binary through `GUARD_NIX`.
pub fn chosen_nix() -> Option<std::ffi::OsString> {
    std::env::var_os("GUARD_TEST_NIX").filter(|v| !v.is_empty())
}

/// The nix program the tests run (see [`chosen_nix`]).
pub fn nix_program() -> std::ffi::OsString {
    chosen_nix().unwrap_or_else(|| "nix".into())
}

/// `nix --version` of the nix the tests run, e.g. "nix (Nix) 2.26.3".
pub fn nix_version() -> String {
    let out = nix_cmd().arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Returns a `nix` command configured offline. Fails the test loudly when nix
/// is missing: under CI a missing nix is a broken machine, never a skip.
pub fn nix_cmd() -> Command {
    let program = nix_program();
    let found = Command::new(&program).arg("--version").output();
    match found {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "this test needs `{}` (run scripts/install-nix); {}",
            program.to_string_lossy(),
            if std::env::var_os("CI").is_some() {
                "CI=true: refusing to skip"
            } else {
                "tests never skip silently"
            }
        ),
    }
    let mut c = Command::new(&program);
    for (k, _) in std::env::vars() {
        if k.starts_with("GIT_") {
            c.env_remove(k);
        }
    }
    c.env("NIX_CONFIG", NIX_CONFIG);
    c
}

/// Runs `nix eval --json <installable> [--apply f]` and parses the result.
pub fn nix_eval_json(installable: &str, apply: Option<&str>) -> serde_json::Value {
    let mut c = nix_cmd();
    c.args(["eval", "--json", installable]);
    if let Some(f) = apply {
        c.args(["--apply", f]);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "nix eval {installable} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Everything a guard command must leave byte-identical: every ref and HEAD,
/// the index file(s), and every file of the work tree outside `.git`.
#[derive(Debug, PartialEq, Eq)]
pub struct RepoState {
    pub refs: String,
    pub head: String,
    pub index: Option<Vec<u8>>,
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

impl RepoState {
    pub fn capture(dir: &Path) -> RepoState {
        let refs = String::from_utf8(
            git_cmd(dir)
                .args(["for-each-ref", "--format=%(refname) %(objectname)"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let head = std::fs::read_to_string(dir.join(".git/HEAD")).unwrap_or_default();
        let index = std::fs::read(dir.join(".git/index")).ok();
        let mut files = BTreeMap::new();
        collect_files(dir, dir, &mut files);
        RepoState {
            refs,
            head,
            index,
            files,
        }
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            collect_files(root, &p, out);
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            out.insert(
                p.strip_prefix(root).unwrap().to_path_buf(),
                t.into_os_string().into_encoded_bytes(),
            );
        } else {
            out.insert(
                p.strip_prefix(root).unwrap().to_path_buf(),
                std::fs::read(&p).unwrap(),
            );
        }
    }
}

/// Copies a directory tree (regular files, dirs, symlinks).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let src = e.path();
        let dst = to.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&src, &dst);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The shipped example fleet.
pub fn example_fleet() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet")
}

/// A fresh git repository holding a copy of the example fleet, committed.
pub fn fleet_repo() -> TempRepo {
    let repo = TempRepo::new();
    copy_tree(&example_fleet(), repo.path());
    repo.commit_all("fleet");
    repo
}

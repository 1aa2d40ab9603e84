//! The real public fleet repositories in `../shared/fleets` (see its README):
//! extracted once per machine into a cache under the target directory and
//! cloned into a work tree there. Tests read them; a test that changes a
//! repository takes its own `scratch_clone`.
//!
//! A missing `../shared/fleets` fails the test loudly: these repositories
//! are what keeps guard honest about layouts nobody here wrote.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::support::{TempRepo, git_cmd};

/// Every fleet repository in the mirrors (framework sources excluded).
pub const FLEETS: &[&str] = &[
    "EmergentMind+nix-config",
    "TUM-DSE+doctor-cluster-config",
    "badele+nix-homelab",
    "clan-lol+clan-infra",
    "colemickens+nixcfg",
    "dustinlyons+nixos-config",
    "mitchellh+nixos-config",
    "nmasur+dotfiles",
    "oddlama+nix-config",
    "ryan4yin+nix-config",
    "srid+nixos-config",
    "wimpysworld+nix-config",
];

/// `../shared/fleets` relative to the project root, or `$GUARD_FLEETS_DIR`.
pub fn fleets_dir() -> PathBuf {
    let dir = std::env::var_os("GUARD_FLEETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fleets"));
    assert!(
        dir.join("mirrors").is_dir(),
        "this test needs the real fleets at {} (../shared/fleets beside the project, \
         or GUARD_FLEETS_DIR); tests never skip",
        dir.display()
    );
    dir
}

pub fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("guard-fleets")
}

/// A read-only work tree of the named fleet at its mirror's HEAD. Do not
/// modify it: it is shared by every test (use `scratch_clone`).
pub fn fleet(name: &str) -> PathBuf {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    let _held = LOCK.get_or_init(|| Mutex::new(())).lock().unwrap();
    let cache = cache_dir();
    let work = cache.join(format!("{name}-work"));
    if work.join(".git").is_dir() {
        return work;
    }
    let tar = fleets_dir().join("mirrors").join(format!("{name}.tar"));
    // Extract and clone into unique names, then rename: a concurrent test
    // process never sees a half-made tree.
    let tmp = extract_in_cache(&tar);
    let bare = tmp.path().join(name).join("repo");
    let clone = tmp.path().join("work");
    clone_into(&bare, &clone, name);
    // A plain local clone hard-links the objects, so the extracted bare
    // copy can go with the temporary directory.
    match std::fs::rename(&clone, &work) {
        Ok(()) => {}
        Err(_) if work.join(".git").is_dir() => {}
        Err(e) => panic!("cannot place {}: {e}", work.display()),
    }
    work
}

/// `tar` (plain or gzip) extracted into a fresh temporary directory of the
/// cache (to be renamed into place by the caller).
pub fn extract_in_cache(tar: &Path) -> tempfile::TempDir {
    assert!(tar.is_file(), "missing {}", tar.display());
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(&cache)
        .unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(tar)
        .arg("-C")
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(st.success(), "tar -xf {} failed", tar.display());
    tmp
}

/// `git clone -q src dst`, failing the test with git's message.
fn clone_into(src: &Path, dst: &Path, name: &str) {
    let out = git_cmd(Path::new("/"))
        .args(["clone", "-q"])
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git clone of {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// HEAD commit id of a fleet's work tree.
pub fn fleet_head(name: &str) -> String {
    let out = git_cmd(&fleet(name))
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A private clone of a fleet that a test may change (identity set).
pub fn scratch_clone(name: &str) -> TempRepo {
    let src = fleet(name);
    let dir = tempfile::Builder::new()
        .prefix("guard-fleet-")
        .tempdir()
        .unwrap();
    // git clones into an existing directory as long as it is empty.
    clone_into(&src, dir.path(), name);
    let repo = TempRepo { dir };
    repo.git(&["config", "user.name", "Guard Test"]);
    repo.git(&["config", "user.email", "guard@example.invalid"]);
    repo.git(&["config", "commit.gpgsign", "false"]);
    repo
}

//! Which derivations failed to build before, remembered under the git dir
//! (`<git-dir>/guard/cache/failed-drvs`, one store path per line), as
//! buildbot-nix remembers failed drvPaths: a derivation's build is a pure
//! function of the derivation, so one that failed fails again. `guard
//! bisect` uses it to know `--bad` without building it again when
//! `guard build`/`check`/`ci` just saw it fail.
//!
//! Only real build failures are recorded (not evaluation errors, timeouts
//! or interruptions, which say nothing about the derivation).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The remembered failures of one repository.
pub struct FailedDrvs {
    path: PathBuf,
    known: HashSet<String>,
}

impl FailedDrvs {
    /// Loads the list (missing or unreadable: empty).
    pub fn load(git_dir: &Path) -> FailedDrvs {
        let path = git_dir.join("guard").join("cache").join("failed-drvs");
        let known = std::fs::read_to_string(&path)
            .map(|s| {
                s.lines()
                    .filter(|l| is_drv_path(l))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        FailedDrvs { path, known }
    }

    /// Whether `drv` failed to build before.
    pub fn contains(&self, drv: &str) -> bool {
        self.known.contains(drv)
    }

    /// Remembers a failed build (best effort: a read-only git dir only costs
    /// a rebuild later).
    pub fn record(&mut self, drv: &str) {
        if !is_drv_path(drv) || !self.known.insert(drv.to_string()) {
            return;
        }
        let _ = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(self.path.parent().expect("has a parent"))?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            // One short line per write: appends of whole lines do not tear.
            f.write_all(format!("{drv}\n").as_bytes())
        })();
    }
}

/// Records one failed derivation; `guard_dir` is `<git-dir>/guard` (the
/// parent of the build log directory).
pub fn record_failure(guard_dir: &Path, drv: &str) {
    if let Some(git_dir) = guard_dir.parent() {
        FailedDrvs::load(git_dir).record(drv);
    }
}

fn is_drv_path(s: &str) -> bool {
    s.starts_with('/') && s.ends_with(".drv") && !s.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reload_and_junk_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = FailedDrvs::load(dir.path());
        assert!(!m.contains("/nix/store/a-x.drv"));
        m.record("/nix/store/a-x.drv");
        m.record("/nix/store/a-x.drv");
        m.record("not a drv");
        let again = FailedDrvs::load(dir.path());
        assert!(again.contains("/nix/store/a-x.drv"));
        let text = std::fs::read_to_string(dir.path().join("guard/cache/failed-drvs")).unwrap();
        assert_eq!(text, "/nix/store/a-x.drv\n");
    }
}

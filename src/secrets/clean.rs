//! Blobs known to hold nothing a content scan can find, by blob id, kept
//! under the git dir (`<git-dir>/guard/cache/<name>`) like the parse cache.
//!
//! `guard secrets --all` looks for identities in every tracked file; on a
//! fleet with fonts and images that is megabytes to inflate on every run,
//! although a blob's content never changes. A blob is recorded only when
//! its content cannot match at any path (binary, or none of the rules'
//! keywords occurs in it), under a key naming guard's version and the
//! rules' keywords: other rules, another key, a new blob, all read again.
//! Unreadable or stale files are ignored; writing is best-effort and atomic
//! (a temporary file renamed into place).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::git::ObjectId;

/// Ids kept on disk at most (a long history accumulates blobs).
const MAX_PERSISTED: usize = 200_000;

/// A set of clean blob ids for one key.
#[derive(Debug, Default)]
pub struct CleanBlobs {
    ids: Mutex<HashSet<ObjectId>>,
    /// Where to save on drop, and under which key.
    file: Option<(PathBuf, String)>,
    dirty: AtomicBool,
}

impl CleanBlobs {
    /// An in-memory set (nothing is read or written).
    pub fn new() -> CleanBlobs {
        CleanBlobs::default()
    }

    /// The set saved at `<git_dir>/guard/cache/<name>` under `key` (empty
    /// when the file is missing, unreadable or of another key), saved back
    /// when dropped.
    pub fn persistent(git_dir: &Path, name: &str, key: &str) -> CleanBlobs {
        let path = git_dir.join("guard").join("cache").join(name);
        let mut ids = HashSet::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut lines = text.lines();
            if lines.next() == Some(key) {
                ids.extend(lines.filter_map(|l| ObjectId::from_hex(l.as_bytes()).ok()));
            }
        }
        CleanBlobs {
            ids: Mutex::new(ids),
            file: Some((path, key.to_string())),
            dirty: AtomicBool::new(false),
        }
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// Records `id` as clean (the caller read exactly that blob's bytes).
    pub fn insert(&self, id: ObjectId) {
        if self
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
        {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    fn save(&self) -> std::io::Result<()> {
        let Some((path, key)) = &self.file else {
            return Ok(());
        };
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::with_capacity(key.len() + 1 + ids.len() * 41);
        text.push_str(key);
        text.push('\n');
        for id in ids.iter().take(MAX_PERSISTED) {
            text.push_str(&id.to_string());
            text.push('\n');
        }
        let dir = path.parent().expect("the cache path has a parent");
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .map_or_else(|| "clean".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

impl Drop for CleanBlobs {
    fn drop(&mut self) {
        // Best effort: a read-only git dir only costs the next run a read.
        let _ = self.save();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_hex(format!("{n:02x}").repeat(20).as_bytes()).unwrap()
    }

    #[test]
    fn round_trips_per_key_and_ignores_garbage() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = CleanBlobs::persistent(dir.path(), "clean-test", "k1");
            assert!(!c.contains(&id(1)));
            c.insert(id(1));
            c.insert(id(2));
        }
        let again = CleanBlobs::persistent(dir.path(), "clean-test", "k1");
        assert!(again.contains(&id(1)) && again.contains(&id(2)) && !again.contains(&id(3)));
        drop(again);
        // Another key (other rules, another guard): nothing is clean.
        let other = CleanBlobs::persistent(dir.path(), "clean-test", "k2");
        assert!(!other.contains(&id(1)));
        drop(other);
        std::fs::write(dir.path().join("guard/cache/clean-test"), "k1\nnot hex\n").unwrap();
        let broken = CleanBlobs::persistent(dir.path(), "clean-test", "k1");
        assert!(!broken.contains(&id(1)));
        // The in-memory set writes nothing.
        let mem = CleanBlobs::new();
        mem.insert(id(4));
        assert!(mem.contains(&id(4)));
    }
}

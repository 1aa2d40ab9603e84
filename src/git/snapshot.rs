//! Read-only views of all tracked files at one state: the empty tree, a
//! commit's tree, the index, or the work tree.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice};

use super::{GitError, Shared};

/// Which state to take a [`Snapshot`] of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSpec {
    /// No files at all (the "before" side of a root commit or `--all`).
    Empty,
    /// A commit's tree.
    Commit(ObjectId),
    /// The index named by `GIT_INDEX_FILE` (default `.git/index`), stage 0.
    Index,
    /// Tracked files (paths from the index) as they are on disk.
    Worktree,
}

/// The kind of a tracked file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileMode {
    /// `100644`.
    Regular,
    /// `100755`.
    Executable,
    /// `120000`: the blob holds the link target; never followed.
    Symlink,
    /// `160000`: a submodule commit, no blob.
    Gitlink,
}

impl FileMode {
    /// Regular and executable files are the same type; the others differ.
    pub(crate) fn same_type(self, other: FileMode) -> bool {
        use FileMode::*;
        matches!(
            (self, other),
            (Regular | Executable, Regular | Executable) | (Symlink, Symlink) | (Gitlink, Gitlink)
        )
    }

    pub(crate) fn from_tree(mode: gix::object::tree::EntryMode) -> Option<FileMode> {
        use gix::object::tree::EntryKind;
        match mode.kind() {
            EntryKind::Tree => None,
            EntryKind::Blob => Some(FileMode::Regular),
            EntryKind::BlobExecutable => Some(FileMode::Executable),
            EntryKind::Link => Some(FileMode::Symlink),
            EntryKind::Commit => Some(FileMode::Gitlink),
        }
    }
}

/// One tracked file: its mode and blob id (commit id for gitlinks; for the
/// work tree, the id the file's current content would have as a blob).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// File type and executable bit.
    pub mode: FileMode,
    /// Blob id (or submodule commit id).
    #[serde(serialize_with = "super::diff::ser_oid")]
    pub id: ObjectId,
}

pub(crate) enum Source {
    Empty,
    Commit {
        commit: ObjectId,
        tree: ObjectId,
    },
    Index,
    /// `from_odb` lists entries whose content is not read from disk: gitlinks
    /// and skip-worktree (sparse checkout) entries, which git also takes
    /// from the index.
    Worktree {
        root: PathBuf,
        from_odb: HashSet<BString>,
    },
}

struct Inner {
    shared: Arc<Shared>,
    source: Source,
    label: String,
    /// Filled eagerly for index and work tree; lazily for commits, because
    /// commit-vs-commit diffs never need the flat list (bisect diffs many
    /// commits of large trees).
    entries: OnceLock<BTreeMap<BString, Entry>>,
}

/// A read-only view of all tracked files at one state. `Send + Sync`, cheap
/// to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Snapshot {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("label", &self.label())
            .finish()
    }
}

impl Snapshot {
    fn new(
        shared: &Arc<Shared>,
        source: Source,
        label: String,
        entries: Option<BTreeMap<BString, Entry>>,
    ) -> Snapshot {
        let cell = OnceLock::new();
        if let Some(e) = entries {
            let _ = cell.set(e);
        }
        Snapshot {
            inner: Arc::new(Inner {
                shared: shared.clone(),
                source,
                label,
                entries: cell,
            }),
        }
    }

    pub(crate) fn empty(shared: &Arc<Shared>) -> Snapshot {
        Snapshot::new(
            shared,
            Source::Empty,
            "empty tree".into(),
            Some(BTreeMap::new()),
        )
    }

    pub(crate) fn of_commit(
        shared: &Arc<Shared>,
        commit: ObjectId,
        tree: ObjectId,
        name: String,
    ) -> Snapshot {
        let label = format!("{name} ({})", short(commit));
        Snapshot::new(shared, Source::Commit { commit, tree }, label, None)
    }

    pub(crate) fn index(shared: &Arc<Shared>) -> Result<Snapshot, GitError> {
        let repo = shared.local();
        let (entries, _) = index_entries(&repo, false)?;
        Ok(Snapshot::new(
            shared,
            Source::Index,
            "index".into(),
            Some(entries),
        ))
    }

    pub(crate) fn worktree(shared: &Arc<Shared>) -> Result<Snapshot, GitError> {
        let root = shared.workdir.clone().ok_or_else(|| GitError::Bare {
            git_dir: shared.git_dir.clone(),
        })?;
        let repo = shared.local();
        let (index, from_odb) = index_entries(&repo, true)?;
        let entries = worktree_entries(
            &root,
            index,
            &from_odb,
            shared.file_mode,
            repo.object_hash(),
        )?;
        Ok(Snapshot::new(
            shared,
            Source::Worktree { root, from_odb },
            "work tree".into(),
            Some(entries),
        ))
    }

    pub(crate) fn source(&self) -> &Source {
        &self.inner.source
    }

    /// For humans: `HEAD (abc1234)`, `index`, `work tree`, `empty tree`.
    pub fn label(&self) -> String {
        self.inner.label.clone()
    }

    /// The blob id of `bytes` read for `entry`: the entry's own id for a
    /// commit or the index; hashed again for the work tree, whose file may
    /// have changed after it was hashed.
    pub fn id_of_read(&self, entry: &Entry, bytes: &[u8]) -> Option<ObjectId> {
        match self.inner.source {
            Source::Worktree { .. } => {
                gix::objs::compute_hash(entry.id.kind(), gix::object::Kind::Blob, bytes).ok()
            }
            _ => Some(entry.id),
        }
    }

    /// The commit this is a snapshot of, if any.
    pub fn commit(&self) -> Option<ObjectId> {
        match self.inner.source {
            Source::Commit { commit, .. } => Some(commit),
            _ => None,
        }
    }

    /// The root tree id, for commit snapshots.
    pub(crate) fn tree(&self) -> Option<ObjectId> {
        match self.inner.source {
            Source::Commit { tree, .. } => Some(tree),
            _ => None,
        }
    }

    /// Every tracked file: repo-relative `/`-separated path -> entry.
    ///
    /// # Panics
    /// For commit snapshots the tree is flattened on first use; if that
    /// fails (objects missing from a corrupt or partial clone) this panics.
    /// Snapshots made by [`Repo::snapshot`](super::Repo::snapshot) are
    /// checked up front; use [`Snapshot::try_entries`] to handle the error.
    pub fn entries(&self) -> &BTreeMap<BString, Entry> {
        match self.try_entries() {
            Ok(e) => e,
            Err(e) => panic!("cannot list the files of {}: {e}", self.inner.label),
        }
    }

    /// Like [`Snapshot::entries`], returning the error instead of panicking.
    pub fn try_entries(&self) -> Result<&BTreeMap<BString, Entry>, GitError> {
        if let Some(e) = self.inner.entries.get() {
            return Ok(e);
        }
        let tree = self.tree().expect("only commit snapshots are lazy");
        let repo = self.inner.shared.local();
        let mut out = BTreeMap::new();
        flatten_tree(&repo, tree, BString::default(), &mut out)?;
        // Another thread may have won the race; both results are identical.
        Ok(self.inner.entries.get_or_init(|| out))
    }

    /// The entry at `path`, if tracked.
    pub fn get(&self, path: &BStr) -> Option<&Entry> {
        self.entries().get(path)
    }

    /// Content of a file: the blob from the object database, or for the
    /// work tree the file on disk. Symlinks give their target text (never
    /// followed); gitlinks and untracked paths give `None`.
    pub fn read(&self, path: &BStr) -> Result<Option<Vec<u8>>, GitError> {
        let shared = &self.inner.shared;
        let entry = match (&self.inner.source, self.inner.entries.get()) {
            (Source::Empty, _) => return Ok(None),
            (_, Some(entries)) => entries.get(path).copied(),
            // A commit not flattened yet: look the one path up instead of
            // flattening the whole tree.
            (Source::Commit { tree, .. }, None) => lookup_path(&shared.local(), *tree, path)?,
            _ => unreachable!("index and work tree snapshots are eager"),
        };
        let Some(entry) = entry else { return Ok(None) };
        if entry.mode == FileMode::Gitlink {
            return Ok(None);
        }
        if let Source::Worktree { root, from_odb } = &self.inner.source
            && !from_odb.contains(path)
        {
            let p = root.join(to_path(path));
            return read_disk(&p, entry.mode).map(Some);
        }
        shared.read_blob(&shared.local(), entry.id).map(Some)
    }
}

fn short(id: ObjectId) -> String {
    id.to_hex_with_len(7).to_string()
}

fn tree_err(id: ObjectId, e: impl Into<gix::Error>) -> GitError {
    GitError::Gix {
        context: format!("reading tree {id}"),
        source: Box::new(e.into()),
    }
}

/// Recursively lists a tree's non-tree entries under `prefix`.
pub(crate) fn flatten_tree(
    repo: &gix::Repository,
    tree: ObjectId,
    prefix: BString,
    out: &mut BTreeMap<BString, Entry>,
) -> Result<(), GitError> {
    let mut stack = vec![(tree, prefix)];
    while let Some((id, prefix)) = stack.pop() {
        let t = repo.find_tree(id).map_err(|e| tree_err(id, e))?;
        let decoded = t.decode().map_err(|e| tree_err(id, e))?;
        for e in &decoded.entries {
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(e.filename);
            match FileMode::from_tree(e.mode) {
                None => stack.push((e.oid.to_owned(), path)),
                Some(mode) => {
                    out.insert(
                        path,
                        Entry {
                            mode,
                            id: e.oid.to_owned(),
                        },
                    );
                }
            }
        }
    }
    Ok(())
}

/// Finds one path in a tree without flattening it.
fn lookup_path(
    repo: &gix::Repository,
    tree: ObjectId,
    path: &BStr,
) -> Result<Option<Entry>, GitError> {
    let mut cur = tree;
    let mut parts = path.split_str("/").peekable();
    while let Some(name) = parts.next() {
        let t = repo.find_tree(cur).map_err(|e| tree_err(cur, e))?;
        let decoded = t.decode().map_err(|e| tree_err(cur, e))?;
        let Some(e) = decoded.entries.iter().find(|e| e.filename == name) else {
            return Ok(None);
        };
        match (FileMode::from_tree(e.mode), parts.peek().is_some()) {
            (None, true) => cur = e.oid.to_owned(),
            (Some(mode), false) => {
                return Ok(Some(Entry {
                    mode,
                    id: e.oid.to_owned(),
                }));
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Stage-0 entries of the index git would commit (`GIT_INDEX_FILE` is
/// honoured by the repository's open options). Intent-to-add entries carry
/// the empty blob id, so they read as empty new files. Sparse-index directory
/// entries are expanded from their tree. Also returns the paths whose
/// work-tree content must come from the index (gitlinks, skip-worktree).
fn index_entries(
    repo: &gix::Repository,
    include_conflicted: bool,
) -> Result<(BTreeMap<BString, Entry>, HashSet<BString>), GitError> {
    use gix::index::entry::{Flags, Mode, Stage};
    let index = repo.index_or_empty().map_err(|e| GitError::Gix {
        context: format!("reading the index {}", repo.index_path().display()),
        source: Box::new(e),
    })?;
    let mut out = BTreeMap::new();
    let mut from_odb = HashSet::new();
    for e in index.entries() {
        // Unmerged entries never reach a pre-commit hook (git refuses to
        // commit first), and stage 0 is the only content that would be
        // committed. The work tree still has a file at a conflicted path
        // (with conflict markers), so there it is kept: its content is hashed
        // from disk and only the mode of one stage is used.
        let conflicted = e.stage() != Stage::Unconflicted;
        if conflicted && !include_conflicted {
            continue;
        }
        let path: BString = e.path(&index).to_owned();
        if conflicted && out.contains_key(&path) {
            continue;
        }
        let mode = if e.mode == Mode::FILE {
            FileMode::Regular
        } else if e.mode == Mode::FILE_EXECUTABLE {
            FileMode::Executable
        } else if e.mode == Mode::SYMLINK {
            FileMode::Symlink
        } else if e.mode == Mode::COMMIT {
            FileMode::Gitlink
        } else if e.mode == Mode::DIR {
            let mut sub = BTreeMap::new();
            flatten_tree(repo, e.id, path.clone(), &mut sub)?;
            from_odb.extend(sub.keys().cloned());
            out.extend(sub);
            continue;
        } else {
            continue;
        };
        if mode == FileMode::Gitlink || e.flags.contains(Flags::SKIP_WORKTREE) {
            from_odb.insert(path.clone());
        }
        out.insert(path, Entry { mode, id: e.id });
    }
    Ok((out, from_odb))
}

/// The index's paths as they are on disk. Files are hashed as blobs in
/// parallel; a tracked file missing on disk (or replaced by a directory) is
/// left out, which the diff reports as a deletion.
///
/// Known gap: content filters (`core.autocrlf`, `.gitattributes` filters such
/// as LFS) are not applied, so such files can show as modified when git would
/// call them clean. This only affects `--worktree`, which is interactive.
fn worktree_entries(
    root: &Path,
    index: BTreeMap<BString, Entry>,
    from_odb: &HashSet<BString>,
    file_mode: bool,
    hash: gix::hash::Kind,
) -> Result<BTreeMap<BString, Entry>, GitError> {
    let items: Vec<(BString, Entry)> = index.into_iter().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = items.len().div_ceil(threads).max(64);
    let results: Vec<Result<Vec<(BString, Entry)>, GitError>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(part.len());
                    for (path, entry) in part {
                        if from_odb.contains(path) {
                            out.push((path.clone(), *entry));
                            continue;
                        }
                        let p = root.join(to_path(path.as_bstr()));
                        if let Some(e) = disk_entry(&p, *entry, file_mode, hash)? {
                            out.push((path.clone(), e));
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("hashing thread panicked"))
            .collect()
    });
    let mut out = BTreeMap::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

fn io_err(context: &'static str, path: &Path, source: std::io::Error) -> GitError {
    GitError::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
}

/// What a tracked path is on disk now; `None` when it is gone.
fn disk_entry(
    p: &Path,
    indexed: Entry,
    file_mode: bool,
    hash: gix::hash::Kind,
) -> Result<Option<Entry>, GitError> {
    use std::io::ErrorKind;
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        // NotADirectory: a parent directory was replaced by a file.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(None);
        }
        Err(e) => return Err(io_err("inspecting", p, e)),
    };
    let ft = meta.file_type();
    let (mode, data) = if ft.is_symlink() {
        (FileMode::Symlink, read_disk(p, FileMode::Symlink)?)
    } else if ft.is_file() {
        let mode = if !file_mode && indexed.mode != FileMode::Symlink {
            // core.fileMode=false: the executable bit on disk is meaningless.
            indexed.mode
        } else if is_executable(&meta) {
            FileMode::Executable
        } else {
            FileMode::Regular
        };
        (mode, read_disk(p, FileMode::Regular)?)
    } else {
        // A directory (or something stranger) where a file was tracked:
        // git reports the file as deleted.
        return Ok(None);
    };
    let id = gix::objs::compute_hash(hash, gix::object::Kind::Blob, &data).map_err(|e| {
        GitError::Gix {
            context: format!("hashing {}", p.display()),
            source: Box::new(e),
        }
    })?;
    Ok(Some(Entry { mode, id }))
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    // git looks at the owner's execute bit only.
    meta.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// File content, or a symlink's target as bytes.
fn read_disk(p: &Path, mode: FileMode) -> Result<Vec<u8>, GitError> {
    if mode == FileMode::Symlink
        && std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
    {
        let target = std::fs::read_link(p).map_err(|e| io_err("reading symlink", p, e))?;
        return Ok(target.into_os_string().into_encoded_bytes());
    }
    std::fs::read(p).map_err(|e| io_err("reading", p, e))
}

/// A repo-relative path as a filesystem path. Git paths are bytes; on Unix
/// they map 1:1 to OS paths, so non-UTF-8 names work.
#[cfg(unix)]
fn to_path(p: &BStr) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(p))
}

#[cfg(not(unix))]
fn to_path(p: &BStr) -> PathBuf {
    PathBuf::from(p.to_str_lossy().replace('/', std::path::MAIN_SEPARATOR_STR))
}

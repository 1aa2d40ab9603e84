//! The git layer: open the repository, resolve revisions, take read-only
//! [`Snapshot`]s of a commit, the index or the work tree, and diff two of them
//! into a [`ChangeSet`].
//!
//! Everything here goes through gix; nothing spawns the `git` binary, and
//! nothing writes: not the index (no stat refresh is written back), not refs,
//! not the work tree. That is what lets guard run inside a pre-commit hook
//! while git holds `index.lock`.
//!
//! Thread safety: [`Repo`] and [`Snapshot`] hold a `gix::ThreadSafeRepository`
//! and create a thread-local `gix::Repository` per operation, so analyses can
//! read snapshots from many threads at once.

mod diff;
mod hooks;
mod snapshot;
mod tempref;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use gix::ObjectId;
pub use gix::bstr::{BStr, BString, ByteSlice};

pub use diff::{Change, ChangeKind, ChangeSet};
pub use hooks::{ConfigScope, HooksDir, HooksPathSetting};
pub use snapshot::{Entry, FileMode, Snapshot, SnapshotSpec};
pub use tempref::{TEMP_REF_PREFIX, TempRef, remove_all_temp_refs};

/// Everything that can go wrong in the git layer. Messages name the path or
/// revision involved so that a one-line cause on stderr is actionable.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// No repository at or above `path`.
    #[error("not a git repository (or any of the parent directories): {path}")]
    NotARepo {
        /// The directory discovery started from.
        path: PathBuf,
        /// Why gix gave up.
        #[source]
        source: Box<gix::Error>,
    },
    /// `HEAD` is unborn: the operation needs at least one commit.
    #[error("repository has no commits yet")]
    EmptyRepo,
    /// A revision that does not resolve to any object.
    #[error("unknown revision `{rev}`")]
    UnknownRev {
        /// The revision as given.
        rev: String,
    },
    /// A revision (or a merge base) that is missing because the clone is shallow.
    #[error(
        "cannot resolve `{rev}`: the repository is a shallow clone and the commit is unknown or \
         outside the fetched history; fetch the full history with `git fetch --unshallow` \
         (in GitHub Actions set `fetch-depth: 0` on actions/checkout)"
    )]
    ShallowMissing {
        /// The revision (or description of the merge base) that is missing.
        rev: String,
    },
    /// A revision that resolves, but not to a commit (e.g. a tree or blob).
    #[error("`{rev}` does not name a commit")]
    NotACommit {
        /// The revision as given.
        rev: String,
    },
    /// Two commits without a common ancestor.
    #[error("no merge base between {a} and {b}: the histories are unrelated")]
    NoMergeBase {
        /// One side.
        a: ObjectId,
        /// The other side.
        b: ObjectId,
    },
    /// The operation needs a work tree (or an index), but the repository is bare.
    #[error("this operation needs a work tree, but the repository at {git_dir} is bare")]
    Bare {
        /// The bare repository.
        git_dir: PathBuf,
    },
    /// The repository belongs to another user and git's `safe.directory`
    /// does not list it: git refuses such a repository (its config could
    /// run programs), and so does guard, with the same remedy.
    #[error(
        "refusing to use the repository at {}: it is owned by another user and not listed in \
         git's safe.directory (git refuses it too); if you trust it, run `git config --global \
         --add safe.directory {}`",
        path.display(),
        path.display()
    )]
    UntrustedOwner {
        /// The repository's work tree (its git dir when bare).
        path: PathBuf,
    },
    /// An object the repository refers to but does not hold: a partial or
    /// blobless clone (`--filter=blob:none`) whose promisor remote was not
    /// asked, or a damaged object store.
    #[error(
        "object {id} is missing from the repository (a partial or blobless clone, or a damaged \
         object store); `git fetch` from the promisor remote or `git fsck` tells which"
    )]
    MissingObject {
        /// The missing object.
        id: ObjectId,
    },
    /// A filesystem error, with what was being done and where.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A gix error, with what was being done.
    #[error("{context}: {source}")]
    Gix {
        /// What was being done, naming the object or path.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<gix::Error>,
    },
}

impl GitError {
    fn gix(context: impl Into<String>, source: impl Into<gix::Error>) -> GitError {
        GitError::Gix {
            context: context.into(),
            source: Box::new(source.into()),
        }
    }
}

/// Shared state behind [`Repo`] and every [`Snapshot`] taken from it.
pub(crate) struct Shared {
    pub(crate) repo: gix::ThreadSafeRepository,
    pub(crate) git_dir: PathBuf,
    pub(crate) workdir: Option<PathBuf>,
    /// `core.fileMode`: when false, the executable bit on disk is ignored and
    /// the index mode is kept (as git does on filesystems without it).
    pub(crate) file_mode: bool,
    /// Identifies this repository in the per-thread handle cache.
    pub(crate) id: u64,
}

thread_local! {
    /// One gix handle per repository and thread, reused across operations:
    /// a fresh handle per call would start with empty object and pack
    /// caches (walking a history would then re-inflate the same delta
    /// chains over and over). A few repositories at most (tests open many).
    static HANDLES: std::cell::RefCell<Vec<(u64, std::rc::Rc<gix::Repository>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Gives each opened repository its own id.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Shared {
    /// This thread's handle on the repository (shared object store and
    /// config, per-thread caches), so that `Repo` and `Snapshot` stay
    /// `Send + Sync` while each thread keeps its caches warm.
    pub(crate) fn local(&self) -> std::rc::Rc<gix::Repository> {
        HANDLES.with(|h| {
            let mut h = h.borrow_mut();
            if let Some((_, r)) = h.iter().find(|(id, _)| *id == self.id) {
                return r.clone();
            }
            let mut repo = self.repo.to_thread_local();
            // Decoded trees are read again and again by diffs of nearby
            // commits; 16 MiB covers the trees of a large fleet.
            repo.object_cache_size_if_unset(16 << 20);
            let repo = std::rc::Rc::new(repo);
            if h.len() >= 4 {
                h.remove(0);
            }
            h.push((self.id, repo.clone()));
            repo
        })
    }

    /// Reads a blob by id. The empty blob is answered without the object
    /// database: intent-to-add index entries carry its id, but git does not
    /// necessarily write the object.
    pub(crate) fn read_blob(
        &self,
        repo: &gix::Repository,
        id: ObjectId,
    ) -> Result<Vec<u8>, GitError> {
        if id.is_empty_blob() {
            return Ok(Vec::new());
        }
        let obj = repo.find_object(id).map_err(|e| {
            if repo.has_object(id) {
                GitError::gix(format!("reading blob {id}"), e)
            } else {
                GitError::MissingObject { id }
            }
        })?;
        if obj.kind != gix::object::Kind::Blob {
            return Err(GitError::gix(
                format!("reading blob {id}"),
                gix::Error::from_error(gix::error::message!(
                    "object is a {}, not a blob",
                    obj.kind
                )),
            ));
        }
        Ok(obj.detach().data)
    }
}

/// An open repository. `Send + Sync` and cheap to clone.
#[derive(Clone)]
pub struct Repo {
    shared: Arc<Shared>,
}

/// The information about one commit that reports and bisect need.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    /// The commit.
    #[serde(serialize_with = "diff::ser_oid")]
    pub id: ObjectId,
    /// Its root tree.
    #[serde(serialize_with = "diff::ser_oid")]
    pub tree: ObjectId,
    /// Parents as recorded in the commit object, first parent first. In a
    /// shallow clone the boundary commits list parents that are not present.
    #[serde(serialize_with = "diff::ser_oids")]
    pub parents: Vec<ObjectId>,
    /// First line of the message.
    pub subject: String,
    /// `Name <email>`.
    pub author: String,
    /// Author time, seconds since the Unix epoch.
    pub time: i64,
}

/// Which change to judge (cli.md, "Which change").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The index (as named by `GIT_INDEX_FILE`) against `HEAD`.
    Staged,
    /// A commit against its first parent.
    Commit(String),
    /// `merge-base(base, head)` against `head` (default `HEAD`).
    Range {
        /// The branch being merged into.
        base: String,
        /// The tip; `HEAD` when `None`.
        head: Option<String>,
    },
    /// Tracked work-tree files as they are on disk against `HEAD`.
    Worktree,
    /// Everything in `HEAD`, as if added to an empty repository.
    All,
}

impl Selector {
    /// Whether the change is, or is about to become, a commit (so readers
    /// of `self.rev` change): an empty staged or work-tree change makes none.
    pub fn makes_revision(&self, changes: &ChangeSet) -> bool {
        match self {
            Selector::Staged | Selector::Worktree => !changes.is_empty(),
            _ => true,
        }
    }
}

impl Repo {
    /// Discovers the repository containing `dir` (any subdirectory works).
    ///
    /// Honours the repository-locating environment (`GIT_DIR`,
    /// `GIT_WORK_TREE`, `GIT_INDEX_FILE`, `GIT_SHALLOW_FILE`, ...): git
    /// exports them to hooks, and `GIT_INDEX_FILE` is how `git commit -a` or
    /// `git commit <paths>` points the pre-commit hook at the index actually
    /// being committed.
    pub fn discover(dir: &Path) -> Result<Repo, GitError> {
        let repo =
            gix::ThreadSafeRepository::discover_with_environment_overrides(dir).map_err(|e| {
                GitError::NotARepo {
                    path: dir.to_path_buf(),
                    source: Box::new(e),
                }
            })?;
        let local = repo.to_thread_local();
        // gix opens another user's repository with reduced trust (its
        // config partly ignored) where git stops; guard follows git so that
        // nix, which runs git on the same repository, and the user see one
        // rule.
        if local.git_dir_trust() != gix::sec::Trust::Full {
            return Err(GitError::UntrustedOwner {
                path: local.workdir().unwrap_or(local.git_dir()).to_path_buf(),
            });
        }
        let file_mode = local
            .config_snapshot()
            .boolean("core.fileMode")
            .unwrap_or(true);
        let shared = Shared {
            git_dir: local.git_dir().to_path_buf(),
            workdir: local.workdir().map(Path::to_path_buf),
            file_mode,
            repo,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        Ok(Repo {
            shared: Arc::new(shared),
        })
    }

    /// The work tree root, `None` for a bare repository.
    pub fn workdir(&self) -> Option<&Path> {
        self.shared.workdir.as_deref()
    }

    /// The repository's git directory (`.git`, or the worktree's private one).
    pub fn git_dir(&self) -> &Path {
        &self.shared.git_dir
    }

    /// Whether the clone is shallow (history cut off at some depth).
    pub fn is_shallow(&self) -> bool {
        self.shared.local().is_shallow().unwrap_or(false)
    }

    /// Resolves any rev-spec (full or short sha, branch, tag, `HEAD~2`, ...)
    /// to a commit id, peeling annotated tags.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId, GitError> {
        let repo = self.shared.local();
        let unresolved = || self.unresolved(&repo, rev);
        let id = repo
            .rev_parse_single(rev.as_bytes().as_bstr())
            .map_err(|_| unresolved())?
            .detach();
        // A full hex id parses without touching the object database, so its
        // existence is checked here.
        let obj = repo.find_object(id).map_err(|_| unresolved())?;
        let commit =
            obj.peel_to_kind(gix::object::Kind::Commit)
                .map_err(|_| GitError::NotACommit {
                    rev: rev.to_string(),
                })?;
        Ok(commit.id)
    }

    /// Why `rev` did not resolve: an empty repository, a shallow clone (the
    /// likely cause in CI, so the message says how to fix it), or simply unknown.
    fn unresolved(&self, repo: &gix::Repository, rev: &str) -> GitError {
        let head_unborn = repo.head().map(|h| h.is_unborn()).unwrap_or(false);
        if head_unborn && (rev == "@" || rev.starts_with("HEAD") || rev.starts_with("@{")) {
            GitError::EmptyRepo
        } else if repo.is_shallow().unwrap_or(false) {
            GitError::ShallowMissing {
                rev: rev.to_string(),
            }
        } else {
            GitError::UnknownRev {
                rev: rev.to_string(),
            }
        }
    }

    /// The commit `HEAD` points to; `None` when `HEAD` is unborn (empty repository).
    pub fn head_commit(&self) -> Result<Option<ObjectId>, GitError> {
        let repo = self.shared.local();
        let head = repo.head().map_err(|e| GitError::gix("reading HEAD", e))?;
        if head.is_unborn() {
            return Ok(None);
        }
        let id = head
            .try_into_peeled_id()
            .map_err(|e| GitError::gix("peeling HEAD", e))?;
        match id {
            None => Ok(None),
            Some(id) => {
                let obj = repo
                    .find_object(id.detach())
                    .map_err(|e| GitError::gix(format!("reading HEAD commit {id}"), e))?;
                let commit = obj
                    .peel_to_kind(gix::object::Kind::Commit)
                    .map_err(|_| GitError::NotACommit { rev: "HEAD".into() })?;
                Ok(Some(commit.id))
            }
        }
    }

    fn require_head(&self) -> Result<ObjectId, GitError> {
        self.head_commit()?.ok_or(GitError::EmptyRepo)
    }

    /// The best common ancestor of `a` and `b`.
    pub fn merge_base(&self, a: ObjectId, b: ObjectId) -> Result<ObjectId, GitError> {
        let repo = self.shared.local();
        let shallow = || GitError::ShallowMissing {
            rev: format!("merge-base of {a} and {b}"),
        };
        match repo.merge_base(a, b) {
            Ok(Some(id)) => Ok(id.detach()),
            Ok(None) if self.is_shallow() => Err(shallow()),
            Ok(None) => Err(GitError::NoMergeBase { a, b }),
            Err(_) if self.is_shallow() => Err(shallow()),
            Err(e) => Err(GitError::gix(
                format!("computing the merge base of {a} and {b}"),
                e,
            )),
        }
    }

    /// Id, tree, parents, subject, author and time of a commit.
    pub fn commit_info(&self, id: ObjectId) -> Result<CommitInfo, GitError> {
        let repo = self.shared.local();
        let commit = find_commit(&repo, id)?;
        let ctx = || format!("decoding commit {id}");
        let decoded = commit.decode().map_err(|e| GitError::gix(ctx(), e))?;
        let subject = decoded.message_summary().to_str_lossy().into_owned();
        let author = decoded.author().map_err(|e| GitError::gix(ctx(), e))?;
        let time = author.time().map(|t| t.seconds).unwrap_or(0);
        Ok(CommitInfo {
            id,
            tree: decoded.tree(),
            parents: decoded.parents().collect(),
            subject,
            author: format!(
                "{} <{}>",
                author.name.trim().to_str_lossy(),
                author.email.trim().to_str_lossy()
            ),
            time,
        })
    }

    /// The first-parent chain from `from` (inclusive), newest first, stopping
    /// before `until` (exclusive) when given, else at the root. In a shallow
    /// clone the walk also stops at the shallow boundary, like `git log`; if
    /// `until` was given and not reached by then, that is `ShallowMissing`.
    pub fn first_parent_history(
        &self,
        from: ObjectId,
        until: Option<ObjectId>,
    ) -> Result<Vec<ObjectId>, GitError> {
        let repo = self.shared.local();
        let boundary = shallow_boundary(&repo);
        let mut out = Vec::new();
        let mut cur = Some(from);
        let mut cut_off = false;
        while let Some(id) = cur {
            if Some(id) == until {
                return Ok(out);
            }
            out.push(id);
            let commit = find_commit(&repo, id)?;
            cur = commit.parent_ids().next().map(|p| p.detach());
            if cur.is_some() && boundary.contains(&id) {
                cut_off = true;
                break;
            }
        }
        match until {
            Some(u) if cut_off => Err(GitError::ShallowMissing { rev: u.to_string() }),
            _ => Ok(out),
        }
    }

    /// The bytes of a blob.
    pub fn read_blob(&self, id: ObjectId) -> Result<Vec<u8>, GitError> {
        self.shared.read_blob(&self.shared.local(), id)
    }

    /// A read-only view of all tracked files at one state.
    pub fn snapshot(&self, spec: SnapshotSpec) -> Result<Snapshot, GitError> {
        let snap = match spec {
            SnapshotSpec::Empty => Snapshot::empty(&self.shared),
            SnapshotSpec::Commit(id) => {
                let label = match self.head_commit()? {
                    Some(h) if h == id => "HEAD".to_string(),
                    _ => "commit".to_string(),
                };
                let snap = self.commit_snapshot(id, label)?;
                // Surface a broken tree here, where errors can be returned,
                // rather than later from `entries()`.
                snap.try_entries()?;
                snap
            }
            SnapshotSpec::Index => Snapshot::index(&self.shared)?,
            SnapshotSpec::Worktree => Snapshot::worktree(&self.shared)?,
        };
        Ok(snap)
    }

    fn commit_snapshot(&self, id: ObjectId, label: String) -> Result<Snapshot, GitError> {
        let repo = self.shared.local();
        let commit = find_commit(&repo, id)?;
        let tree = commit
            .tree_id()
            .map_err(|e| GitError::gix(format!("reading the tree of commit {id}"), e))?
            .detach();
        Ok(Snapshot::of_commit(&self.shared, id, tree, label))
    }

    fn head_snapshot_or_empty(&self) -> Result<Snapshot, GitError> {
        match self.head_commit()? {
            Some(h) => self.commit_snapshot(h, "HEAD".into()),
            None => Ok(Snapshot::empty(&self.shared)),
        }
    }

    /// The change a selector denotes (cli.md, "Which change").
    pub fn change_set(&self, sel: &Selector) -> Result<ChangeSet, GitError> {
        let (old, new) = match sel {
            Selector::Staged => {
                self.require_workdir()?;
                (
                    self.head_snapshot_or_empty()?,
                    Snapshot::index(&self.shared)?,
                )
            }
            Selector::Worktree => {
                self.require_workdir()?;
                (
                    self.head_snapshot_or_empty()?,
                    Snapshot::worktree(&self.shared)?,
                )
            }
            Selector::All => {
                let head = self.require_head()?;
                (
                    Snapshot::empty(&self.shared),
                    self.commit_snapshot(head, "HEAD".into())?,
                )
            }
            Selector::Commit(rev) => {
                self.require_head()?;
                let id = self.resolve(rev)?;
                let repo = self.shared.local();
                let parent = find_commit(&repo, id)?
                    .parent_ids()
                    .next()
                    .map(|p| p.detach());
                let old = match parent {
                    // A boundary commit of a shallow clone lists a parent we
                    // do not have: diffing it against the empty tree would
                    // claim every file changed, so say what is missing.
                    Some(_) if shallow_boundary(&repo).contains(&id) => {
                        return Err(GitError::ShallowMissing {
                            rev: format!("{rev}^"),
                        });
                    }
                    Some(p) => self.commit_snapshot(p, format!("{rev}^"))?,
                    None => Snapshot::empty(&self.shared),
                };
                (old, self.commit_snapshot(id, rev.clone())?)
            }
            Selector::Range { base, head } => {
                self.require_head()?;
                let head_rev = head.as_deref().unwrap_or("HEAD");
                let head_id = self.resolve(head_rev)?;
                let base_id = self.resolve(base)?;
                let mb = self.merge_base(base_id, head_id).map_err(|e| match e {
                    GitError::ShallowMissing { .. } => GitError::ShallowMissing {
                        rev: format!("merge-base of {base} and {head_rev}"),
                    },
                    other => other,
                })?;
                (
                    self.commit_snapshot(mb, format!("merge-base of {base} and {head_rev}"))?,
                    self.commit_snapshot(head_id, head_rev.to_string())?,
                )
            }
        };
        self.diff_checked(old, new)
    }

    /// Diffs two snapshots. Commit-vs-commit diffs walk the two trees and skip
    /// identical subtrees; other pairs compare the flattened entry maps.
    ///
    /// Deviation from the first sketch of this API: returns a `Result`,
    /// because reading trees can fail (a corrupt or partial clone).
    pub fn diff(&self, old: Snapshot, new: Snapshot) -> Result<ChangeSet, GitError> {
        self.diff_checked(old, new)
    }

    fn diff_checked(&self, old: Snapshot, new: Snapshot) -> Result<ChangeSet, GitError> {
        let repo = self.shared.local();
        diff::diff(&repo, old, new)
    }

    fn require_workdir(&self) -> Result<&Path, GitError> {
        self.workdir().ok_or_else(|| GitError::Bare {
            git_dir: self.git_dir().to_path_buf(),
        })
    }
}

pub(crate) fn find_commit(
    repo: &gix::Repository,
    id: ObjectId,
) -> Result<gix::Commit<'_>, GitError> {
    let obj = repo
        .find_object(id)
        .map_err(|e| GitError::gix(format!("reading commit {id}"), e))?;
    if obj.kind != gix::object::Kind::Commit {
        return Err(GitError::NotACommit {
            rev: id.to_string(),
        });
    }
    Ok(obj.into_commit())
}

/// Commits whose parents are cut off by a shallow clone (empty when not shallow).
fn shallow_boundary(repo: &gix::Repository) -> Vec<ObjectId> {
    match repo.shallow_commits() {
        Ok(Some(commits)) => commits.iter().copied().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn repo_and_snapshot_are_send_sync() {
        assert_send_sync::<super::Repo>();
        assert_send_sync::<super::Snapshot>();
        assert_send_sync::<super::ChangeSet>();
    }
}

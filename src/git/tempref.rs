//! Temporary commits of the index, so that nix can build exactly the staged
//! content: `git+file://<repo>?ref=refs/guard/<pid>-<n>&rev=<commit>`.
//!
//! The commit is made from the index (as named by `GIT_INDEX_FILE`; the
//! repository is opened with git's environment overrides) with
//! `HEAD` as its parent, pointed to by `refs/guard/<pid>-<n>`, and the ref is
//! deleted when the [`TempRef`] is dropped, or by [`remove_all_temp_refs`]
//! from a signal handler. Nothing else changes: objects are written to the
//! object database (unreferenced afterwards, collected by `git gc`), but no
//! user ref, no index and no file of the work tree is touched.
//!
//! Deterministic on purpose: author and committer are fixed and the time is
//! `HEAD`'s commit time, so the same staged content gives the same commit id
//! and nix's fetcher cache is reused between runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gix::ObjectId;
use gix::bstr::{BString, ByteSlice};
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};

use super::{GitError, Repo, Shared};

/// The namespace of guard's temporary refs.
pub const TEMP_REF_PREFIX: &str = "refs/guard/";

/// A temporary commit of the index and the ref that keeps it alive; the ref
/// is deleted on drop.
pub struct TempRef {
    shared: Arc<Shared>,
    name: String,
    commit: ObjectId,
}

impl std::fmt::Debug for TempRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempRef")
            .field("name", &self.name)
            .field("commit", &self.commit)
            .finish()
    }
}

/// Refs created by this process and not yet removed, for cleanup from a
/// signal handler (which cannot reach the `TempRef`s on other stacks).
static LIVE: Mutex<Vec<(Arc<Shared>, String)>> = Mutex::new(Vec::new());
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn live() -> std::sync::MutexGuard<'static, Vec<(Arc<Shared>, String)>> {
    // Entries are pushed and removed whole; a poisoned lock is still consistent.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

impl TempRef {
    /// The full ref name, `refs/guard/<pid>-<n>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The temporary commit.
    pub fn commit(&self) -> ObjectId {
        self.commit
    }
}

impl Drop for TempRef {
    fn drop(&mut self) {
        let mut l = live();
        if let Some(i) = l.iter().position(|(_, n)| *n == self.name) {
            l.remove(i);
            drop(l);
            // Nothing useful can be done about a failure while dropping; the
            // ref is in guard's own namespace and harmless if left behind.
            let _ = delete_ref(&self.shared, &self.name);
        }
    }
}

/// Deletes every temporary ref this process created and has not removed
/// yet. Safe to call from a signal-handling thread, and more than once.
pub fn remove_all_temp_refs() {
    let taken: Vec<(Arc<Shared>, String)> = std::mem::take(&mut *live());
    for (shared, name) in taken {
        let _ = delete_ref(&shared, &name);
    }
}

fn delete_ref(shared: &Shared, name: &str) -> Result<(), GitError> {
    let repo = shared.local();
    let full = full_name(name)?;
    let edit = RefEdit {
        change: Change::Delete {
            expected: PreviousValue::MustExist,
            log: RefLog::AndReference,
        },
        name: full,
        deref: false,
    };
    repo.edit_references_as(Some(edit), Some(identity_ref(&mut Default::default(), 0)))
        .map_err(|e| GitError::gix(format!("deleting {name}"), e))?;
    Ok(())
}

fn full_name(name: &str) -> Result<FullName, GitError> {
    name.try_into()
        .map_err(|e: gix::validate::reference::name::Error| {
            GitError::gix(format!("ref {name}"), gix::Error::from_error(e))
        })
}

/// guard's fixed identity for temporary commits and reflog entries (a
/// repository without `user.name` must work: CI runners have none).
fn identity_ref(buf: &mut gix::date::parse::TimeBuf, time: i64) -> gix::actor::SignatureRef<'_> {
    gix::actor::SignatureRef {
        name: b"guard".as_bstr(),
        email: b"guard@localhost".as_bstr(),
        time: gix::date::Time::new(time, 0).to_str(buf),
    }
}

impl Repo {
    /// Commits the index (stage 0, as named by `GIT_INDEX_FILE`) as a child
    /// of `HEAD` (no parent in an empty repository) and points a new
    /// `refs/guard/<pid>-<n>` at it. The ref lives as long as the returned
    /// value (or until [`remove_all_temp_refs`]).
    pub fn temp_commit_of_index(&self) -> Result<TempRef, GitError> {
        let shared = &self.shared;
        let repo = shared.local();
        let head = self.head_commit()?;
        let time = match head {
            Some(h) => self.commit_info(h)?.time,
            None => 0,
        };
        let tree = write_tree(&repo)?;
        let mut buf = Default::default();
        let sig = identity_ref(&mut buf, time);
        let commit = gix::objs::Commit {
            message: BString::from("guard: staged snapshot (temporary)\n"),
            tree,
            author: sig.into(),
            committer: sig.into(),
            encoding: None,
            parents: head.into_iter().collect(),
            extra_headers: Vec::new(),
        };
        let id = repo
            .write_object(&commit)
            .map_err(|e| GitError::gix("writing the temporary commit of the index", e))?
            .detach();

        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{TEMP_REF_PREFIX}{}-{n}", std::process::id());
        let full = full_name(&name)?;
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: "guard: staged snapshot".into(),
                },
                expected: PreviousValue::MustNotExist,
                new: Target::Object(id),
            },
            name: full,
            deref: false,
        };
        // Registered before the ref exists, so a signal arriving in between
        // still removes it (deleting a missing ref is a harmless error).
        live().push((shared.clone(), name.clone()));
        if let Err(e) = repo.edit_references_as(Some(edit), Some(sig)) {
            live().retain(|(_, n)| *n != name);
            return Err(GitError::gix(format!("creating {name}"), e));
        }
        Ok(TempRef {
            shared: shared.clone(),
            name,
            commit: id,
        })
    }
}

/// Writes the index as a tree, like `git write-tree`: stage-0 entries only
/// (unmerged entries are an error), intent-to-add entries left out (they
/// have no content yet and `git commit` does not record them), sparse
/// directory entries kept as the trees they name.
fn write_tree(repo: &gix::Repository) -> Result<ObjectId, GitError> {
    use gix::index::entry::{Flags, Mode, Stage};
    use gix::object::tree::EntryKind;
    let index = repo.index_or_empty().map_err(|e| GitError::Gix {
        context: format!("reading the index {}", repo.index_path().display()),
        source: Box::new(e),
    })?;
    let empty = ObjectId::empty_tree(repo.object_hash());
    let mut editor = repo
        .edit_tree(empty)
        .map_err(|e| GitError::gix("starting a tree from the index", e))?;
    for e in index.entries() {
        let path = e.path(&index);
        if e.stage() != Stage::Unconflicted {
            return Err(GitError::gix(
                format!("committing the index: {path} is unmerged"),
                gix::Error::from_error(gix::error::message!("resolve the conflict first")),
            ));
        }
        if e.flags.contains(Flags::INTENT_TO_ADD) {
            continue;
        }
        let kind = if e.mode == Mode::FILE {
            EntryKind::Blob
        } else if e.mode == Mode::FILE_EXECUTABLE {
            EntryKind::BlobExecutable
        } else if e.mode == Mode::SYMLINK {
            EntryKind::Link
        } else if e.mode == Mode::COMMIT {
            EntryKind::Commit
        } else if e.mode == Mode::DIR {
            EntryKind::Tree
        } else {
            continue;
        };
        editor
            .upsert(path, kind, e.id)
            .map_err(|err| GitError::gix(format!("adding {path} to the tree of the index"), err))?;
    }
    let id = editor
        .write()
        .map_err(|e| GitError::gix("writing the tree of the index", e))?;
    Ok(id.detach())
}

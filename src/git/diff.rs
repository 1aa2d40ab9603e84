//! Diffing two snapshots into a [`ChangeSet`], with exact rename detection.

use std::collections::{BTreeMap, HashMap};

use gix::ObjectId;
use gix::bstr::{BString, ByteSlice};
use serde::ser::{SerializeStruct, Serializer};

use super::GitError;
use super::snapshot::{Entry, FileMode, Snapshot, Source};

/// What happened to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// New path.
    Added,
    /// Path removed.
    Deleted,
    /// Content changed (the mode may have changed too, see `old`/`new`).
    Modified,
    /// Same blob id, mode differs (e.g. `chmod +x`).
    ModeChanged,
    /// File type changed: regular <-> symlink <-> gitlink.
    TypeChanged,
    /// Exact rename: the same blob id was deleted at `from` and added at `path`.
    Renamed {
        /// The old path.
        from: BString,
    },
}

impl ChangeKind {
    /// Stable lowercase name used in JSON: `added`, `deleted`, `modified`,
    /// `mode_changed`, `type_changed`, `renamed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Modified => "modified",
            ChangeKind::ModeChanged => "mode_changed",
            ChangeKind::TypeChanged => "type_changed",
            ChangeKind::Renamed { .. } => "renamed",
        }
    }
}

impl serde::Serialize for ChangeKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Repo-relative path (the new path for renames).
    pub path: BString,
    /// What happened.
    pub kind: ChangeKind,
    /// The entry before (`None` when added).
    pub old: Option<Entry>,
    /// The entry after (`None` when deleted).
    pub new: Option<Entry>,
}

/// JSON: `{"path", "kind", "from"?, "old"?, "new"?}`, paths lossily UTF-8.
impl serde::Serialize for Change {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Change", 5)?;
        st.serialize_field("path", &self.path.to_str_lossy())?;
        st.serialize_field("kind", &self.kind)?;
        if let ChangeKind::Renamed { from } = &self.kind {
            st.serialize_field("from", &from.to_str_lossy())?;
        }
        st.serialize_field("old", &self.old)?;
        st.serialize_field("new", &self.new)?;
        st.end()
    }
}

pub(crate) fn ser_oid<S: Serializer>(id: &ObjectId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex().to_string())
}

pub(crate) fn ser_oids<S: Serializer>(ids: &[ObjectId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(|id| id.to_hex().to_string()))
}

/// The difference between two snapshots.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    /// The state before.
    pub old: Snapshot,
    /// The state after.
    pub new: Snapshot,
    /// Every change, sorted by path.
    pub changes: Vec<Change>,
}

impl ChangeSet {
    /// Every path touched, sorted and unique: both sides of renames count
    /// (cli.md: "Renames count as both paths; deletions count").
    pub fn paths(&self) -> Vec<BString> {
        let mut out: Vec<BString> = Vec::with_capacity(self.changes.len());
        for c in &self.changes {
            out.push(c.path.clone());
            if let ChangeKind::Renamed { from } = &c.kind {
                out.push(from.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

type Pairs = BTreeMap<BString, (Option<Entry>, Option<Entry>)>;

pub(crate) fn diff(
    repo: &gix::Repository,
    old: Snapshot,
    new: Snapshot,
) -> Result<ChangeSet, GitError> {
    let tree_of = |s: &Snapshot| match s.source() {
        Source::Empty => Some(ObjectId::empty_tree(repo.object_hash())),
        Source::Commit { tree, .. } => Some(*tree),
        _ => None,
    };
    let pairs = match (tree_of(&old), tree_of(&new)) {
        (Some(a), Some(b)) => tree_pairs(repo, a, b)?,
        _ => map_pairs(old.try_entries()?, new.try_entries()?),
    };
    Ok(ChangeSet {
        old,
        new,
        changes: classify(pairs),
    })
}

/// Tree-to-tree: gix walks both trees breadth-first and never descends into
/// subtrees whose ids are equal, so cost scales with the change, not the repo.
fn tree_pairs(repo: &gix::Repository, a: ObjectId, b: ObjectId) -> Result<Pairs, GitError> {
    use gix::diff::tree::recorder::Change as R;
    let err = |e: gix::diff::tree::Error| GitError::Gix {
        context: format!("diffing trees {a} and {b}"),
        source: Box::new(gix::Error::from_error(e)),
    };
    let mut pairs = Pairs::new();
    if a == b {
        return Ok(pairs);
    }
    let (mut buf_a, mut buf_b) = (Vec::new(), Vec::new());
    let load = |id: ObjectId, buf: &mut Vec<u8>| -> Result<(), GitError> {
        buf.clear();
        if id.is_empty_tree() {
            return Ok(());
        }
        let t = repo.find_object(id).map_err(|e| GitError::Gix {
            context: format!("reading tree {id}"),
            source: Box::new(e),
        })?;
        buf.extend_from_slice(&t.data);
        Ok(())
    };
    load(a, &mut buf_a)?;
    load(b, &mut buf_b)?;
    let mut rec = gix::diff::tree::Recorder::default();
    gix::diff::tree(
        gix::objs::TreeRefIter::from_bytes(&buf_a, repo.object_hash()),
        gix::objs::TreeRefIter::from_bytes(&buf_b, repo.object_hash()),
        gix::diff::tree::State::default(),
        &repo.objects,
        &mut rec,
    )
    .map_err(err)?;
    for r in rec.records {
        // Tree entries are bookkeeping: their contents show up as their own
        // records. A file<->directory swap yields a file record plus records
        // for the directory's files, which is what git reports too.
        match r {
            R::Addition {
                entry_mode,
                oid,
                path,
                ..
            } => {
                if let Some(mode) = FileMode::from_tree(entry_mode) {
                    pairs.entry(path).or_default().1 = Some(Entry { mode, id: oid });
                }
            }
            R::Deletion {
                entry_mode,
                oid,
                path,
                ..
            } => {
                if let Some(mode) = FileMode::from_tree(entry_mode) {
                    pairs.entry(path).or_default().0 = Some(Entry { mode, id: oid });
                }
            }
            R::Modification {
                previous_entry_mode,
                previous_oid,
                entry_mode,
                oid,
                path,
            } => {
                let old = FileMode::from_tree(previous_entry_mode).map(|mode| Entry {
                    mode,
                    id: previous_oid,
                });
                let new = FileMode::from_tree(entry_mode).map(|mode| Entry { mode, id: oid });
                if old.is_some() || new.is_some() {
                    let slot = pairs.entry(path).or_default();
                    if old.is_some() {
                        slot.0 = old;
                    }
                    if new.is_some() {
                        slot.1 = new;
                    }
                }
            }
        }
    }
    Ok(pairs)
}

/// Flat maps (index or work tree on one side): a sorted merge join.
fn map_pairs(old: &BTreeMap<BString, Entry>, new: &BTreeMap<BString, Entry>) -> Pairs {
    let mut pairs = Pairs::new();
    for (p, o) in old {
        match new.get(p) {
            Some(n) if n == o => {}
            n => {
                pairs.insert(p.clone(), (Some(*o), n.copied()));
            }
        }
    }
    for (p, n) in new {
        if !old.contains_key(p) {
            pairs.insert(p.clone(), (None, Some(*n)));
        }
    }
    pairs
}

/// Turns (old, new) pairs into changes and pairs exact renames.
fn classify(pairs: Pairs) -> Vec<Change> {
    let mut changes: Vec<Change> = Vec::with_capacity(pairs.len());
    for (path, (old, new)) in pairs {
        let kind = match (old, new) {
            (None, None) => continue,
            (None, Some(_)) => ChangeKind::Added,
            (Some(_), None) => ChangeKind::Deleted,
            (Some(o), Some(n)) if o == n => continue,
            (Some(o), Some(n)) if !o.mode.same_type(n.mode) => ChangeKind::TypeChanged,
            (Some(o), Some(n)) if o.id == n.id => ChangeKind::ModeChanged,
            _ => ChangeKind::Modified,
        };
        changes.push(Change {
            path,
            kind,
            old,
            new,
        });
    }
    detect_renames(&mut changes);
    changes
}

/// Exact renames: a deleted and an added path with the same blob id and file
/// type. Empty files are never paired (every empty file has the same id, so
/// a pairing would be arbitrary; git skips them too). When several deleted
/// paths share the id, one with the same file name is preferred.
fn detect_renames(changes: &mut Vec<Change>) {
    let mut deleted: HashMap<(ObjectId, bool), Vec<usize>> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        if let (ChangeKind::Deleted, Some(o)) = (&c.kind, c.old)
            && renameable(o)
        {
            deleted
                .entry((o.id, o.mode == FileMode::Symlink))
                .or_default()
                .push(i);
        }
    }
    if deleted.is_empty() {
        return;
    }
    let mut consumed = vec![false; changes.len()];
    let mut renames: Vec<(usize, usize)> = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        let (ChangeKind::Added, Some(n)) = (&c.kind, c.new) else {
            continue;
        };
        if !renameable(n) {
            continue;
        }
        let Some(cands) = deleted.get_mut(&(n.id, n.mode == FileMode::Symlink)) else {
            continue;
        };
        let name = file_name(&c.path);
        let pick = cands
            .iter()
            .position(|&d| file_name(&changes[d].path) == name)
            .unwrap_or(0);
        if cands.is_empty() {
            continue;
        }
        let d = cands.remove(pick);
        consumed[d] = true;
        renames.push((i, d));
    }
    for (added, del) in renames {
        let from = changes[del].path.clone();
        changes[added].old = changes[del].old;
        changes[added].kind = ChangeKind::Renamed { from };
    }
    let mut i = 0;
    changes.retain(|_| {
        let keep = !consumed[i];
        i += 1;
        keep
    });
}

fn renameable(e: Entry) -> bool {
    e.mode != FileMode::Gitlink && !e.id.is_empty_blob()
}

fn file_name(p: &BString) -> &[u8] {
    p.rsplit_str("/").next().unwrap_or(p.as_slice())
}

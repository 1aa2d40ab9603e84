//! The import graph of one snapshot: which files each reachable Nix file
//! depends on, and how (see [`DepKind`]). Built from the snapshot being
//! judged (a commit, the index), never the disk, and only from tracked
//! files: that is all a flake can see.
//!
//! Parsing is cached by (blob id, path), so a range or a bisect re-parses
//! only the files that changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::Serialize;

use crate::git::{BStr, BString, ByteSlice, FileMode, ObjectId, Snapshot};
use crate::nix::parse::{self, FileRefs, RefKind, Target};

/// How a file's evaluation depends on a path (nix-references.md, section 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DepKind {
    /// The content of exactly this file.
    File,
    /// Everything at or below this path (names, contents, modes).
    Copy,
    /// Which entries exist directly inside this directory, and their types.
    List,
    /// Whether this path exists, and its type.
    Exists,
    /// Any tracked file.
    Tree,
    /// The revision itself: every commit.
    Rev,
    /// The whole source's store path, as a string: any change. A stamp,
    /// like Rev: it names the source, it does not read it.
    TreePath,
}

impl DepKind {
    /// Stamps change a host's drvPath without changing any byte its build
    /// reads (the revision, the source's store path).
    pub fn is_stamp(self) -> bool {
        matches!(self, DepKind::Rev | DepKind::TreePath)
    }
}

/// One dependency of a file, with the reference that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dep {
    pub kind: DepKind,
    /// Repository-relative path ("" = the root); empty for Tree and Rev.
    pub path: String,
    /// Index into the file's [`FileRefs::refs`], if it came from one.
    pub reference: Option<usize>,
    /// For a computed path, the constant end of the file name: only paths
    /// below `path` ending so are meant.
    pub suffix: Option<String>,
}

/// A parsed, reachable file.
#[derive(Debug, Clone)]
pub struct Node {
    pub refs: Arc<FileRefs>,
    /// Expanded dependencies.
    pub deps: Vec<Dep>,
    /// Files this one evaluates (imports, or may import): the graph edges,
    /// each with the index of the dep that created it.
    pub edges: Vec<(String, usize)>,
}

/// Caches parse results across snapshots, keyed by blob id and path (the
/// same bytes at another path resolve relative paths differently).
///
/// A cache made with [`ParseCache::persistent`] also lives on disk, under
/// the git dir (never the work tree), so the next run parses only the files
/// that changed since: parsing is most of the cost of `guard affected` on a
/// small fleet. Unreadable or stale cache files are ignored; writing is
/// best-effort and atomic (a temporary file renamed into place), so
/// concurrent guard processes never see a torn file.
#[derive(Default)]
pub struct ParseCache {
    map: Mutex<HashMap<(ObjectId, String), Arc<FileRefs>>>,
    /// Where to save on drop, and for which flake directory the entries were
    /// computed (`self` resolves against it).
    file: Option<(std::path::PathBuf, String)>,
    dirty: std::sync::atomic::AtomicBool,
}

/// On-disk format of the persistent cache: postcard, a compact binary
/// serde format, because loading it is on every run's path (JSON took a
/// tenth of `guard affected` on a small fleet).
#[derive(serde::Serialize, serde::Deserialize)]
struct CacheFile {
    /// guard's version and the format: any change invalidates the cache.
    version: String,
    flake_dir: String,
    entries: Vec<(String, String, FileRefs)>,
}

/// Files this process parsed (cache misses), for `GUARD_DEBUG_PIPELINE`.
static PARSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many files this process parsed rather than found in the cache.
pub fn files_parsed() -> usize {
    PARSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Entries kept on disk at most (a long history accumulates blobs).
const MAX_PERSISTED: usize = 50_000;

/// This guard binary, for caches whose entries depend on guard's code (not
/// only on the parser's format): its version, size and modification time,
/// so that any rebuild starts them afresh. None when the executable cannot
/// be read: such caches are then not kept.
pub fn build_identity() -> Option<&'static str> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let meta = std::fs::metadata(std::env::current_exe().ok()?).ok()?;
        let mtime = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(format!(
            "{}-{}-{}",
            env!("CARGO_PKG_VERSION"),
            meta.len(),
            mtime.as_nanos()
        ))
    })
    .as_deref()
}

fn cache_version() -> String {
    format!("{}-refs-33", env!("CARGO_PKG_VERSION"))
}

impl ParseCache {
    /// An in-memory cache.
    pub fn new() -> ParseCache {
        ParseCache::default()
    }

    /// A cache loaded from (and saved back to, when dropped)
    /// `<git_dir>/guard/cache/nix-refs.bin`.
    pub fn persistent(git_dir: &std::path::Path, flake_dir: &str) -> ParseCache {
        let path = git_dir.join("guard").join("cache").join("nix-refs.bin");
        let mut map = HashMap::new();
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(file) = postcard::from_bytes::<CacheFile>(&bytes)
            && file.version == cache_version()
            && file.flake_dir == flake_dir
        {
            for (oid, p, refs) in file.entries {
                if let Ok(id) = ObjectId::from_hex(oid.as_bytes()) {
                    map.insert((id, p), Arc::new(refs));
                }
            }
        }
        ParseCache {
            map: Mutex::new(map),
            file: Some((path, flake_dir.to_string())),
            dirty: Default::default(),
        }
    }

    /// The directory a persistent cache lives in (other caches of the
    /// static analysis sit beside it); None for an in-memory cache.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.file.as_ref().and_then(|(p, _)| p.parent())
    }

    /// Writes a persistent cache back if anything was parsed.
    fn save(&self) -> std::io::Result<()> {
        let Some((path, flake_dir)) = &self.file else {
            return Ok(());
        };
        if !self.dirty.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let entries: Vec<(String, String, FileRefs)> = map
            .iter()
            .take(MAX_PERSISTED)
            .map(|((id, p), refs)| (id.to_string(), p.clone(), (**refs).clone()))
            .collect();
        let file = CacheFile {
            version: cache_version(),
            flake_dir: flake_dir.clone(),
            entries,
        };
        let dir = path.parent().expect("the cache path has a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".nix-refs.{}.tmp", std::process::id()));
        let bytes = postcard::to_stdvec(&file).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        // The JSON cache earlier builds wrote (before this binary format).
        let _ = std::fs::remove_file(dir.join("nix-refs.json"));
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    fn get_or_parse(
        &self,
        snapshot: &Snapshot,
        path: &str,
        flake_dir: &str,
    ) -> Option<Arc<FileRefs>> {
        let entry = *snapshot.get(BStr::new(path))?;
        if matches!(entry.mode, FileMode::Gitlink) {
            return None;
        }
        let key = (entry.id, path.to_string());
        if let Some(hit) = self.map.lock().unwrap().get(&key) {
            return Some(hit.clone());
        }
        PARSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let refs = match snapshot.read(BStr::new(path)) {
            Ok(Some(bytes)) => match std::str::from_utf8(&bytes) {
                Ok(text) => parse::references(text, path, flake_dir),
                Err(_) => unparseable(path, "the file is not valid UTF-8"),
            },
            Ok(None) => return None,
            Err(e) => unparseable(path, &format!("cannot read it: {e}")),
        };
        let refs = Arc::new(refs);
        self.map.lock().unwrap().insert(key, refs.clone());
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        Some(refs)
    }
}

impl Drop for ParseCache {
    fn drop(&mut self) {
        // Best effort: a read-only git dir only costs the next run a parse.
        let _ = self.save();
    }
}

/// A file guard cannot read as Nix: it may reach anything near it.
fn unparseable(path: &str, why: &str) -> FileRefs {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
    FileRefs {
        refs: vec![parse::Reference {
            kind: RefKind::Copy,
            target: Target::Under(dir),
            line: 1,
            column: 1,
            dynamic: true,
            text: "(file cannot be parsed)".into(),
            unreached: false,
            output: None,
            module_list_of: Vec::new(),
            per_host_name: false,
            suffix: None,
        }],
        errors: vec![why.to_string()],
        ..FileRefs::default()
    }
}

/// The files of a snapshot, with the directory queries the graph needs.
pub struct Tree<'a> {
    entries: &'a BTreeMap<BString, crate::git::Entry>,
}

impl<'a> Tree<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Tree<'a> {
        Tree {
            entries: snapshot.entries(),
        }
    }

    pub fn is_file(&self, path: &str) -> bool {
        self.entries.contains_key(BStr::new(path))
    }

    /// A directory exists in git when some file lies below it.
    pub fn is_dir(&self, path: &str) -> bool {
        if path.is_empty() {
            return !self.entries.is_empty();
        }
        self.under(path).next().is_some()
    }

    /// Every file strictly below `dir` ("" = everything).
    pub fn under(&self, dir: &str) -> impl Iterator<Item = &'a BString> + 'a {
        let prefix: BString = if dir.is_empty() {
            BString::default()
        } else {
            format!("{dir}/").into()
        };
        self.entries
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(move |k| k.starts_with(prefix.as_slice()))
    }

    /// The names directly inside `dir`, with whether each is a directory.
    pub fn children(&self, dir: &str) -> BTreeMap<String, bool> {
        let skip = if dir.is_empty() { 0 } else { dir.len() + 1 };
        let mut out = BTreeMap::new();
        for p in self.under(dir) {
            let rest = p[skip..].to_str_lossy();
            match rest.split_once('/') {
                Some((first, _)) => {
                    out.insert(first.to_string(), true);
                }
                None => {
                    out.entry(rest.into_owned()).or_insert(false);
                }
            }
        }
        out
    }

    /// What `path` is: a file (with its mode), a directory, or nothing.
    pub fn kind(&self, path: &str) -> Option<PathKind> {
        if let Some(e) = self.entries.get(BStr::new(path)) {
            return Some(if e.mode == FileMode::Symlink {
                PathKind::Symlink
            } else {
                PathKind::File
            });
        }
        self.is_dir(path).then_some(PathKind::Dir)
    }
}

/// The type of a path, as `readDir` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    File,
    Dir,
    Symlink,
}

/// The import graph: every file reachable from the given roots.
#[derive(Debug, Default)]
pub struct ImportGraph {
    pub nodes: BTreeMap<String, Node>,
}

impl ImportGraph {
    /// Parses every file reachable from `roots` (breadth-first, each level
    /// in parallel).
    pub fn build(
        snapshot: &Snapshot,
        flake_dir: &str,
        roots: &[String],
        cache: &ParseCache,
    ) -> ImportGraph {
        let tree = Tree::new(snapshot);
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut seen: BTreeSet<String> = roots.iter().cloned().collect();
        let mut frontier: Vec<String> = roots.to_vec();
        let mut path_functions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        loop {
            while !frontier.is_empty() {
                let parsed: Vec<(String, Option<Arc<FileRefs>>)> = frontier
                    .par_iter()
                    .map(|p| (p.clone(), cache.get_or_parse(snapshot, p, flake_dir)))
                    .collect();
                let mut next = Vec::new();
                for (path, refs) in parsed {
                    let Some(refs) = refs else { continue };
                    let refs = with_path_calls(&refs, &path_functions).map_or(refs, Arc::new);
                    let (deps, edges) = expand(&tree, &refs);
                    for (target, _) in &edges {
                        if seen.insert(target.clone()) {
                            next.push(target.clone());
                        }
                    }
                    nodes.insert(path, Node { refs, deps, edges });
                }
                frontier = next;
            }
            // Path functions (`relativeToRoot = lib.path.append ../.`) are
            // known once the file defining them is parsed: resolve their
            // calls everywhere, and follow what they reach.
            let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for node in nodes.values() {
                for (name, base) in &node.refs.path_functions {
                    found.entry(name.clone()).or_default().insert(base.clone());
                }
            }
            if found == path_functions {
                break;
            }
            path_functions = found;
            for (path, node) in nodes.iter_mut() {
                // From the file's own references (cached), not a previous
                // augmentation.
                let Some(own) = cache.get_or_parse(snapshot, path, flake_dir) else {
                    continue;
                };
                let Some(refs) = with_path_calls(&own, &path_functions) else {
                    continue;
                };
                let refs = Arc::new(refs);
                let (deps, edges) = expand(&tree, &refs);
                for (target, _) in &edges {
                    if seen.insert(target.clone()) {
                        frontier.push(target.clone());
                    }
                }
                *node = Node { refs, deps, edges };
            }
        }
        ImportGraph { nodes }
    }

    /// Files that import `path` (reverse edges), for explanations.
    pub fn importers(&self) -> HashMap<&str, Vec<&str>> {
        let mut rev: HashMap<&str, Vec<&str>> = HashMap::new();
        for (from, node) in &self.nodes {
            for (to, _) in &node.edges {
                rev.entry(to.as_str()).or_default().push(from.as_str());
            }
        }
        rev
    }
}

/// `refs` with the calls of known path functions added as references
/// (`relativeToRoot "hosts/x.nix"` is `<base>/hosts/x.nix`), and a copy of
/// the whole base for a path function the file uses other than in a call
/// guard resolves. None when nothing is added. Idempotent: references are
/// added to the file's own list, never to an already augmented one.
fn with_path_calls(
    refs: &FileRefs,
    functions: &BTreeMap<String, BTreeSet<String>>,
) -> Option<FileRefs> {
    if functions.is_empty() {
        return None;
    }
    let mut added = Vec::new();
    for call in &refs.path_calls {
        let Some(bases) = functions.get(&call.name) else {
            continue;
        };
        for base in bases {
            let text = if call.arg == "." || call.arg.is_empty() && call.complete {
                format!("/{base}")
            } else {
                format!("/{base}/{}", call.arg)
            };
            let (target, dynamic) = match (call.complete, parse::normalize(&text)) {
                (true, Some(p)) => (Target::Path(p), false),
                (false, _) => {
                    let dir = text.rfind('/').map_or("", |i| &text[..i]);
                    match parse::normalize(dir) {
                        Some(d) => (Target::Under(d), true),
                        None => (Target::None, true),
                    }
                }
                (true, None) => (Target::None, false),
            };
            let kind = if target == Target::None {
                RefKind::External
            } else {
                call.kind
            };
            added.push(parse::Reference {
                kind,
                target,
                line: call.line,
                column: call.column,
                dynamic,
                text: call.text.clone(),
                unreached: false,
                output: call.output.clone(),
                module_list_of: Vec::new(),
                per_host_name: false,
                suffix: if call.complete {
                    None
                } else {
                    call.suffix.clone()
                },
            });
        }
    }
    for (name, bases) in functions {
        if !refs.idents.contains(name) || refs.path_functions.contains_key(name) {
            continue;
        }
        let calls: BTreeSet<(u32, u32)> = refs
            .path_calls
            .iter()
            .filter(|c| &c.name == name)
            .map(|c| (c.line, c.column))
            .collect();
        let uses = refs.name_uses.get(name).copied().unwrap_or(u32::MAX);
        if uses as usize > calls.len() {
            // Passed on as a value: whatever receives it may name any path
            // below its base.
            for base in bases {
                added.push(parse::Reference {
                    kind: RefKind::Copy,
                    target: Target::Under(base.clone()),
                    line: 1,
                    column: 1,
                    dynamic: true,
                    text: format!("({name} used other than with a constant path)"),
                    unreached: false,
                    output: None,
                    module_list_of: Vec::new(),
                    per_host_name: false,
                    suffix: None,
                });
            }
        }
    }
    if added.is_empty() {
        return None;
    }
    let mut out = refs.clone();
    out.refs.extend(added);
    Some(out)
}

/// Expands one file's references into dependencies and graph edges.
pub fn expand(tree: &Tree, refs: &FileRefs) -> (Vec<Dep>, Vec<(String, usize)>) {
    let mut deps = Vec::new();
    let mut edges = Vec::new();
    for (i, r) in refs.refs.iter().enumerate() {
        let dep = |kind, path: &str| Dep {
            kind,
            path: path.to_string(),
            reference: Some(i),
            suffix: r.suffix.clone(),
        };
        let suffix = r.suffix.as_deref().unwrap_or("");
        let nix_files_under = |dir: &str, edges: &mut Vec<(String, usize)>, at: usize| {
            for f in tree.under(dir) {
                if f.ends_with(b".nix") && parse::matches_suffix(&f.to_str_lossy(), suffix) {
                    edges.push((f.to_str_lossy().into_owned(), at));
                }
            }
        };
        match (&r.kind, &r.target) {
            (RefKind::Tree, _) => deps.push(dep(DepKind::Tree, "")),
            (RefKind::Rev, _) => deps.push(dep(DepKind::Rev, "")),
            (RefKind::TreePath, _) => deps.push(dep(DepKind::TreePath, "")),
            (RefKind::External, _) => {}
            (RefKind::Import, Target::Path(p)) => {
                // `import ./dir` evaluates dir/default.nix.
                let file = if tree.is_file(p) || !tree.is_dir(p) {
                    p.clone()
                } else if p.is_empty() {
                    "default.nix".to_string()
                } else {
                    format!("{p}/default.nix")
                };
                deps.push(dep(DepKind::File, &file));
                edges.push((file, deps.len() - 1));
            }
            (RefKind::Copy, Target::Path(p)) => {
                deps.push(dep(DepKind::Copy, p));
                let at = deps.len() - 1;
                if tree.is_file(p) {
                    // Whoever receives the path may import it.
                    if p.ends_with(".nix") {
                        edges.push((p.clone(), at));
                    }
                } else {
                    nix_files_under(p, &mut edges, at);
                }
            }
            (RefKind::File, Target::Path(p)) => deps.push(dep(DepKind::File, p)),
            (RefKind::List, Target::Path(p)) => deps.push(dep(DepKind::List, p)),
            (RefKind::Exists, Target::Path(p)) => deps.push(dep(DepKind::Exists, p)),
            // Computed paths: anything below the constant directory, any
            // .nix file there possibly evaluated.
            (_, Target::Under(d)) => {
                deps.push(dep(DepKind::Copy, d));
                let at = deps.len() - 1;
                nix_files_under(d, &mut edges, at);
            }
            (_, Target::None) => {}
        }
    }
    (deps, edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_cache_round_trips_and_rejects_other_flake_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::from_hex(b"0123456789abcdef0123456789abcdef01234567").unwrap();
        {
            let c = ParseCache::persistent(dir.path(), "");
            c.map.lock().unwrap().insert(
                (id, "a.nix".into()),
                Arc::new(parse::references("import ./b.nix", "a.nix", "")),
            );
            c.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let again = ParseCache::persistent(dir.path(), "");
        let got = again
            .map
            .lock()
            .unwrap()
            .get(&(id, "a.nix".into()))
            .cloned();
        assert_eq!(got.unwrap().refs[0].target, Target::Path("b.nix".into()));
        let other = ParseCache::persistent(dir.path(), "sub");
        assert!(other.map.lock().unwrap().is_empty());
        // A corrupt file is ignored, not an error.
        std::fs::write(dir.path().join("guard/cache/nix-refs.bin"), b"{").unwrap();
        assert!(
            ParseCache::persistent(dir.path(), "")
                .map
                .lock()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn unparseable_files_widen_to_their_directory() {
        let r = unparseable("machines/a/default.nix", "bad");
        assert_eq!(r.refs[0].target, Target::Under("machines/a".into()));
        assert_eq!(r.refs[0].kind, RefKind::Copy);
    }
}

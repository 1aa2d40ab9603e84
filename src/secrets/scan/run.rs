//! The modes of `guard scan`: a change set (staged, work tree, `--all`),
//! the added lines of each commit of a range, the whole reachable history
//! (each blob once), and files on disk. Each returns an [`Outcome`]; none
//! prints and none writes.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::{Content, HUGE_FILE, Located, Scanner, classify_content};
use crate::git::{
    ByteSlice as _, ChangeKind, ChangeSet, FileMode, GitError, ObjectId, Repo, Selector,
};
use crate::report::{Scanned, Warning};

/// Errors of the drivers.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The git layer failed (message names the revision or object).
    #[error(transparent)]
    Git(#[from] GitError),
    /// A file on disk could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Walking a directory failed.
    #[error("cannot walk {}: {message}", path.display())]
    Walk { path: PathBuf, message: String },
}

/// What a scan found and read.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Findings in a stable order (path, then position; history and ranges:
    /// commit order, oldest first).
    pub located: Vec<Located>,
    pub scanned: Scanned,
    pub warnings: Vec<Warning>,
}

impl Outcome {
    /// The report section (each finding carries its end position).
    pub fn into_findings(self) -> crate::report::Findings {
        crate::report::Findings {
            findings: self.located.into_iter().map(|l| l.finding).collect(),
            scanned: self.scanned,
            warnings: self.warnings,
        }
    }
}

/// Per-file result, merged into an [`Outcome`].
#[derive(Debug, Default)]
struct FileResult {
    located: Vec<Located>,
    files: u64,
    bytes: u64,
    binary: Vec<String>,
    huge: Vec<String>,
    /// `.nix` files that do not parse (read by the line rules).
    unparsed: Vec<String>,
    /// Blobs missing from the repository: (path, commit, blob), not scanned.
    missing: Vec<(String, Option<String>, ObjectId)>,
}

impl FileResult {
    fn merge(mut self, o: FileResult) -> FileResult {
        self.located.extend(o.located);
        self.files += o.files;
        self.bytes += o.bytes;
        self.binary.extend(o.binary);
        self.huge.extend(o.huge);
        self.unparsed.extend(o.unparsed);
        self.missing.extend(o.missing);
        self
    }

    fn into_outcome(self, commits: u64) -> Outcome {
        let mut warnings = Vec::new();
        if !self.binary.is_empty() {
            let n = self.binary.len();
            let shown: Vec<&str> = self.binary.iter().take(5).map(String::as_str).collect();
            let more = if n > 5 {
                format!(" (+{} more)", n - 5)
            } else {
                String::new()
            };
            warnings.push(Warning {
                path: None,
                message: format!(
                    "skipped {n} binary file{} (NUL byte in the first 8 KiB; guard scans text \
                     only): {}{more}",
                    if n == 1 { "" } else { "s" },
                    shown.join(", ")
                ),
            });
        }
        // One warning per missing blob (path and commit named), up to a
        // bound: a blobless clone misses thousands in its history.
        const SHOWN_MISSING: usize = 20;
        let mut missing = self.missing;
        missing.sort();
        missing.dedup();
        for (path, commit, id) in missing.iter().take(SHOWN_MISSING) {
            let at = match commit {
                Some(c) => format!(" in commit {}", &c[..c.len().min(12)]),
                None => String::new(),
            };
            warnings.push(Warning {
                path: Some(path.clone()),
                message: format!("not scanned{at}: {}", GitError::MissingObject { id: *id }),
            });
        }
        if missing.len() > SHOWN_MISSING {
            warnings.push(Warning {
                path: None,
                message: format!(
                    "{} more blobs are missing from the repository and were not scanned \
                     (a partial or blobless clone); the rest of the run completed",
                    missing.len() - SHOWN_MISSING
                ),
            });
        }
        let mut unparsed = self.unparsed;
        unparsed.sort();
        unparsed.dedup();
        for p in unparsed {
            warnings.push(Warning {
                path: Some(p),
                message: "does not parse as Nix: its bindings were read by the line rules \
                          instead (nix would reject this file; fix its syntax)"
                    .to_string(),
            });
        }
        for p in self.huge {
            warnings.push(Warning {
                path: Some(p),
                message: format!(
                    "larger than {} MiB: scanned by the line rules only (files on disk are read \
                     in chunks of that size); the Nix-aware rule was skipped",
                    HUGE_FILE >> 20
                ),
            });
        }
        Outcome {
            located: self.located,
            scanned: Scanned {
                files: self.files,
                bytes: self.bytes,
                commits,
            },
            warnings,
        }
    }
}

/// Scans one blob already in memory.
fn scan_blob(
    scanner: &Scanner,
    path: &str,
    bytes: &[u8],
    commit: Option<&str>,
    keep_line: Option<&dyn Fn(usize) -> bool>,
) -> FileResult {
    let mut r = FileResult {
        files: 1,
        ..Default::default()
    };
    match classify_content(bytes) {
        Content::Binary => r.binary.push(path.to_string()),
        Content::AgeCiphertext => {}
        Content::Text => {
            r.bytes = bytes.len() as u64;
            if bytes.len() > HUGE_FILE {
                r.huge.push(path.to_string());
            }
            let scan = scanner.scan_file(path, bytes, commit, 0, keep_line);
            r.located = scan.located;
            if scan.nix_parse_failed {
                r.unparsed.push(path.to_string());
            }
        }
    }
    r
}

/// A result that records a blob missing from the repository (partial or
/// blobless clone) instead of failing the run.
fn missing_blob(path: &str, commit: Option<&str>, id: ObjectId) -> FileResult {
    FileResult {
        missing: vec![(path.to_string(), commit.map(str::to_string), id)],
        ..Default::default()
    }
}

/// Whether a change brings new content to scan, and the blob id of it.
fn new_blob(kind: &ChangeKind, new: Option<crate::git::Entry>) -> Option<ObjectId> {
    let e = new?;
    if !matches!(e.mode, FileMode::Regular | FileMode::Executable) {
        return None;
    }
    match kind {
        ChangeKind::Deleted | ChangeKind::ModeChanged => None,
        _ => Some(e.id),
    }
}

/// Scans the whole new content of every added, modified, renamed or
/// retyped file of a change set (`--staged`, `--worktree`, `--all`).
/// Reading goes through the snapshot, so the work tree is read from disk
/// and the index from its blobs.
pub fn scan_change_set(scanner: &Scanner, changes: &ChangeSet) -> Result<Outcome, RunError> {
    let results: Vec<Result<FileResult, RunError>> = changes
        .changes
        .par_iter()
        .filter(|c| new_blob(&c.kind, c.new).is_some())
        .map(|c| {
            let path = c.path.to_string();
            if scanner.path_allowed(&path) {
                return Ok(FileResult::default());
            }
            let bytes = match changes.new.read(c.path.as_bstr()) {
                Ok(Some(b)) => b,
                Ok(None) => return Ok(FileResult::default()),
                Err(GitError::MissingObject { id }) => return Ok(missing_blob(&path, None, id)),
                Err(e) => return Err(e.into()),
            };
            Ok(scan_blob(scanner, &path, &bytes, None, None))
        })
        .collect();
    let mut total = FileResult::default();
    for r in results {
        total = total.merge(r?);
    }
    Ok(total.into_outcome(0))
}

/// For each commit, scans the lines it added (against its first parent):
/// `--commit`, `--base`. Findings carry the commit id.
pub fn scan_commits(
    scanner: &Scanner,
    repo: &Repo,
    commits: &[ObjectId],
) -> Result<Outcome, RunError> {
    let results: Vec<Result<FileResult, RunError>> = commits
        .par_iter()
        .map(|&id| scan_commit_added(scanner, repo, id))
        .collect();
    let mut total = FileResult::default();
    // Oldest first: the commit that introduced a secret reads first.
    for r in results.into_iter().rev() {
        total = total.merge(r?);
    }
    Ok(total.into_outcome(commits.len() as u64))
}

fn scan_commit_added(scanner: &Scanner, repo: &Repo, id: ObjectId) -> Result<FileResult, RunError> {
    let hex = id.to_string();
    let cs = repo.change_set(&Selector::Commit(hex.clone()))?;
    let results: Vec<Result<FileResult, RunError>> = cs
        .changes
        .par_iter()
        .filter_map(|c| new_blob(&c.kind, c.new).map(|b| (c, b)))
        .map(|(c, blob)| {
            let path = c.path.to_string();
            if scanner.path_allowed(&path) {
                return Ok(FileResult::default());
            }
            // An exact rename adds no line.
            if matches!(c.kind, ChangeKind::Renamed { .. }) && c.old.is_some_and(|o| o.id == blob) {
                return Ok(FileResult::default());
            }
            let new = match repo.read_blob(blob) {
                Ok(b) => b,
                Err(GitError::MissingObject { id }) => {
                    return Ok(missing_blob(&path, Some(&hex), id));
                }
                Err(e) => return Err(e.into()),
            };
            let old = match c.old {
                Some(o) if matches!(o.mode, FileMode::Regular | FileMode::Executable) => {
                    match repo.read_blob(o.id) {
                        Ok(b) => Some(b),
                        // Without the old version every line counts as added:
                        // more is scanned, never less.
                        Err(GitError::MissingObject { .. }) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => None,
            };
            match old {
                None => Ok(scan_blob(scanner, &path, &new, Some(&hex), None)),
                Some(old) => {
                    let added = added_lines(&old, &new);
                    let keep = |line: usize| added.get(line).copied().unwrap_or(false);
                    Ok(scan_blob(scanner, &path, &new, Some(&hex), Some(&keep)))
                }
            }
        })
        .collect();
    let mut total = FileResult::default();
    for r in results {
        total = total.merge(r?);
    }
    Ok(total)
}

/// Lines of `new` (index = 1-based line number) that a line diff against
/// `old` marks as inserted or replaced. Myers diff from the `similar` crate
/// (linear space, with a deadline: past it `similar` falls back to a coarser
/// diff, which only ever marks *more* lines as added, never fewer).
pub(crate) fn added_lines(old: &[u8], new: &[u8]) -> Vec<bool> {
    let (o, n) = (split_lines(old), split_lines(new));
    let deadline = Instant::now() + Duration::from_secs(2);
    let ops =
        similar::capture_diff_slices_deadline(similar::Algorithm::Myers, &o, &n, Some(deadline));
    let mut added = vec![false; n.len() + 2];
    for op in ops {
        let (start, len) = match op {
            similar::DiffOp::Insert {
                new_index, new_len, ..
            } => (new_index, new_len),
            similar::DiffOp::Replace {
                new_index, new_len, ..
            } => (new_index, new_len),
            _ => continue,
        };
        for i in start..start + len {
            added[i + 1] = true;
        }
    }
    added
}

fn split_lines(b: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
    if b.ends_with(b"\n") {
        v.pop();
    }
    v
}

/// Every commit reachable from `head` (all parents, not only the first),
/// minus those reachable from `since`, each new blob scanned once in full.
/// A secret that stays in a file across many commits is reported once, at
/// the oldest commit guard saw it in (dedup by fingerprint).
pub fn scan_history(
    scanner: &Scanner,
    repo: &Repo,
    head: ObjectId,
    since: Option<ObjectId>,
) -> Result<Outcome, RunError> {
    let exclude = match since {
        Some(s) => reachable(repo, s, &HashSet::new())?.into_iter().collect(),
        None => HashSet::new(),
    };
    // Oldest first (parents before children).
    let commits = reachable(repo, head, &exclude)?;
    let mut warnings = Vec::new();
    let per_commit: Vec<Result<Vec<(String, ObjectId)>, RunError>> = commits
        .par_iter()
        .map(|&id| commit_blobs(repo, id))
        .collect();
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut jobs: Vec<(usize, String, ObjectId)> = Vec::new();
    for (i, r) in per_commit.into_iter().enumerate() {
        let blobs = match r {
            Ok(b) => b,
            Err(RunError::Git(GitError::ShallowMissing { .. })) => {
                warnings.push(Warning {
                    path: None,
                    message: format!(
                        "shallow clone: history before {} is missing and was not scanned",
                        commits[i]
                    ),
                });
                whole_tree_blobs(repo, commits[i])?
            }
            Err(e) => return Err(e),
        };
        for (path, blob) in blobs {
            if seen.insert(blob) && !scanner.path_allowed(&path) {
                jobs.push((i, path, blob));
            }
        }
    }
    let hexes: Vec<String> = commits.iter().map(|c| c.to_string()).collect();
    let results: Vec<Result<FileResult, RunError>> = jobs
        .par_iter()
        .map(|(i, path, blob)| {
            let bytes = match repo.read_blob(*blob) {
                Ok(b) => b,
                Err(GitError::MissingObject { id }) => {
                    return Ok(missing_blob(path, Some(&hexes[*i]), id));
                }
                Err(e) => return Err(e.into()),
            };
            Ok(scan_blob(scanner, path, &bytes, Some(&hexes[*i]), None))
        })
        .collect();
    let mut total = FileResult::default();
    for r in results {
        total = total.merge(r?);
    }
    let mut seen_fp: HashSet<String> = HashSet::new();
    total
        .located
        .retain(|l| seen_fp.insert(l.finding.fingerprint.clone()));
    let mut out = total.into_outcome(commits.len() as u64);
    out.warnings.extend(warnings);
    Ok(out)
}

/// Paths and blob ids of regular files a commit adds or changes against its
/// first parent.
fn commit_blobs(repo: &Repo, id: ObjectId) -> Result<Vec<(String, ObjectId)>, RunError> {
    let cs = repo.change_set(&Selector::Commit(id.to_string()))?;
    Ok(cs
        .changes
        .iter()
        .filter_map(|c| new_blob(&c.kind, c.new).map(|b| (c.path.to_string(), b)))
        .collect())
}

fn whole_tree_blobs(repo: &Repo, id: ObjectId) -> Result<Vec<(String, ObjectId)>, RunError> {
    let snap = repo.snapshot(crate::git::SnapshotSpec::Commit(id))?;
    Ok(snap
        .try_entries()?
        .iter()
        .filter(|(_, e)| matches!(e.mode, FileMode::Regular | FileMode::Executable))
        .map(|(p, e)| (p.to_string(), e.id))
        .collect())
}

/// Commits reachable from `from` and not in `exclude`, parents before
/// children (iterative post-order, so deep histories cannot overflow the
/// stack). Parents missing from a shallow clone are skipped.
fn reachable(
    repo: &Repo,
    from: ObjectId,
    exclude: &HashSet<ObjectId>,
) -> Result<Vec<ObjectId>, RunError> {
    let mut out = Vec::new();
    let mut state: HashMap<ObjectId, bool> = HashMap::new();
    let mut stack: Vec<(ObjectId, bool)> = vec![(from, false)];
    let shallow = repo.is_shallow();
    while let Some((id, expanded)) = stack.pop() {
        if expanded {
            out.push(id);
            continue;
        }
        if exclude.contains(&id) || state.contains_key(&id) {
            continue;
        }
        state.insert(id, true);
        let info = match repo.commit_info(id) {
            Ok(i) => i,
            Err(_) if shallow && id != from => continue,
            Err(e) => return Err(e.into()),
        };
        stack.push((id, true));
        for p in info.parents.iter().rev() {
            if !state.contains_key(p) && !exclude.contains(p) {
                stack.push((*p, false));
            }
        }
    }
    Ok(out)
}

/// Scans files and directories on disk (`guard scan <path>…`). Directories
/// are walked with the `ignore` crate: `.gitignore`d files are skipped,
/// hidden files (`.env`, `.netrc`) are not, `.git` directories are.
///
/// Relative paths are resolved against `base` (the `-C` directory) when
/// given, and findings show them relative to it, as the user typed them.
pub fn scan_paths(
    scanner: &Scanner,
    paths: &[PathBuf],
    base: Option<&Path>,
) -> Result<Outcome, RunError> {
    let mut files: Vec<PathBuf> = Vec::new();
    let resolved: Vec<PathBuf> = paths
        .iter()
        .map(|p| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.clone(),
        })
        .collect();
    for root in &resolved {
        let meta = std::fs::metadata(root).map_err(|source| RunError::Io {
            path: root.clone(),
            source,
        })?;
        if meta.is_file() {
            files.push(root.clone());
            continue;
        }
        let walker = ignore::WalkBuilder::new(root)
            .hidden(false)
            .require_git(false)
            .filter_entry(|e| e.file_name() != ".git")
            .build();
        for entry in walker {
            let entry = entry.map_err(|e| RunError::Walk {
                path: root.clone(),
                message: e.to_string(),
            })?;
            if entry.file_type().is_some_and(|t| t.is_file()) {
                files.push(entry.into_path());
            }
        }
    }
    let results: Vec<Result<FileResult, RunError>> = files
        .par_iter()
        .map(|p| {
            let shown = match base {
                Some(b) => p.strip_prefix(b).unwrap_or(p),
                None => p,
            };
            scan_disk_file(scanner, p, &display_path(shown))
        })
        .collect();
    let mut total = FileResult::default();
    for r in results {
        total = total.merge(r?);
    }
    Ok(total.into_outcome(0))
}

/// `./a/b` -> `a/b`, with `/` separators: the path findings show and
/// fingerprint.
fn display_path(p: &Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    let mut s = s.as_str();
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    s.to_string()
}

fn scan_disk_file(scanner: &Scanner, p: &Path, path: &str) -> Result<FileResult, RunError> {
    let path = path.to_string();
    if scanner.path_allowed(&path) {
        return Ok(FileResult::default());
    }
    let io = |source| RunError::Io {
        path: p.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(p).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len as usize <= HUGE_FILE {
        let mut bytes = Vec::with_capacity(len as usize);
        f.read_to_end(&mut bytes).map_err(io)?;
        return Ok(scan_blob(scanner, &path, &bytes, None, None));
    }
    // Bounded memory: chunks of HUGE_FILE bytes cut after the last newline;
    // the partial last line is carried into the next chunk.
    let mut r = FileResult {
        files: 1,
        huge: vec![path.clone()],
        ..Default::default()
    };
    let mut buf: Vec<u8> = Vec::with_capacity(HUGE_FILE + 4096);
    let mut line_base = 0usize;
    let mut first = true;
    loop {
        let have = buf.len();
        let want = HUGE_FILE.max(have + 4096);
        buf.resize(want, 0);
        let n = read_full(&mut f, &mut buf[have..]).map_err(io)?;
        buf.truncate(have + n);
        let eof = buf.len() < want;
        if first {
            first = false;
            match classify_content(&buf) {
                Content::Text => {}
                Content::Binary => {
                    r.huge.clear();
                    r.binary.push(path);
                    return Ok(r);
                }
                Content::AgeCiphertext => {
                    r.huge.clear();
                    return Ok(r);
                }
            }
        }
        let cut = if eof {
            buf.len()
        } else {
            memchr::memrchr(b'\n', &buf).map_or(buf.len(), |i| i + 1)
        };
        let chunk = &buf[..cut];
        r.bytes += chunk.len() as u64;
        r.located
            .extend(scanner.scan_located(&path, chunk, None, line_base, None));
        line_base += memchr::memchr_iter(b'\n', chunk).count();
        buf.drain(..cut);
        if eof && buf.is_empty() {
            break;
        }
    }
    Ok(r)
}

/// Reads until `buf` is full or end of file.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_lines_follow_a_line_diff() {
        let old = b"a\nb\nc\n";
        let new = b"a\nX\nb\nc\nY\n";
        let added = added_lines(old, new);
        let lines: Vec<usize> = (1..=5).filter(|&l| added[l]).collect();
        assert_eq!(lines, [2, 5]);
        // A moved line counts as added where it lands.
        let added = added_lines(b"a\nb\n", b"b\na\n");
        assert!(added[1] || added[2]);
        // Everything is new against an empty file.
        assert!(added_lines(b"", b"x\ny").iter().skip(1).take(2).all(|&b| b));
    }

    #[test]
    fn display_paths_are_clean() {
        assert_eq!(display_path(Path::new("./a/b.nix")), "a/b.nix");
        assert_eq!(display_path(Path::new("a/b.nix")), "a/b.nix");
    }
}

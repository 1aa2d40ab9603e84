//! The evaluation cache: a host's drvPath at a revision is a function of
//! what its evaluation reads, so it is stored under a key made of exactly
//! that (`<git-dir>/guard/cache/eval/<key>`):
//!
//! - the content of every file of the host's static closure (the flake's
//!   wiring and the host's own import closure, from the same analysis that
//!   decides which hosts a change affects), and for each dependency those
//!   files have, what it resolves to in the snapshot: a file's blob, a
//!   copied directory's entries, a listed directory's names and types, a
//!   path's existence, the whole tree, the commit (`self.rev`);
//! - the lock entries of the flake inputs those files use (all of
//!   flake.lock when a file uses `inputs` as a whole);
//! - the paths `[affected] global` names;
//! - the attribute, the system, the nix version, the extra nix arguments
//!   and `$NIX_CONFIG` (as a digest), and guard's analysis version.
//!
//! Two revisions with the same key share the drvPath without evaluating: a
//! PR's base was usually evaluated as some earlier run's new revision, and
//! bisect's candidates share most hosts' keys. A host whose closure reads
//! outside the repository (a reached `<nixpkgs>`, `/etc/x`) has no key.
//! nix's own evaluation cache is keyed by the commit, so CI always starts
//! cold; this one is keyed by content.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::affected::Analysis;
use crate::config::Config;
use crate::git::{BStr, ByteSlice, Snapshot};
use crate::nix::cli::{Drv, HostAttr};
use crate::nix::graph::{DepKind, ParseCache, Tree};
use crate::nix::parse::RefKind;

/// Bumped whenever the analysis (what counts as a dependency) changes, so
/// keys of an older guard are never trusted.
pub const ANALYSIS_VERSION: u32 = 2;

/// What besides the files decides a drvPath.
#[derive(Debug, Clone)]
pub struct KeyEnv {
    /// `nix --version`.
    pub nix_version: String,
    /// The evaluating system, e.g. `x86_64-linux`.
    pub system: String,
    /// Arguments given to every nix call (`--override-input`, `--option`).
    pub nix_args: Vec<String>,
    /// A digest of `$NIX_CONFIG` (settings can change evaluation; the value
    /// itself may hold access tokens and is never stored).
    pub nix_config: String,
}

impl KeyEnv {
    /// What `nix` (its version, its arguments) and the environment
    /// (`$NIX_CONFIG`) add to every key.
    pub fn of(nix: &crate::nix::cli::Nix) -> KeyEnv {
        KeyEnv {
            nix_version: nix.version.clone(),
            system: KeyEnv::local_system(),
            nix_args: nix.extra_args.clone(),
            nix_config: hex(&Sha256::digest(
                std::env::var_os("NIX_CONFIG")
                    .unwrap_or_default()
                    .as_encoded_bytes(),
            )),
        }
    }

    /// The system guard runs on, in nix's spelling.
    pub fn local_system() -> String {
        format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
    }
}

/// The keys of `hosts` at a commit snapshot; hosts without one (reads
/// outside the repository or of other hosts' configurations, not a commit)
/// are left out.
pub fn host_keys(
    snapshot: &Snapshot,
    flake_dir: &str,
    config: &Config,
    cache: &ParseCache,
    hosts: &[(String, HostAttr)],
    env: &KeyEnv,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(commit) = snapshot.commit() else {
        return out;
    };
    if snapshot.try_entries().is_err() {
        return out;
    }
    let analysis = Analysis::of(snapshot, flake_dir, config, cache);
    let tree = Tree::new(snapshot);
    let wiring: BTreeSet<&str> = analysis.wiring().into_iter().map(|(f, _)| f).collect();
    let lock_path = if flake_dir.is_empty() {
        "flake.lock".to_string()
    } else {
        format!("{flake_dir}/flake.lock")
    };
    let lock: Option<serde_json::Value> = snapshot
        .read(BStr::new(&lock_path))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok());
    // A host that reads other hosts' configurations depends on their files
    // too: no key (evaluated every time) rather than a partial one.
    let cross = analysis.host_config_reads();
    let mut whole_tree: Option<String> = None;
    // Paths guard.toml says affect every host: part of every key (an
    // invalid glob makes no key at all, as the analysis would refuse it).
    let Some(global) = global_lines(snapshot, &config.affected.global) else {
        return out;
    };
    for (host, attr) in hosts {
        let Some(h) = analysis.hosts.hosts.get(host) else {
            continue;
        };
        if cross.contains_key(host) {
            continue;
        }
        let mut files: BTreeSet<&str> = wiring.clone();
        files.extend(analysis.closure(host).into_iter().map(|(f, _)| f));
        let mut text = format!(
            "guard-eval-cache {ANALYSIS_VERSION} {}\nhost {host}\nattr {}\nsystem {}\nnix {}\nargs {:?}\nnix-config {}\nflake-dir {flake_dir}\n",
            env!("CARGO_PKG_VERSION"),
            attr.name(),
            env.system,
            env.nix_version,
            env.nix_args,
            env.nix_config,
        );
        text.push_str(&global);
        let mut idents: BTreeSet<&str> = BTreeSet::new();
        let mut all_inputs = false;
        let mut outside = false;
        // The host's own directory: the analysis counts every file in it.
        if let Some(own) = &h.own_dir {
            copy_lines(&tree, snapshot, own, &mut text);
        }
        file_line(snapshot, &h.entry, &mut text);
        for f in &files {
            let Some(node) = analysis.graph.nodes.get(*f) else {
                continue;
            };
            file_line(snapshot, f, &mut text);
            if node
                .refs
                .refs
                .iter()
                .any(|r| r.kind == RefKind::External && !r.unreached)
            {
                outside = true;
            }
            idents.extend(node.refs.idents.iter().map(String::as_str));
            all_inputs |= node.refs.all_inputs;
            for d in &node.deps {
                match d.kind {
                    DepKind::File => file_line(snapshot, &d.path, &mut text),
                    DepKind::Copy => copy_lines(&tree, snapshot, &d.path, &mut text),
                    DepKind::List => {
                        text.push_str(&format!("list {} {:?}\n", d.path, tree.children(&d.path)));
                    }
                    DepKind::Exists => {
                        text.push_str(&format!("exists {} {:?}\n", d.path, tree.kind(&d.path)));
                    }
                    // The source's store path is a hash of the whole tree.
                    DepKind::Tree | DepKind::TreePath => {
                        let t = whole_tree.get_or_insert_with(|| {
                            let mut s = String::new();
                            copy_lines(&tree, snapshot, "", &mut s);
                            hex(&Sha256::digest(s.as_bytes()))
                        });
                        text.push_str(&format!("tree {t}\n"));
                    }
                    DepKind::Rev => text.push_str(&format!("rev {commit}\n")),
                }
            }
        }
        if outside {
            continue;
        }
        match (&lock, all_inputs) {
            (Some(l), false) => {
                for (name, locked) in used_locks(l, &idents) {
                    text.push_str(&format!("input {name} {locked}\n"));
                }
            }
            _ => file_line(snapshot, &lock_path, &mut text),
        }
        out.insert(host.clone(), hex(&Sha256::digest(text.as_bytes())));
    }
    out
}

/// Every tracked file matching the `[affected] global` globs, with its
/// blob; `None` when a glob is invalid.
fn global_lines(snapshot: &Snapshot, globs: &[String]) -> Option<String> {
    let mut text = String::new();
    if globs.is_empty() {
        return Some(text);
    }
    let mut b = globset::GlobSetBuilder::new();
    for g in globs {
        b.add(globset::Glob::new(g).ok()?);
    }
    let set = b.build().ok()?;
    for (p, e) in snapshot.entries() {
        let p = p.to_str_lossy();
        if set.is_match(p.as_ref()) {
            text.push_str(&format!("global {p} {:?} {}\n", e.mode, e.id));
        }
    }
    Some(text)
}

fn file_line(snapshot: &Snapshot, path: &str, text: &mut String) {
    match snapshot.get(BStr::new(path)) {
        Some(e) => text.push_str(&format!("file {path} {:?} {}\n", e.mode, e.id)),
        None => text.push_str(&format!("file {path} absent\n")),
    }
}

/// Every entry at or below `path` ("" = the whole tree).
fn copy_lines(tree: &Tree<'_>, snapshot: &Snapshot, path: &str, text: &mut String) {
    text.push_str(&format!("copy {path}\n"));
    if !path.is_empty() {
        file_line(snapshot, path, text);
    }
    for p in tree.under(path) {
        if let Some(e) = snapshot.get(p.as_bstr()) {
            text.push_str(&format!("  {} {:?} {}\n", p.to_str_lossy(), e.mode, e.id));
        }
    }
}

/// The lock entries of the root's inputs named in `idents`, each with every
/// lock node it reaches (an input's own inputs change its outputs too).
fn used_locks(lock: &serde_json::Value, idents: &BTreeSet<&str>) -> Vec<(String, String)> {
    let nodes = &lock["nodes"];
    let root = lock["root"].as_str().unwrap_or("root");
    let resolve = |spec: &serde_json::Value| -> Option<String> {
        match spec {
            serde_json::Value::String(s) => Some(s.clone()),
            // `follows`: a path of input names from the root.
            serde_json::Value::Array(path) => {
                let mut at = root.to_string();
                for step in path {
                    at = nodes[&at]["inputs"][step.as_str()?].as_str()?.to_string();
                }
                Some(at)
            }
            _ => None,
        }
    };
    let mut out = Vec::new();
    let Some(inputs) = nodes[root]["inputs"].as_object() else {
        return out;
    };
    for (name, spec) in inputs {
        if !idents.contains(name.as_str()) {
            continue;
        }
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = resolve(spec).into_iter().collect();
        let mut locked = Vec::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            locked.push(format!("{n}={}", nodes[&n]["locked"]));
            if let Some(i) = nodes[&n]["inputs"].as_object() {
                stack.extend(i.values().filter_map(&resolve));
            }
        }
        locked.sort();
        out.push((name.clone(), locked.join(",")));
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One cached answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    drv: String,
    out: String,
}

/// A directory of JSON entries named by key: a damaged or missing entry is
/// a miss; writes are best effort (a read-only git dir costs only a later
/// evaluation), written whole, then renamed into place.
#[derive(Debug, Clone)]
pub struct JsonDir(pub PathBuf);

impl JsonDir {
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let bytes = std::fs::read(self.0.join(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn put<T: serde::Serialize>(&self, key: &str, value: &T) {
        let _ = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&self.0)?;
            let tmp = self.0.join(format!(".{key}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(value)?)?;
            std::fs::rename(&tmp, self.0.join(key))
        })();
    }
}

/// The cache directory of one repository.
#[derive(Debug, Clone)]
pub struct EvalCache {
    dir: JsonDir,
}

impl EvalCache {
    /// `<git-dir>/guard/cache/eval`.
    pub fn at(git_dir: &Path) -> EvalCache {
        EvalCache {
            dir: JsonDir(git_dir.join("guard").join("cache").join("eval")),
        }
    }

    /// The drvPath stored under `key`, if any (a damaged entry is a miss).
    pub fn get(&self, key: &str) -> Option<Drv> {
        let e: Entry = self.dir.get(key)?;
        (e.drv.ends_with(".drv") && e.out.starts_with('/')).then_some(Drv {
            drv: e.drv,
            out: e.out,
        })
    }

    /// Stores an answer.
    pub fn put(&self, key: &str, drv: &Drv) {
        self.dir.put(
            key,
            &Entry {
                drv: drv.drv.clone(),
                out: drv.out.clone(),
            },
        );
    }
}

/// What the runner needs to use the cache in one run.
#[derive(Debug, Clone)]
pub struct CachePlan {
    pub cache: EvalCache,
    /// Host -> key at the new revision (cacheable hosts only).
    pub new: BTreeMap<String, String>,
    /// Host -> key at the base revision.
    pub base: BTreeMap<String, String>,
    /// Evaluate anyway and compare (`--verify-cache`).
    pub verify: bool,
}

/// The cache plan of one run: keys of `hosts` at the new and the base
/// snapshot (commits only), or `None` with `--no-eval-cache`.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    git_dir: &Path,
    new: Option<&Snapshot>,
    base: Option<&Snapshot>,
    flake_dir: &str,
    config: &Config,
    parse_cache: &ParseCache,
    hosts: &[(String, HostAttr)],
    nix: &crate::nix::cli::Nix,
    settings: &super::settings::EvalSettings,
) -> Option<CachePlan> {
    if settings.no_eval_cache {
        return None;
    }
    let env = KeyEnv::of(nix);
    let keys = |s: Option<&Snapshot>| {
        s.map(|s| host_keys(s, flake_dir, config, parse_cache, hosts, &env))
            .unwrap_or_default()
    };
    Some(CachePlan {
        cache: EvalCache::at(git_dir),
        new: keys(new),
        base: keys(base),
        verify: settings.verify_cache,
    })
}

/// One host's evaluation at one commit through the cache (for `guard
/// bisect`): the cached drvPath when the key is known and its derivation is
/// still in the store, else `eval` (whose answer is then stored). Returns
/// whether the cache answered.
#[allow(clippy::too_many_arguments)]
pub fn eval_one(
    git_dir: &Path,
    snapshot: Option<&Snapshot>,
    flake_dir: &str,
    config: &Config,
    parse_cache: &ParseCache,
    host: &str,
    attr: HostAttr,
    nix: &crate::nix::cli::Nix,
    settings: &super::settings::EvalSettings,
    eval: impl FnOnce() -> Result<Drv, crate::nix::cli::NixError>,
) -> (Result<Drv, crate::nix::cli::NixError>, bool) {
    let hosts = [(host.to_string(), attr)];
    let key = plan(
        git_dir,
        snapshot,
        None,
        flake_dir,
        config,
        parse_cache,
        &hosts,
        nix,
        settings,
    )
    .and_then(|p| p.new.get(host).map(|k| (p.cache, k.clone(), p.verify)));
    if let Some((cache, k, false)) = &key
        && let Some(d) = cache.get(k)
        && Path::new(&d.drv).exists()
    {
        return (Ok(d), true);
    }
    let r = eval();
    if let (Some((cache, k, _)), Ok(d)) = (&key, &r) {
        cache.put(k, d);
    }
    (r, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_locks_follow_inputs_and_follows() {
        let lock = serde_json::json!({
            "root": "root",
            "nodes": {
                "root": {"inputs": {"nixpkgs": "nixpkgs", "agenix": "agenix", "other": "other"}},
                "nixpkgs": {"locked": {"rev": "a"}},
                "agenix": {"locked": {"rev": "b"}, "inputs": {"nixpkgs": ["nixpkgs"]}},
                "other": {"locked": {"rev": "c"}},
            }
        });
        let idents: BTreeSet<&str> = ["agenix", "lib"].into_iter().collect();
        let got = used_locks(&lock, &idents);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "agenix");
        // agenix's nixpkgs follows the root's: its lock counts.
        assert!(got[0].1.contains("nixpkgs={\"rev\":\"a\"}"), "{got:?}");
        assert!(!got[0].1.contains("\"c\""), "{got:?}");
    }

    #[test]
    fn entries_round_trip_and_junk_misses() {
        let dir = tempfile::tempdir().unwrap();
        let c = EvalCache::at(dir.path());
        assert!(c.get("k").is_none());
        let d = Drv {
            drv: "/nix/store/a-x.drv".into(),
            out: "/nix/store/b-x".into(),
        };
        c.put("k", &d);
        assert_eq!(c.get("k"), Some(d));
        std::fs::write(dir.path().join("guard/cache/eval/j"), "{").unwrap();
        assert!(c.get("j").is_none());
    }
}

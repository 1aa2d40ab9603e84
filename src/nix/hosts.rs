//! Which hosts a flake defines, and each host's entry module, found
//! statically (no nix): `[hosts]` in guard.toml, else an attribute set
//! literal under `nixosConfigurations` in flake.nix, else the directory the
//! flake's wiring enumerates with `builtins.readDir`, else a conventional
//! directory (`machines/`, `hosts/`).

use std::collections::{BTreeMap, BTreeSet};

use crate::nix::parse::unparen;
use rnix::{SyntaxKind::*, SyntaxNode};
use serde::Serialize;

use crate::config::is_valid_host_name;
use crate::git::{BStr, Snapshot};
use crate::nix::eval;
use crate::nix::graph::{ParseCache, Tree};
use crate::nix::parse::{self, RefKind, Target};
use crate::report::Warning;

/// One NixOS host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    pub name: String,
    /// The entry module (a file).
    pub entry: String,
    /// The directory that belongs to this host alone (`machines/<name>`),
    /// when hosts are laid out one directory each. Everything in it is a
    /// dependency of the host: the flake's wiring may reach any file there
    /// through the host's name (`./. + "/${name}/hardware.nix"`).
    pub own_dir: Option<String>,
    /// Every repository path the host's builder names for it (its
    /// `modules` list, evaluated with the host's own arguments): where a
    /// per-host analysis starts. Empty when discovery did not evaluate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entry_points: Vec<String>,
}

/// How the host list was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "how", content = "where")]
pub enum Discovery {
    /// `[hosts]` in guard.toml.
    Config,
    /// The flake's outputs, evaluated statically (see `nix::eval`).
    Evaluated,
    /// An attribute set literal under `nixosConfigurations` in flake.nix.
    FlakeAttrs,
    /// The entries of a directory the flake's wiring reads with readDir.
    ReadDir(String),
    /// A conventional directory.
    Convention(String),
    /// Nothing found.
    None,
}

/// The hosts of one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct HostSet {
    pub hosts: BTreeMap<String, Host>,
    /// The directory holding one entry per host, if there is one.
    pub hosts_dir: Option<String>,
    /// flake.nix, repository-relative.
    pub flake_nix: String,
    pub discovery: Discovery,
    /// Targets that are not NixOS hosts: darwin and home-manager
    /// configurations, deploy-tool nodes (kind -> names).
    pub others: BTreeMap<String, Vec<String>>,
    /// Deploy tools the flake is set up for (`nixinate`, `colmena`,
    /// `deploy-rs`) -> the names each deploys.
    #[serde(skip)]
    pub deploy_tools: BTreeMap<String, Vec<String>>,
    pub warnings: Vec<Warning>,
    /// Entry files and own directories -> host name.
    #[serde(skip)]
    by_path: std::collections::HashMap<String, String>,
}

impl HostSet {
    /// No hosts yet, for the flake at `flake_nix`.
    fn empty(flake_nix: &str) -> HostSet {
        HostSet {
            hosts: BTreeMap::new(),
            hosts_dir: None,
            flake_nix: flake_nix.to_string(),
            discovery: Discovery::None,
            others: BTreeMap::new(),
            deploy_tools: BTreeMap::new(),
            warnings: Vec::new(),
            by_path: Default::default(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    /// The host that owns `path` (its entry file or a path in its own
    /// directory), if any.
    pub fn owner(&self, path: &str) -> Option<&str> {
        // Walk up the path's ancestors: a lookup each, not a scan of hosts.
        let mut cur = path;
        loop {
            if let Some(h) = self.by_path.get(cur) {
                return Some(h.as_str());
            }
            match cur.rfind('/') {
                Some(i) => cur = &cur[..i],
                None => return None,
            }
        }
    }

    /// Rebuilds the path -> host index after `hosts` changed.
    fn index(&mut self) {
        self.by_path.clear();
        for h in self.hosts.values() {
            self.by_path.insert(h.entry.clone(), h.name.clone());
            if let Some(d) = &h.own_dir {
                self.by_path.insert(d.clone(), h.name.clone());
            }
        }
    }
}

/// `path` lies strictly below directory `dir` ("" is the root).
pub fn is_below(path: &str, dir: &str) -> bool {
    dir.is_empty() && !path.is_empty()
        || path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Finds the hosts of `snapshot`. `flake_dir` is the repository-relative
/// directory of flake.nix.
pub fn discover(
    snapshot: &Snapshot,
    flake_dir: &str,
    configured: &BTreeMap<String, String>,
    cache: &ParseCache,
) -> HostSet {
    let tree = Tree::new(snapshot);
    let flake_nix = join(flake_dir, "flake.nix");
    let mut set = HostSet::empty(&flake_nix);
    discover_into(&mut set, snapshot, flake_dir, configured, cache, &tree);
    set.index();
    set
}

fn discover_into(
    set: &mut HostSet,
    snapshot: &Snapshot,
    flake_dir: &str,
    configured: &BTreeMap<String, String>,
    cache: &ParseCache,
    tree: &Tree,
) {
    let flake_nix = set.flake_nix.clone();

    if !configured.is_empty() {
        for (name, entry) in configured {
            let entry = parse::normalize(entry).unwrap_or_default();
            let file = if tree.is_dir(&entry) {
                join(&entry, "default.nix")
            } else {
                entry.clone()
            };
            if !tree.is_file(&file) {
                set.warnings.push(Warning {
                    path: Some(file.clone()),
                    message: format!("host {name}: configured entry module is not tracked"),
                });
            }
            set.hosts.insert(
                name.clone(),
                Host {
                    name: name.clone(),
                    entry: file,
                    own_dir: tree.is_dir(&entry).then_some(entry),
                    entry_points: Vec::new(),
                },
            );
        }
        set.discovery = Discovery::Config;
        return;
    }

    let flake_src = snapshot
        .read(BStr::new(&flake_nix))
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok());
    let Some(flake_src) = flake_src else {
        set.warnings.push(Warning {
            path: Some(flake_nix),
            message: "no flake.nix: no hosts to analyse".into(),
        });
        return;
    };

    match evaluate_targets(snapshot, flake_dir, cache) {
        Ok(found) if found.nixos.present && !found.nixos.targets.is_empty() => {
            if let Some(why) = &found.nixos.incomplete {
                set.warnings.push(Warning {
                    path: Some(flake_nix.clone()),
                    message: format!(
                        "the host list may be incomplete ({why}); list missing hosts under [hosts] in guard.toml"
                    ),
                });
            }
            for name in found
                .nixos
                .targets
                .keys()
                .filter(|n| !is_valid_host_name(n))
            {
                set.warnings.push(Warning {
                    path: Some(flake_nix.clone()),
                    message: format!(
                        "host name {name:?} is not a valid host name; not treated as a host"
                    ),
                });
            }
            set.hosts = found
                .nixos
                .targets
                .iter()
                .filter(|(name, _)| is_valid_host_name(name))
                .map(|(name, t)| (name.clone(), host_from_target(name, t, &flake_nix, tree)))
                .collect();
            set.others = other_targets(&found);
            set.deploy_tools = found.deploy_tools.clone();
            set.discovery = Discovery::Evaluated;
            // A builder guard does not model (a custom evaluator instead of
            // nixosSystem) names no entry points: take the entry the
            // layout conventions give the same name.
            if set.hosts.values().any(|h| h.entry == flake_nix) {
                let mut conventional = HostSet::empty(&flake_nix);
                discover_by_convention(
                    &mut conventional,
                    snapshot,
                    flake_dir,
                    &flake_src,
                    cache,
                    tree,
                );
                for h in set.hosts.values_mut() {
                    if h.entry == flake_nix
                        && let Some(c) = conventional.hosts.get(&h.name)
                    {
                        h.entry = c.entry.clone();
                        h.own_dir = c.own_dir.clone();
                    }
                }
            }
            set.hosts_dir = common_hosts_dir(&set.hosts);
            return;
        }
        Ok(found) => {
            set.others = other_targets(&found);
            set.deploy_tools = found.deploy_tools.clone();
            let why = match (&found.nixos.incomplete, found.nixos.present) {
                (Some(why), _) => why.clone(),
                (None, true) => "nixosConfigurations is empty".into(),
                (None, false) => "the flake defines no nixosConfigurations".into(),
            };
            set.warnings.push(Warning {
                path: Some(flake_nix.clone()),
                message: format!("cannot list the hosts by evaluating the flake statically: {why}"),
            });
        }
        Err(e) => set.warnings.push(Warning {
            path: Some(e.file.clone().unwrap_or_else(|| flake_nix.clone())),
            message: format!("cannot list the hosts by evaluating the flake statically: {e}"),
        }),
    }

    discover_by_convention(set, snapshot, flake_dir, &flake_src, cache, tree);
}

/// The fallback when the flake cannot be evaluated statically: attribute
/// names under `nixosConfigurations`, a directory the wiring reads with
/// readDir, or a conventional directory.
fn discover_by_convention(
    set: &mut HostSet,
    snapshot: &Snapshot,
    flake_dir: &str,
    flake_src: &str,
    cache: &ParseCache,
    tree: &Tree,
) {
    let flake_nix = set.flake_nix.clone();
    if let Some(hosts) = hosts_from_attrs(flake_src, flake_dir, tree) {
        set.hosts = hosts;
        set.discovery = Discovery::FlakeAttrs;
        set.hosts_dir = common_hosts_dir(&set.hosts);
        return;
    }

    for dir in read_dir_candidates(snapshot, &flake_nix, flake_dir, cache) {
        let hosts = hosts_in_dir(tree, &dir, &mut set.warnings);
        if !hosts.is_empty() {
            set.hosts = hosts;
            set.hosts_dir = Some(dir.clone());
            set.discovery = Discovery::ReadDir(dir);
            return;
        }
    }

    for conv in [
        "machines",
        "hosts",
        "nixos/machines",
        "nixos/hosts",
        "systems",
    ] {
        let dir = join(flake_dir, conv);
        let hosts = hosts_in_dir(tree, &dir, &mut set.warnings);
        if !hosts.is_empty() {
            set.hosts = hosts;
            set.hosts_dir = Some(dir.clone());
            set.discovery = Discovery::Convention(dir);
            return;
        }
    }
    set.warnings.push(Warning {
        path: Some(flake_nix),
        message: "found no nixosConfigurations statically; list them under [hosts] in guard.toml"
            .into(),
    });
}

/// One evaluation of a flake's targets, valid while the files and
/// directories it read are the same ([`eval::fingerprint`]).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Evaluated {
    flake_dir: String,
    reads: Vec<String>,
    fingerprint: [u8; 32],
    result: Result<eval::flake::FlakeTargets, eval::EvalError>,
}

/// The evaluations kept on disk, for one guard build.
#[derive(serde::Serialize, serde::Deserialize)]
struct EvaluatedFile {
    build: String,
    entries: Vec<Evaluated>,
}

/// Static evaluations of a flake this process ran (memo misses), for
/// `GUARD_DEBUG_PIPELINE`.
static EVALUATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many times this process evaluated a flake's targets rather than
/// reusing an evaluation of the same files.
pub fn evaluations() -> usize {
    EVALUATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Evaluations kept (in this process and on disk): a change's two sides,
/// a few branches.
const EVALUATIONS_KEPT: usize = 8;

/// The flake's targets from the static evaluator, run on a thread with a
/// large stack (evaluation recurses with the Nix code's own depth).
///
/// Reused while what the evaluation read is unchanged: from this process
/// (a change's two sides, a bisect's commits rarely differ in the few files
/// the list depends on) and from `host-eval.bin` beside the parse cache
/// (the wiring changes far less often than the rest: evaluating it was
/// half of `guard affected` on a fleet with much wiring).
fn evaluate_targets(
    snapshot: &Snapshot,
    flake_dir: &str,
    cache: &ParseCache,
) -> Result<eval::flake::FlakeTargets, eval::EvalError> {
    type Memo = (Option<std::path::PathBuf>, Vec<Evaluated>);
    static MEMO: std::sync::Mutex<Option<Memo>> = std::sync::Mutex::new(None);
    let file = cache
        .dir()
        .zip(crate::nix::graph::build_identity())
        .map(|(d, build)| (d.join("host-eval.bin"), build));
    let path = file.as_ref().map(|(p, _)| p.clone());
    {
        let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
        // Entries are valid for any repository (they hold what they read);
        // the disk's are loaded once per cache file.
        if memo
            .as_ref()
            .is_none_or(|(from, _)| path.is_some() && *from != path)
        {
            let mut entries = file.as_ref().map(load_evaluated).unwrap_or_default();
            if let Some((_, mine)) = memo.take() {
                entries.extend(mine);
            }
            let excess = entries.len().saturating_sub(EVALUATIONS_KEPT);
            entries.drain(..excess);
            *memo = Some((path.clone(), entries));
        }
        let (_, entries) = memo.as_ref().expect("set above");
        for e in entries.iter().rev() {
            if e.flake_dir == flake_dir && eval::fingerprint(snapshot, &e.reads) == e.fingerprint {
                return e.result.clone();
            }
        }
    }
    EVALUATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (result, reads) = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("guard-eval".into())
            .stack_size(256 << 20)
            .spawn_scoped(s, || eval::flake::flake_targets(snapshot, flake_dir))
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        Err(eval::EvalError::new("the static evaluator failed")),
                        Vec::new(),
                    )
                })
            })
            .unwrap_or_else(|e| {
                (
                    Err(eval::EvalError::new(format!(
                        "cannot start the evaluator: {e}"
                    ))),
                    Vec::new(),
                )
            })
    });
    if !reads.is_empty() {
        // A directory is often read many times over: print it once.
        let mut reads = reads;
        reads.sort_unstable();
        reads.dedup();
        let fingerprint = eval::fingerprint(snapshot, &reads);
        let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
        let (_, memo) = memo.get_or_insert_with(|| (path.clone(), Vec::new()));
        if memo.len() >= EVALUATIONS_KEPT {
            let _ = memo.remove(0);
        }
        memo.push(Evaluated {
            flake_dir: flake_dir.to_string(),
            reads,
            fingerprint,
            result: result.clone(),
        });
        if let Some((path, build)) = &file {
            // Best effort, like the parse cache: a read-only git dir only
            // costs the next run an evaluation.
            let _ = save_evaluated(path, build, memo);
        }
    }
    result
}

/// The evaluations on disk made by this guard build; none when the file is
/// missing, unreadable or from another build.
fn load_evaluated((path, build): &(std::path::PathBuf, &str)) -> Vec<Evaluated> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    match postcard::from_bytes::<EvaluatedFile>(&bytes) {
        Ok(f) if f.build == *build => f.entries,
        _ => Vec::new(),
    }
}

/// Writes the evaluations atomically (a temporary file renamed into place).
fn save_evaluated(
    path: &std::path::Path,
    build: &str,
    entries: &[Evaluated],
) -> std::io::Result<()> {
    let file = EvaluatedFile {
        build: build.to_string(),
        entries: entries.to_vec(),
    };
    let bytes = postcard::to_stdvec(&file).map_err(std::io::Error::other)?;
    let dir = path.parent().expect("the cache path has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".host-eval.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn other_targets(found: &eval::flake::FlakeTargets) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (kind, o) in [
        ("darwin", &found.darwin),
        ("home", &found.home),
        ("deploy-nodes", &found.deploy_nodes),
    ] {
        if !o.targets.is_empty() {
            out.insert(kind.to_string(), o.targets.keys().cloned().collect());
        }
    }
    out
}

/// A host from an evaluated target: its entry is the entry point that
/// belongs to it (named after it, or the first one); a directory named
/// after the host is its own directory.
fn host_from_target(name: &str, t: &eval::flake::Target, flake_nix: &str, tree: &Tree) -> Host {
    let named = |p: &&String| {
        p.split('/')
            .any(|c| c == name || c.strip_suffix(".nix") == Some(name))
    };
    let chosen = t
        .entry_points
        .iter()
        .find(named)
        .or_else(|| t.entry_points.first());
    let Some(p) = chosen else {
        return Host {
            name: name.to_string(),
            entry: flake_nix.to_string(),
            own_dir: None,
            entry_points: Vec::new(),
        };
    };
    if tree.is_dir(p) {
        let entry = ["default.nix", "configuration.nix"]
            .iter()
            .map(|f| join(p, f))
            .find(|f| tree.is_file(f))
            .unwrap_or_else(|| join(p, "default.nix"));
        let own = p.rsplit('/').next() == Some(name);
        return Host {
            name: name.to_string(),
            entry,
            own_dir: own.then(|| p.clone()),
            entry_points: t.entry_points.clone(),
        };
    }
    let parent = p.rsplit_once('/').map(|(d, _)| d.to_string());
    let own = parent
        .as_deref()
        .filter(|d| d.rsplit('/').next() == Some(name))
        .map(str::to_string);
    Host {
        name: name.to_string(),
        entry: p.clone(),
        own_dir: own,
        entry_points: t.entry_points.clone(),
    }
}

/// `nixosConfigurations = { alpha = mkHost ./hosts/alpha; ... };` and
/// `nixosConfigurations.alpha = ...;`: names from the attribute names, entry
/// from the first constant relative path in each value.
fn hosts_from_attrs(src: &str, flake_dir: &str, tree: &Tree) -> Option<BTreeMap<String, Host>> {
    let root = rnix::Root::parse(src).syntax();
    let mut hosts = BTreeMap::new();
    for apv in root
        .descendants()
        .filter(|n| n.kind() == NODE_ATTRPATH_VALUE)
    {
        let mut kids = apv.children();
        let (Some(path), Some(value)) = (kids.next(), kids.next()) else {
            continue;
        };
        let attrs: Vec<String> = path
            .children()
            .map(|a| a.text().to_string().trim_matches('"').to_string())
            .collect();
        let Some(pos) = attrs.iter().position(|a| a == "nixosConfigurations") else {
            continue;
        };
        match &attrs[pos + 1..] {
            [] => {
                let value = unparen(&value);
                if value.kind() != NODE_ATTR_SET {
                    return None;
                }
                for inner in value.children().filter(|n| n.kind() == NODE_ATTRPATH_VALUE) {
                    let mut k = inner.children();
                    let (Some(p), Some(v)) = (k.next(), k.next()) else {
                        continue;
                    };
                    let name = p.text().to_string().trim_matches('"').to_string();
                    if let Some(h) = host_from_value(&name, &v, flake_dir, tree) {
                        hosts.insert(name, h);
                    }
                }
            }
            [name] => {
                if let Some(h) = host_from_value(name, &value, flake_dir, tree) {
                    hosts.insert(name.clone(), h);
                }
            }
            _ => {}
        }
    }
    (!hosts.is_empty()).then_some(hosts)
}

fn host_from_value(name: &str, value: &SyntaxNode, flake_dir: &str, tree: &Tree) -> Option<Host> {
    if !is_valid_host_name(name) {
        return None;
    }
    let path = value.descendants().find(|n| {
        n.kind() == NODE_PATH_REL && n.children().next().is_none() && n.text() != "./."
    })?;
    let p = parse::normalize(&format!("/{flake_dir}/{}", path.text()))?;
    if tree.is_file(&p) {
        Some(Host {
            name: name.to_string(),
            entry: p,
            own_dir: None,
            entry_points: Vec::new(),
        })
    } else {
        Some(Host {
            name: name.to_string(),
            entry: join(&p, "default.nix"),
            own_dir: Some(p),
            entry_points: Vec::new(),
        })
    }
}

/// Directories read with `readDir` by flake.nix or the files it imports
/// (a few levels deep): where hand-written autoloaders find hosts.
fn read_dir_candidates(
    snapshot: &Snapshot,
    flake_nix: &str,
    flake_dir: &str,
    cache: &ParseCache,
) -> Vec<String> {
    let graph =
        crate::nix::graph::ImportGraph::build(snapshot, flake_dir, &[flake_nix.to_string()], cache);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    // Breadth-first from flake.nix, so the flake's own readDir wins.
    let mut queue = std::collections::VecDeque::from([(flake_nix.to_string(), 0)]);
    let mut visited = BTreeSet::new();
    while let Some((file, depth)) = queue.pop_front() {
        if !visited.insert(file.clone()) {
            continue;
        }
        let Some(node) = graph.nodes.get(&file) else {
            continue;
        };
        for r in &node.refs.refs {
            if let (RefKind::List, Target::Path(d)) = (&r.kind, &r.target)
                && seen.insert(d.clone())
            {
                out.push(d.clone());
            }
        }
        if depth < 3 {
            for r in &node.refs.refs {
                if let (RefKind::Import, Target::Path(p)) = (&r.kind, &r.target) {
                    let f = if p.ends_with(".nix") {
                        p.clone()
                    } else {
                        join(p, "default.nix")
                    };
                    queue.push_back((f, depth + 1));
                }
            }
        }
    }
    out
}

/// Subdirectories holding a default.nix, else `*.nix` files (other than
/// default.nix): one host each.
fn hosts_in_dir(tree: &Tree, dir: &str, warnings: &mut Vec<Warning>) -> BTreeMap<String, Host> {
    let children = tree.children(dir);
    let mut hosts = BTreeMap::new();
    for (name, is_dir) in &children {
        let path = join(dir, name);
        if *is_dir && tree.is_file(&join(&path, "default.nix")) {
            if is_valid_host_name(name) {
                hosts.insert(
                    name.clone(),
                    Host {
                        name: name.clone(),
                        entry: join(&path, "default.nix"),
                        own_dir: Some(path),
                        entry_points: Vec::new(),
                    },
                );
            } else {
                warnings.push(Warning {
                    path: Some(path),
                    message: "directory name is not a valid host name; not treated as a host"
                        .into(),
                });
            }
        }
    }
    if hosts.is_empty() {
        for (name, is_dir) in &children {
            if let Some(stem) = name.strip_suffix(".nix")
                && !is_dir
                && stem != "default"
                && is_valid_host_name(stem)
            {
                hosts.insert(
                    stem.to_string(),
                    Host {
                        name: stem.to_string(),
                        entry: join(dir, name),
                        own_dir: None,
                        entry_points: Vec::new(),
                    },
                );
            }
        }
    }
    hosts
}

/// The directory directly above every host's own directory, if they share one.
fn common_hosts_dir(hosts: &BTreeMap<String, Host>) -> Option<String> {
    let mut parents = hosts.values().map(|h| {
        let own = h.own_dir.as_deref().unwrap_or(&h.entry);
        own.rsplit_once('/').map_or("", |(d, _)| d).to_string()
    });
    let first = parents.next()?;
    parents.all(|p| p == first).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below() {
        assert!(is_below("machines/a/x.nix", "machines/a"));
        assert!(!is_below("machines/ab/x.nix", "machines/a"));
        assert!(!is_below("machines/a", "machines/a"));
        assert!(is_below("x", ""));
    }
}

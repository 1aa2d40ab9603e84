//! The soundness self-check: where nix runs anyway (CI, `check` at a nix
//! level), ask it for each host's module graph (nixpkgs' `lib.evalModules`
//! result carries `graph`: the tree of module files the module system
//! really imported), map its files back to repository paths and compare
//! with guard's static answer for the host.
//!
//! A repository file in nix's graph whose change would not list the host
//! is a **soundness miss** ([`SOUNDNESS_MISS`]): reported with nix's chain,
//! and the host is treated as changed when the change touches the file.
//! Static closure files nix did not import are only counted (guard
//! over-approximates on purpose; module graphs do not hold files read
//! through values, so they are no measure of precision alone).
//!
//! The graphs are asked from the same bounded evaluation workers as the
//! drvPaths ([`super::eval`]), and kept under the same content key as the
//! evaluation cache ([`super::cache`]), in `<git-dir>/guard/cache/graph`,
//! so a host whose inputs did not change is not asked again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use super::cache::JsonDir;
use super::eval::{Done, Job, Limits};
use super::progress::Progress;
use crate::git::{ByteSlice, Snapshot};
use crate::nix::cli::Nix;
use crate::nix::modgraph::{self, NixGraph, Place};
use crate::nix::repl::Answer;
use crate::report::{RuleInfo, SOUNDNESS_MISS, SelfCheck, Severity, SoundnessMiss};

/// The rule of a soundness miss, for the one rule registry.
pub fn rule_info() -> RuleInfo {
    RuleInfo {
        id: SOUNDNESS_MISS.into(),
        title: "nix imports a repository file that guard's static analysis misses".into(),
        description: "The self-check compared the module graph nix collected for a host \
                      (lib.evalModules' `graph`) with guard's static answer: a change to this \
                      file would not list the host, so guard could skip a host that changed."
            .into(),
        help: "If the file is listed under [affected] ignore in guard.toml, remove it there. \
               Otherwise guard's analysis missed the reference: please report the host, the \
               file and nix's chain (no file contents needed). Until then the host is built \
               whenever the file changes."
            .into(),
        severity: Severity::Warning,
    }
}

/// One repository file of a host's module graph.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GraphFile {
    /// The repository paths it can be (one, unless it was reached through
    /// a copy of a directory whose name several directories share).
    pub candidates: Vec<String>,
    /// nix's chain of module files from the host's entry to it.
    pub chain: Vec<String>,
}

/// A host's module graph as the self-check keeps it: the repository files
/// only.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostGraph {
    pub files: Vec<GraphFile>,
}

/// The repository's files and directories by name, to map copies
/// (`/nix/store/<hash>-hosts/web/default.nix`) back to their paths.
pub struct RepoIndex {
    files: BTreeSet<String>,
    dirs_by_name: HashMap<String, Vec<String>>,
    files_by_name: HashMap<String, Vec<String>>,
}

impl RepoIndex {
    /// The index of a snapshot's tracked files.
    pub fn of(snapshot: &Snapshot) -> RepoIndex {
        let mut files = BTreeSet::new();
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        let mut files_by_name: HashMap<String, Vec<String>> = HashMap::new();
        for p in snapshot.entries().keys() {
            let p = p.to_str_lossy().into_owned();
            let mut d = p.as_str();
            while let Some((parent, _)) = d.rsplit_once('/') {
                if !dirs.insert(parent.to_string()) {
                    break;
                }
                d = parent;
            }
            files_by_name
                .entry(base(&p).to_string())
                .or_default()
                .push(p.clone());
            files.insert(p);
        }
        let mut dirs_by_name: HashMap<String, Vec<String>> = HashMap::new();
        for d in dirs {
            dirs_by_name
                .entry(base(&d).to_string())
                .or_default()
                .push(d);
        }
        RepoIndex {
            files,
            dirs_by_name,
            files_by_name,
        }
    }

    /// The repository paths a graph file can be (none: outside the
    /// repository).
    fn candidates(&self, place: &Place) -> Vec<String> {
        match place {
            Place::Repo(p) => vec![p.clone()],
            Place::Copied { name, rest } if rest.is_empty() => {
                self.files_by_name.get(name).cloned().unwrap_or_default()
            }
            Place::Copied { name, rest } => self
                .dirs_by_name
                .get(name)
                .into_iter()
                .flatten()
                .map(|d| format!("{d}/{rest}"))
                .filter(|p| self.files.contains(p))
                .collect(),
            Place::Other => Vec::new(),
        }
    }
}

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The repository files of nix's graph, each with its chain (repository
/// paths where known, else the store path without its hash).
pub fn host_graph(g: &NixGraph, index: &RepoIndex) -> HostGraph {
    let name = |f: &str| -> (Vec<String>, String) {
        let c = index.candidates(&modgraph::place(f, &g.source));
        let label = match c.as_slice() {
            [one] => one.clone(),
            _ => modgraph::label(f, &g.source),
        };
        (c, label)
    };
    let mut files: Vec<GraphFile> = Vec::new();
    let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
    for (f, chain) in modgraph::files_with_chains(g) {
        let (candidates, _) = name(&f);
        if candidates.is_empty() || !seen.insert(candidates.clone()) {
            continue;
        }
        let chain = chain.iter().map(|c| name(c).1).collect();
        files.push(GraphFile { candidates, chain });
    }
    HostGraph { files }
}

/// The graph cache of one repository (`<git-dir>/guard/cache/graph`).
#[derive(Debug, Clone)]
pub struct GraphCache(JsonDir);

impl GraphCache {
    pub fn at(git_dir: &Path) -> GraphCache {
        GraphCache(JsonDir(git_dir.join("guard").join("cache").join("graph")))
    }

    pub fn get(&self, key: &str) -> Option<HostGraph> {
        self.0.get(key)
    }

    pub fn put(&self, key: &str, g: &HostGraph) {
        self.0.put(key, g);
    }
}

/// Graphs one worker is started for (see [`collect`]).
const GRAPHS_PER_WORKER: usize = 4;

/// What to ask.
pub struct Request {
    /// The flake of the snapshot judged.
    pub flake: String,
    pub hosts: Vec<String>,
    /// Host -> content key (hosts without one are always asked).
    pub keys: BTreeMap<String, String>,
    /// The paths the change touches: a cached graph holding one of them
    /// is asked again (the key is guard's static view of the host, which
    /// may be what missed the file).
    pub changed: BTreeSet<String>,
    pub cache: Option<GraphCache>,
    pub limits: Limits,
}

/// What nix answered.
#[derive(Debug, Default)]
pub struct Graphs {
    pub graphs: BTreeMap<String, HostGraph>,
    pub from_cache: usize,
    /// Hosts whose configuration has no `graph`.
    pub no_graph: Vec<String>,
    /// Hosts whose graph could not be had, with why (first line).
    pub failed: Vec<(String, String)>,
    /// The workers could not load the flake.
    pub broken: Option<String>,
    /// Time nix spent answering the graphs asked, summed over them.
    pub nix_ms: u64,
}

/// The graphs the cache has (`Graphs`), and the hosts nix must answer.
pub fn cached(req: &Request) -> (Graphs, Vec<String>) {
    let mut out = Graphs::default();
    let mut ask = Vec::new();
    for h in &req.hosts {
        let cached = req
            .cache
            .as_ref()
            .zip(req.keys.get(h))
            .and_then(|(c, k)| c.get(k))
            .filter(|g: &HostGraph| {
                !g.files
                    .iter()
                    .flat_map(|f| &f.candidates)
                    .any(|p| req.changed.contains(p))
            });
        match cached {
            Some(g) => {
                out.graphs.insert(h.clone(), g);
                out.from_cache += 1;
            }
            None => ask.push(h.clone()),
        }
    }
    (out, ask)
}

/// Takes nix's answers for the hosts asked (mapped to the repository,
/// stored in the cache); a host without an answer was not evaluated.
pub fn receive(
    out: &mut Graphs,
    req: &Request,
    asked: &[String],
    mut answers: BTreeMap<String, Done>,
    index: &RepoIndex,
) {
    for host in asked {
        let answer = answers.remove(host).map(|d| {
            out.nix_ms += d.ms;
            d.answer
        });
        match answer {
            Some(Answer::Graph(g)) => {
                let hg = host_graph(&g, index);
                if let (Some(c), Some(k)) = (&req.cache, req.keys.get(host)) {
                    c.put(k, &hg);
                }
                out.graphs.insert(host.clone(), hg);
            }
            Some(Answer::NoGraph) => out.no_graph.push(host.clone()),
            Some(Answer::Missing) => out
                .failed
                .push((host.clone(), "nix does not define it".into())),
            Some(Answer::Failed(m)) => out.failed.push((host.clone(), first_line(&m))),
            Some(other) => out.failed.push((host.clone(), format!("{other:?}"))),
            None => out.failed.push((host.clone(), "not evaluated".into())),
        }
    }
}

/// Every host's graph on its own workers (`guard affected --self-check`;
/// `check` and `ci` let the build's workers answer, see
/// `crate::build::Plan::graphs`): from the cache where its key is known,
/// else from nix. Never fails: what nix could not answer is listed in
/// [`Graphs`].
pub fn collect(nix: &Nix, req: &Request, index: &RepoIndex, progress: &dyn Progress) -> Graphs {
    let (mut out, ask) = cached(req);
    if ask.is_empty() {
        return out;
    }
    let jobs: Vec<Job> = ask.iter().map(|h| Job::graph_of(h)).collect();
    progress.phase(&format!(
        "self-check: module graphs of {} {}",
        jobs.len(),
        if jobs.len() == 1 { "host" } else { "hosts" }
    ));
    // A graph costs about what starting a worker does (nix loads the flake
    // and the module files either way): one worker per few graphs.
    let limits = Limits {
        workers: req
            .limits
            .workers
            .min(jobs.len().div_ceil(GRAPHS_PER_WORKER)),
        ..req.limits
    };
    let (results, _, broken) = super::eval::evaluate(
        nix,
        std::slice::from_ref(&req.flake),
        jobs,
        limits,
        progress,
    );
    out.broken = broken.get(&0).map(|e| first_line(&e.to_string()));
    let answers = results.into_iter().map(|(j, d)| (j.host, d)).collect();
    receive(&mut out, req, &ask, answers, index);
    progress.phase_done(&format!(
        "self-check: {} module graphs from nix",
        out.graphs.len() - out.from_cache
    ));
    out
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string()
}

/// What guard's static analysis says about one host, for [`compare`].
pub struct StaticAnswer<'a> {
    /// Repository path -> the hosts a change to it lists.
    pub lists: &'a BTreeMap<String, BTreeSet<String>>,
    /// Host -> the files of its static import closure (precision counts).
    pub closures: &'a BTreeMap<String, BTreeSet<String>>,
    /// The paths the change touches.
    pub changed: &'a BTreeSet<String>,
    /// Whether a path matches `[affected] ignore`.
    pub ignored: &'a dyn Fn(&str) -> bool,
}

/// Compares every host's graph with the static answer.
pub fn compare(graphs: &BTreeMap<String, HostGraph>, statics: &StaticAnswer<'_>) -> SelfCheck {
    let mut check = SelfCheck {
        hosts_checked: graphs.len(),
        ..Default::default()
    };
    for (host, g) in graphs {
        let mut imported: BTreeSet<&str> = BTreeSet::new();
        for f in &g.files {
            imported.extend(f.candidates.iter().map(String::as_str));
            let listed = f
                .candidates
                .iter()
                .any(|c| statics.lists.get(c).is_some_and(|hs| hs.contains(host)));
            if listed {
                continue;
            }
            let path = f.candidates[0].clone();
            let changed = f.candidates.iter().any(|c| statics.changed.contains(c));
            check.misses.push(SoundnessMiss {
                host: host.clone(),
                message: miss_message(host, &path, changed, (statics.ignored)(&path)),
                path,
                chain: f.chain.clone(),
                changed,
            });
        }
        check.nix_files += g.files.len();
        if let Some(c) = statics.closures.get(host) {
            check.static_files += c.len();
            check.static_only += c.iter().filter(|f| !imported.contains(f.as_str())).count();
        }
    }
    check
}

fn miss_message(host: &str, path: &str, changed: bool, ignored: bool) -> String {
    let mut m = format!(
        "nix imports {path} into host {host}, but guard's static answer does not list {host} when {path} changes."
    );
    if ignored {
        m.push_str(" It matches [affected] ignore in guard.toml: remove it there.");
    } else {
        m.push_str(
            " Please report it to guard (the host, the file, nix's chain and guard's version; no file contents).",
        );
    }
    if changed {
        m.push_str(&format!(
            " The change touches it: {host} is treated as changed for this run."
        ));
    }
    m
}

/// Why the self-check did not run for some hosts, said once.
pub fn skipped_note(g: &Graphs) -> Option<String> {
    let mut notes = Vec::new();
    if let Some(b) = &g.broken {
        notes.push(format!(
            "nix could not load the flake, no module graph: {b}"
        ));
    }
    if !g.no_graph.is_empty() {
        notes.push(format!(
            "the flake's configurations have no module graph (`graph`, from nixpkgs' lib.evalModules; an older nixpkgs lacks it), so {} {} not checked",
            g.no_graph.len(),
            if g.no_graph.len() == 1 {
                "host was"
            } else {
                "hosts were"
            }
        ));
    }
    if let Some((h, why)) = g.failed.first() {
        notes.push(format!(
            "no module graph for {} {} ({h}: {why})",
            g.failed.len(),
            if g.failed.len() == 1 { "host" } else { "hosts" }
        ));
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(files: &[(&[&str], &[&str])]) -> HostGraph {
        HostGraph {
            files: files
                .iter()
                .map(|(c, ch)| GraphFile {
                    candidates: c.iter().map(|s| s.to_string()).collect(),
                    chain: ch.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_file_whose_change_lists_no_host_is_a_miss_with_the_chain() {
        let graphs = BTreeMap::from([(
            "web".to_string(),
            graph(&[
                (&["hosts/web.nix"], &["hosts/web.nix"]),
                (&["mods/a.nix"], &["hosts/web.nix", "mods/a.nix"]),
                (&["x/t.nix", "y/t.nix"], &["hosts/web.nix", "t.nix"]),
            ]),
        )]);
        let lists = BTreeMap::from([
            ("hosts/web.nix".to_string(), BTreeSet::from(["web".into()])),
            ("y/t.nix".to_string(), BTreeSet::from(["web".into()])),
        ]);
        let closures = BTreeMap::from([(
            "web".to_string(),
            BTreeSet::from(["hosts/web.nix".into(), "mods/b.nix".into()]),
        )]);
        let changed = BTreeSet::from(["mods/a.nix".to_string()]);
        let ignored = |p: &str| p.starts_with("mods/");
        let c = compare(
            &graphs,
            &StaticAnswer {
                lists: &lists,
                closures: &closures,
                changed: &changed,
                ignored: &ignored,
            },
        );
        assert_eq!(c.misses.len(), 1, "{c:?}");
        let m = &c.misses[0];
        assert_eq!((m.host.as_str(), m.path.as_str()), ("web", "mods/a.nix"));
        assert_eq!(m.chain, vec!["hosts/web.nix", "mods/a.nix"]);
        assert!(
            m.changed && m.message.contains("[affected] ignore"),
            "{m:?}"
        );
        assert_eq!((c.static_files, c.static_only, c.nix_files), (2, 1, 3));
    }
}

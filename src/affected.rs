//! Changed paths -> affected hosts, each with the import chain that
//! explains it.
//!
//! Soundness contract (architecture.md): a host whose toplevel drvPath can
//! change between the two snapshots is listed. The analysis reads the *new*
//! snapshot's graph: a host's evaluation is a function of the files its
//! dependencies name, so if none of them changed, the old evaluation read
//! the same bytes and took the same decisions. Whatever cannot be resolved
//! widens the set (a computed path depends on its whole directory, a file
//! that does not parse on its directory, `toString ./x` on the whole tree).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::{Config, Stamps};
use crate::git::{BStr, ByteSlice, ChangeKind, ChangeSet, Snapshot};
use crate::nix::graph::{Dep, DepKind, ImportGraph, Node, ParseCache, Tree};
use crate::nix::hosts::{self, HostSet};
use crate::nix::lock;
use crate::nix::parse::{HOST_OPTIONAL_OUTPUTS, RefKind, Target};
use crate::report::{Affected, AffectedHost, Reason, Warning};

/// Reasons listed per host (one per changed path); more are counted in
/// [`AffectedHost::truncated`].
const MAX_REASONS: usize = 16;

/// Errors of the affected analysis (configuration only: the analysis itself
/// never fails, it widens).
#[derive(Debug, thiserror::Error)]
pub enum AffectedError {
    #[error("guard.toml: invalid glob {glob:?} in [affected]: {message}")]
    Glob { glob: String, message: String },
    /// A fleet without hosts would make every check pass: refuse.
    #[error(
        "no NixOS hosts found in {flake_nix}{details}\n\
         hint: list them in guard.toml as [hosts] <name> = \"<entry module>\" \
         (see `guard init --dry-run`), or run `guard affected --all --verify-hosts` \
         where nix can evaluate the flake"
    )]
    NoHosts { flake_nix: String, details: String },
}

/// Everything the static analysis knows about one snapshot.
pub struct Analysis {
    pub flake_dir: String,
    pub hosts: HostSet,
    pub graph: ImportGraph,
    /// Per host, the host-optional flake outputs (`packages`, `checks`,
    /// `perSystem`, ...) it, or the wiring that feeds it, reads from the
    /// flake: references in the value of any other such output cannot
    /// reach that host.
    pub host_read_outputs: BTreeMap<String, BTreeSet<String>>,
    /// Computed paths (directory, constant end) every match of which lies
    /// in some host's own directory (`./hosts/${n}/configuration.nix`):
    /// like a hosts directory, for each host they stand for its own files.
    host_templates: HashSet<(String, Option<String>)>,
    /// The references (file's refs, index) whose owners are all hosts:
    /// [`Analysis::module_of`] asks on every edge of every walk.
    host_owned_refs: HashSet<(usize, usize)>,
    /// Hosts whose own definitions name modules (`module_list_of`): only
    /// for these does a walk's result depend on the host itself.
    owning_hosts: BTreeSet<String>,
    /// Per owning host, the owned references that make its walks its own
    /// (not edges into hosts' own files, except for a host whose entry is
    /// flake.nix): hosts alike here walk alike.
    ownership: BTreeMap<String, Vec<(usize, usize)>>,
}

/// Whether a reference in the value of output `o` reaches a host that
/// reads the outputs `read`: a host-optional output it reads, one attribute
/// of a per-attribute output it reads (or all of them: "nixosModules.*"),
/// a whole per-attribute set when it reads any attribute; any other output.
fn output_is_read(o: &str, read: &BTreeSet<String>) -> bool {
    use crate::nix::parse::PER_ATTR_OUTPUTS;
    if let Some((m, _)) = o.split_once('.') {
        return read.contains(o) || read.contains(&format!("{m}.*"));
    }
    if PER_ATTR_OUTPUTS.contains(&o) {
        let prefix = format!("{o}.");
        return read.iter().any(|r| r.starts_with(&prefix));
    }
    read.contains(o) || !HOST_OPTIONAL_OUTPUTS.contains(&o)
}

/// The wiring no host owns, per set of outputs read, shared by the hosts
/// while their reads are computed.
type WiringMemo<'a> = HashMap<BTreeSet<String>, SharedWiring<'a>>;

/// A read of another host's configuration by a file a host reaches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CrossRead {
    pub file: String,
    pub line: u32,
    /// The host read: a name, or a prefix ending in "*".
    pub host: String,
    /// The option path read, when spelled out.
    pub option: Vec<String>,
}

/// A reason (and whether it is a stamp) with the hosts whose definitions
/// own the dependency it comes from (None: any host's).
type OwnedReason<'a> = ((Reason, bool), Option<&'a [String]>);

/// The wiring no host owns, with chains (see
/// [`Analysis::walk_shared_wiring`]).
struct SharedWalk<'a> {
    walk: Vec<(&'a str, Vec<&'a str>)>,
    files: HashSet<&'a str>,
    /// Edges to modules that hosts' definitions name: target, those hosts,
    /// and the index in `walk` of the file naming it.
    owned_starts: Vec<(&'a str, &'a [String], usize)>,
}

/// See [`Analysis::shared_wiring`].
struct SharedWiring<'a> {
    files: HashSet<&'a str>,
    /// The host-optional outputs its files read.
    outputs: BTreeSet<String>,
    /// Edges to modules that hosts' definitions name, with those hosts.
    owned_starts: Vec<(&'a str, &'a [String])>,
}

/// What a per-host walk depends on: the outputs the host reads, and the
/// references it owns.
type WalkKey = (BTreeSet<String>, Vec<(usize, usize)>);

/// Per-system outputs: reading one of them reads what flake-parts'
/// `perSystem` defines.
const PER_SYSTEM_OUTPUTS: &[&str] = &[
    "apps",
    "checks",
    "devShell",
    "devShells",
    "formatter",
    "legacyPackages",
    "packages",
];

impl Analysis {
    /// Discovers the hosts of `snapshot` and builds the import graph from
    /// flake.nix and every host's entry.
    pub fn of(
        snapshot: &Snapshot,
        flake_dir: &str,
        config: &Config,
        cache: &ParseCache,
    ) -> Analysis {
        let hosts = hosts::discover(snapshot, flake_dir, &config.hosts, cache);
        let tree = Tree::new(snapshot);
        let mut roots = vec![hosts.flake_nix.clone()];
        for h in hosts.hosts.values() {
            roots.push(h.entry.clone());
            if let Some(own) = &h.own_dir {
                roots.extend(
                    tree.under(own)
                        .filter(|p| p.ends_with(b".nix"))
                        .map(|p| p.to_str_lossy().into_owned()),
                );
            }
        }
        roots.sort();
        roots.dedup();
        let graph = ImportGraph::build(snapshot, flake_dir, &roots, cache);
        let host_templates = host_templates(&tree, &hosts, &graph);
        let mut analysis = Analysis {
            flake_dir: flake_dir.to_string(),
            hosts,
            graph,
            host_read_outputs: BTreeMap::new(),
            host_templates,
            host_owned_refs: HashSet::new(),
            owning_hosts: BTreeSet::new(),
            ownership: BTreeMap::new(),
        };
        let mut owned = HashSet::new();
        for node in analysis.graph.nodes.values() {
            for (i, r) in node.refs.refs.iter().enumerate() {
                if !r.module_list_of.is_empty()
                    && r.module_list_of
                        .iter()
                        .all(|o| analysis.hosts.hosts.contains_key(o))
                {
                    owned.insert((Arc::as_ptr(&node.refs) as usize, i));
                }
            }
        }
        analysis.host_owned_refs = owned;
        analysis.owning_hosts = analysis
            .graph
            .nodes
            .values()
            .flat_map(|n| n.refs.refs.iter())
            .filter(|r| {
                !r.module_list_of.is_empty()
                    && r.module_list_of
                        .iter()
                        .all(|o| analysis.hosts.hosts.contains_key(o))
            })
            .flat_map(|r| r.module_list_of.iter().cloned())
            .collect();
        let mut ownership: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
        for node in analysis.graph.nodes.values() {
            for (i, r) in node.refs.refs.iter().enumerate() {
                let id = (Arc::as_ptr(&node.refs) as usize, i);
                if !analysis.host_owned_refs.contains(&id) {
                    continue;
                }
                let host_edge = analysis.is_host_ref(r);
                for o in &r.module_list_of {
                    if !host_edge || analysis.entry_is_flake(&analysis.hosts.hosts[o]) {
                        ownership.entry(o.clone()).or_default().push(id);
                    }
                }
            }
        }
        analysis.ownership = ownership;
        // Hosts starting at flake.nix that own no modules read the same
        // outputs: computed once.
        let mut shared: Option<BTreeSet<String>> = None;
        let mut read = BTreeMap::new();
        let mut memo = WiringMemo::new();
        for (name, h) in &analysis.hosts.hosts {
            let outputs = if analysis.entry_is_flake(h) && !analysis.owning_hosts.contains(name) {
                shared
                    .get_or_insert_with(|| analysis.outputs_read_by(h, &mut memo))
                    .clone()
            } else {
                analysis.outputs_read_by(h, &mut memo)
            };
            read.insert(name.clone(), outputs);
        }
        analysis.host_read_outputs = read;
        analysis
    }

    /// The host-optional outputs `host` reads: from every file of its
    /// closure and of the wiring, where the wiring grows with each output
    /// found read, and a read inside another host-optional output counts
    /// once that output is read (a fixpoint; a handful of rounds at most).
    fn outputs_read_by<'a>(
        &'a self,
        host: &hosts::Host,
        memo: &mut WiringMemo<'a>,
    ) -> BTreeSet<String> {
        // A host whose entry is flake.nix itself has no files of its own:
        // its wiring is all of it.
        let host_files: Vec<&str> = if self.entry_is_flake(host) {
            Vec::new()
        } else {
            self.reach(self.starts(host), |_, _| true)
        };
        let name = Some(host.name.as_str());
        let owns = self.owning_hosts.contains(&host.name);
        let mut read = self.implicitly_read();
        loop {
            // The wiring no host owns is shared (walked once per set of
            // outputs read); an owning host adds what its own modules reach
            // from there.
            let base = memo
                .entry(read.clone())
                .or_insert_with(|| self.shared_wiring(&read));
            let mut next = read.clone();
            next.extend(base.outputs.iter().cloned());
            let mut extension = Vec::new();
            if owns {
                let starts: Vec<&str> = base
                    .owned_starts
                    .iter()
                    .filter(|(_, owners)| owners.iter().any(|o| Some(o.as_str()) == name))
                    .map(|(target, _)| *target)
                    .collect();
                extension = self.reach_beyond(&base.files, starts, |node, dep| {
                    self.wiring_dep_of(node, dep, &read, name)
                });
            }
            for f in host_files.iter().chain(&extension) {
                self.add_output_reads(f, &read, &mut next);
            }
            if next
                .iter()
                .any(|o| PER_SYSTEM_OUTPUTS.contains(&o.as_str()))
            {
                next.insert("perSystem".to_string());
            }
            if next == read {
                return read;
            }
            read = next;
        }
    }

    /// The wiring no host owns when the hosts read the outputs `read`: its
    /// files, the outputs they read, and where host-owned modules start.
    fn shared_wiring(&self, read: &BTreeSet<String>) -> SharedWiring<'_> {
        let files: HashSet<&str> = self
            .reach(vec![self.hosts.flake_nix.as_str()], |node, dep| {
                self.wiring_dep_of(node, dep, read, None) && self.module_of(node, dep).is_none()
            })
            .into_iter()
            .collect();
        let mut outputs = BTreeSet::new();
        let mut owned_starts = Vec::new();
        for f in &files {
            self.add_output_reads(f, read, &mut outputs);
            owned_starts.extend(self.owned_module_edges(f, read));
        }
        SharedWiring {
            files,
            outputs,
            owned_starts,
        }
    }

    /// The edges of the wiring file `file` to modules that hosts'
    /// definitions name (`modules = [ ./x ]` in `alpha = nixosSystem …`),
    /// with those hosts, outside outputs not in `read`.
    fn owned_module_edges<'a, 'r>(
        &'a self,
        file: &str,
        read: &'r BTreeSet<String>,
    ) -> impl Iterator<Item = (&'a str, &'a [String])> + use<'a, 'r> {
        let node = &self.graph.nodes[file];
        node.edges.iter().filter_map(move |(target, dep)| {
            let d = &node.deps[*dep];
            let owners = self.module_of(node, d)?;
            (!self.is_host_edge(node, d) && Self::in_read_output(node, d, read))
                .then_some((target.as_str(), owners))
        })
    }

    /// Adds the host-optional outputs `file` reads (where the output it
    /// reads them in is itself read) to `into`.
    fn add_output_reads(&self, file: &str, read: &BTreeSet<String>, into: &mut BTreeSet<String>) {
        let Some(node) = self.graph.nodes.get(file) else {
            return;
        };
        for (output, within) in &node.refs.output_reads {
            if within.as_ref().is_none_or(|w| output_is_read(w, read)) && !into.contains(output) {
                into.insert(output.clone());
            }
        }
    }

    /// The files reached from `starts` along the edges `follow` accepts
    /// (no chains: cheaper than [`Analysis::walk`]).
    fn reach<'a>(
        &'a self,
        starts: Vec<&'a str>,
        follow: impl Fn(&Node, &Dep) -> bool,
    ) -> Vec<&'a str> {
        self.reach_beyond(&HashSet::new(), starts, follow)
    }

    /// As [`Analysis::reach`], not entering the files of `known`.
    fn reach_beyond<'a>(
        &'a self,
        known: &HashSet<&str>,
        starts: Vec<&'a str>,
        follow: impl Fn(&Node, &Dep) -> bool,
    ) -> Vec<&'a str> {
        let mut seen: HashSet<&str> = known.clone();
        let mut out = Vec::new();
        let mut stack = starts;
        while let Some(file) = stack.pop() {
            if !seen.insert(file) {
                continue;
            }
            let Some(node) = self.graph.nodes.get(file) else {
                continue;
            };
            out.push(file);
            for (target, dep) in &node.edges {
                if !seen.contains(target.as_str()) && follow(node, &node.deps[*dep]) {
                    stack.push(target.as_str());
                }
            }
        }
        out
    }

    /// The host-optional outputs any host reads.
    pub fn outputs_read_by_any_host(&self) -> BTreeSet<String> {
        self.host_read_outputs.values().flatten().cloned().collect()
    }

    pub(crate) fn in_read_output(node: &Node, dep: &Dep, read: &BTreeSet<String>) -> bool {
        match dep
            .reference
            .and_then(|i| node.refs.refs[i].output.as_ref())
        {
            None => true,
            Some(o) => output_is_read(o, read),
        }
    }

    /// The wiring of `host` (of any host: None) when it reads the
    /// host-optional outputs `read`.
    fn walk_wiring(&self, read: &BTreeSet<String>, host: Option<&str>) -> Vec<(&str, Vec<&str>)> {
        self.walk(vec![self.hosts.flake_nix.as_str()], |node, dep| {
            self.wiring_dep_of(node, dep, read, host)
        })
    }

    /// Whether a dependency of a wiring file counts for `host` (for any
    /// host: None): not an edge into hosts' own files, not inside an output
    /// the host does not read, not a module another host's definition names
    /// (`other = nixosSystem { modules = [ ./x ]; }`).
    pub(crate) fn wiring_dep_of(
        &self,
        node: &Node,
        dep: &Dep,
        read: &BTreeSet<String>,
        host: Option<&str>,
    ) -> bool {
        !self.is_host_edge(node, dep)
            && Self::in_read_output(node, dep, read)
            && host.is_none_or(|h| {
                self.module_of(node, dep)
                    .is_none_or(|o| o.iter().any(|x| x == h))
            })
    }

    /// A computed path that stands for each host's own files (a hosts
    /// directory, a module template): per host, not a widening.
    pub fn is_host_template(&self, r: &crate::nix::parse::Reference) -> bool {
        match &r.target {
            Target::Under(d) => {
                self.hosts.hosts_dir.as_deref() == Some(d.as_str())
                    || self.hosts.owner(d).is_some()
                    || self.host_templates.contains(&(d.clone(), r.suffix.clone()))
            }
            _ => false,
        }
    }

    /// The host whose definition names this dependency in its modules list.
    /// The hosts whose definitions name this dependency in their modules
    /// lists, when all of them are hosts (None: every host's).
    fn module_of<'a>(&'a self, node: &'a Node, dep: &Dep) -> Option<&'a [String]> {
        let i = dep.reference?;
        self.host_owned_refs
            .contains(&(Arc::as_ptr(&node.refs) as usize, i))
            .then(|| node.refs.refs[i].module_list_of.as_slice())
    }

    /// The flake's wiring reaches host entries through these references; for
    /// one host they stand for that host's own entry, not every host's.
    pub fn is_host_edge(&self, node: &Node, dep: &Dep) -> bool {
        dep.reference
            .is_some_and(|i| self.is_host_ref(&node.refs.refs[i]))
    }

    /// See [`Analysis::is_host_edge`].
    fn is_host_ref(&self, r: &crate::nix::parse::Reference) -> bool {
        let hosts_dir = self.hosts.hosts_dir.as_deref();
        match (&r.kind, &r.target) {
            (RefKind::List, Target::Path(d)) => Some(d.as_str()) == hosts_dir,
            (_, Target::Under(_)) => self.is_host_template(r),
            (_, Target::Path(p)) => self.hosts.owner(p).is_some(),
            _ => false,
        }
    }

    /// The wiring: files reached from flake.nix without entering a host,
    /// outside outputs no host reads. A host depends on all of it that is
    /// outside the outputs it does not read ([`Analysis::wiring_for`]).
    pub fn wiring(&self) -> Vec<(&str, Vec<&str>)> {
        self.walk_wiring(&self.outputs_read_by_any_host(), None)
    }

    /// The wiring no host owns, for hosts reading the outputs `read`, with
    /// chains (the shared part of [`Analysis::wiring_for`]).
    fn walk_shared_wiring(&self, read: &BTreeSet<String>) -> SharedWalk<'_> {
        let walk = self.walk(vec![self.hosts.flake_nix.as_str()], |node, dep| {
            self.wiring_dep_of(node, dep, read, None) && self.module_of(node, dep).is_none()
        });
        let files = walk.iter().map(|(f, _)| *f).collect();
        let mut owned_starts = Vec::new();
        for (i, (file, _)) in walk.iter().enumerate() {
            owned_starts.extend(
                self.owned_module_edges(file, read)
                    .map(|(target, owners)| (target, owners, i)),
            );
        }
        SharedWalk {
            walk,
            files,
            owned_starts,
        }
    }

    /// What the modules `host`'s definition names reach beyond the shared
    /// wiring (`shared`, from [`Analysis::walk_shared_wiring`]), with
    /// chains through it: with it, [`Analysis::wiring_for`].
    fn walk_owned_wiring<'a>(
        &'a self,
        shared: &SharedWalk<'a>,
        read: &BTreeSet<String>,
        host: &str,
    ) -> Vec<(&'a str, Vec<&'a str>)> {
        let starts = shared
            .owned_starts
            .iter()
            .filter(|(_, owners, _)| owners.iter().any(|o| o == host))
            .map(|(target, _, from)| (*target, shared.walk[*from].1.clone()))
            .collect();
        self.walk_beyond(&shared.files, starts, |node, dep| {
            self.wiring_dep_of(node, dep, read, Some(host))
        })
    }

    /// The wiring of `host`, which reads the host-optional outputs `read`.
    pub fn wiring_for(&self, read: &BTreeSet<String>, host: &str) -> Vec<(&str, Vec<&str>)> {
        self.walk_wiring(read, Some(host))
    }

    /// Every file a host's evaluation reaches, each with its chain and, for
    /// a file of the flake's wiring only (not in the host's closure), `true`: only
    /// its dependencies [`Analysis::wiring_dep_of`] accepts for the host
    /// count (not a module another host's definition names, not inside an
    /// output the host does not read). A host whose entry is flake.nix has
    /// its closure alone (the walk from flake.nix, already so filtered).
    pub fn host_walk(&self, host: &str) -> Vec<(&str, Vec<&str>, bool)> {
        let Some(h) = self.hosts.hosts.get(host) else {
            return Vec::new();
        };
        // The closure first: a file in both counts whole, with the host's
        // own chain.
        let mut out: Vec<(&str, Vec<&str>, bool)> = self
            .closure(host)
            .into_iter()
            .map(|(f, c)| (f, c, false))
            .collect();
        if !self.entry_is_flake(h) {
            let mut seen: HashSet<&str> = out.iter().map(|(f, _, _)| *f).collect();
            let none = BTreeSet::new();
            let read = self.host_read_outputs.get(host).unwrap_or(&none);
            for (file, chain) in self.wiring_for(read, host) {
                // Another host's own file (a computed listing of the hosts'
                // directories reaches them all) is that host's.
                if self.hosts.owner(file).is_some_and(|o| o != host) || !seen.insert(file) {
                    continue;
                }
                out.push((file, chain, true));
            }
        }
        out
    }

    /// Where a host's evaluation starts: its entry and every parsed file of
    /// its own directory.
    fn starts<'a>(&'a self, h: &'a hosts::Host) -> Vec<&'a str> {
        let mut starts: Vec<&str> = vec![h.entry.as_str()];
        if let Some(own) = &h.own_dir {
            let prefix = format!("{own}/");
            starts.extend(
                self.graph
                    .nodes
                    .range(prefix.clone()..)
                    .map(|(k, _)| k.as_str())
                    .take_while(|k| k.starts_with(&prefix)),
            );
        }
        starts
    }

    /// Every file a host's evaluation can reach (its closure and its
    /// wiring), each with the references in it that count for the host
    /// (not in the value of an output the host does not read, not a module
    /// another host's definition names).
    pub fn host_references(&self, host: &str) -> Vec<(&str, Vec<&crate::nix::parse::Reference>)> {
        let none = BTreeSet::new();
        let read = self.host_read_outputs.get(host).unwrap_or(&none);
        let mut out: Vec<(&str, Vec<&crate::nix::parse::Reference>)> = Vec::new();
        let mut seen = HashSet::new();
        for (file, _) in self.wiring_for(read, host) {
            if !seen.insert(file) {
                continue;
            }
            let node = &self.graph.nodes[file];
            let refs = node
                .refs
                .refs
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    let dep = Dep {
                        kind: DepKind::File,
                        path: String::new(),
                        reference: Some(*i),
                        suffix: None,
                    };
                    Self::in_read_output(node, &dep, read)
                        && self
                            .module_of(node, &dep)
                            .is_none_or(|o| o.iter().any(|x| x == host))
                })
                .map(|(_, r)| r)
                .collect();
            out.push((file, refs));
        }
        for (file, _) in self.closure(host) {
            if seen.insert(file) {
                out.push((file, self.graph.nodes[file].refs.refs.iter().collect()));
            }
        }
        out
    }

    /// Per host, the other hosts' configurations its evaluation reads
    /// (files of its closure and wiring, outside outputs it does not read);
    /// empty when no file reads any.
    pub(crate) fn host_config_reads(&self) -> BTreeMap<String, Vec<CrossRead>> {
        // The files holding a read some host can evaluate (node lists of
        // deploy tools are evaluated by none).
        let readers: Vec<&str> = self
            .graph
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.refs
                    .host_reads
                    .iter()
                    .any(|r| r.within.as_deref() != Some("deploy"))
            })
            .map(|(f, _)| f.as_str())
            .collect();
        if readers.is_empty() {
            return BTreeMap::new();
        }
        // A host's closure follows every edge: it holds a reader exactly
        // when one of its starts reaches it, i.e. is among the files that
        // import it, directly or not (one backwards walk per reader).
        let importers = self.graph.importers();
        let mut reaching: HashMap<&str, Vec<&str>> = HashMap::new();
        for r in &readers {
            let mut seen: HashSet<&str> = HashSet::from([*r]);
            let mut stack = vec![*r];
            while let Some(f) = stack.pop() {
                for &i in importers.get(f).into_iter().flatten() {
                    if seen.insert(i) {
                        stack.push(i);
                    }
                }
            }
            for f in seen {
                reaching.entry(f).or_default().push(r);
            }
        }
        // The wiring's readers, per walk key (shared by alike hosts), and
        // the closure's of hosts starting at flake.nix (walked alike too).
        let mut wiring_memo: HashMap<WalkKey, Vec<&str>> = HashMap::new();
        let mut flake_closure_memo: HashMap<WalkKey, Vec<&str>> = HashMap::new();
        let none = BTreeSet::new();
        let mut out = BTreeMap::new();
        for (name, h) in &self.hosts.hosts {
            let read = self.host_read_outputs.get(name).unwrap_or(&none);
            let mut files: BTreeSet<&str> = wiring_memo
                .entry(self.walk_key(name))
                .or_insert_with(|| {
                    let set: HashSet<&str> = readers.iter().copied().collect();
                    self.reach(vec![self.hosts.flake_nix.as_str()], |node, dep| {
                        self.wiring_dep_of(node, dep, read, Some(name))
                    })
                    .into_iter()
                    .filter(|f| set.contains(f))
                    .collect()
                })
                .iter()
                .copied()
                .collect();
            if self.entry_is_flake(h) {
                // Its closure starts at flake.nix, walked by the wiring's
                // rules ([`Analysis::closure_dep_of`]).
                files.extend(
                    flake_closure_memo
                        .entry(self.walk_key(name))
                        .or_insert_with(|| {
                            self.closure(name)
                                .into_iter()
                                .map(|(f, _)| f)
                                .filter(|f| reaching.get(f).is_some_and(|r| r.contains(f)))
                                .collect()
                        })
                        .iter()
                        .copied(),
                );
            } else {
                for s in self.starts(h) {
                    files.extend(reaching.get(s).into_iter().flatten().copied());
                }
            }
            let reads = self.reads_in(files, name, read);
            if !reads.is_empty() {
                out.insert(name.clone(), reads);
            }
        }
        out
    }

    /// The reads of other hosts in `files` that count for `host`, which
    /// reads the outputs `read`.
    fn reads_in<'a>(
        &self,
        files: impl IntoIterator<Item = &'a str>,
        host: &str,
        read: &BTreeSet<String>,
    ) -> Vec<CrossRead> {
        let mut reads: Vec<CrossRead> = files
            .into_iter()
            .flat_map(|f| {
                self.graph.nodes[f]
                    .refs
                    .host_reads
                    .iter()
                    .filter(|r| match r.within.as_deref() {
                        None => true,
                        Some("deploy") => false,
                        Some(w) => output_is_read(w, read),
                    })
                    .filter(|r| r.host != host)
                    .map(move |r| CrossRead {
                        file: f.to_string(),
                        line: r.line,
                        host: r.host.clone(),
                        option: r.option.clone(),
                    })
            })
            .collect();
        reads.sort();
        reads.dedup();
        reads
    }

    /// The other hosts' configurations `host`'s evaluation reads.
    fn config_reads_of(&self, host: &str) -> Vec<CrossRead> {
        let none = BTreeSet::new();
        let read = self.host_read_outputs.get(host).unwrap_or(&none);
        let (wiring, closure) = self.host_files(host);
        self.reads_in(wiring.into_iter().chain(closure), host, read)
    }

    /// Files a host's evaluation reaches that read other hosts'
    /// configurations (`self.nixosConfigurations`).
    pub fn cross_host_readers(&self, host: &str) -> Vec<(String, u32)> {
        self.config_reads_of(host)
            .into_iter()
            .map(|r| (r.file, r.line))
            .collect()
    }

    /// What a walk for `host` depends on: the outputs it reads and the
    /// references it owns (see `ownership`).
    pub(crate) fn walk_key(&self, host: &str) -> WalkKey {
        let read = self
            .host_read_outputs
            .get(host)
            .cloned()
            .unwrap_or_default();
        let own = self.ownership.get(host).cloned().unwrap_or_default();
        (read, own)
    }

    /// The files `host`'s wiring and its closure reach (no chains).
    pub(crate) fn host_files(&self, host: &str) -> (HashSet<&str>, HashSet<&str>) {
        let none = BTreeSet::new();
        let read = self.host_read_outputs.get(host).unwrap_or(&none);
        let wiring = self
            .reach(vec![self.hosts.flake_nix.as_str()], |node, dep| {
                self.wiring_dep_of(node, dep, read, Some(host))
            })
            .into_iter()
            .collect();
        let closure = match self.hosts.hosts.get(host) {
            Some(h) if self.entry_is_flake(h) => HashSet::new(),
            Some(h) => self
                .reach(self.starts(h), |_, _| true)
                .into_iter()
                .collect(),
            None => HashSet::new(),
        };
        (wiring, closure)
    }

    /// The host's `networking.hostName`, when the files its evaluation
    /// reaches define exactly one literal value for it.
    pub fn host_name_of(&self, host: &str) -> Option<String> {
        let (wiring, closure) = self.host_files(host);
        self.host_name_in(wiring.iter().chain(&closure))
    }

    /// The one literal hostName these files define, if there is one and no
    /// computed definition ("\0computed").
    fn host_name_in<'a>(&self, files: impl Iterator<Item = &'a &'a str>) -> Option<String> {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for f in files {
            if let Some(n) = self.graph.nodes.get(*f) {
                names.extend(n.refs.host_names.iter().map(String::as_str));
            }
        }
        match names.len() {
            1 => names
                .into_iter()
                .next()
                .filter(|n| !n.starts_with('\u{0}'))
                .map(String::from),
            _ => None,
        }
    }

    /// Outputs every host reads without naming them: frameworks that add
    /// the flake's own modules to every host (nixos-unified, ez-configs,
    /// snowfall-lib) read them all.
    fn implicitly_read(&self) -> BTreeSet<String> {
        const WIRING_FRAMEWORKS: &[&str] = &["nixos-unified", "ez-configs", "snowfall-lib"];
        let uses_framework = self
            .graph
            .nodes
            .get(self.hosts.flake_nix.as_str())
            .is_some_and(|n| WIRING_FRAMEWORKS.iter().any(|f| n.refs.idents.contains(*f)));
        if !uses_framework {
            return BTreeSet::new();
        }
        crate::nix::parse::PER_ATTR_OUTPUTS
            .iter()
            .chain(&["modules"])
            .map(|m| format!("{m}.*"))
            .collect()
    }

    /// Whether a dependency of a file in `host`'s closure counts for it:
    /// always, but for a host whose closure starts at flake.nix, where the
    /// wiring's rules apply.
    pub(crate) fn closure_dep_of(&self, node: &Node, dep: &Dep, host: &str) -> bool {
        match self.hosts.hosts.get(host) {
            Some(h) if self.entry_is_flake(h) => {
                let none = BTreeSet::new();
                let read = self.host_read_outputs.get(host).unwrap_or(&none);
                Self::in_read_output(node, dep, read)
                    && self
                        .module_of(node, dep)
                        .is_none_or(|o| o.iter().any(|x| x == host))
            }
            _ => true,
        }
    }

    /// Discovery found no entry module of its own for the host (a builder
    /// guard could not follow): its evaluation starts at flake.nix.
    pub(crate) fn entry_is_flake(&self, h: &hosts::Host) -> bool {
        h.entry == self.hosts.flake_nix
    }

    /// The files of one host's closure, entry first, each with the chain
    /// that reaches it (breadth-first, so chains are shortest).
    pub fn closure(&self, host: &str) -> Vec<(&str, Vec<&str>)> {
        self.closure_where(host, |_| true)
    }

    /// The files of [`Analysis::closure`] that `want` accepts, each with
    /// its chain (the walk still covers the whole closure; only the chains
    /// of the files asked for are built).
    pub fn closure_where(&self, host: &str, want: impl Fn(&str) -> bool) -> Vec<(&str, Vec<&str>)> {
        let Some(h) = self.hosts.hosts.get(host) else {
            return Vec::new();
        };
        if self.entry_is_flake(h) {
            // Everything flake.nix reaches, except the outputs this host
            // does not read and the modules other hosts' definitions name.
            let none = BTreeSet::new();
            let read = self.host_read_outputs.get(host).unwrap_or(&none);
            let starts = vec![(self.hosts.flake_nix.as_str(), Vec::new())];
            return self.walk_beyond_where(
                &HashSet::new(),
                starts,
                |node, dep| {
                    Self::in_read_output(node, dep, read)
                        && self
                            .module_of(node, dep)
                            .is_none_or(|o| o.iter().any(|x| x == host))
                },
                want,
            );
        }
        let starts = self
            .starts(h)
            .into_iter()
            .map(|s| (s, Vec::new()))
            .collect();
        self.walk_beyond_where(&HashSet::new(), starts, |_, _| true, want)
    }

    /// The files a host's evaluation can reach: the walk from flake.nix and
    /// every host's start along references some host evaluates (not an
    /// argument default, not a devShell).
    pub fn host_reached(&self) -> HashSet<&str> {
        let mut starts = vec![self.hosts.flake_nix.as_str()];
        for h in self.hosts.hosts.values() {
            starts.extend(self.starts(h));
        }
        self.walk(starts, |node, dep| {
            dep.reference.is_none_or(|i| !node.refs.refs[i].unreached)
        })
        .into_iter()
        .map(|(f, _)| f)
        .collect()
    }

    /// Breadth-first walk from `starts` along the edges `follow` accepts:
    /// every file reached, with the (shortest) chain that reaches it.
    fn walk<'a>(
        &'a self,
        starts: Vec<&'a str>,
        follow: impl Fn(&Node, &Dep) -> bool,
    ) -> Vec<(&'a str, Vec<&'a str>)> {
        let starts = starts.into_iter().map(|s| (s, Vec::new())).collect();
        self.walk_beyond(&HashSet::new(), starts, follow)
    }

    /// As [`Analysis::walk`], not entering the files of `known`, each start
    /// with the chain that leads to it.
    fn walk_beyond<'a>(
        &'a self,
        known: &HashSet<&str>,
        starts: Vec<(&'a str, Vec<&'a str>)>,
        follow: impl Fn(&Node, &Dep) -> bool,
    ) -> Vec<(&'a str, Vec<&'a str>)> {
        self.walk_beyond_where(known, starts, follow, |_| true)
    }

    /// As [`Analysis::walk_beyond`], with the chains of the files `want`
    /// accepts only.
    fn walk_beyond_where<'a>(
        &'a self,
        known: &HashSet<&str>,
        starts: Vec<(&'a str, Vec<&'a str>)>,
        follow: impl Fn(&Node, &Dep) -> bool,
        want: impl Fn(&str) -> bool,
    ) -> Vec<(&'a str, Vec<&'a str>)> {
        // Breadth first, each file entered once, from its first discoverer
        // (marking at push equals marking at pop in FIFO order); chains are
        // built once per file from the parents, not cloned per edge.
        let mut seen: HashSet<&str> = known.clone();
        let mut prefixes: Vec<Vec<&'a str>> = Vec::new();
        let mut order: Vec<(&'a str, Result<usize, usize>)> = Vec::new();
        let mut queue: VecDeque<(&'a str, Result<usize, usize>)> = VecDeque::new();
        for (s, prefix) in starts {
            if self.graph.nodes.contains_key(s) && seen.insert(s) {
                queue.push_back((s, Err(prefixes.len())));
                prefixes.push(prefix);
            }
        }
        while let Some((file, parent)) = queue.pop_front() {
            let node = &self.graph.nodes[file];
            let me = order.len();
            order.push((file, parent));
            for (target, dep) in &node.edges {
                let target = target.as_str();
                if !seen.contains(target)
                    && self.graph.nodes.contains_key(target)
                    && follow(node, &node.deps[*dep])
                {
                    seen.insert(target);
                    queue.push_back((target, Ok(me)));
                }
            }
        }
        // A parent is Ok(index into the walk) or Err(index of a start's
        // prefix); a chain is its file's parents followed back.
        let mut out: Vec<(&'a str, Vec<&'a str>)> = Vec::new();
        for &(file, first) in order.iter().filter(|(f, _)| want(f)) {
            let mut chain: Vec<&'a str> = vec![file];
            let mut parent = first;
            let start = loop {
                match parent {
                    Ok(p) => {
                        chain.push(order[p].0);
                        parent = order[p].1;
                    }
                    Err(p) => break p,
                }
            };
            chain.reverse();
            let mut full = prefixes[start].clone();
            full.extend(chain);
            out.push((file, full));
        }
        out
    }
}

/// The computed module paths of the graph whose every match (a path below
/// the directory with the constant end) is inside some host's own
/// directory: `./hosts/${n}/configuration.nix` with hosts/<n>/ each a
/// host's.
fn host_templates(
    tree: &Tree,
    hosts: &HostSet,
    graph: &ImportGraph,
) -> HashSet<(String, Option<String>)> {
    let mut out = HashSet::new();
    let mut seen = HashSet::new();
    for node in graph.nodes.values() {
        for r in &node.refs.refs {
            let Target::Under(d) = &r.target else {
                continue;
            };
            let key = (d.clone(), r.suffix.clone());
            // Only module templates (`/configuration.nix`, `.nix`): a host's
            // builder imports its own; data read across hosts (a peer's
            // `/key.pub`) is no template.
            if !r.suffix.as_deref().is_some_and(|s| s.ends_with(".nix"))
                || !seen.insert(key.clone())
            {
                continue;
            }
            let suffix = r.suffix.as_deref().unwrap_or_default();
            let mut any = false;
            let all_owned = tree
                .under(d)
                .map(|p| p.to_str_lossy().into_owned())
                .filter(|p| crate::nix::parse::matches_suffix(p, suffix))
                .all(|p| {
                    any = true;
                    hosts.owner(&p).is_some()
                });
            if any && all_owned {
                out.insert(key);
            }
        }
    }
    out
}

/// The question `affected_hosts` answers: which hosts can a change of these
/// paths, from `old` to `new`, affect?
pub struct Query<'a> {
    /// Changed paths (both sides of a rename).
    pub paths: BTreeSet<String>,
    pub old: &'a Snapshot,
    pub new: &'a Snapshot,
    /// The change makes a new revision, so `self.rev` readers change.
    pub new_revision: bool,
    /// Keep every distinct chain (for `guard explain`), not one per path.
    pub every_chain: bool,
    /// Every read outside the repository, one warning each (`-v`), not only
    /// one per file a host reaches.
    pub all_warnings: bool,
}

impl<'a> Query<'a> {
    /// The query for a git change. `new_revision`: whether the change is or
    /// becomes a commit (false for an empty staged change).
    pub fn of(changes: &'a ChangeSet, new_revision: bool) -> Query<'a> {
        let mut paths = BTreeSet::new();
        for c in &changes.changes {
            paths.insert(c.path.to_str_lossy().into_owned());
            if let ChangeKind::Renamed { from } = &c.kind {
                paths.insert(from.to_str_lossy().into_owned());
            }
        }
        Query {
            paths,
            old: &changes.old,
            new: &changes.new,
            new_revision,
            every_chain: false,
            all_warnings: false,
        }
    }

    /// With `all`, every read outside the repository is a warning (`-v`).
    pub fn all_warnings(mut self, all: bool) -> Self {
        self.all_warnings = all;
        self
    }
}

/// What changed, in the form the matcher needs.
struct Changes<'a> {
    paths: BTreeSet<String>,
    old: Tree<'a>,
    new: Tree<'a>,
    /// The change creates a new revision (a commit, or something about to
    /// be committed): `self.rev` readers change.
    new_revision: bool,
}

impl Changes<'_> {
    /// The first changed path that `dep` depends on, if any.
    fn hit(&self, dep: &Dep) -> Option<String> {
        match dep.kind {
            DepKind::File => self.paths.contains(&dep.path).then(|| dep.path.clone()),
            DepKind::Copy | DepKind::Exists => match &dep.suffix {
                Some(suffix) => self.first_below_ending(&dep.path, suffix),
                None => self.first_at_or_below(&dep.path),
            },
            DepKind::List => self.first_listing_change(&dep.path),
            DepKind::Tree => self.paths.iter().next().cloned(),
            DepKind::Rev => self.new_revision.then(|| "(every commit)".to_string()),
            DepKind::TreePath => self.paths.iter().next().cloned(),
        }
    }

    /// The first changed path below `dir` whose name ends with `suffix`.
    fn first_below_ending(&self, dir: &str, suffix: &str) -> Option<String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.paths
            .range(prefix.clone()..)
            .take_while(|p| p.starts_with(&prefix))
            .find(|p| crate::nix::parse::matches_suffix(p, suffix))
            .cloned()
    }

    fn first_at_or_below(&self, dir: &str) -> Option<String> {
        if dir.is_empty() {
            return self.paths.iter().next().cloned();
        }
        if self.paths.contains(dir) {
            return Some(dir.to_string());
        }
        let prefix = format!("{dir}/");
        self.paths
            .range(prefix.clone()..)
            .next()
            .filter(|p| p.starts_with(&prefix))
            .cloned()
    }

    /// A changed path that adds, removes or retypes an entry of `dir`.
    fn first_listing_change(&self, dir: &str) -> Option<String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.paths
            .range(prefix.clone()..)
            .take_while(|p| p.starts_with(&prefix))
            .find(|p| {
                let entry = match p[prefix.len()..].split_once('/') {
                    Some((first, _)) => format!("{prefix}{first}"),
                    None => p.to_string(),
                };
                self.old.kind(&entry) != self.new.kind(&entry)
            })
            .cloned()
    }
}

/// The `[affected]` globs as one set.
pub fn glob_set(globs: &[String]) -> Result<GlobSet, AffectedError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| AffectedError::Glob {
            glob: g.clone(),
            message: e.to_string(),
        })?;
        b.add(glob);
    }
    b.build().map_err(|e| AffectedError::Glob {
        glob: globs.join(", "),
        message: e.to_string(),
    })
}

/// The hosts `changes` can affect. `new` is the analysis of the new
/// snapshot; `old_hosts` the host list of the old one (for removed hosts).
pub fn affected_hosts(
    new: &Analysis,
    old_hosts: &HostSet,
    query: &Query,
    config: &Config,
) -> Result<Affected, AffectedError> {
    let ignore = glob_set(&config.affected.ignore)?;
    let global = glob_set(&config.affected.global)?;
    if new.hosts.hosts.is_empty() && old_hosts.hosts.is_empty() {
        let details: String = new
            .hosts
            .warnings
            .iter()
            .map(|w| match &w.path {
                Some(p) => format!("\n  {p}: {}", w.message),
                None => format!("\n  {}", w.message),
            })
            .collect();
        return Err(AffectedError::NoHosts {
            flake_nix: new.hosts.flake_nix.clone(),
            details: if details.is_empty() {
                String::new()
            } else {
                format!(":{details}")
            },
        });
    }
    let mut warnings: Vec<Warning> = new.hosts.warnings.clone();

    let changed_paths = &query.paths;
    let considered: BTreeSet<String> = changed_paths
        .iter()
        .filter(|p| !ignore.is_match(p.as_str()))
        .cloned()
        .collect();
    let ch = Changes {
        new_revision: query.new_revision,
        paths: considered,
        old: Tree::new(query.old),
        new: Tree::new(query.new),
    };
    let every_chain = query.every_chain;

    // Direct hits of every parsed file: (dep index, changed path).
    let mut direct: HashMap<&str, Vec<(usize, String)>> = HashMap::new();
    for (path, node) in &new.graph.nodes {
        let hits: Vec<(usize, String)> = node
            .deps
            .iter()
            .enumerate()
            .filter_map(|(i, d)| ch.hit(d).map(|p| (i, p)))
            .collect();
        if !hits.is_empty() {
            direct.insert(path.as_str(), hits);
        }
    }

    let mut result: BTreeMap<String, Vec<Reason>> = BTreeMap::new();
    // Paths past the cap of listed reasons, per host: counted, not lost.
    let beyond: std::cell::RefCell<BTreeMap<String, BTreeSet<String>>> = Default::default();
    let add = |result: &mut BTreeMap<String, Vec<Reason>>, host: &str, reason: Reason| {
        let reasons = result.entry(host.to_string()).or_default();
        let seen = if every_chain {
            reasons.iter().any(|r| r.chain == reason.chain)
        } else {
            reasons.iter().any(|r| r.path == reason.path)
        };
        if seen {
            return;
        }
        if !every_chain && reasons.len() >= MAX_REASONS {
            beyond
                .borrow_mut()
                .entry(host.to_string())
                .or_default()
                .insert(reason.path);
            return;
        }
        reasons.push(reason);
    };

    // Reasons of every host: content (changed) and stamps (restamped).
    let stamps_are_content = config.affected.stamps == Stamps::Build;
    let mut stamped: BTreeMap<String, Vec<Reason>> = BTreeMap::new();
    let add_dep = |result: &mut BTreeMap<String, Vec<Reason>>,
                   stamped: &mut BTreeMap<String, Vec<Reason>>,
                   host: &str,
                   (reason, stamp): (Reason, bool)| {
        if stamp && !stamps_are_content {
            add(stamped, host, reason);
        } else {
            add(result, host, reason);
        }
    };

    // 2. flake.lock: only hosts that use a changed input.
    let lock_path = join(&new.flake_dir, "flake.lock");
    // Changed input -> the changed path that changed it (the lock, or a
    // file of a `path:./x` input inside the repository).
    let mut changed_inputs: BTreeMap<String, String> = BTreeMap::new();
    let mut lock_all = false;
    let read = |s: &Snapshot| s.read(BStr::new(&lock_path)).ok().flatten();
    if ch.paths.contains(&lock_path) {
        match lock::changed_inputs(read(query.old).as_deref(), read(query.new).as_deref()) {
            Ok(c) => {
                changed_inputs = c.into_iter().map(|i| (i, lock_path.clone())).collect();
            }
            Err(e) => {
                lock_all = true;
                warnings.push(Warning {
                    path: Some(lock_path.clone()),
                    message: format!("cannot read the lock file ({e}): every host is affected"),
                });
            }
        }
    }
    // An input that is a directory of this repository (a relative `path:`
    // input, as subflakes are) changes with the files below it, whatever
    // the lock says: nix reads it from the same source tree.
    for (name, rel) in lock::local_inputs(read(query.new).as_deref()) {
        let dir = crate::nix::parse::normalize(&join(&new.flake_dir, &rel));
        if let Some(p) = dir.and_then(|d| ch.first_at_or_below(&d)) {
            changed_inputs.entry(name).or_insert(p);
        }
    }
    let uses_changed_input = |node: &Node| {
        !changed_inputs.is_empty()
            && (node.refs.all_inputs
                || node
                    .refs
                    .idents
                    .iter()
                    .any(|i| changed_inputs.contains_key(i)))
    };

    // 1. The wiring (flake.nix and what it evaluates outside hosts), for
    // hosts that read the host-optional outputs `read`.
    let flake_nix = new.hosts.flake_nix.as_str();
    // Reasons found in wiring files, kept with the hosts whose definitions
    // own the dependency (None: any host's).
    let file_reasons = |file: &str, chain: &[&str], read: &BTreeSet<String>| {
        let node = &new.graph.nodes[file];
        let mut out: Vec<OwnedReason> = Vec::new();
        for (dep, changed) in direct.get(file).into_iter().flatten() {
            let dep = &node.deps[*dep];
            // Per host name: judged per host below, not shared.
            if new.is_host_edge(node, dep)
                || !Analysis::in_read_output(node, dep, read)
                || per_host_name(node, dep)
            {
                continue;
            }
            out.push((
                reason(new, chain, changed, node, dep),
                new.module_of(node, dep),
            ));
        }
        if uses_changed_input(node) {
            out.push((
                content(lock_reason(&lock_path, chain, node, &changed_inputs)),
                None,
            ));
        }
        out
    };
    // The wiring no host owns, walked once per set of outputs read.
    let shared_wiring_reasons = |read: &BTreeSet<String>| {
        let walk = new.walk_shared_wiring(read);
        let mut reasons: Vec<OwnedReason> = Vec::new();
        if ch.paths.contains(flake_nix) {
            reasons.push((
                content(Reason {
                    path: flake_nix.to_string(),
                    chain: vec![flake_nix.to_string()],
                    uncertain: None,
                }),
                None,
            ));
        }
        for (file, chain) in &walk.walk {
            reasons.extend(file_reasons(file, chain, read));
        }
        if lock_all {
            reasons.push((
                content(Reason {
                    path: lock_path.clone(),
                    chain: vec![lock_path.clone()],
                    uncertain: None,
                }),
                None,
            ));
        }
        // 3. Configured global paths.
        for p in &ch.paths {
            if global.is_match(p.as_str()) {
                reasons.push((
                    content(Reason {
                        path: p.clone(),
                        chain: vec!["guard.toml [affected] global".into(), p.clone()],
                        uncertain: None,
                    }),
                    None,
                ));
            }
        }
        (walk, reasons)
    };
    let mut shared_memo: HashMap<BTreeSet<String>, _> = HashMap::new();
    // A host's wiring: the shared part, and for a host that owns modules
    // what they reach beyond it.
    let mut wiring_reasons_for = |read: &BTreeSet<String>, host: &str| {
        let (walk, shared) = shared_memo
            .entry(read.clone())
            .or_insert_with(|| shared_wiring_reasons(read));
        let mine = |owners: &Option<&[String]>| owners.is_none_or(|o| o.iter().any(|x| x == host));
        let mut reasons: Vec<(Reason, bool)> = shared
            .iter()
            .filter(|(_, owners)| mine(owners))
            .map(|(r, _)| r.clone())
            .collect();
        if new.owning_hosts.contains(host) {
            for (file, chain) in new.walk_owned_wiring(walk, read, host) {
                reasons.extend(
                    file_reasons(file, &chain, read)
                        .into_iter()
                        .filter(|(_, owners)| mine(owners))
                        .map(|(r, _)| r),
                );
            }
        }
        reasons
    };
    let no_outputs = BTreeSet::new();
    // Hits of paths computed from a host's name, judged per host.
    let host_name_hits: Vec<(&str, usize, String)> = direct
        .iter()
        .flat_map(|(file, hits)| {
            let node = &new.graph.nodes[*file];
            hits.iter()
                .filter(|(dep, _)| per_host_name(node, &node.deps[*dep]))
                .map(move |(dep, changed)| (*file, *dep, changed.clone()))
        })
        .collect();

    // Files from which a hit is reachable: only hosts starting at one of
    // these need their closure walked.
    let mut tainted: HashSet<&str> = direct.keys().copied().collect();
    if !changed_inputs.is_empty() {
        tainted.extend(
            new.graph
                .nodes
                .iter()
                .filter(|(_, n)| uses_changed_input(n))
                .map(|(p, _)| p.as_str()),
        );
    }
    let importers = new.graph.importers();
    let mut queue: Vec<&str> = tainted.iter().copied().collect();
    while let Some(f) = queue.pop() {
        for &i in importers.get(f).into_iter().flatten() {
            if tainted.insert(i) {
                queue.push(i);
            }
        }
    }

    let new_names: BTreeSet<&String> = new.hosts.hosts.keys().collect();
    let old_names: BTreeSet<&String> = old_hosts.hosts.keys().collect();

    // Hosts with the same walk key share the wiring's reasons, and (when
    // they start at flake.nix) their closure's.
    let mut wiring_memo: HashMap<WalkKey, Vec<(Reason, bool)>> = HashMap::new();
    let mut closure_memo: HashMap<WalkKey, Vec<(Reason, bool)>> = HashMap::new();
    for name in &new_names {
        let read = new.host_read_outputs.get(*name).unwrap_or(&no_outputs);
        let key = new.walk_key(name);
        let reasons = wiring_memo
            .entry(key.clone())
            .or_insert_with(|| wiring_reasons_for(read, name));
        for r in reasons.iter() {
            add_dep(&mut result, &mut stamped, name, r.clone());
        }
        if !old_names.contains(name) {
            add(
                &mut result,
                name,
                Reason {
                    path: new.hosts.hosts[*name].entry.clone(),
                    chain: vec![format!("new host {name}")],
                    uncertain: None,
                },
            );
        }
        // 4. The host's own closure.
        let h = &new.hosts.hosts[*name];
        let hit = new.starts(h).iter().any(|f| tainted.contains(f));
        let closure_reasons = |name: &str| {
            let mut out: Vec<(Reason, bool)> = Vec::new();
            let hit_here =
                |f: &str| direct.contains_key(f) || uses_changed_input(&new.graph.nodes[f]);
            for (file, chain) in new.closure_where(name, hit_here) {
                let node = &new.graph.nodes[file];
                for (dep, changed) in direct.get(file).into_iter().flatten() {
                    let d = &node.deps[*dep];
                    if new.closure_dep_of(node, d, name) && !per_host_name(node, d) {
                        out.push(reason(new, &chain, changed, node, d));
                    }
                }
                if uses_changed_input(node) {
                    out.push(content(lock_reason(
                        &lock_path,
                        &chain,
                        node,
                        &changed_inputs,
                    )));
                }
            }
            out
        };
        let reasons = if !hit {
            Vec::new()
        } else if new.entry_is_flake(h) {
            closure_memo
                .entry(key)
                .or_insert_with(|| closure_reasons(name))
                .clone()
        } else {
            closure_reasons(name)
        };
        for r in reasons {
            add_dep(&mut result, &mut stamped, name, r);
        }
        // 5. Paths computed from the host's name (`hosts/${hostName}.yml`):
        // the host's own file when its hostName is known, else any.
        if !host_name_hits.is_empty() {
            let read = new.host_read_outputs.get(*name).unwrap_or(&no_outputs);
            let (wiring_files, closure_files) = new.host_files(name);
            let host_name = new.host_name_in(wiring_files.iter().chain(&closure_files));
            let mut chains: Option<HashMap<&str, Vec<&str>>> = None;
            for (file, dep, changed) in &host_name_hits {
                let node = &new.graph.nodes[*file];
                let d = &node.deps[*dep];
                // Counted as the walk that reaches the file would count it.
                let counts = (closure_files.contains(file) && new.closure_dep_of(node, d, name))
                    || (wiring_files.contains(file)
                        && new.wiring_dep_of(node, d, read, Some(name)));
                if !counts {
                    continue;
                }
                let hit = match &host_name {
                    Some(n) => {
                        let own = format!(
                            "{}{n}{}",
                            if d.path.is_empty() {
                                String::new()
                            } else {
                                format!("{}/", d.path)
                            },
                            d.suffix.as_deref().unwrap_or_default()
                        );
                        ch.first_at_or_below(&own)
                    }
                    None => Some(changed.clone()),
                };
                let Some(p) = hit else { continue };
                // Chains only for a hit: walking for them costs.
                let chains = chains.get_or_insert_with(|| {
                    let mut m: HashMap<&str, Vec<&str>> =
                        new.wiring_for(read, name).into_iter().collect();
                    for (f, c) in new.closure(name) {
                        m.entry(f).or_insert(c);
                    }
                    m
                });
                let chain = chains.get(file).cloned().unwrap_or_else(|| vec![*file]);
                add_dep(
                    &mut result,
                    &mut stamped,
                    name,
                    reason(new, &chain, &p, node, d),
                );
            }
        }
        // The entry itself and files of the host's own directory.
        if ch.paths.contains(&h.entry) {
            add(
                &mut result,
                name,
                Reason {
                    path: h.entry.clone(),
                    chain: vec![h.entry.clone()],
                    uncertain: None,
                },
            );
        }
        if let Some(own) = &h.own_dir
            && let Some(p) = ch.first_at_or_below(own)
        {
            add(
                &mut result,
                name,
                Reason {
                    path: p.clone(),
                    chain: vec![own.clone(), p],
                    uncertain: None,
                },
            );
        }
    }

    // 6. Other hosts' configurations a host reads (`self.nixosConfigurations.b`,
    // colmena's `nodes.b`): what changes them changes it. Where the option
    // read comes from known files (a clan vars value), only those count.
    let cross = new.host_config_reads();
    loop {
        let mut grew = false;
        for (reader, reads) in &cross {
            if result.contains_key(reader) {
                continue;
            }
            for read in reads {
                // (host read, how it changed, changed or only restamped)
                let mut found: Option<(String, Reason, bool)> = None;
                let targets = new.hosts.hosts.keys().filter(|t| {
                    *t != reader && crate::nix::parse::host_pattern_matches(&read.host, t)
                });
                for t in targets {
                    let sources = (!read.host.ends_with('*'))
                        .then(|| option_sources(new, t, &read.option))
                        .flatten();
                    if let Some(sources) = sources {
                        if let Some(p) = sources.iter().find(|p| ch.paths.contains(*p)) {
                            let via = Reason {
                                path: p.clone(),
                                chain: vec![p.clone()],
                                uncertain: None,
                            };
                            found = Some((t.clone(), via, true));
                            break;
                        }
                        continue;
                    }
                    if let Some(r) = result.get(t).and_then(|rs| rs.first()) {
                        found = Some((t.clone(), r.clone(), true));
                        break;
                    }
                    if found.is_none()
                        && let Some(r) = stamped.get(t).and_then(|rs| rs.first())
                    {
                        found = Some((t.clone(), r.clone(), false));
                    }
                }
                let Some((target, via, changed)) = found else {
                    continue;
                };
                if !changed && stamped.contains_key(reader) {
                    continue;
                }
                let at = format!("{}:{}", read.file, read.line);
                let mut chain = vec![
                    read.file.clone(),
                    format!("(reads host {target}'s configuration at {at})"),
                ];
                chain.extend(via.chain);
                let reason = Reason {
                    path: via.path,
                    chain,
                    uncertain: read.host.ends_with('*').then(|| {
                        format!(
                            "{at} reads hosts' configurations by a computed name \
                             (`nixosConfigurations`, `nodes`): guard cannot tell which \
                             host's values it uses, so a change to any host it may name \
                             counts"
                        )
                    }),
                };
                add(
                    if changed { &mut result } else { &mut stamped },
                    reader,
                    reason,
                );
                grew = true;
                if changed {
                    break;
                }
            }
        }
        if !grew {
            break;
        }
    }

    // Warnings: what could not be resolved in any host's closure.
    let mut warned = HashSet::new();
    for (path, node) in &new.graph.nodes {
        for e in &node.refs.errors {
            if warned.insert((path.clone(), e.clone())) {
                warnings.push(Warning {
                    path: Some(path.clone()),
                    message: format!(
                        "cannot parse ({e}); assuming it depends on everything in its directory"
                    ),
                });
            }
        }
    }
    warnings.extend(outside_warnings(new, query.all_warnings));

    let listed = |(name, reasons): (String, Vec<Reason>)| {
        let truncated = beyond.borrow().get(&name).map_or(0, BTreeSet::len);
        AffectedHost {
            name,
            reasons,
            truncated,
        }
    };
    // A host with content reasons is changed; its stamps are then moot.
    let restamped = stamped
        .into_iter()
        .filter(|(name, _)| !result.contains_key(name))
        .map(listed)
        .collect();
    let hosts = result.into_iter().map(listed).collect();
    Ok(Affected {
        hosts,
        restamped,
        all_hosts: new.hosts.names(),
        host_dirs: new
            .hosts
            .hosts
            .iter()
            .filter_map(|(n, h)| Some((n.clone(), h.own_dir.clone()?)))
            .collect(),
        other_targets: new.hosts.others.clone(),
        removed_hosts: old_names
            .difference(&new_names)
            .map(|s| s.to_string())
            .collect(),
        changed_paths: changed_paths.iter().cloned().collect(),
        warnings,
        self_check: None,
    })
}

/// The files the option `option` of host `host` takes its value from, when
/// guard can tell statically; None: anything that changes the host may
/// change it. A clan vars value (`clan.core.vars.generators.<g>.files.<f>.value`)
/// is the committed file (per machine or shared; read-only in clan-core),
/// and clan-core's own code comes with flake.lock.
fn option_sources(new: &Analysis, host: &str, option: &[String]) -> Option<Vec<String>> {
    match option {
        [clan, core, vars, generators, g, files, f, value]
            if clan == "clan"
                && core == "core"
                && vars == "vars"
                && generators == "generators"
                && files == "files"
                && value == "value"
                && is_plain(g)
                && is_plain(f) =>
        {
            Some(vec![
                join(
                    &new.flake_dir,
                    &format!("vars/per-machine/{host}/{g}/{f}/value"),
                ),
                join(&new.flake_dir, &format!("vars/shared/{g}/{f}/value")),
                join(&new.flake_dir, "flake.lock"),
            ])
        }
        _ => None,
    }
}

/// A literal attribute name (no interpolation, no path separator).
fn is_plain(name: &str) -> bool {
    !name.is_empty() && !name.contains("${") && !name.contains('/')
}

/// Reads outside the repository (`<nixpkgs>`, `/etc/x`): guard cannot see
/// them change. Not news on every run, so one warning per file, and only for
/// lookups a host's evaluation reaches (not `pkgs ? import <nixpkgs> {}`
/// defaults, not devShells); `all` (-v) lists each one.
fn outside_warnings(new: &Analysis, all: bool) -> Vec<Warning> {
    let reached = new.host_reached();
    let mut warnings = Vec::new();
    for (path, node) in &new.graph.nodes {
        let mut texts: Vec<&str> = Vec::new();
        let mut first = None;
        for r in node
            .refs
            .refs
            .iter()
            .filter(|r| r.kind == RefKind::External)
        {
            let quiet = r.unreached || !reached.contains(path.as_str());
            if all {
                let note = if quiet {
                    " (no host's evaluation reaches it: an argument default, a devShell, or a file only they use)"
                } else {
                    ""
                };
                warnings.push(Warning {
                    path: Some(format!("{path}:{}:{}", r.line, r.column)),
                    message: format!(
                        "`{}` reads outside the repository; guard cannot see changes to it{note}",
                        r.text
                    ),
                });
                continue;
            }
            if quiet {
                continue;
            }
            first.get_or_insert(r);
            if !texts.contains(&r.text.as_str()) {
                texts.push(&r.text);
            }
        }
        let Some(first) = first else { continue };
        let listed: Vec<String> = texts.iter().take(3).map(|t| format!("`{t}`")).collect();
        let what = match texts.len() {
            1 => format!("{} reads", listed[0]),
            n if n <= 3 => format!("{} read", listed.join(", ")),
            n => format!("{} and {} more read", listed.join(", "), n - 3),
        };
        warnings.push(Warning {
            path: Some(format!("{path}:{}:{}", first.line, first.column)),
            message: format!(
                "{what} outside the repository; guard cannot see changes to {}",
                if texts.len() == 1 { "it" } else { "them" }
            ),
        });
    }
    warnings
}

/// A computed path whose only computed part is `config.networking.hostName`.
fn per_host_name(node: &Node, dep: &Dep) -> bool {
    dep.reference
        .is_some_and(|i| node.refs.refs[i].per_host_name)
}

fn content(reason: Reason) -> (Reason, bool) {
    (reason, false)
}

/// The reason a dependency of the last file of `chain` gives, and whether
/// it is a stamp (a revision or the source's store path: restamped, not
/// changed).
fn reason(
    analysis: &Analysis,
    chain: &[&str],
    changed: &str,
    node: &Node,
    dep: &Dep,
) -> (Reason, bool) {
    let at = || {
        let file = chain.last().copied().unwrap_or_default();
        match dep.reference.map(|i| &node.refs.refs[i]) {
            Some(r) => format!("{file}:{}", r.line),
            None => file.to_string(),
        }
    };
    let reference = dep.reference.map(|i| &node.refs.refs[i]);
    let uncertain = match (dep.kind, reference) {
        (DepKind::Tree, _) => Some(format!(
            "{} reads the whole source (`src = self`, `./.`, a copy of the tree): \
             guard cannot tell which files matter, so every change counts",
            at()
        )),
        (_, Some(r)) if matches!(r.target, Target::Under(_)) && !analysis.is_host_template(r) => {
            let Target::Under(dir) = &r.target else {
                unreachable!("matched above")
            };
            let dir = if dir.is_empty() { "." } else { dir.as_str() };
            let end = r
                .suffix
                .as_deref()
                .map(|s| format!(" ending in `{s}`"))
                .unwrap_or_default();
            Some(format!(
                "{} computes a path (`{}`): guard cannot tell which file under `{dir}/` it \
                 reads, so every one{end} counts",
                at(),
                r.text
            ))
        }
        _ => None,
    };
    let mut chain: Vec<String> = chain.iter().map(|s| s.to_string()).collect();
    match dep.kind {
        DepKind::Tree => chain.push("(depends on the whole tree)".into()),
        DepKind::Rev => chain.push(format!("(revision stamp at {})", at())),
        DepKind::TreePath => chain.push(format!("(source store path at {})", at())),
        _ => {
            if chain.last().map(String::as_str) != Some(changed) {
                chain.push(changed.to_string());
            }
        }
    }
    (
        Reason {
            path: changed.to_string(),
            chain,
            uncertain,
        },
        dep.kind.is_stamp(),
    )
}

/// The reason a changed input gives: `changed` maps each changed input to
/// the path that changed it (flake.lock, or a file of a `path:` input).
fn lock_reason(
    lock_path: &str,
    chain: &[&str],
    node: &Node,
    changed: &BTreeMap<String, String>,
) -> Reason {
    let mut chain: Vec<String> = chain.iter().map(|s| s.to_string()).collect();
    let used: Vec<(&String, &String)> = changed
        .iter()
        .filter(|(i, _)| node.refs.idents.contains(*i))
        .collect();
    let source = used
        .first()
        .map_or(lock_path, |(_, p)| p.as_str())
        .to_string();
    chain.push(if used.is_empty() {
        format!("{source} (uses every input)")
    } else {
        format!(
            "{source} (input {})",
            used.iter()
                .map(|(i, _)| i.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Reason {
        path: source,
        chain,
        uncertain: node.refs.all_inputs.then(|| {
            "`inputs` is used whole here: guard cannot tell which inputs it reads, \
             so an update of any input counts"
                .to_string()
        }),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

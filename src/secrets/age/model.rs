//! Who uses which secret, and with which key: the facts the recipient
//! checks compare with each file's header. Built from one snapshot and its
//! import graph, without evaluating Nix.
//!
//! Rules (documented in age-and-secrix.md, F):
//!
//! * A host **uses** a secret when a Nix file in its closure has a constant
//!   path to it (a File or Copy dependency) that either matches the
//!   configured patterns (default `*.age`) or is assigned to a secrix
//!   `…encrypted.file` / agenix `age.secrets.<n>.file` option. sops options
//!   (`sops.defaultSopsFile`, `sops.secrets.<n>.sopsFile`) mark sops files,
//!   which are left alone.
//! * A computed path (`./secrets/${name}.age`) below a directory makes the
//!   host a *possible* user of every secret there: never stale for it, but
//!   not required to be a recipient either (guard cannot tell which file).
//! * Secrets referenced from the flake's wiring (files every host
//!   evaluates, e.g. flake.nix) may be used by any host.
//! * A host's **keys**: `[secrets.recipients]` in guard.toml when set; else
//!   `secrix.hostPubKey` from its closure (a string literal, or `readFile` /
//!   `fileContents` of a tracked `.pub` file; `mkForce`/`mkDefault`
//!   priorities as NixOS applies them); else the key bound to the host's
//!   name in an agenix `secrets.nix`; else a tracked
//!   `<host dir>/ssh_host_ed25519_key.pub`.
//! * Other legitimate recipients (never "stale"): secrix
//!   `defaultEncryptKeys`/`encryptKeys`, every key in an agenix
//!   `secrets.nix`, and `[secrets] admin_keys`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::prelude::*;

use super::declared::{DeclCache, Declared, declared_keys, keys_named};
use super::keys::{PublicKey, parse_public_key};
use super::nixfacts::{self, AgenixRules, KeyValue, NixFacts, SecretKind};
use super::rekey::RekeyConfig;
use crate::affected::Analysis;
use crate::config::Config;
use crate::git::{BStr, ByteSlice, GitError, ObjectId, Snapshot};
use crate::nix::graph::{Dep, DepKind, Node, Tree};
use crate::nix::hosts::is_below;
use crate::report::Warning;

/// Errors building the model (configuration and repository access only).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("guard.toml: invalid glob {glob:?} in [secrets] patterns: {message}")]
    Glob { glob: String, message: String },
    #[error(transparent)]
    Git(#[from] GitError),
}

/// One host's use of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUse {
    pub host: String,
    /// The Nix file holding the reference.
    pub file: String,
    pub line: usize,
    /// Import chain from the host's entry module to `file`.
    pub chain: Vec<String>,
    /// The option the path is assigned to, when guard can tell.
    pub option: Option<String>,
}

impl SecretUse {
    /// "secrix.system.secrets.x.encrypted.file in machines/a/default.nix:12"
    pub fn describe(&self) -> String {
        match &self.option {
            Some(o) => format!("{o} in {}:{}", self.file, self.line),
            None => format!("{}:{}", self.file, self.line),
        }
    }
}

/// A key and where guard found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedKey {
    pub key: PublicKey,
    /// For messages: "secrix.hostPubKey in machines/a/default.nix:14".
    pub source: String,
}

/// What guard knows about one host's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostKeys {
    pub keys: Vec<SourcedKey>,
    /// Why no key is known (or why some definition was ignored).
    pub problem: Option<String>,
}

/// A reference from the flake wiring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiringUse {
    pub file: String,
    pub line: usize,
    pub option: Option<String>,
}

/// The secrets side of one snapshot.
#[derive(Debug, Default)]
pub struct Model {
    /// Every host of the snapshot.
    pub hosts: BTreeSet<String>,
    /// Secret path -> the hosts' uses of it.
    pub uses: BTreeMap<String, Vec<SecretUse>>,
    /// Secret path -> hosts that may use it through a computed path.
    pub maybe: BTreeMap<String, BTreeSet<String>>,
    /// Secret path -> references from the wiring.
    pub wiring: BTreeMap<String, Vec<WiringUse>>,
    /// Referenced secret paths that are not tracked files.
    pub missing: BTreeSet<String>,
    /// Paths referenced through sops options.
    pub sops: BTreeSet<String>,
    /// sops file -> the hosts' uses of it (`sops.defaultSopsFile`,
    /// `sops.secrets.<n>.sopsFile`).
    pub sops_uses: BTreeMap<String, Vec<SecretUse>>,
    /// Tracked files that must be age ciphertext (patterns, agenix rules).
    pub tracked: BTreeSet<String>,
    pub host_keys: BTreeMap<String, HostKeys>,
    /// Keys that may be recipients of any secret.
    pub other_keys: Vec<SourcedKey>,
    /// agenix rules files, by path.
    pub agenix: BTreeMap<String, AgenixRules>,
    /// Every key declaration in the repository's tracked files.
    pub declared: Vec<Declared>,
    /// agenix-rekey, when the repository uses it.
    pub rekey: Option<Rekey>,
    /// Per host: whether sops-nix uses its SSH host key (see
    /// [`Model::sops_uses_ssh_key`]); absent means the default.
    pub sops_ssh: BTreeMap<String, bool>,
    /// Tracked `.tmp.*` files (with agenix-rekey: interrupted edits).
    pub temporary: Vec<String>,
    pub warnings: Vec<Warning>,
}

/// agenix-rekey's configuration with its keys read.
#[derive(Debug, Default)]
pub struct Rekey {
    pub config: RekeyConfig,
    /// Keys of `masterIdentities` (what every source must be readable by).
    pub masters: Vec<SourcedKey>,
    /// Keys of `extraEncryptionPubkeys` (legitimate source recipients).
    pub extras: Vec<SourcedKey>,
}

/// File names that are never secrets themselves, even under a pattern such
/// as `secrets/*` (age-and-secrix.md, F: the allow-list).
fn allow_listed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        "secrets.nix" | ".sops.yaml" | ".gitattributes" | ".gitkeep"
    ) || name.ends_with(".pub")
        || name.starts_with("README")
}

/// The configured secret patterns. A pattern without `/` matches the file
/// name in any directory (like `.gitignore`), one with `/` the whole path.
pub fn patterns(config: &Config) -> Result<GlobSet, ModelError> {
    let mut b = GlobSetBuilder::new();
    for g in &config.secrets.patterns {
        let full = if g.contains('/') {
            g.clone()
        } else {
            format!("**/{g}")
        };
        let glob = Glob::new(&full).map_err(|e| ModelError::Glob {
            glob: g.clone(),
            message: e.to_string(),
        })?;
        b.add(glob);
    }
    b.build().map_err(|e| ModelError::Glob {
        glob: config.secrets.patterns.join(", "),
        message: e.to_string(),
    })
}

fn read_text(snapshot: &Snapshot, path: &str) -> Result<Option<String>, GitError> {
    Ok(snapshot
        .read(BStr::new(path))?
        .and_then(|b| String::from_utf8(b).ok()))
}

impl Model {
    /// Builds the model of `snapshot`, whose import graph is `analysis`.
    pub fn build(
        snapshot: &Snapshot,
        analysis: &Analysis,
        config: &Config,
        cache: &FactsCache,
    ) -> Result<Model, ModelError> {
        let globs = patterns(config)?;
        let tree = Tree::new(snapshot);
        let entries = snapshot.try_entries()?;
        let mut m = Model {
            hosts: analysis.hosts.hosts.keys().cloned().collect(),
            ..Model::default()
        };
        let is_pattern = |p: &str| globs.is_match(p) && !allow_listed(p);

        for path in entries.keys() {
            let p = path.to_str_lossy();
            if p.rsplit('/').next().is_some_and(|n| n.starts_with(".tmp.")) {
                m.temporary.push(p.to_string());
            }
            if is_pattern(&p) {
                m.tracked.insert(p.into_owned());
            } else if p == "secrets.nix" || p.ends_with("/secrets.nix") {
                let p = p.into_owned();
                if let Some(text) = read_text(snapshot, &p)?
                    && let Some(rules) = super::agenix::rules(snapshot, &p, &text)
                {
                    for r in &rules.rules {
                        if tree.is_file(&r.file) {
                            m.tracked.insert(r.file.clone());
                        }
                    }
                    m.agenix.insert(p, rules);
                }
            }
        }

        let facts = file_facts(snapshot, analysis, cache)?;
        let mut graph_files: Vec<&String> = facts.keys().collect();
        graph_files.sort();
        for f in graph_files {
            m.declared.extend(facts[f].declared.iter().cloned());
        }
        m.declared
            .extend(declared_keys(snapshot, &cache.decls, &|p| {
                analysis.graph.nodes.contains_key(p)
            })?);
        let empty = Arc::new(NixFacts::default());
        let facts_of = |f: &str| facts.get(f).cloned().unwrap_or_else(|| empty.clone());

        m.rekey = m.read_rekey(snapshot, &facts)?;

        // Uses, per host: in its closure, and in the flake's wiring it
        // evaluates (the modules a `mkHost` helper gives every host).
        for host in analysis.hosts.hosts.keys() {
            let none = BTreeSet::new();
            let read = analysis.host_read_outputs.get(host).unwrap_or(&none);
            let walk = analysis.host_walk(host);
            let files: Vec<(&str, Vec<&str>)> =
                walk.iter().map(|(f, c, _)| (*f, c.clone())).collect();
            let certain = certain_files(analysis, host, &files);
            for (file, chain, wiring) in walk {
                let counts = |node: &Node, dep: &Dep| {
                    !wiring || analysis.wiring_dep_of(node, dep, read, Some(host))
                };
                let refs = secret_refs(
                    analysis,
                    &tree,
                    file,
                    &facts_of(file),
                    &is_pattern,
                    &counts,
                    wiring,
                );
                for r in refs {
                    match r {
                        // What the wiring names is any host's (the wiring
                        // section below): often an option's default, or a
                        // `mkIf` only some hosts enable. Except the one
                        // host-wide sops-nix setting, `sops.defaultSopsFile`
                        // (in the module a `mkHost` helper gives every
                        // host): the host's own use.
                        Ref::Sops { ref option, .. }
                            if wiring && option.as_deref() != Some("sops.defaultSopsFile") => {}
                        Ref::Secret { .. } | Ref::Under(_) | Ref::Possible { .. } if wiring => {}
                        // Reached only through a computed path into another
                        // host's files: a possible use, not a certain one.
                        Ref::Secret { path, .. } if !certain.contains(file) => {
                            m.maybe.entry(path).or_default().insert(host.clone());
                        }
                        Ref::Sops { path, .. } if !certain.contains(file) => {
                            m.sops.insert(path);
                        }
                        Ref::Secret { path, line, option } => {
                            if !tree.is_file(&path) {
                                m.missing.insert(path.clone());
                            }
                            m.uses.entry(path).or_default().push(SecretUse {
                                host: host.clone(),
                                file: file.to_string(),
                                line,
                                chain: chain.iter().map(|s| s.to_string()).collect(),
                                option,
                            });
                        }
                        Ref::Sops { path, line, option } => {
                            m.sops.insert(path.clone());
                            m.sops_uses.entry(path).or_default().push(SecretUse {
                                host: host.clone(),
                                file: file.to_string(),
                                line,
                                chain: chain.iter().map(|s| s.to_string()).collect(),
                                option,
                            });
                        }
                        Ref::Possible { path, sops: true } => {
                            m.sops.insert(path);
                        }
                        Ref::Possible { path, sops: false } => {
                            m.maybe.entry(path).or_default().insert(host.clone());
                        }
                        Ref::Under(dir) => {
                            for p in m.tracked.iter().filter(|p| is_below(p, &dir)) {
                                m.maybe.entry(p.clone()).or_default().insert(host.clone());
                            }
                        }
                    }
                }
            }
        }
        for uses in m.uses.values_mut().chain(m.sops_uses.values_mut()) {
            // One use per (host, file, line): a host reaching a module on
            // two chains uses the secret once.
            let mut seen = BTreeSet::new();
            uses.retain(|u| seen.insert((u.host.clone(), u.file.clone(), u.line)));
        }

        // Uses from the wiring (any host). A host's own file the wiring
        // reaches (through a computed listing of the hosts' directories:
        // static edges into it are host edges) is that host's, read in its
        // closure above, not every host's.
        for (file, _) in analysis.wiring() {
            if analysis.hosts.owner(file).is_some() {
                continue;
            }
            let any = |_: &Node, _: &Dep| true;
            for r in secret_refs(
                analysis,
                &tree,
                file,
                &facts_of(file),
                &is_pattern,
                &any,
                false,
            ) {
                match r {
                    Ref::Secret { path, line, option } => {
                        if !tree.is_file(&path) {
                            m.missing.insert(path.clone());
                        }
                        m.wiring.entry(path).or_default().push(WiringUse {
                            file: file.to_string(),
                            line,
                            option,
                        });
                    }
                    Ref::Sops { path, .. } | Ref::Possible { path, sops: true } => {
                        m.sops.insert(path);
                    }
                    Ref::Possible { .. } => {}
                    // The wiring's `./. + "/${name}"` into the hosts
                    // directory reaches each host's own entry, not every
                    // host's files (as in `affected`).
                    Ref::Under(dir)
                        if analysis.hosts.hosts_dir.as_deref() == Some(dir.as_str())
                            || analysis.hosts.owner(&dir).is_some() => {}
                    Ref::Under(dir) => {
                        for p in m.tracked.iter().filter(|p| is_below(p, &dir)) {
                            m.maybe
                                .entry(p.clone())
                                .or_default()
                                .extend(m.hosts.iter().cloned());
                        }
                    }
                }
            }
        }
        for p in &m.sops {
            m.tracked.remove(p);
        }

        // sops-nix: which key each host decrypts with (a setting shared
        // through the wiring counts too).
        for host in analysis.hosts.hosts.keys() {
            let (mut key_file, mut ssh) = (false, None::<bool>);
            for (file, _, _) in analysis.host_walk(host) {
                let f = facts_of(file);
                key_file |= f.sops_key_file;
                if let Some(x) = f.sops_ssh_paths {
                    ssh = Some(ssh.unwrap_or(false) || x);
                }
            }
            if let Some(x) = ssh.or((key_file).then_some(false)) {
                m.sops_ssh.insert(host.clone(), x);
            }
        }

        // Host keys.
        for host in analysis.hosts.hosts.keys() {
            let keys = m.host_keys_of(host, snapshot, analysis, config, &facts_of)?;
            m.host_keys.insert(host.clone(), keys);
        }

        // Other legitimate recipients.
        let mut others: Vec<(String, String)> = Vec::new();
        if let Some(r) = &m.rekey {
            for k in r.masters.iter().chain(&r.extras) {
                others.push((k.key.key.clone(), k.source.clone()));
            }
        }
        for (i, k) in config.secrets.admin_keys.iter().enumerate() {
            others.push((k.clone(), format!("guard.toml [secrets] admin_keys[{i}]")));
        }
        for (file, f) in &facts {
            for k in &f.user_keys {
                others.push((k.clone(), format!("secrix encryptKeys in {file}")));
            }
        }
        for (rules_path, rules) in &m.agenix {
            for r in &rules.rules {
                for k in &r.keys {
                    others.push((k.clone(), format!("publicKeys in {rules_path}:{}", r.line)));
                }
            }
        }
        // Keys declared anywhere in the repository are known, legitimate
        // recipients, except those named after a host: those are that
        // host's (and stale where it does not use a secret).
        let host_owned: BTreeSet<&PublicKey> = m
            .host_keys
            .values()
            .flat_map(|h| h.keys.iter().map(|k| &k.key))
            .collect();
        for d in &m.declared {
            if !host_owned.contains(&d.key) {
                others.push((d.key.key.clone(), format!("declared in {}", d.source)));
            }
        }
        let mut seen = BTreeSet::new();
        for (text, source) in others {
            match parse_public_key(&text) {
                Ok(key) => {
                    if seen.insert(key.clone()) {
                        m.other_keys.push(SourcedKey { key, source });
                    }
                }
                Err(e) => m.warnings.push(Warning {
                    path: None,
                    message: format!("ignoring a recipient key from {source}: {e}"),
                }),
            }
        }
        Ok(m)
    }

    /// Every file that must be age ciphertext: tracked pattern matches,
    /// agenix rule files and referenced secrets (sops files excluded).
    pub fn secrets(&self) -> BTreeSet<String> {
        let mut all = self.tracked.clone();
        all.extend(self.uses.keys().cloned());
        all.extend(self.wiring.keys().cloned());
        all.retain(|p| !self.sops.contains(p));
        all
    }

    /// The hosts that use `secret`.
    pub fn users_of(&self, secret: &str) -> BTreeSet<&str> {
        self.uses
            .get(secret)
            .into_iter()
            .flatten()
            .map(|u| u.host.as_str())
            .collect()
    }

    /// The secrets `host` uses (with agenix-rekey, also the files rekeyed
    /// for it).
    pub fn used_by(&self, host: &str) -> BTreeSet<&str> {
        let mut out: BTreeSet<&str> = self
            .uses
            .iter()
            .filter(|(_, u)| u.iter().any(|u| u.host == host))
            .map(|(p, _)| p.as_str())
            .collect();
        if let Some(r) = &self.rekey {
            out.extend(
                self.tracked
                    .iter()
                    .filter(|p| r.config.node_of(p) == Some(host))
                    .map(String::as_str),
            );
        }
        out
    }

    /// With agenix-rekey: whether `path` is a master-encrypted source (any
    /// secret outside the storage directory that no host uses as a plain
    /// agenix `age.secrets.<n>.file`).
    pub fn is_rekey_source(&self, path: &str) -> bool {
        let Some(r) = &self.rekey else {
            return false;
        };
        r.config.node_of(path).is_none()
            && !self.uses.get(path).into_iter().flatten().any(|u| {
                u.option.as_deref().and_then(nixfacts::secret_option_kind)
                    == Some(SecretKind::Agenix)
            })
    }

    /// The agenix-rekey settings of every Nix file, merged, with the keys
    /// of the identity files read.
    fn read_rekey(
        &self,
        snapshot: &Snapshot,
        facts: &HashMap<String, Arc<NixFacts>>,
    ) -> Result<Option<Rekey>, ModelError> {
        let mut files: Vec<&String> = facts.keys().filter(|f| facts[*f].rekey.is_some()).collect();
        if files.is_empty() {
            return Ok(None);
        }
        files.sort();
        let mut config = RekeyConfig::default();
        for f in files {
            let c = facts[f].rekey.as_ref().unwrap();
            if config.source.is_empty() {
                config.source = c.source.clone();
            }
            config.storage = config.storage.or(c.storage.clone());
            config.generated = config.generated.or(c.generated.clone());
            config.master_files.extend(c.master_files.iter().cloned());
            config
                .master_literals
                .extend(c.master_literals.iter().cloned());
            config.extra_files.extend(c.extra_files.iter().cloned());
            config
                .extra_literals
                .extend(c.extra_literals.iter().cloned());
        }
        let read_keys = |files: &[String],
                         literals: &[String],
                         what: &str|
         -> Result<Vec<SourcedKey>, ModelError> {
            let mut out = Vec::new();
            for f in files {
                if let Some(text) = read_text(snapshot, f)? {
                    for d in super::declared::declarations(f, &text) {
                        out.push(SourcedKey {
                            key: d.key,
                            source: format!("{what} {}", d.source),
                        });
                    }
                }
            }
            for l in literals {
                if let Ok(key) = parse_public_key(l) {
                    out.push(SourcedKey {
                        key,
                        source: format!("{what} in {}", config.source),
                    });
                }
            }
            Ok(out)
        };
        let masters = read_keys(
            &config.master_files,
            &config.master_literals,
            "masterIdentities",
        )?;
        let extras = read_keys(
            &config.extra_files,
            &config.extra_literals,
            "extraEncryptionPubkeys",
        )?;
        Ok(Some(Rekey {
            config,
            masters,
            extras,
        }))
    }

    /// Whether sops-nix on `host` decrypts with its SSH host key (the
    /// default), rather than an age key file only.
    pub fn sops_uses_ssh_key(&self, host: &str) -> bool {
        self.sops_ssh.get(host).copied().unwrap_or(true)
    }

    /// The agenix rule for `secret`, with its rules file.
    pub fn agenix_rule(&self, secret: &str) -> Option<(&str, &nixfacts::AgenixRule)> {
        self.agenix.iter().find_map(|(path, rules)| {
            rules
                .rules
                .iter()
                .find(|r| r.file == secret)
                .map(|r| (path.as_str(), r))
        })
    }

    fn host_keys_of(
        &mut self,
        host: &str,
        snapshot: &Snapshot,
        analysis: &Analysis,
        config: &Config,
        facts_of: &dyn Fn(&str) -> Arc<NixFacts>,
    ) -> Result<HostKeys, ModelError> {
        if let Some(keys) = config.secrets.recipients.get(host) {
            // Validated when the configuration was loaded.
            let keys = keys
                .iter()
                .filter_map(|k| parse_public_key(k).ok())
                .map(|key| SourcedKey {
                    key,
                    source: "guard.toml [secrets.recipients]".into(),
                })
                .collect();
            return Ok(HostKeys {
                keys,
                problem: None,
            });
        }
        // secrix.hostPubKey definitions in the host's closure.
        let mut defs = Vec::new();
        for (file, _) in analysis.closure(host) {
            for d in &facts_of(file).host_keys {
                defs.push((file.to_string(), d.clone()));
            }
        }
        if let Some(best) = defs.iter().map(|(_, d)| d.priority).min() {
            let mut out = HostKeys::default();
            for (file, d) in defs.iter().filter(|(_, d)| d.priority == best) {
                let at = format!("{} in {file}:{}", d.option, d.line);
                let text = match &d.value {
                    KeyValue::Literal(s) => s.clone(),
                    KeyValue::File(p) => match read_text(snapshot, p)? {
                        Some(t) => t
                            .lines()
                            .find(|l| !l.trim().is_empty())
                            .unwrap_or("")
                            .to_string(),
                        None => {
                            out.problem = Some(format!("{at} reads {p}, which is not tracked"));
                            continue;
                        }
                    },
                    KeyValue::Dynamic => {
                        out.problem = Some(format!(
                            "{at} is computed; guard reads only literals and readFile of a tracked file (set the key in guard.toml [secrets.recipients])"
                        ));
                        continue;
                    }
                };
                match parse_public_key(&text) {
                    Ok(key) => {
                        if !out.keys.iter().any(|k| k.key == key) {
                            out.keys.push(SourcedKey { key, source: at });
                        }
                    }
                    Err(e) => out.problem = Some(format!("{at}: {e}")),
                }
            }
            if out.keys.len() > 1 {
                self.warnings.push(Warning {
                    path: None,
                    message: format!(
                        "host {host}: {} different secrix.hostPubKey definitions at the same priority; nix would reject the conflict, guard accepts any of them",
                        out.keys.len()
                    ),
                });
            }
            if !out.keys.is_empty() || out.problem.is_some() {
                return Ok(out);
            }
        }
        // agenix: a binding named like the host.
        for (rules_path, rules) in &self.agenix {
            if let Some(keys) = rules.named_keys.get(host) {
                let keys: Vec<SourcedKey> = keys
                    .iter()
                    .filter_map(|k| parse_public_key(k).ok())
                    .map(|key| SourcedKey {
                        key,
                        source: format!("binding `{host}` in {rules_path}"),
                    })
                    .collect();
                if !keys.is_empty() {
                    return Ok(HostKeys {
                        keys,
                        problem: None,
                    });
                }
            }
        }
        // Convention: the host's own directory holds its public host key.
        // (Also found below, as a declaration named after the host.)
        if let Some(own) = analysis
            .hosts
            .hosts
            .get(host)
            .and_then(|h| h.own_dir.as_ref())
        {
            let p = format!("{own}/ssh_host_ed25519_key.pub");
            if let Some(text) = read_text(snapshot, &p)?
                && let Ok(key) = parse_public_key(text.trim())
            {
                return Ok(HostKeys {
                    keys: vec![SourcedKey { key, source: p }],
                    problem: None,
                });
            }
        }
        // A key the repository declares under the host's name (`alpha =
        // "ssh-ed25519 …";`, `hosts/alpha/host.pub`, a recipients-file
        // comment, a `.sops.yaml` anchor).
        let named: Vec<SourcedKey> = keys_named(&self.declared, host)
            .into_iter()
            .map(|d| SourcedKey {
                key: d.key.clone(),
                source: format!("key named `{host}` in {}", d.source),
            })
            .collect();
        if !named.is_empty() {
            return Ok(HostKeys {
                keys: named,
                problem: None,
            });
        }
        Ok(HostKeys {
            keys: Vec::new(),
            problem: Some(
                "no secrix.hostPubKey in its modules, no [secrets.recipients] entry in guard.toml, no agenix secrets.nix binding, .pub file or key declaration named after it".into(),
            ),
        })
    }
}

/// The files of `host`'s closure it certainly evaluates: those reached
/// without a computed path into another host's files
/// (`../hosts + "/${hostName}-facter.json"` reaches every host's entry in
/// the import graph, which is right for "what can a change affect" but
/// does not make the other hosts' secrets this host's).
fn certain_files<'a>(
    analysis: &'a Analysis,
    host: &str,
    closure: &[(&'a str, Vec<&'a str>)],
) -> std::collections::HashSet<&'a str> {
    let mut seen = std::collections::HashSet::new();
    let mut queue: std::collections::VecDeque<&str> = closure
        .iter()
        .filter(|(_, chain)| chain.len() <= 1)
        .map(|(f, _)| *f)
        .collect();
    while let Some(file) = queue.pop_front() {
        if !seen.insert(file) {
            continue;
        }
        let Some(node) = analysis.graph.nodes.get(file) else {
            continue;
        };
        for (target, dep) in &node.edges {
            let dynamic = node.deps[*dep]
                .reference
                .and_then(|i| node.refs.refs.get(i))
                .is_some_and(|r| r.dynamic);
            let other_host = analysis.hosts.owner(target).is_some_and(|o| o != host);
            if !(dynamic && other_host) {
                queue.push_back(target.as_str());
            }
        }
    }
    seen
}

/// A secret-relevant reference of one Nix file.
enum Ref {
    Secret {
        path: String,
        line: usize,
        option: Option<String>,
    },
    Sops {
        path: String,
        line: usize,
        option: Option<String>,
    },
    /// A computed path below this directory.
    Under(String),
    /// A secret the host may use (a path from the flake's root in a wiring
    /// file, which may sit in another host's definition).
    Possible { path: String, sops: bool },
}

/// The secret references of `file` in a host's evaluation: its
/// dependencies that `counts` accepts, and its paths from the flake's root
/// (in a wiring file, `wiring`, possible uses only: the facts do not say
/// which host's definition holds them).
fn secret_refs(
    analysis: &Analysis,
    tree: &Tree,
    file: &str,
    facts: &NixFacts,
    is_pattern: &dyn Fn(&str) -> bool,
    counts: &dyn Fn(&Node, &Dep) -> bool,
    wiring: bool,
) -> Vec<Ref> {
    let Some(node) = analysis.graph.nodes.get(file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dep in &node.deps {
        if !matches!(dep.kind, DepKind::File | DepKind::Copy) || !counts(node, dep) {
            continue;
        }
        let reference = dep.reference.and_then(|i| node.refs.refs.get(i));
        if reference.is_some_and(|r| r.dynamic) {
            if tree.is_dir(&dep.path) {
                out.push(Ref::Under(dep.path.clone()));
            }
            continue;
        }
        let using = facts.paths.iter().find(|u| u.path == dep.path);
        let option = using.and_then(|u| u.option.clone());
        let line = using
            .map(|u| u.line)
            .or(reference.map(|r| r.line as usize))
            .unwrap_or(1);
        match option.as_deref().and_then(nixfacts::secret_option_kind) {
            Some(SecretKind::Sops) => out.push(Ref::Sops {
                path: dep.path.clone(),
                line,
                option,
            }),
            Some(SecretKind::Secrix | SecretKind::Agenix | SecretKind::Rekey) => {
                out.push(Ref::Secret {
                    path: dep.path.clone(),
                    line,
                    option,
                })
            }
            None if is_pattern(&dep.path) && !tree.is_dir(&dep.path) => out.push(Ref::Secret {
                path: dep.path.clone(),
                line,
                option,
            }),
            None => {}
        }
    }
    // Paths from the flake's root (`self + /secrets/x.age`) are not in the
    // graph's dependencies.
    for u in facts.paths.iter().filter(|u| u.rooted) {
        let option = u.option.clone();
        if wiring {
            let kind = option.as_deref().and_then(nixfacts::secret_option_kind);
            if kind.is_some() || is_pattern(&u.path) {
                out.push(Ref::Possible {
                    path: u.path.clone(),
                    sops: kind == Some(SecretKind::Sops),
                });
            }
            continue;
        }
        match option.as_deref().and_then(nixfacts::secret_option_kind) {
            Some(SecretKind::Sops) => out.push(Ref::Sops {
                path: u.path.clone(),
                line: u.line,
                option,
            }),
            Some(_) => out.push(Ref::Secret {
                path: u.path.clone(),
                line: u.line,
                option,
            }),
            None if is_pattern(&u.path) && !tree.is_dir(&u.path) => out.push(Ref::Secret {
                path: u.path.clone(),
                line: u.line,
                option,
            }),
            None => {}
        }
    }
    out
}

/// Caches [`NixFacts`] by (blob id, path) across snapshots, so judging a
/// change reads and parses only the files it touched twice.
#[derive(Default)]
pub struct FactsCache {
    map: Mutex<HashMap<FactsKey, Option<Arc<NixFacts>>>>,
    decls: DeclCache,
}

/// A file's blob id and path (the same bytes resolve paths differently
/// at another path).
type FactsKey = (ObjectId, String);

impl FactsCache {
    pub fn new() -> FactsCache {
        FactsCache::default()
    }
}

/// Facts of the graph's Nix files that can matter: those mentioning a host
/// key or user keys, and those with a path to a non-Nix file (parsed in
/// parallel; the rest are skipped without parsing).
fn file_facts(
    snapshot: &Snapshot,
    analysis: &Analysis,
    cache: &FactsCache,
) -> Result<HashMap<String, Arc<NixFacts>>, GitError> {
    // Every file is read (a host key can be a literal anywhere), only the
    // ones that can matter are parsed.
    let candidates: Vec<&String> = analysis.graph.nodes.keys().collect();
    type Parsed = Result<Option<(String, Arc<NixFacts>)>, GitError>;
    let results: Vec<Parsed> = candidates
        .par_iter()
        .map(|p| {
            let key = snapshot
                .get(BStr::new(p.as_str()))
                .map(|e| (e.id, (*p).clone()));
            if let Some(k) = &key
                && let Some(hit) = cache.map.lock().unwrap().get(k)
            {
                return Ok(hit.clone().map(|f| ((*p).clone(), f)));
            }
            let facts = read_text(snapshot, p)?.and_then(|text| {
                // Key declarations are read here for the graph's files
                // (one read per file), the rest by `declared_keys`.
                let declared = if text.contains("ssh-") || text.contains("age1") {
                    super::declared::declarations(p, &text)
                } else {
                    Vec::new()
                };
                let interesting = text.contains("self + /")
                    || text.contains("hostPubKey")
                    || text.contains("hostPubkey")
                    || text.contains("ncryptKeys")
                    || text.contains("masterIdentities")
                    || (text.contains("sops")
                        && (text.contains("sshKeyPaths") || text.contains("keyFile")))
                    || text.contains("localStorageDir")
                    || analysis.graph.nodes[*p].deps.iter().any(|d| {
                        matches!(d.kind, DepKind::File | DepKind::Copy) && !d.path.ends_with(".nix")
                    });
                if interesting {
                    let mut f = nixfacts::facts(&text, p);
                    f.declared = declared;
                    Some(Arc::new(f))
                } else if !declared.is_empty() {
                    Some(Arc::new(NixFacts {
                        declared,
                        ..NixFacts::default()
                    }))
                } else {
                    None
                }
            });
            if let Some(k) = key {
                cache.map.lock().unwrap().insert(k, facts.clone());
            }
            Ok(facts.map(|f| ((*p).clone(), f)))
        })
        .collect();
    let mut out = HashMap::new();
    for r in results {
        if let Some((p, f)) = r? {
            out.insert(p, f);
        }
    }
    Ok(out)
}

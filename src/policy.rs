//! Fleet policy: the safety rules fleet owners write down in guard.toml
//! (`[policy]`), checked on every change. Which flake inputs each host's
//! evaluation reaches comes from the static import graph (the same input
//! uses that decide which hosts a flake.lock change affects, see
//! `affected`); lock hygiene reads flake.lock (`nix::lock`).
//!
//! Pure: a function of the analysis of the judged snapshot, the two lock
//! files and the configuration. Findings go into the one Report model.

use std::collections::{BTreeMap, BTreeSet};

use crate::affected::Analysis;
use crate::config::{Config, PolicyConfig, selects};
use crate::git::{BStr, Snapshot};
use crate::nix::lock::{self, LockFile, LockNode};
use crate::report::{Finding, Findings, RuleInfo, Severity, Warning};

/// A host uses an input with this rule's inputs it must not reach.
pub const FORBIDDEN_INPUT: &str = "forbidden-input";
/// A root input not locked to a revision.
pub const UNLOCKED_INPUT: &str = "unlocked-input";
/// A nixpkgs input that follows no supported branch.
pub const UNSUPPORTED_BRANCH: &str = "nixpkgs-unsupported-branch";
/// A nixpkgs input locked to an old commit.
pub const OUTDATED_NIXPKGS: &str = "nixpkgs-outdated";
/// A second copy of nixpkgs that a `follows` would remove.
pub const DUPLICATE_NIXPKGS: &str = "duplicate-nixpkgs";
/// An input the change adds, bumps or removes, with the hosts it reaches.
pub const INPUT_CHANGED: &str = "input-changed";

/// One way a host reaches an input: the files from the host's entry (or
/// flake.nix, for the wiring) to the file that uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub chain: Vec<String>,
    /// The file uses the `inputs` set as a whole (`attrValues inputs`).
    pub every_input: bool,
}

impl Reach {
    /// The file that uses the input.
    pub fn file(&self) -> &str {
        self.chain.last().map(String::as_str).unwrap_or_default()
    }

    /// `machines/linda/default.nix → environments/ai.nix → inputs.x`.
    pub fn display(&self, input: &str) -> String {
        let mut parts = self.chain.clone();
        parts.push(if self.every_input {
            format!("inputs (all of them, so inputs.{input})")
        } else {
            format!("inputs.{input}")
        });
        parts.join(" → ")
    }
}

/// Host -> input -> every file of the host's evaluation that uses the input,
/// each with its shortest chain (the host's own closure first, then the
/// wiring from flake.nix: `specialArgs`, `_module.args`, overlays set up
/// there). An input is used by `inputs.X`, an argument `X` (destructured
/// from the flake's inputs or bound to it), `X.legacyPackages`, an overlay
/// built from `X`: every use the graph records for flake.lock precision.
pub fn input_reach(
    analysis: &Analysis,
    inputs: &BTreeSet<String>,
) -> BTreeMap<String, BTreeMap<String, Vec<Reach>>> {
    let mut out = BTreeMap::new();
    let none = BTreeSet::new();
    // Hosts with the same walk key share their wiring (as in `affected`).
    let mut wiring_memo = std::collections::HashMap::new();
    for host in analysis.hosts.hosts.keys() {
        let read = analysis.host_read_outputs.get(host).unwrap_or(&none);
        let mut uses: BTreeMap<String, Vec<Reach>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let wiring = wiring_memo
            .entry(analysis.walk_key(host))
            .or_insert_with(|| analysis.wiring_for(read, host));
        let walks = analysis
            .closure(host)
            .into_iter()
            .chain(wiring.iter().cloned());
        for (file, chain) in walks {
            if !seen.insert(file) {
                continue;
            }
            let Some(node) = analysis.graph.nodes.get(file) else {
                continue;
            };
            let every = node.refs.all_inputs;
            for input in inputs {
                if every || node.refs.idents.contains(input) {
                    uses.entry(input.clone()).or_default().push(Reach {
                        chain: chain.iter().map(|s| s.to_string()).collect(),
                        every_input: every && !node.refs.idents.contains(input),
                    });
                }
            }
        }
        out.insert(host.clone(), uses);
    }
    out
}

/// What the policy checks read besides the analysis.
pub struct PolicyInput<'a> {
    pub analysis: &'a Analysis,
    pub new: &'a Snapshot,
    /// The snapshot the change starts from (None: everything is judged,
    /// nothing is compared).
    pub old: Option<&'a Snapshot>,
    /// Seconds since the epoch the lock's age is measured at: the judged
    /// commit's time, or now for the index and the work tree.
    pub now: i64,
}

/// Runs every policy check: input rules, lock hygiene, changed inputs.
pub fn check(input: &PolicyInput, config: &Config, policy: &PolicyConfig) -> Findings {
    let mut out = Findings::default();
    let analysis = input.analysis;
    let lock_path = join(&analysis.flake_dir, "flake.lock");
    let mut read = |s: &Snapshot| match s.read(BStr::new(&lock_path)) {
        Ok(bytes) => bytes,
        Err(e) => {
            out.warnings.push(Warning {
                path: Some(lock_path.clone()),
                message: format!("cannot read the lock file from git ({e}); lock checks skipped"),
            });
            None
        }
    };
    let new_lock_bytes = read(input.new);
    let old_lock_bytes = input.old.map(&mut read);
    let new_lock = match new_lock_bytes.as_deref().map(LockFile::parse) {
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            out.warnings.push(Warning {
                path: Some(lock_path.clone()),
                message: format!("cannot read the lock file ({e}); lock hygiene not checked"),
            });
            None
        }
        None => None,
    };
    let lock_text = new_lock_bytes
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();

    // Every input name the rules or the lock mention.
    let mut names: BTreeSet<String> = policy
        .rules
        .iter()
        .flat_map(|r| r.forbid_inputs.iter().cloned())
        .collect();
    if let Some(l) = &new_lock {
        names.extend(l.root_inputs.keys().cloned());
    }
    let reach = input_reach(analysis, &names);
    let severity =
        |rule: &str, default: Severity| match policy.severity.get(rule).map(String::as_str) {
            Some("error") => Severity::Error,
            Some("warning") => Severity::Warning,
            Some("info") => Severity::Info,
            _ => default,
        };
    // Findings name no commit: the policy judges a snapshot, not history.
    let commit = None;
    let hosts_reaching = |name: &str| -> Vec<&str> {
        reach
            .iter()
            .filter(|(_, uses)| uses.contains_key(name))
            .map(|(h, _)| h.as_str())
            .collect()
    };

    // A rule that names nothing real would pass silently: say so.
    for (i, rule) in policy.rules.iter().enumerate() {
        let at = format!("guard.toml [[policy.rules]] #{}", i + 1);
        if let Some(l) = &new_lock {
            for name in rule
                .forbid_inputs
                .iter()
                .filter(|n| !l.root_inputs.contains_key(*n))
            {
                let known: Vec<&str> = l.root_inputs.keys().map(String::as_str).collect();
                out.warnings.push(Warning {
                    path: Some(at.clone()),
                    message: format!(
                        "forbid_inputs: {name:?} is no input of this flake (inputs: {})",
                        known.join(", ")
                    ),
                });
            }
        }
        for module in rule
            .only_via
            .iter()
            .filter(|m| input.new.get(BStr::new(m.as_str())).is_none())
        {
            out.warnings.push(Warning {
                path: Some(at.clone()),
                message: format!("only_via: {module:?} is not a tracked file"),
            });
        }
        for sel in &rule.hosts {
            if !reach
                .keys()
                .any(|h| selects(std::slice::from_ref(sel), &config.build.critical, h))
            {
                out.warnings.push(Warning {
                    path: Some(at.clone()),
                    message: format!("hosts: {sel:?} selects no host of this flake"),
                });
            }
        }
    }

    // 1. Inputs hosts must not reach (once per host and input, however
    // many rules forbid it).
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    let mut reported: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (host, uses) in &reach {
        for rule in &policy.rules {
            if !selects(&rule.hosts, &config.build.critical, host) {
                continue;
            }
            for name in &rule.forbid_inputs {
                let Some(found) = uses.get(name) else {
                    continue;
                };
                if reported.contains(&(host.as_str(), name.as_str())) {
                    continue;
                }
                // A use by name explains more than a use of every input
                // (`attrValues inputs`), and a short chain more than a long.
                let Some(r) = found
                    .iter()
                    .filter(|r| !r.chain.iter().any(|f| rule.only_via.iter().any(|v| v == f)))
                    .min_by_key(|r| (r.every_input, r.chain.len()))
                else {
                    continue;
                };
                let file = r.file().to_string();
                let text = texts.entry(file.clone()).or_insert_with(|| {
                    input
                        .new
                        .read(BStr::new(&file))
                        .ok()
                        .flatten()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                });
                let line = token_line(text, name).unwrap_or(1);
                let via = if rule.only_via.is_empty() {
                    String::new()
                } else {
                    format!(" except through {}", rule.only_via.join(", "))
                };
                reported.insert((host.as_str(), name.as_str()));
                out.findings.push(Finding::located(
                    FORBIDDEN_INPUT,
                    severity(FORBIDDEN_INPUT, Severity::Error),
                    &file,
                    line,
                    &format!("{host}\0{name}"),
                    format!(
                        "host {host} reaches input {name}, which [policy] forbids for it{via}: {}. \
                         Fix: drop the import on that chain for {host}, or change the rule in guard.toml.",
                        r.display(name)
                    ),
                    commit,
                ));
            }
        }
    }

    // 2. Lock hygiene.
    if let Some(lock) = &new_lock {
        // A finding about the lock node `key`, on its line.
        let lock_finding = |rule: &str, default: Severity, key: &str, about: &str, message| {
            Finding::located(
                rule,
                severity(rule, default),
                &lock_path,
                node_line(&lock_text, key),
                about,
                message,
                commit,
            )
        };
        let supported = policy
            .lock
            .supported_branches
            .clone()
            .unwrap_or_else(|| supported_branches(input.now));
        for (name, key) in &lock.root_inputs {
            let node = key.as_ref().and_then(|k| lock.nodes.get(k));
            let Some(node) = node else { continue };
            if !node.is_locked() {
                out.findings.push(lock_finding(
                    UNLOCKED_INPUT,
                    Severity::Error,
                    &node.key,
                    name,
                    format!(
                        "input {name} ({}) is not locked to a revision: each evaluation may fetch \
                         something else. Fix: run `nix flake lock` and commit flake.lock.",
                        describe(node)
                    ),
                ));
            }
            if !node.is_nixpkgs() {
                continue;
            }
            if !node.pinned
                && !node
                    .reference
                    .as_ref()
                    .is_some_and(|r| supported.contains(r))
            {
                let on = match &node.reference {
                    Some(r) => format!("follows branch {r}"),
                    None => "follows the default branch (no ref)".into(),
                };
                out.findings.push(lock_finding(
                    UNSUPPORTED_BRANCH,
                    Severity::Warning,
                    &node.key,
                    name,
                    format!(
                        "nixpkgs input {name} {on}, which is not a supported branch ({}). \
                         Fix: point it at a supported release or nixos-unstable in flake.nix.",
                        supported.join(", ")
                    ),
                ));
            }
            if let Some(modified) = node.last_modified
                && policy.lock.max_age_days > 0
            {
                let days = (input.now - modified) / 86_400;
                if days > i64::from(policy.lock.max_age_days) {
                    out.findings.push(lock_finding(
                        OUTDATED_NIXPKGS,
                        Severity::Warning,
                        &node.key,
                        name,
                        format!(
                            "nixpkgs input {name} is locked to a commit {days} days old \
                             ({}, from {}; [policy.lock] max_age_days = {}). \
                             Fix: `nix flake update {name}` and commit flake.lock.",
                            node.locked_to(),
                            date(modified),
                            policy.lock.max_age_days
                        ),
                    ));
                }
            }
        }
        for dup in lock.duplicate_nixpkgs() {
            let mut hosts: BTreeSet<&str> = BTreeSet::new();
            for via in &dup.via {
                hosts.extend(hosts_reaching(via));
            }
            if hosts.is_empty() {
                continue;
            }
            let fixes: Vec<String> = dup
                .declared_by
                .iter()
                .map(|(root, input)| {
                    format!("inputs.{root}.inputs.{input}.follows = \"{}\";", dup.main)
                })
                .collect();
            let hosts: Vec<&str> = hosts.into_iter().collect();
            out.findings.push(lock_finding(
                DUPLICATE_NIXPKGS,
                Severity::Warning,
                &dup.key,
                &dup.key,
                format!(
                    "a second copy of nixpkgs (lock node {}, {}) comes in through {} and is \
                     pulled in by {}: {}. Fix: {}",
                    dup.key,
                    lock.nodes
                        .get(&dup.key)
                        .map(LockNode::locked_to)
                        .unwrap_or_default(),
                    dup.via.join(", "),
                    plural_hosts(hosts.len()),
                    hosts.join(", "),
                    if fixes.is_empty() {
                        format!("make the inputs that bring it in follow {}.", dup.main)
                    } else {
                        fixes.join(" ")
                    }
                ),
            ));
        }
    }

    // 3. Inputs the change adds, bumps or removes.
    if let Some(old_bytes) = old_lock_bytes {
        if old_bytes != new_lock_bytes
            && let Ok(changed) =
                lock::changed_inputs(old_bytes.as_deref(), new_lock_bytes.as_deref())
        {
            let old_lock = old_bytes.as_deref().and_then(|b| LockFile::parse(b).ok());
            let node_of = |l: Option<&LockFile>, name: &str| -> Option<LockNode> {
                let l = l?;
                l.nodes.get(l.root_inputs.get(name)?.as_ref()?).cloned()
            };
            for name in changed {
                let before = node_of(old_lock.as_ref(), &name);
                let after = node_of(new_lock.as_ref(), &name);
                let what = match (&before, &after) {
                    (None, Some(a)) => format!("added ({})", version(a)),
                    (Some(b), None) => format!("removed (was {})", version(b)),
                    (Some(b), Some(a)) if version(b) != version(a) => {
                        format!("bumped ({} → {})", version(b), version(a))
                    }
                    _ => "changed (its own inputs moved)".into(),
                };
                let hosts = hosts_reaching(&name);
                let reaches = if hosts.is_empty() {
                    "reaches no host".to_string()
                } else {
                    format!(
                        "reaches {}: {}",
                        plural_hosts(hosts.len()),
                        hosts.join(", ")
                    )
                };
                let key = after.as_ref().or(before.as_ref()).map(|n| n.key.clone());
                out.findings.push(Finding::located(
                    INPUT_CHANGED,
                    severity(INPUT_CHANGED, Severity::Info),
                    &lock_path,
                    key.map_or(1, |k| node_line(&lock_text, &k)),
                    &name,
                    format!("input {name} {what}; it {reaches}"),
                    commit,
                ));
            }
        }
    }
    out.findings.sort_by(|a, b| {
        (&a.path, a.line, &a.rule, &a.message).cmp(&(&b.path, b.line, &b.rule, &b.message))
    });
    out
}

fn plural_hosts(n: usize) -> String {
    if n == 1 {
        "1 host".into()
    } else {
        format!("{n} hosts")
    }
}

/// `github NixOS/nixpkgs ref nixos-24.05`, for messages.
fn describe(node: &LockNode) -> String {
    let mut s = node.kind.clone();
    if let Some(o) = node.owner_repo.as_ref().or(node.url.as_ref()) {
        s.push(' ');
        s.push_str(o);
    }
    if let Some(r) = &node.reference {
        s.push_str(&format!(" ref {r}"));
    }
    s
}

/// `a1b2c3d4e5f6 of 2024-05-01`.
fn version(node: &LockNode) -> String {
    match node.last_modified {
        Some(t) => format!("{} of {}", node.locked_to(), date(t)),
        None => node.locked_to(),
    }
}

/// The 1-based line of a lock node's key (`"nixpkgs_2": {`), 1 if absent.
fn node_line(text: &str, key: &str) -> usize {
    let needle = format!("\"{key}\":");
    text.lines()
        .position(|l| l.trim_start().starts_with(&needle))
        .map_or(1, |i| i + 1)
}

/// The line of the first use of `name` as a whole identifier.
fn token_line(text: &str, name: &str) -> Option<usize> {
    let ident = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\'');
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        let mut from = 0;
        while let Some(pos) = code[from..].find(name) {
            let start = from + pos;
            let end = start + name.len();
            let before = code[..start].chars().next_back();
            let after = code[end..].chars().next();
            if !before.is_some_and(ident) && !after.is_some_and(ident) {
                return Some(i + 1);
            }
            from = end;
        }
    }
    None
}

/// The nixpkgs branches supported at `now`: the unstable branches and the
/// releases (May and November) out at `now` and not yet a month past
/// their successor (NixOS supports a release for seven months).
pub fn supported_branches(now: i64) -> Vec<String> {
    let mut out: Vec<String> = ["nixos-unstable", "nixos-unstable-small", "nixpkgs-unstable"]
        .map(String::from)
        .to_vec();
    let (y, m, _) = civil(now);
    let month_index = y * 12 + m as i64;
    for year in (y - 1)..=y {
        for month in [5, 11] {
            let age = month_index - (year * 12 + month);
            if (0..=7).contains(&age) {
                let v = format!("{:02}.{:02}", year % 100, month);
                out.push(format!("nixos-{v}"));
                out.push(format!("nixos-{v}-small"));
                out.push(format!("nixpkgs-{v}-darwin"));
            }
        }
    }
    out
}

/// `2024-05-01` (UTC).
fn date(t: i64) -> String {
    let (y, m, d) = civil(t);
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day) of a Unix time, UTC (Howard Hinnant's algorithm).
fn civil(t: i64) -> (i64, u32, u32) {
    let z = t.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Descriptions of the policy rules (SARIF `tool.driver.rules`).
pub fn rule_infos() -> Vec<RuleInfo> {
    let rule = RuleInfo::new;
    vec![
        rule(
            FORBIDDEN_INPUT,
            Severity::Error,
            "A host reaches a flake input [policy] forbids for it",
            "A module in the host's evaluation (its imports, or the flake's wiring) uses an input a [[policy.rules]] entry forbids for the host.",
            "Drop the import that brings the input to the host (the chain names it), allow the module with only_via, or change the rule in guard.toml.",
        ),
        rule(
            UNLOCKED_INPUT,
            Severity::Error,
            "A flake input is not locked to a revision",
            "flake.lock has no revision (or narHash) for the input, so evaluations may fetch different code.",
            "Run `nix flake lock` and commit flake.lock.",
        ),
        rule(
            UNSUPPORTED_BRANCH,
            Severity::Warning,
            "A nixpkgs input follows an unsupported branch",
            "The input's branch is not nixos-unstable or a NixOS release that still gets security fixes.",
            "Point the input at a supported branch in flake.nix, or list the branch in [policy.lock] supported_branches.",
        ),
        rule(
            OUTDATED_NIXPKGS,
            Severity::Warning,
            "A nixpkgs input is locked to an old commit",
            "The locked nixpkgs commit is older than [policy.lock] max_age_days at the time of the judged commit.",
            "Run `nix flake update <input>` and commit flake.lock.",
        ),
        rule(
            DUPLICATE_NIXPKGS,
            Severity::Warning,
            "A second copy of nixpkgs that a follows would remove",
            "An input brings its own nixpkgs instead of following the flake's; the hosts that use it evaluate two nixpkgs.",
            "Add `inputs.<input>.inputs.nixpkgs.follows = \"nixpkgs\";` to flake.nix and relock.",
        ),
        rule(
            INPUT_CHANGED,
            Severity::Info,
            "A flake input is added, bumped or removed",
            "The change moves a flake input; the finding names the hosts whose evaluation uses it.",
            "Deploy the named hosts (guard plan); nothing to fix.",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_supported_releases() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_700_000_000), "2023-11-14");
        // 2024-12-15: 24.11 is out, 24.05 is still supported (seven months).
        let b = supported_branches(1_734_220_800);
        assert!(b.contains(&"nixos-24.11".to_string()), "{b:?}");
        assert!(b.contains(&"nixos-24.05".to_string()), "{b:?}");
        assert!(!b.contains(&"nixos-23.11".to_string()), "{b:?}");
        assert!(b.contains(&"nixos-unstable".to_string()));
        // 2025-02-01: 24.05 has ended.
        let b = supported_branches(1_738_368_000);
        assert!(!b.contains(&"nixos-24.05".to_string()), "{b:?}");
    }

    #[test]
    fn token_lines_skip_longer_names_and_comments() {
        let t = "# nixpkgs_unstable here\nx = nixpkgs_unstable2;\ny = inputs.nixpkgs_unstable.legacyPackages;\n";
        assert_eq!(token_line(t, "nixpkgs_unstable"), Some(3));
        assert_eq!(token_line(t, "absent"), None);
        assert_eq!(
            node_line("{\n  \"nodes\": {\n    \"nixpkgs_2\": {\n", "nixpkgs_2"),
            3
        );
    }
}

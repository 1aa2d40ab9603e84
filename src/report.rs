//! One `Report` model for every command, and its writers. Analyses fill a
//! `Report`; writers format it and never analyse. JSON field names are the
//! contract of docs/cli.md.

use std::io::{self, Write};

use serde::Serialize;

pub mod bisect;
pub mod closure;
pub mod doctor;
pub mod explain;
pub mod github;
pub mod graph;
pub mod hook;
pub mod plan;
mod sarif;

pub use github::{escape_data, escape_property, stop_token, write_github};
pub use sarif::write_sarif;

/// Build levels, cheapest first (`--level`, `[build] level`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No nix at all.
    None,
    /// Evaluate each host's toplevel drvPath.
    Eval,
    /// Build config.system.build.toplevel.
    Build,
    /// Build config.system.build.vm.
    Vm,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// A secret value as it may be shown: never the value itself. The only way
/// to build one is [`Redacted::new`], so no finding can carry a raw secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Redacted(String);

impl Redacted {
    /// Keeps a 4-character prefix of long values (enough to find the line,
    /// far too little to use) and nothing of short ones.
    pub fn new(secret: &str) -> Redacted {
        let n = secret.chars().count();
        if n >= 16 {
            let prefix: String = secret.chars().take(4).collect();
            Redacted(format!("{prefix}…(redacted)"))
        } else {
            Redacted("…(redacted)".into())
        }
    }

    /// No secret: a finding about a file, a key or a rule (a missing
    /// recipient, a policy), shown without a redaction placeholder.
    pub fn none() -> Redacted {
        Redacted(String::new())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The placeholder followed by `sep`, or nothing for a finding that
    /// holds no secret.
    pub fn shown(&self, sep: &str) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            format!("{}{sep}", self.0)
        }
    }
}

/// A problem found in a file: a plaintext secret, a bad age file.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub commit: Option<String>,
    pub secret: Redacted,
    pub fingerprint: String,
    /// What is wrong and how to fix it (never contains the secret).
    pub message: String,
    /// Where the found text ends; `None`: one character at (line,
    /// column). Not in the JSON output (SARIF writes it as the region end).
    #[serde(skip)]
    pub end: Option<RegionEnd>,
}

impl Finding {
    /// A finding about a place that holds no secret (an age file, a host's
    /// module, a lock entry): the value is empty, the fingerprint made of
    /// the rule, the path and what the finding is about (a host, an input),
    /// so it survives unrelated edits.
    pub fn located(
        rule: &str,
        severity: Severity,
        path: &str,
        line: usize,
        about: &str,
        message: String,
        commit: Option<&str>,
    ) -> Finding {
        Finding {
            rule: rule.to_string(),
            severity,
            path: path.to_string(),
            line: line.max(1),
            column: 1,
            commit: commit.map(str::to_string),
            secret: Redacted::none(),
            fingerprint: fingerprint(rule, path, about),
            message,
            end: None,
        }
    }
}

/// A stable fingerprint of (rule, path, what a finding is about).
pub fn fingerprint(rule: &str, path: &str, about: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [rule, path, about] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where a finding's text ends: its last line, and the column after its
/// last character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionEnd {
    pub line: usize,
    pub column: usize,
}

/// What a rule is, for writers that describe rules (SARIF
/// `tool.driver.rules`). Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    /// Stable rule id (`wireguard-private-key`).
    pub id: String,
    /// One line: what was found.
    pub title: String,
    /// Why it matters.
    pub description: String,
    /// How to fix it and how to allow a false positive.
    pub help: String,
    /// Default severity.
    pub severity: Severity,
}

impl RuleInfo {
    /// A rule's description (the registries of the age, sops and policy
    /// checks build theirs with it).
    pub fn new(id: &str, severity: Severity, title: &str, description: &str, help: &str) -> Self {
        RuleInfo {
            id: id.into(),
            title: title.into(),
            description: description.into(),
            help: help.into(),
            severity,
        }
    }
}

/// The rules each section of a report can use, from the one registry
/// (`app::pipeline::rules`: scan rules, age/secrix rules, identity-leak
/// rules). Writers that describe rules (SARIF `tool.driver.rules`) take
/// the descriptions from here, never from elsewhere.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// What the plaintext scan (`scan` section) can report.
    pub scan: Vec<RuleInfo>,
    /// What the age checks and the identity-leak rules (`secrets`
    /// section) can report.
    pub secrets: Vec<RuleInfo>,
    /// What the fleet policy (`policy` section) can report.
    pub policy: Vec<RuleInfo>,
    /// What the self-check (`affected.self_check`) can report.
    pub self_check: Vec<RuleInfo>,
}

impl Rules {
    /// The rules of the sections `report` has, each id once, sorted.
    pub fn for_report(&self, report: &Report) -> Vec<&RuleInfo> {
        let mut seen = std::collections::BTreeMap::new();
        let checked = report
            .affected
            .as_ref()
            .is_some_and(|a| a.self_check.is_some());
        let sections = [
            (report.scan.is_some(), &self.scan),
            (report.secrets.is_some(), &self.secrets),
            (report.policy.is_some(), &self.policy),
            (checked, &self.self_check),
        ];
        for (_, rules) in sections.into_iter().filter(|(has, _)| *has) {
            for r in rules {
                seen.entry(r.id.as_str()).or_insert(r);
            }
        }
        seen.into_values().collect()
    }
}

/// The import graph as `guard graph` draws it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Graph {
    pub edges: Vec<GraphEdge>,
    /// The files drawn (never collapsed).
    pub files: Vec<String>,
    pub hosts: Vec<GraphHost>,
    /// What flake.nix evaluates outside every host's directory.
    pub wiring: Vec<String>,
    /// flake.nix, repository-relative (every host's wiring starts there).
    #[serde(skip)]
    pub flake_nix: String,
    /// What the drawing merged (directories drawn as one node).
    #[serde(skip)]
    pub note: Option<String>,
}

/// One host of a [`Graph`] and its entry module.
#[derive(Debug, Clone, Serialize)]
pub struct GraphHost {
    pub entry: String,
    pub name: String,
}

/// One edge of a [`Graph`]: `kind` is how `from` reads `to` (file, copy,
/// computed, host, ...; merged edges join their kinds).
#[derive(Debug, Clone, Serialize)]
pub struct GraphEdge {
    pub from: String,
    pub kind: String,
    pub to: String,
}

/// Something the user should know that is not a finding (an unresolvable
/// import widened the affected set, a host list mismatch, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub path: Option<String>,
    pub message: String,
}

/// Why one host is affected: a changed path and the import chain from the
/// host's entry module to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub path: String,
    pub chain: Vec<String>,
    /// Why the analysis cannot tell whether the host really reads the
    /// path, when it cannot (a computed path, the whole tree, `inputs`
    /// passed whole): the host is listed to stay sound; `-v` says why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncertain: Option<String>,
}

/// One affected host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AffectedHost {
    pub name: String,
    pub reasons: Vec<Reason>,
    /// Changed paths that also affect this host but are not in `reasons`
    /// (the list is capped); 0 when every one is listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub truncated: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl AffectedHost {
    /// For a restamped host, its (first) stamp: "revision stamp at
    /// modules/nix.nix:12" (the end of the first reason's chain).
    pub fn stamp(&self) -> Option<&str> {
        self.reasons
            .first()
            .and_then(|r| r.chain.last())
            .map(|c| c.trim_matches(|c| c == '(' || c == ')'))
    }

    /// Changed paths beyond the first reason, listed or not.
    pub fn more_paths(&self) -> usize {
        let mut paths: Vec<&str> = self.reasons.iter().map(|r| r.path.as_str()).collect();
        paths.sort_unstable();
        paths.dedup();
        paths.len().saturating_sub(1) + self.truncated
    }
}

/// The answer of `guard affected`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Affected {
    /// Hosts whose configuration reads content the change touched.
    pub hosts: Vec<AffectedHost>,
    /// Hosts whose drvPath changes only through a stamp (the revision, the
    /// whole source's store path): listed apart, not built unless
    /// `[affected] stamps = "build"`.
    #[serde(default)]
    pub restamped: Vec<AffectedHost>,
    pub all_hosts: Vec<String>,
    /// Each host's own directory (`machines/<name>`), where hosts are laid
    /// out one directory each: a change there is that host's alone.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub host_dirs: std::collections::BTreeMap<String, String>,
    /// Targets that are not NixOS hosts, by kind (`darwin`, `home`,
    /// `deploy-nodes`): reported apart, never mixed into `all_hosts`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub other_targets: std::collections::BTreeMap<String, Vec<String>>,
    /// Hosts that existed in the old snapshot and are gone in the new one.
    pub removed_hosts: Vec<String>,
    pub changed_paths: Vec<String>,
    pub warnings: Vec<Warning>,
    /// The soundness self-check against nix's module graphs, where it ran
    /// (`guard ci`, `guard check --level eval|build|vm`, `guard affected
    /// --self-check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_check: Option<SelfCheck>,
}

/// The rule id of a soundness miss (the rule registry describes it).
pub const SOUNDNESS_MISS: &str = "soundness-miss";

/// The self-check: each host's module graph as nix collected it, compared
/// with guard's static answer for that host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SelfCheck {
    /// Hosts whose graph was compared.
    pub hosts_checked: usize,
    /// Of those, answered by the graph cache (nix was not asked).
    pub from_cache: usize,
    /// Repository files in nix's graphs, summed over the hosts.
    pub nix_files: usize,
    /// Files of the hosts' static import closures, summed over the hosts.
    pub static_files: usize,
    /// Of those, files nix did not import (guard's over-approximation;
    /// counted, not reported).
    pub static_only: usize,
    /// Repository files nix imported that guard's static answer lacks.
    pub misses: Vec<SoundnessMiss>,
    /// Why the self-check did not run, or ran only for some hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Wall time of the self-check (nix's graphs and the comparison).
    pub duration_ms: u64,
}

/// A repository file nix's module graph of a host holds that guard's
/// static answer for the host lacks: a change to it would not list the
/// host. Never holds file contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SoundnessMiss {
    pub host: String,
    /// The repository file.
    pub path: String,
    /// nix's chain of module files, from the host's entry to `path`.
    pub chain: Vec<String>,
    /// The change touches `path`: the host was added to the changed hosts
    /// (and built) for this run.
    pub changed: bool,
    /// What happened and what to report (the minimal facts).
    pub message: String,
}

/// What `guard doctor` found: advice, each with the hosts it concerns.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Doctor {
    pub hosts: Vec<String>,
    pub advice: Vec<Advice>,
}

/// What a piece of advice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdviceKind {
    /// `self.rev` and friends: every commit restamps the host.
    RevisionStamp,
    /// A path inside the whole source's store path (`"${self}/x"`).
    WholeTreePath,
    /// The whole repository copied or read (`src = self`, `toString ./.`).
    WholeTreeCopy,
    /// Other hosts' configurations read (`self.nixosConfigurations`).
    CrossHostRead,
    /// A path computed at evaluation time (`./hosts/${name}`).
    ComputedPath,
    /// `<nixpkgs>`: NIX_PATH.
    SearchPath,
    /// A file outside the repository (`/etc/x`).
    OutsideRepository,
}

impl AdviceKind {
    /// The short name the human writer shows.
    pub fn title(self) -> &'static str {
        match self {
            AdviceKind::RevisionStamp => "revision stamp",
            AdviceKind::WholeTreePath => "whole-tree store path",
            AdviceKind::WholeTreeCopy => "whole-tree copy",
            AdviceKind::CrossHostRead => "cross-host read",
            AdviceKind::ComputedPath => "computed path",
            AdviceKind::SearchPath => "<...> lookup",
            AdviceKind::OutsideRepository => "file outside the repository",
        }
    }
}

/// One thing that makes hosts churn or guard imprecise, where it is and
/// how to fix it.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub kind: AdviceKind,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The expression, shortened.
    pub expression: String,
    pub why: String,
    pub fix: String,
    pub hosts: Vec<String>,
}

/// What the workers did (part of the build report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EvalStats {
    /// Workers allowed at once.
    pub workers: usize,
    /// The memory limit per worker (bytes).
    pub max_memory: u64,
    /// Worker processes started.
    pub started: usize,
    /// Workers replaced because they passed the limit.
    pub replaced: usize,
    /// Highest resident memory of one worker (bytes).
    pub peak_worker_memory: u64,
    /// Host evaluations answered by nix.
    pub evaluated: usize,
    /// Host evaluations answered by the evaluation cache.
    pub cached: usize,
}

/// What `built_on` says of a host nix built on this machine.
pub const LOCAL_BUILDER: &str = "local";

/// Counts of what a scan read.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Scanned {
    pub files: u64,
    pub bytes: u64,
    pub commits: u64,
}

/// The answer of `guard scan` / `guard secrets`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    pub findings: Vec<Finding>,
    pub scanned: Scanned,
    pub warnings: Vec<Warning>,
}

/// What happened to one host in `guard build` / `guard check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildStatus {
    /// Evaluated (level eval) or built (build, vm).
    Ok,
    /// Evaluation or build failed, timed out or was interrupted.
    Failed,
    /// Not evaluated or built; `reason` says why (unchanged drvPath,
    /// already built, stopped after the first failure).
    Skipped,
}

/// One host's result.
#[derive(Debug, Clone, Serialize)]
pub struct BuildHost {
    pub name: String,
    pub status: BuildStatus,
    /// `eval`, `build` or `vm`.
    pub level: String,
    pub drv_path: Option<String>,
    pub out_path: Option<String>,
    pub duration_ms: u64,
    /// Path of the host's full nix log (under the repository's git dir).
    pub log: Option<String>,
    /// Why it failed or was skipped (one line).
    pub reason: Option<String>,
    /// The part of a failed host's log that shows the failure: the last
    /// lines of a build log, the first lines of an evaluation error (the
    /// message and the innermost location come first there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_excerpt: Vec<String>,
    /// Where its derivations were built: `local`, or a remote builder's
    /// URI (empty when nothing was built).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub built_on: Vec<String>,
    /// What changed in its closure against the base toplevel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closure_diff: Option<closure::ClosureDiff>,
}

/// The answer of `guard build`, and the build section of `guard check`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BuildReport {
    pub hosts: Vec<BuildHost>,
    /// What was evaluated, for people: `commit 1a2b3c4`, `staged content
    /// (temporary commit 5d6e7f8)`, `work tree (uncommitted changes included)`.
    pub source: String,
    /// The flake reference nix was given.
    pub flake: String,
    /// The revision drvPaths were compared against, if any.
    pub base: Option<String>,
    /// `nix flake check`, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flake_check: Option<BuildHost>,
    /// Ctrl-C stopped the run; the results are incomplete.
    pub interrupted: bool,
    pub warnings: Vec<Warning>,
    /// What the evaluation workers did (absent when nothing was evaluated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalStats>,
}

impl BuildReport {
    /// Whether any host (or the flake check) failed.
    pub fn failed(&self) -> bool {
        self.hosts
            .iter()
            .chain(self.flake_check.iter())
            .any(|h| h.status == BuildStatus::Failed)
    }
}

/// A staged rollout (`guard plan`): the hosts a change affects, in waves,
/// with the commands that deploy them. guard prints it; it never deploys.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// The deploy tool the commands are for: `nixinate`, `colmena`,
    /// `deploy-rs` or `nixos-rebuild`.
    pub tool: String,
    /// Canaries first, then the rest, `critical` hosts last; empty waves
    /// are left out.
    pub waves: Vec<Wave>,
    /// Hosts whose drvPath changes only through a revision stamp or the
    /// source's store path: not changed, so not in any wave.
    pub restamped: Vec<String>,
    /// Hosts the change removes: nothing to deploy.
    pub removed: Vec<String>,
    pub warnings: Vec<Warning>,
}

/// One wave of a [`Plan`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Wave {
    /// `canary`, `main` or `critical`.
    pub name: String,
    pub hosts: Vec<String>,
    /// Shell commands, run from the repository root, one after another.
    pub commands: Vec<String>,
}

/// Everything one command found. A single-section report prints that
/// section's shape at the top level of the JSON (docs/cli.md); `check`
/// reports nest each section under its name.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affected: Option<Affected>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<Findings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Findings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildReport>,
    /// Fleet policy and lock hygiene (`[policy]` in guard.toml).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Findings>,
}

impl Report {
    /// The self-check's soundness misses, if it ran.
    pub fn soundness_misses(&self) -> impl Iterator<Item = &SoundnessMiss> {
        self.affected
            .iter()
            .flat_map(|a| a.self_check.iter())
            .flat_map(|c| &c.misses)
    }

    /// 1 when anything blocks (an error-severity finding, a failed
    /// build), else 0.
    pub fn exit_code(&self) -> i32 {
        let blocking = self.findings().any(|f| f.severity == Severity::Error);
        let failed = self.build.as_ref().is_some_and(BuildReport::failed);
        i32::from(blocking || failed)
    }

    /// The sections that hold findings: scan, secrets, policy.
    pub fn finding_sections(&self) -> impl Iterator<Item = &Findings> {
        [&self.scan, &self.secrets, &self.policy]
            .into_iter()
            .flatten()
    }

    /// Every finding of every section, in section order.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.finding_sections().flat_map(|f| &f.findings)
    }

    fn sections(&self) -> usize {
        usize::from(self.policy.is_some())
            + usize::from(self.affected.is_some())
            + usize::from(self.scan.is_some())
            + usize::from(self.secrets.is_some())
            + usize::from(self.build.is_some())
    }
}

/// Writes the report as one JSON document followed by a newline.
pub fn write_json(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let value = if report.sections() == 1 {
        if let Some(a) = &report.affected {
            serde_json::to_value(a)
        } else if let Some(s) = &report.scan {
            serde_json::to_value(s)
        } else if let Some(b) = &report.build {
            serde_json::to_value(b)
        } else if let Some(p) = &report.policy {
            serde_json::to_value(p)
        } else {
            serde_json::to_value(report.secrets.as_ref().unwrap())
        }
    } else {
        serde_json::to_value(report)
    }
    .map_err(io::Error::other)?;
    serde_json::to_writer_pretty(&mut *out, &value).map_err(io::Error::from)?;
    writeln!(out)
}

/// Terminal styling.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
    pub verbose: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// Writes the report for a person.
pub fn write_human(report: &Report, style: Style, out: &mut dyn Write) -> io::Result<()> {
    // `check` prints several sections: name each one.
    let several = report.sections() > 1 || report.build.is_some() && report.sections() > 0;
    let heading = |title: &str, out: &mut dyn Write| -> io::Result<()> {
        if several {
            writeln!(out, "{}", style.bold(&format!("── {title}")))?;
        }
        Ok(())
    };
    if let Some(a) = &report.affected {
        heading("affected hosts", out)?;
        write_affected(a, style, out)?;
    }
    if let Some(f) = &report.scan {
        heading("plaintext secrets", out)?;
        write_findings(f, true, style, out)?;
    }
    if let Some(f) = &report.secrets {
        heading("encrypted secrets (age)", out)?;
        write_findings(f, true, style, out)?;
    }
    if let Some(f) = &report.policy {
        heading("fleet policy", out)?;
        write_findings(f, false, style, out)?;
    }
    if let Some(b) = &report.build {
        heading("nix", out)?;
        write_build(b, style, out)?;
    }
    Ok(())
}

/// `12.3s`, `1m05s`, `850ms`.
fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

fn write_build(b: &BuildReport, style: Style, out: &mut dyn Write) -> io::Result<()> {
    for w in &b.warnings {
        write_warning(w, style, out)?;
    }
    let rows: Vec<&BuildHost> = b.hosts.iter().chain(b.flake_check.iter()).collect();
    if rows.is_empty() {
        writeln!(out, "nothing to build: no host affected ({})", b.source)?;
        return Ok(());
    }
    let width = rows.iter().map(|h| h.name.len()).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{}",
        style.bold(&format!(
            "{:width$}  {:5}  {:7}  {:>8}  note",
            "host", "level", "status", "time"
        ))
    )?;
    for h in &rows {
        let (status, note) = match h.status {
            BuildStatus::Ok => ("ok".to_string(), built_on(h)),
            BuildStatus::Failed => (style.red("failed "), h.reason.clone().unwrap_or_default()),
            BuildStatus::Skipped => (
                style.dim("skipped"),
                style.dim(h.reason.as_deref().unwrap_or_default()),
            ),
        };
        let time = if h.status == BuildStatus::Skipped {
            String::new()
        } else {
            duration(h.duration_ms)
        };
        writeln!(
            out,
            "{:width$}  {:5}  {:7}  {:>8}  {}",
            h.name,
            h.level,
            status,
            time,
            first_line(&note)
        )?;
    }
    for h in rows.iter().filter(|h| h.status == BuildStatus::Failed) {
        if h.log_excerpt.is_empty() && h.log.is_none() {
            continue;
        }
        writeln!(out)?;
        writeln!(out, "{}", style.bold(&format!("── {} ──", h.name)))?;
        for l in &h.log_excerpt {
            writeln!(out, "  {l}")?;
        }
        if let Some(log) = &h.log {
            writeln!(out, "  {}", style.dim(&format!("full log: {log}")))?;
        }
    }
    for h in &rows {
        let Some(d) = &h.closure_diff else { continue };
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            style.bold(&format!("── {}: closure vs base ──", h.name))
        )?;
        writeln!(out, "  {}", d.summary())?;
        for l in d.lines() {
            writeln!(out, "  {l}")?;
        }
    }
    if let (Some(e), true) = (&b.eval, style.verbose) {
        writeln!(out, "{}", style.dim(&e.summary()))?;
    }
    let count = |s: BuildStatus| rows.iter().filter(|h| h.status == s).count();
    writeln!(
        out,
        "{} ok, {} failed, {} skipped ({}){}",
        count(BuildStatus::Ok),
        count(BuildStatus::Failed),
        count(BuildStatus::Skipped),
        b.source,
        if b.interrupted { "; interrupted" } else { "" }
    )
}

/// "built on ssh://…" when a remote builder built some of the host.
fn built_on(h: &BuildHost) -> String {
    if h.built_on.iter().all(|m| m == LOCAL_BUILDER) {
        return String::new();
    }
    format!("built on {}", h.built_on.join(", "))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn write_affected(a: &Affected, style: Style, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{} of {} affected by {}",
        style.bold(&plural(a.hosts.len(), "host", "hosts")),
        a.all_hosts.len(),
        plural(a.changed_paths.len(), "changed path", "changed paths"),
    )?;
    for (kind, names) in &a.other_targets {
        writeln!(
            out,
            "{}",
            style.dim(&format!(
                "  ({kind} targets are not NixOS hosts and are listed apart: {})",
                names.join(", ")
            ))
        )?;
    }
    let width = a.hosts.iter().map(|h| h.name.len()).max().unwrap_or(0);
    for h in &a.hosts {
        let Some(first) = h.reasons.first() else {
            writeln!(out, "  {}", h.name)?;
            continue;
        };
        let more = if h.more_paths() > 0 && !style.verbose {
            let n = h.more_paths();
            style.dim(&format!(
                " (+{n} more {})",
                if n == 1 { "path" } else { "paths" }
            ))
        } else {
            String::new()
        };
        writeln!(
            out,
            "  {:width$}  {}{more}",
            h.name,
            first.path,
            width = width
        )?;
        let shown = if style.verbose { h.reasons.len() } else { 1 };
        for r in h.reasons.iter().take(shown) {
            if style.verbose || r.chain.len() > 1 {
                writeln!(
                    out,
                    "  {:width$}    {}",
                    "",
                    style.dim(&r.chain.join(" → ")),
                    width = width
                )?;
            }
            if let Some(why) = r.uncertain.as_deref().filter(|_| style.verbose) {
                writeln!(
                    out,
                    "  {:width$}    {}",
                    "",
                    style.dim(&format!("cannot tell: {why}")),
                    width = width
                )?;
            }
        }
    }
    for r in &a.removed_hosts {
        writeln!(out, "  {r}  {}", style.dim("(removed)"))?;
    }
    write_restamped(a, style, out)?;
    for w in &a.warnings {
        write_warning(w, style, out)?;
    }
    if let Some(c) = &a.self_check {
        write_self_check(c, style, out)?;
    }
    Ok(())
}

/// The self-check: each miss as a warning with nix's chain, then one line
/// of counts (`-v`) or why it did not run.
fn write_self_check(c: &SelfCheck, style: Style, out: &mut dyn Write) -> io::Result<()> {
    for m in &c.misses {
        writeln!(
            out,
            "{} {}: {}[{SOUNDNESS_MISS}] {}",
            style.yellow("warning:"),
            m.path,
            if m.changed {
                "(changed: host added) "
            } else {
                ""
            },
            m.message
        )?;
        writeln!(out, "    {}", style.dim(&m.chain.join(" → ")))?;
    }
    if let Some(s) = &c.skipped {
        writeln!(out, "{}", style.dim(&format!("self-check: {s}")))?;
    }
    if style.verbose || !c.misses.is_empty() {
        writeln!(out, "{}", style.dim(&c.summary()))?;
    }
    Ok(())
}

impl SelfCheck {
    /// One line for people: what was compared and found.
    pub fn summary(&self) -> String {
        format!(
            "self-check: {} against nix's module graphs ({} from the cache, {}): {}; static closures {} files, {} of them not imported by nix",
            plural(self.hosts_checked, "host", "hosts"),
            self.from_cache,
            duration(self.duration_ms),
            plural(self.misses.len(), "soundness miss", "soundness misses"),
            self.static_files,
            self.static_only
        )
    }
}

/// "+14 restamped only: revision stamp at modules/x.nix:12": hosts whose
/// drvPath changes only through a stamp, grouped by the stamp, never mixed
/// into the changed hosts. `-v` names each host.
fn write_restamped(a: &Affected, style: Style, out: &mut dyn Write) -> io::Result<()> {
    if a.restamped.is_empty() {
        return Ok(());
    }
    let stamp_of = |h: &AffectedHost| h.stamp().unwrap_or_default().to_string();
    let mut stamps: Vec<(String, Vec<&str>)> = Vec::new();
    for h in &a.restamped {
        let stamp = stamp_of(h);
        match stamps.iter_mut().find(|(s, _)| *s == stamp) {
            Some((_, names)) => names.push(&h.name),
            None => stamps.push((stamp, vec![&h.name])),
        }
    }
    let stamp_list = stamps
        .iter()
        .take(2)
        .map(|(s, _)| s.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let more = if stamps.len() > 2 {
        format!(" (+{} more stamps)", stamps.len() - 2)
    } else {
        String::new()
    };
    writeln!(
        out,
        "  {}",
        style.dim(&format!(
            "+{} restamped only: {stamp_list}{more} (not built; `guard doctor` shows the fix)",
            a.restamped.len()
        ))
    )?;
    if style.verbose {
        for (stamp, names) in &stamps {
            writeln!(out, "    {}: {}", stamp, names.join(", "))?;
        }
    }
    Ok(())
}

fn write_warning(w: &Warning, style: Style, out: &mut dyn Write) -> io::Result<()> {
    match &w.path {
        Some(p) => writeln!(out, "{} {p}: {}", style.yellow("warning:"), w.message),
        None => writeln!(out, "{} {}", style.yellow("warning:"), w.message),
    }
}

/// Splits a finding's message into what it is, how to fix it, and how to
/// allow a false positive (the last two are the same for every finding of
/// a rule, so the human writer prints them once per rule).
fn split_message(m: &str) -> (&str, Option<&str>, Option<&str>) {
    let (head, allow) = match m.find(" False positive?") {
        Some(i) => (&m[..i], Some(m[i + 1..].trim())),
        None => (m, None),
    };
    match head.find(" Fix: ") {
        Some(i) => (&head[..i], Some(head[i + 1..].trim()), allow),
        None => (head, None, allow),
    }
}

fn write_findings(
    f: &Findings,
    scanned: bool,
    style: Style,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut fixes: Vec<(&str, &str)> = Vec::new();
    let mut allow_hint = None;
    for x in &f.findings {
        let (what, fix, allow) = split_message(&x.message);
        if let Some(fix) = fix
            && !fixes.iter().any(|(r, _)| *r == x.rule)
        {
            fixes.push((x.rule.as_str(), fix));
        }
        allow_hint = allow_hint.or(allow);
        let sev = match x.severity {
            Severity::Error => style.red("error"),
            Severity::Warning => style.yellow("warning"),
            Severity::Info => style.dim("info"),
        };
        let at = match &x.commit {
            Some(c) => format!(" ({})", &c[..c.len().min(12)]),
            None => String::new(),
        };
        writeln!(
            out,
            "{}:{}:{}{at}: {sev}[{}] {}{}",
            x.path,
            x.line,
            x.column,
            x.rule,
            x.secret.shown(" "),
            style.dim(what)
        )?;
    }
    for (rule, fix) in &fixes {
        writeln!(out, "  {} {fix}", style.bold(&format!("[{rule}]")))?;
    }
    if let Some(hint) = allow_hint {
        writeln!(out, "  {}", style.dim(hint))?;
    }
    for w in &f.warnings {
        write_warning(w, style, out)?;
    }
    if !scanned {
        // The fleet policy reads the graph and the lock: no file count.
        return writeln!(out, "{}", plural(f.findings.len(), "finding", "findings"));
    }
    writeln!(
        out,
        "{} in {} ({} bytes{})",
        plural(f.findings.len(), "finding", "findings"),
        plural(f.scanned.files as usize, "file", "files"),
        f.scanned.bytes,
        if f.scanned.commits > 0 {
            format!(
                ", {}",
                plural(f.scanned.commits as usize, "commit", "commits")
            )
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(sev: Severity) -> Finding {
        Finding {
            rule: "wireguard-private-key".into(),
            severity: sev,
            path: "machines/a/wg.nix".into(),
            line: 3,
            column: 5,
            commit: None,
            secret: Redacted::new("kP3xq1S9mWcT0b7Jf2hL8ZyNvE4uDsGrAoIe6Ck5pH0="),
            fingerprint: "f".into(),
            message: "move it to secrix".into(),
            end: None,
        }
    }

    #[test]
    fn redaction_never_keeps_more_than_a_short_prefix() {
        assert_eq!(Redacted::new("hunter2").as_str(), "…(redacted)");
        let long = "kP3xq1S9mWcT0b7Jf2hL8ZyNvE4uDsGrAoIe6Ck5pH0=";
        let r = Redacted::new(long);
        assert_eq!(r.as_str(), "kP3x…(redacted)");
        assert!(!r.as_str().contains(&long[4..8]));
    }

    #[test]
    fn fix_and_allow_hints_are_split_off() {
        let (what, fix, allow) =
            split_message("A key. Fix: rotate it. False positive? Add guard:allow.");
        assert_eq!(what, "A key.");
        assert_eq!(fix, Some("Fix: rotate it."));
        assert_eq!(allow, Some("False positive? Add guard:allow."));
        assert_eq!(
            split_message("host a cannot decrypt s"),
            ("host a cannot decrypt s", None, None)
        );
    }

    #[test]
    fn exit_code_follows_error_findings() {
        let mut r = Report::default();
        assert_eq!(r.exit_code(), 0);
        r.scan = Some(Findings {
            findings: vec![finding(Severity::Warning)],
            ..Default::default()
        });
        assert_eq!(r.exit_code(), 0);
        r.scan
            .as_mut()
            .unwrap()
            .findings
            .push(finding(Severity::Error));
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn single_section_json_is_flat_and_multi_section_is_nested() {
        let mut r = Report {
            affected: Some(Affected::default()),
            ..Default::default()
        };
        let mut buf = Vec::new();
        write_json(&r, &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert!(v.get("hosts").is_some() && v.get("changed_paths").is_some());

        r.scan = Some(Findings::default());
        let mut buf = Vec::new();
        write_json(&r, &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert!(v["affected"].get("hosts").is_some());
        assert!(v["scan"].get("findings").is_some());
    }

    #[test]
    fn human_output_shows_location_rule_and_redacted_value_only() {
        let r = Report {
            scan: Some(Findings {
                findings: vec![finding(Severity::Error)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut buf = Vec::new();
        let style = Style {
            color: false,
            verbose: false,
        };
        write_human(&r, style, &mut buf).unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(s.contains("machines/a/wg.nix:3:5: error[wireguard-private-key] kP3x…(redacted)"));
        assert!(s.contains("move it to secrix"), "{s}");
        assert!(!s.contains("q1S9mWcT"));
        assert!(s.contains("1 finding in 0 files"));
    }
}

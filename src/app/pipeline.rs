//! The one seam of a run. A change flows
//!
//! ```text
//! ChangeSet → Analysis → Affected → (scan, age(&Affected)) → build → Report
//! ```
//!
//! and every stage is computed at most once, when a command first asks for
//! it. Commands are selections of stages over a [`Pipeline`]: `affected`
//! stops after the affected set, `secrets` takes the age stage, `build` the
//! affected set and the build stage (`super::build`), `check` (and `ci`,
//! `pre-commit` through it) every stage. Only this module calls
//! `Analysis::of` and `affected_hosts` for a change (a test checks it).

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result};

use super::Context;
use crate::affected::{Analysis, Query, affected_hosts};
use crate::git::{self, ChangeSet, Snapshot};
use crate::nix::cli as nixcli;
use crate::nix::graph::ParseCache;
use crate::nix::hosts::{self, HostSet};
use crate::report::{self, Affected, Finding, Findings, RuleInfo, Rules, Warning};

fn ms_since(t: std::time::Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}
use crate::secrets::age;
use crate::secrets::scan::{Baseline, Scanner, run};

/// How often this process built an import graph and an affected set. The
/// `GUARD_DEBUG_PIPELINE` environment variable prints them when guard exits,
/// so a test can check that one `guard check` computes each once.
static GRAPHS: AtomicUsize = AtomicUsize::new(0);
static AFFECTED_SETS: AtomicUsize = AtomicUsize::new(0);

/// The environment variable that prints the stage counters on exit.
pub const DEBUG_ENV: &str = "GUARD_DEBUG_PIPELINE";

/// `graphs=N affected=M parsed=K evaluated=E`: the counters of this
/// process (K: Nix files parsed, not found in the parse cache; E: static
/// evaluations of the flake's hosts, not reused).
pub fn debug_counts() -> String {
    format!(
        "graphs={} affected={} parsed={} evaluated={}",
        GRAPHS.load(Ordering::Relaxed),
        AFFECTED_SETS.load(Ordering::Relaxed),
        crate::nix::graph::files_parsed(),
        hosts::evaluations()
    )
}

/// The import graph of one snapshot (counted).
pub fn analysis_of(ctx: &Context, snapshot: &Snapshot, cache: &ParseCache) -> Analysis {
    GRAPHS.fetch_add(1, Ordering::Relaxed);
    Analysis::of(snapshot, &ctx.flake_dir, &ctx.config, cache)
}

/// The hosts of one snapshot, without its import graph.
pub fn hosts_of(ctx: &Context, snapshot: &Snapshot, cache: &ParseCache) -> HostSet {
    hosts::discover(snapshot, &ctx.flake_dir, &ctx.config.hosts, cache)
}

/// The stages of one run over one change, each computed once.
pub struct Pipeline<'c> {
    pub ctx: &'c Context,
    pub sel: git::Selector,
    pub changes: ChangeSet,
    cache: ParseCache,
    /// The age stage will run on a change (not on everything): it needs the
    /// old snapshot's whole graph, whose hosts then serve the affected set.
    old_graph: bool,
    analysis: OnceCell<Analysis>,
    old_analysis: OnceCell<Analysis>,
    old_hosts: OnceCell<HostSet>,
    affected: OnceCell<Affected>,
    baseline: OnceCell<Baseline>,
}

/// The self-check between its plan and nix's answers
/// ([`Pipeline::self_check_plan`]).
pub struct SelfCheckPlan {
    /// How long the plan took.
    plan_ms: u64,
    nix: nixcli::Nix,
    request: crate::build::selfcheck::Request,
    graphs: crate::build::selfcheck::Graphs,
    /// The hosts nix must answer (no cached graph).
    pub ask: Vec<String>,
}

/// The plaintext scan of the change, and the rules its scanner runs.
pub struct ScanStage {
    pub findings: Findings,
    pub rules: Vec<RuleInfo>,
}

/// The one rule registry: the scan rules of the scanner at hand, the age
/// checks' rules, and the identity-leak rules (scan rules reported in the
/// `secrets` section). With a scheme, the help names its fix.
pub fn rules(scan: Vec<RuleInfo>, scheme: Option<crate::secrets::scheme::Scheme>) -> Rules {
    let mut secrets = age::rule_infos();
    secrets.extend(
        scan.iter()
            .filter(|r| age::IDENTITY_RULES.contains(&r.id.as_str()))
            .cloned(),
    );
    let mut rules = Rules {
        scan,
        secrets,
        policy: crate::policy::rule_infos(),
        self_check: vec![crate::build::selfcheck::rule_info()],
    };
    if let Some(scheme) = scheme {
        for r in rules.scan.iter_mut().chain(rules.secrets.iter_mut()) {
            r.help = scheme.adapt(&r.help);
        }
    }
    rules
}

impl<'c> Pipeline<'c> {
    /// The change `sel` names, read once.
    pub fn new(ctx: &'c Context, sel: git::Selector) -> Result<Pipeline<'c>> {
        let changes = ctx.repo.change_set(&sel)?;
        let cache = ctx.parse_cache();
        Ok(Pipeline {
            ctx,
            sel,
            changes,
            cache,
            old_graph: false,
            analysis: OnceCell::new(),
            old_analysis: OnceCell::new(),
            old_hosts: OnceCell::new(),
            affected: OnceCell::new(),
            baseline: OnceCell::new(),
        })
    }

    /// Says that the age stage will run: the old snapshot's graph is then
    /// built once, for both the affected set and the age model.
    pub fn with_age(mut self) -> Self {
        self.old_graph = !self.checks_everything();
        self
    }

    /// `--all`: everything is judged, nothing is compared.
    pub fn checks_everything(&self) -> bool {
        self.sel == git::Selector::All
    }

    /// The change is or becomes a commit (`self.rev` readers change).
    pub fn new_revision(&self) -> bool {
        self.sel.makes_revision(&self.changes)
    }

    /// The import graph of the new snapshot.
    pub fn analysis(&self) -> &Analysis {
        self.analysis
            .get_or_init(|| analysis_of(self.ctx, &self.changes.new, &self.cache))
    }

    /// The import graph of the old snapshot.
    pub fn old_analysis(&self) -> &Analysis {
        self.old_analysis
            .get_or_init(|| analysis_of(self.ctx, &self.changes.old, &self.cache))
    }

    fn old_hosts(&self) -> &HostSet {
        if self.old_graph {
            return &self.old_analysis().hosts;
        }
        self.old_hosts.get_or_init(|| {
            let ctx = self.ctx;
            hosts::discover(
                &self.changes.old,
                &ctx.flake_dir,
                &ctx.config.hosts,
                &self.cache,
            )
        })
    }

    /// The hosts the change can affect (the static analysis).
    pub fn affected(&self) -> Result<&Affected> {
        if let Some(a) = self.affected.get() {
            return Ok(a);
        }
        let query =
            Query::of(&self.changes, self.new_revision()).all_warnings(self.ctx.style.verbose);
        AFFECTED_SETS.fetch_add(1, Ordering::Relaxed);
        let a = affected_hosts(self.analysis(), self.old_hosts(), &query, &self.ctx.config)?;
        Ok(self.affected.get_or_init(|| a))
    }

    /// The affected set, owned (for the report), computed if not yet.
    pub fn take_affected(&mut self) -> Result<Affected> {
        self.affected()?;
        self.affected
            .take()
            .context("internal error: the affected set vanished")
    }

    /// The baseline of accepted findings (`[secrets] baseline`).
    pub fn baseline(&self) -> Result<&Baseline> {
        if let Some(b) = self.baseline.get() {
            return Ok(b);
        }
        let b = Baseline::load(&self.ctx.root.join(&self.ctx.config.secrets.baseline))?;
        Ok(self.baseline.get_or_init(|| b))
    }

    /// The plaintext-secret scan of the change. A range is judged commit by
    /// commit (a secret added and removed again inside the range is still
    /// in history); the index and `--all` as a whole.
    pub fn scan(&self) -> Result<ScanStage> {
        let ctx = self.ctx;
        let scanner = Scanner::new(&ctx.config).with_context(|| match &ctx.config_path {
            Some(p) => format!("invalid [secrets] settings in {}", p.display()),
            None => "invalid [secrets] settings".to_string(),
        })?;
        let scanner = scanner.with_baseline(self.baseline()?);
        let outcome = match &self.sel {
            git::Selector::Range { .. } => {
                let head = self
                    .changes
                    .new
                    .commit()
                    .context("internal error: the head of a range is not a commit")?;
                let base = self.changes.old.commit();
                let commits = ctx.repo.first_parent_history(head, base)?;
                run::scan_commits(&scanner, &ctx.repo, &commits)?
            }
            _ => run::scan_change_set(&scanner, &self.changes)?,
        };
        Ok(ScanStage {
            findings: outcome.into_findings(),
            rules: scanner.rule_infos(),
        })
    }

    /// The age/secrix/agenix checks: every secret with `--all`, else the
    /// secrets the change concerns (through the affected set).
    pub fn age(&self) -> Result<age::Outcome> {
        let label = || format!("checking the secrets of {}", self.changes.new.label());
        let old = if self.checks_everything() {
            None
        } else {
            Some((self.old_analysis(), self.affected().with_context(label)?))
        };
        age::check_change(&self.changes, self.analysis(), old, &self.ctx.config).with_context(label)
    }

    /// Identities (age, plugin, SSH private keys) the change adds, except
    /// those at a (path, line, rule) already `reported`.
    pub fn identity_leaks(&self, reported: Option<&Findings>) -> Result<Vec<Finding>> {
        let reported: BTreeSet<(&str, usize, &str)> = reported
            .iter()
            .flat_map(|r| &r.findings)
            .map(|f| (f.path.as_str(), f.line, f.rule.as_str()))
            .collect();
        Ok(age::identity_leaks(
            &self.changes,
            &self.ctx.config,
            self.baseline()?,
            Some(self.ctx.repo.git_dir()),
        )?
        .into_iter()
        .filter(|f| !reported.contains(&(f.path.as_str(), f.line, f.rule.as_str())))
        .collect())
    }

    /// The fleet policy checks (`[policy]`), None when guard.toml has no
    /// `[policy]`. Lock ages are measured at the judged commit's time (now
    /// for the index and the work tree), so a result does not change with
    /// the day it is asked.
    pub fn policy(&self) -> Result<Option<Findings>> {
        let Some(policy) = &self.ctx.config.policy else {
            return Ok(None);
        };
        let commit = self.changes.new.commit();
        let now = match commit {
            Some(id) => self.ctx.repo.commit_info(id)?.time,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        };
        let input = crate::policy::PolicyInput {
            analysis: self.analysis(),
            new: &self.changes.new,
            old: (!self.checks_everything()).then_some(&self.changes.old),
            now,
        };
        Ok(Some(crate::policy::check(&input, &self.ctx.config, policy)))
    }

    /// The soundness self-check ([`crate::build::selfcheck`]) on its own
    /// workers (`guard affected --self-check`): see
    /// [`Pipeline::self_check_plan`] and [`Pipeline::self_check_finish`].
    pub fn self_check(&self, affected: &mut Affected, quiet: bool) {
        match self.self_check_plan(affected) {
            Ok(plan) => self.self_check_finish(plan, None, affected, quiet),
            Err(skipped) => affected.self_check = Some(skipped),
        }
    }

    /// What the self-check asks: every host of the new snapshot, its graph
    /// from the cache where its content key has one, else from nix (the
    /// hosts in [`SelfCheckPlan::ask`]). `Err`: why it cannot run (said
    /// once, never a failure of the run).
    pub fn self_check_plan(&self, affected: &Affected) -> Result<SelfCheckPlan, report::SelfCheck> {
        use crate::build::selfcheck;
        let start = std::time::Instant::now();
        let ctx = self.ctx;
        let skipped = |why: String| report::SelfCheck {
            skipped: Some(why),
            ..Default::default()
        };
        let new = &self.changes.new;
        let flake = match (new.commit(), &self.sel) {
            (Some(c), _) => nixcli::flake_url(&ctx.root, &ctx.flake_dir, Some(&c.to_string())),
            (None, git::Selector::Worktree) => nixcli::flake_url(&ctx.root, &ctx.flake_dir, None),
            (None, _) => {
                return Err(skipped(
                    "not run on the index: nix evaluates commits and the work tree".into(),
                ));
            }
        };
        let nix = match nixcli::Nix::detect() {
            Ok(n) => n.with_args(ctx.config.build.nix_args.clone()),
            Err(e) => return Err(skipped(format!("nix is not usable: {}", first_line(&e)))),
        };
        if let Err(e) = crate::build::signals::install() {
            return Err(skipped(format!("cannot install the Ctrl-C handler: {e}")));
        }
        let hosts: Vec<String> = self.analysis().hosts.hosts.keys().cloned().collect();
        let (keys, cache) = if ctx.build.eval.no_eval_cache {
            (Default::default(), None)
        } else {
            let attrs: Vec<_> = hosts
                .iter()
                .map(|h| (h.clone(), nixcli::HostAttr::Toplevel))
                .collect();
            let env = crate::build::cache::KeyEnv::of(&nix);
            (
                crate::build::cache::host_keys(
                    new,
                    &ctx.flake_dir,
                    &ctx.config,
                    &self.cache,
                    &attrs,
                    &env,
                ),
                Some(selfcheck::GraphCache::at(ctx.repo.git_dir())),
            )
        };
        let timeout = (ctx.config.build.timeout_secs > 0)
            .then(|| std::time::Duration::from_secs(ctx.config.build.timeout_secs));
        let request = selfcheck::Request {
            flake,
            hosts,
            keys,
            changed: affected.changed_paths.iter().cloned().collect(),
            cache,
            limits: crate::build::eval::Limits {
                workers: ctx.build.eval.workers(),
                max_memory: ctx.build.eval.max_memory(),
                timeout,
            },
        };
        let (graphs, ask) = selfcheck::cached(&request);
        Ok(SelfCheckPlan {
            plan_ms: ms_since(start),
            nix,
            request,
            graphs,
            ask,
        })
    }

    /// Compares every host's graph with the static answer, into
    /// `affected.self_check`. `answers`: nix's answers for the hosts the
    /// plan asks (the build's workers gave them); `None`: ask them on
    /// workers of its own. A host whose missed file the change touches
    /// joins the changed hosts, with nix's chain as its reason.
    pub fn self_check_finish(
        &self,
        plan: SelfCheckPlan,
        answers: Option<BTreeMap<String, crate::build::eval::Done>>,
        affected: &mut Affected,
        quiet: bool,
    ) {
        use crate::build::selfcheck;
        let start = std::time::Instant::now();
        let ctx = self.ctx;
        let new = &self.changes.new;
        let analysis = self.analysis();
        let index = selfcheck::RepoIndex::of(new);
        let SelfCheckPlan {
            plan_ms,
            nix,
            request,
            mut graphs,
            ask,
        } = plan;
        let shared = answers.is_some();
        match answers {
            Some(a) => selfcheck::receive(&mut graphs, &request, &ask, a, &index),
            None => {
                let progress = crate::build::progress::for_stderr(quiet);
                graphs = selfcheck::collect(&nix, &request, &index, progress.as_ref());
                progress.clear();
            }
        }

        // The static answer for every file of nix's graphs: the hosts a
        // change to that file alone lists.
        let files: BTreeSet<&String> = graphs
            .graphs
            .values()
            .flat_map(|g| &g.files)
            .flat_map(|f| &f.candidates)
            .collect();
        let mut lists = BTreeMap::new();
        for f in files {
            let query = Query {
                paths: BTreeSet::from([f.clone()]),
                old: new,
                new,
                new_revision: false,
                every_chain: false,
                all_warnings: false,
            };
            if let Ok(a) = affected_hosts(analysis, &analysis.hosts, &query, &ctx.config) {
                lists.insert(
                    f.clone(),
                    a.hosts.into_iter().map(|h| h.name).collect::<BTreeSet<_>>(),
                );
            }
        }
        let closures: BTreeMap<String, BTreeSet<String>> = graphs
            .graphs
            .keys()
            .map(|h| {
                let files = analysis.closure(h).into_iter().map(|(f, _)| f.to_string());
                (h.clone(), files.collect())
            })
            .collect();
        // An invalid glob: the analysis refused it before this runs.
        let ignore = crate::affected::glob_set(&ctx.config.affected.ignore).ok();
        let ignored = |p: &str| ignore.as_ref().is_some_and(|g| g.is_match(p));
        let mut check = selfcheck::compare(
            &graphs.graphs,
            &selfcheck::StaticAnswer {
                lists: &lists,
                closures: &closures,
                changed: &request.changed,
                ignored: &ignored,
            },
        );
        check.from_cache = graphs.from_cache;
        check.skipped = selfcheck::skipped_note(&graphs);
        for m in check.misses.iter().filter(|m| m.changed) {
            affected.restamped.retain(|h| h.name != m.host);
            let reason = report::Reason {
                path: m.path.clone(),
                chain: m.chain.clone(),
                uncertain: None,
            };
            match affected.hosts.iter_mut().find(|h| h.name == m.host) {
                Some(h) => {
                    if !h.reasons.iter().any(|r| r.path == m.path) {
                        h.reasons.push(reason);
                    }
                }
                None => affected.hosts.push(report::AffectedHost {
                    name: m.host.clone(),
                    reasons: vec![reason],
                    truncated: 0,
                }),
            }
        }
        affected.hosts.sort_by(|a, b| a.name.cmp(&b.name));
        // Its own work, and nix's time on the graphs where the build's
        // workers answered them in between.
        check.duration_ms = plan_ms + ms_since(start) + if shared { graphs.nix_ms } else { 0 };
        affected.self_check = Some(check);
    }

    /// The secret scheme of the new snapshot (fixes name it).
    pub fn scheme(&self) -> crate::secrets::scheme::Scheme {
        crate::secrets::scheme::Scheme::detect(&self.changes.new, &self.ctx.flake_dir)
    }
}

/// Compares the static host list with what nix evaluates. nix's list wins
/// for this run: a host only nix knows is listed as affected by any change
/// (guard cannot tell what it reads), a host only guard found is dropped.
/// A failed evaluation is a warning with nix's own message, never an abort.
pub fn verify_hosts(ctx: &Context, snapshot: &git::Snapshot, result: &mut Affected) {
    let warn = |result: &mut Affected, message: String| {
        result.warnings.push(Warning {
            path: None,
            message,
        })
    };
    let Some(rev) = snapshot.commit().map(|c| c.to_string()) else {
        // The index or work tree: nix would read the work tree, which is
        // not the snapshot; say so rather than compare the wrong thing.
        warn(
            result,
            "--verify-hosts compares a commit's host list; use --commit, --base or --all".into(),
        );
        return;
    };
    let evaluated = crate::nix::cli::Nix::detect().and_then(|nix| {
        let url = crate::nix::cli::flake_url(&ctx.root, &ctx.flake_dir, Some(&rev));
        nix.eval_json(
            &format!("{url}#nixosConfigurations"),
            Some("builtins.attrNames"),
        )
    });
    let value = match evaluated {
        Ok(v) => v,
        Err(e) => {
            let cause = format!("{e:#}");
            let first = cause.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            warn(
                result,
                format!(
                    "--verify-hosts: nix could not list nixosConfigurations, the static list stands: {first}"
                ),
            );
            return;
        }
    };
    let evaluated: BTreeSet<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let statics: BTreeSet<String> = result.all_hosts.iter().cloned().collect();
    for missing in evaluated.difference(&statics) {
        warn(
            result,
            format!(
                "host {missing} exists in nixosConfigurations but guard did not find it statically; \
                 listed as affected for this run (add it under [hosts] in guard.toml, and please report the layout)"
            ),
        );
        if !result.changed_paths.is_empty() {
            result.hosts.push(report::AffectedHost {
                name: missing.clone(),
                reasons: vec![report::Reason {
                    path: "(found only by nix: guard cannot tell what it reads)".into(),
                    chain: Vec::new(),
                    uncertain: None,
                }],
                truncated: 0,
            });
        }
    }
    for extra in statics.difference(&evaluated) {
        warn(
            result,
            format!(
                "guard found host {extra} statically, but nix does not define it; dropped for this run"
            ),
        );
    }
    result.hosts.retain(|h| evaluated.contains(&h.name));
    result.hosts.sort_by(|a, b| a.name.cmp(&b.name));
    result.all_hosts = evaluated.into_iter().collect();
}

/// Every chain from a host of `snapshot` to `path` (`guard explain`):
/// against an `empty` tree every dependency on the path shows, as if it
/// were added.
pub fn chains_to(
    ctx: &Context,
    analysis: &Analysis,
    snapshot: &Snapshot,
    empty: &Snapshot,
    path: &str,
) -> Result<Affected> {
    let query = Query {
        paths: BTreeSet::from([path.to_string()]),
        old: empty,
        new: snapshot,
        new_revision: false,
        every_chain: true,
        all_warnings: ctx.style.verbose,
    };
    AFFECTED_SETS.fetch_add(1, Ordering::Relaxed);
    Ok(affected_hosts(
        analysis,
        &analysis.hosts,
        &query,
        &ctx.config,
    )?)
}

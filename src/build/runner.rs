//! The build pipeline for a set of hosts at their levels:
//!
//! 1. every host's drvPath (toplevel or vm) at the new revision and at the
//!    base: from the evaluation cache where its key is known
//!    ([`super::cache`]), else by bounded evaluation workers
//!    ([`super::eval`]), each error with its message;
//! 2. only when the workers cannot load the flake: hosts are evaluated one
//!    by one with `nix eval`, to get each message;
//! 3. hosts whose drvPath equals the base's are skipped ("unchanged
//!    drvPath"): nothing they depend on changed;
//! 4. at level build/vm, outputs already valid in the store are skipped
//!    ("already built");
//! 5. the rest are built by one `nix build` ([`super::batch`]), its
//!    internal-json log split into progress and `<log dir>/<host>.log`;
//! 6. each built host's closure is compared with its base toplevel
//!    ([`super::diff`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::cache::CachePlan;
use super::eval::{Done, EvalStats, Job, Limits as EvalLimits, human_bytes};
use super::level_name;
use super::log::{LogState, TAIL_LINES, drv_name, redact_secrets};
use super::progress::Progress;
use crate::nix::cli::{self as nixcli, Drv, HostAttr, Nix, NixError, RunLimits};
use crate::nix::inputs::FlakeInputs;
use crate::nix::repl::Answer;
use crate::report::Level;
use crate::report::{BuildHost, BuildStatus, Warning};

/// What to evaluate and build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Flake reference of the snapshot being judged.
    pub flake: String,
    /// Flake reference of the base revision, for drvPath comparison.
    pub base_flake: Option<String>,
    /// Hosts and their levels (`eval`, `build` or `vm`; `none` is dropped).
    pub hosts: Vec<(String, Level)>,
    /// Derivations nix builds at once (`--max-jobs` of the batch build,
    /// unless the nix arguments set it), and per-host evaluations at once
    /// in step 2.
    pub jobs: usize,
    /// Keep scheduling hosts after a failure.
    pub keep_going: bool,
    /// Per-process timeout.
    pub timeout: Option<Duration>,
    /// Where `<host>.log` files go.
    pub log_dir: PathBuf,
    /// Also run `nix flake check` (building checks above level eval).
    pub flake_check: bool,
    /// A host nix does not define fails (named with `--hosts`) rather than
    /// being skipped (found by the static analysis, which can over-approximate
    /// the host list).
    pub missing_fails: bool,
    /// The flake's inputs, to recognise (and name) a failed input fetch:
    /// the same for every host, so reported once instead of host by host.
    pub inputs: FlakeInputs,
    /// Evaluation workers and their memory limit.
    pub eval: EvalLimits,
    /// The evaluation cache and the hosts' keys (`None`: not used).
    pub cache: Option<CachePlan>,
    /// Hosts whose module graph the same workers answer too, at the new
    /// revision (the self-check, [`super::selfcheck`]).
    pub graphs: Vec<String>,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// One entry per planned host, in plan order.
    pub hosts: Vec<BuildHost>,
    pub flake_check: Option<BuildHost>,
    pub warnings: Vec<Warning>,
    pub interrupted: bool,
    /// What the evaluation workers did.
    pub eval: Option<EvalStats>,
    /// The answers to [`Plan::graphs`], by host, with the time each took
    /// (none: the workers could not load the flake).
    pub graphs: BTreeMap<String, Done>,
}

/// The log file name of `nix flake check` (`@` cannot start a host name).
const FLAKE_CHECK_LOG: &str = "@flake-check.log";

fn attr_of(level: Level) -> HostAttr {
    if level == Level::Vm {
        HostAttr::Vm
    } else {
        HostAttr::Toplevel
    }
}

/// The attribute each planned host is evaluated at (`none` dropped).
pub fn host_attrs(hosts: &[(String, Level)]) -> Vec<(String, HostAttr)> {
    hosts
        .iter()
        .filter(|(_, l)| *l > Level::None)
        .map(|(h, l)| (h.clone(), attr_of(*l)))
        .collect()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One planned host while the pipeline runs.
struct Slot {
    name: String,
    level: Level,
    drv: Option<Drv>,
    /// Evaluation time (the batch's, or the host's own evaluation).
    eval_ms: u64,
    /// The base revision's derivation, when it was evaluated.
    base: Option<Drv>,
    needs_eval: bool,
    done: Option<BuildHost>,
}

impl Slot {
    fn host(&self, status: BuildStatus, reason: Option<String>, duration_ms: u64) -> BuildHost {
        BuildHost {
            name: self.name.clone(),
            status,
            level: level_name(self.level).to_string(),
            drv_path: self.drv.as_ref().map(|d| d.drv.clone()),
            out_path: self.drv.as_ref().map(|d| d.out.clone()),
            duration_ms,
            log: None,
            reason,
            log_excerpt: Vec::new(),
            built_on: Vec::new(),
            closure_diff: None,
        }
    }
}

/// Runs the plan. Never fails as a whole: every problem ends up in a host's
/// result or in `warnings`.
pub fn run(nix: &Nix, plan: &Plan, progress: &dyn Progress) -> Outcome {
    let mut out = Outcome::default();
    let mut slots: Vec<Slot> = plan
        .hosts
        .iter()
        .filter(|(_, l)| *l > Level::None)
        .map(|(name, level)| Slot {
            name: name.clone(),
            level: *level,
            drv: None,
            eval_ms: 0,
            base: None,
            needs_eval: false,
            done: None,
        })
        .collect();
    let logs_ok = match std::fs::create_dir_all(&plan.log_dir) {
        Ok(()) => true,
        Err(e) => {
            out.warnings.push(Warning {
                path: None,
                message: format!(
                    "cannot create the log directory {}: {e}; logs are not kept",
                    plan.log_dir.display()
                ),
            });
            false
        }
    };
    let logs = Logs {
        dir: logs_ok.then_some(plan.log_dir.as_path()),
        failed: Mutex::default(),
    };
    let log_dir = &logs;
    let limits = RunLimits {
        timeout: plan.timeout,
    };

    if !slots.is_empty() || !plan.graphs.is_empty() {
        evaluate(nix, plan, &mut slots, log_dir, &mut out, progress);
        evaluate_failed(nix, plan, &mut slots, log_dir, limits, progress);
        decide(nix, &mut slots, &mut out.warnings, progress);
        build(nix, plan, &mut slots, log_dir, limits, progress);
        closure_diffs(nix, &mut slots, &mut out.warnings, progress);
    }
    out.interrupted = nixcli::is_interrupted();
    let any_failed = slots.iter().any(|s| {
        s.done
            .as_ref()
            .is_some_and(|d| d.status == BuildStatus::Failed)
    });
    // Graphs alone (no host to build): no flake check either.
    let hosts_planned = plan.hosts.iter().any(|(_, l)| *l > Level::None);
    if plan.flake_check && hosts_planned && !out.interrupted && (plan.keep_going || !any_failed) {
        out.flake_check = Some(flake_check(nix, plan, log_dir, limits, progress));
    }
    for message in logs.failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        out.warnings.push(Warning {
            path: None,
            message,
        });
    }
    let why = if out.interrupted {
        "interrupted"
    } else {
        "not evaluated"
    };
    out.hosts = slots
        .into_iter()
        .map(|s| {
            let fallback = s.host(BuildStatus::Skipped, Some(why.into()), 0);
            s.done.unwrap_or(fallback)
        })
        .collect();
    out
}

/// Step 1: every host at the new revision and at the base, by bounded
/// evaluation workers (see [`super::eval`]).
fn evaluate(
    nix: &Nix,
    plan: &Plan,
    slots: &mut [Slot],
    log_dir: &Logs<'_>,
    out: &mut Outcome,
    progress: &dyn Progress,
) {
    let n = slots.len();
    let verify = plan.cache.as_ref().is_some_and(|c| c.verify);
    // From the cache: (host -> drv) at the new and the base revision.
    let mut cached_new: BTreeMap<String, Drv> = BTreeMap::new();
    let mut cached_base: BTreeMap<String, Drv> = BTreeMap::new();
    if let Some(cp) = &plan.cache {
        for s in slots.iter() {
            // The .drv must still be in the store to be built.
            if let Some(d) = cp.new.get(&s.name).and_then(|k| cp.cache.get(k))
                && Path::new(&d.drv).exists()
            {
                cached_new.insert(s.name.clone(), d);
            }
            if plan.base_flake.is_some()
                && let Some(d) = cp.base.get(&s.name).and_then(|k| cp.cache.get(k))
            {
                cached_base.insert(s.name.clone(), d);
            }
        }
    }
    let mut flakes = vec![plan.flake.clone()];
    let mut jobs: Vec<Job> = slots
        .iter()
        .filter(|s| verify || !cached_new.contains_key(&s.name))
        .map(|s| Job {
            flake: 0,
            host: s.name.clone(),
            attr: attr_of(s.level),
            graph: false,
        })
        .collect();
    // The graphs first: they are cheap, and a worker that answered a
    // host's graph has collected its modules for its evaluation.
    let graph_jobs: Vec<Job> = plan.graphs.iter().map(|h| Job::graph_of(h)).collect();
    jobs.splice(0..0, graph_jobs);
    if let Some(b) = &plan.base_flake {
        flakes.push(b.clone());
        jobs.extend(
            slots
                .iter()
                .filter(|s| verify || !cached_base.contains_key(&s.name))
                .map(|s| Job {
                    flake: 1,
                    host: s.name.clone(),
                    attr: attr_of(s.level),
                    graph: false,
                }),
        );
    }
    let graphs = match plan.graphs.len() {
        0 => String::new(),
        1 => " and 1 module graph".to_string(),
        g => format!(" and {g} module graphs"),
    };
    progress.phase(&format!(
        "evaluating {} {}{graphs} ({} workers, {} each)",
        n,
        if n == 1 { "host" } else { "hosts" },
        plan.eval.workers.min(jobs.len()).max(1),
        human_bytes(plan.eval.max_memory)
    ));
    let start = Instant::now();
    let (mut results, mut stats, broken) = if jobs.is_empty() {
        (BTreeMap::new(), EvalStats::default(), BTreeMap::new())
    } else {
        super::eval::evaluate(nix, &flakes, jobs, plan.eval, progress)
    };
    let graph_keys: Vec<Job> = results.keys().filter(|j| j.graph).cloned().collect();
    for j in graph_keys {
        if let Some(done) = results.remove(&j) {
            out.graphs.insert(j.host, done);
        }
    }
    stats.workers = plan.eval.workers;
    stats.max_memory = plan.eval.max_memory;
    stats.cached = cached_new.len() + cached_base.len();
    check_cache(plan, &results, &cached_new, &cached_base, &mut out.warnings);
    let elapsed = ms(start.elapsed());
    progress.phase_done(&format!(
        "evaluated {n} {} in {:.1}s",
        if n == 1 { "host" } else { "hosts" },
        elapsed as f64 / 1000.0
    ));
    if stats.replaced > 0 {
        out.warnings.push(Warning {
            path: None,
            message: format!(
                "{} evaluation {} replaced past --eval-max-memory {} (peak {})",
                stats.replaced,
                if stats.replaced == 1 {
                    "worker was"
                } else {
                    "workers were"
                },
                human_bytes(stats.max_memory),
                human_bytes(stats.peak_worker_memory)
            ),
        });
    }
    out.eval = Some(stats);

    match broken.get(&0) {
        Some(NixError::Interrupted { .. }) | None => {}
        Some(e) if same_for_every_host(e, &plan.inputs).is_some() => {
            let message = same_for_every_host(e, &plan.inputs).unwrap_or_default();
            let lines: Vec<String> = message.lines().map(str::to_string).collect();
            for s in slots.iter_mut().filter(|s| s.done.is_none()) {
                let mut host = s.host(BuildStatus::Failed, Some(reason_of(&message)), elapsed);
                host.log_excerpt = head(&lines);
                progress.finished(&host);
                s.done = Some(host);
            }
            return;
        }
        Some(e) if !nixcli::is_interrupted() => {
            out.warnings.push(Warning {
                path: None,
                message: format!(
                    "the evaluation workers could not load the flake, evaluating the hosts one by one: {}",
                    first_line(&e.to_string())
                ),
            });
            for s in slots.iter_mut() {
                s.needs_eval = true;
            }
        }
        Some(_) => {}
    }
    match broken.get(&1) {
        Some(NixError::Interrupted { .. }) | None => {}
        Some(e) => out.warnings.push(Warning {
            path: None,
            message: format!(
                "could not evaluate the base revision, so no host is skipped as unchanged: {}",
                first_line(&e.to_string())
            ),
        }),
    }

    for s in slots.iter_mut() {
        let key = Job {
            flake: 0,
            host: s.name.clone(),
            attr: attr_of(s.level),
            graph: false,
        };
        let Some(done) = results.get(&key) else {
            if let Some(d) = cached_new.get(&s.name) {
                s.drv = Some(d.clone());
            }
            continue;
        };
        s.eval_ms = done.ms;
        let failed = |s: &Slot, message: String| eval_failure(s, plan, log_dir, &message, done.ms);
        let host = match &done.answer {
            Answer::Ok(d) => {
                s.drv = Some(d.clone());
                continue;
            }
            Answer::Interrupted => continue,
            Answer::Missing => {
                let status = if plan.missing_fails {
                    BuildStatus::Failed
                } else {
                    BuildStatus::Skipped
                };
                s.host(
                    status,
                    Some(format!("no host named {} in nixosConfigurations", s.name)),
                    done.ms,
                )
            }
            Answer::Failed(m) => failed(
                s,
                m.lines().map(redact_secrets).collect::<Vec<_>>().join("\n"),
            ),
            Answer::OverLimit { rss } => failed(
                s,
                format!(
                    "evaluating {} alone needs more memory than --eval-max-memory {} (a fresh worker reached {}); raise the limit",
                    s.name,
                    human_bytes(plan.eval.max_memory),
                    human_bytes(*rss)
                ),
            ),
            Answer::TimedOut { secs } => failed(
                s,
                format!("evaluation timed out after {secs}s ([build].timeout_secs)"),
            ),
            Answer::Died(how) => failed(s, format!("evaluation failed: {how}")),
            // Only asked for by graph jobs, which this step has none of.
            Answer::Graph(_) | Answer::NoGraph => failed(
                s,
                "internal error: a module graph answered a derivation".into(),
            ),
        };
        progress.finished(&host);
        s.done = Some(host);
    }

    for s in slots.iter_mut() {
        let key = Job {
            flake: 1,
            host: s.name.clone(),
            attr: attr_of(s.level),
            graph: false,
        };
        let base = match results.get(&key) {
            Some(Done {
                answer: Answer::Ok(b),
                ..
            }) => Some(b),
            _ => cached_base.get(&s.name),
        };
        let (Some(b), Some(d)) = (base, &s.drv) else {
            continue;
        };
        s.base = Some(b.clone());
        if b.drv == d.drv && s.done.is_none() {
            let host = s.host(
                BuildStatus::Skipped,
                Some("unchanged drvPath".into()),
                s.eval_ms,
            );
            progress.finished(&host);
            s.done = Some(host);
        }
    }
}

/// Stores what nix answered under the hosts' keys, and with
/// `--verify-cache` reports every cached drvPath nix contradicts: a key
/// that missed something the evaluation reads, which is a guard bug.
fn check_cache(
    plan: &Plan,
    results: &BTreeMap<Job, Done>,
    cached_new: &BTreeMap<String, Drv>,
    cached_base: &BTreeMap<String, Drv>,
    warnings: &mut Vec<Warning>,
) {
    let Some(cp) = &plan.cache else { return };
    for (job, done) in results {
        let Answer::Ok(d) = &done.answer else {
            continue;
        };
        let (keys, cached, rev) = if job.flake == 0 {
            (&cp.new, cached_new, "the new revision")
        } else {
            (&cp.base, cached_base, "the base revision")
        };
        let Some(key) = keys.get(&job.host) else {
            continue;
        };
        if let Some(c) = cached.get(&job.host)
            && c.drv != d.drv
        {
            warnings.push(Warning {
                path: None,
                message: format!(
                    "guard bug: the evaluation cache held {} for {} at {rev} (key {key}), nix evaluates {}; \
                     the key misses something the host reads. Please report it; --no-eval-cache avoids it",
                    c.drv, job.host, d.drv
                ),
            });
        }
        cp.cache.put(key, d);
    }
}

/// A host whose evaluation failed: its log holds the message.
fn eval_failure(
    slot: &Slot,
    plan: &Plan,
    log_dir: &Logs<'_>,
    message: &str,
    took: u64,
) -> BuildHost {
    let mut host = slot.host(BuildStatus::Failed, Some(reason_of(message)), took);
    let lines: Vec<String> = message.lines().map(str::to_string).collect();
    host.log = log_dir.dir.and_then(|d| {
        log_dir.write(
            &d.join(format!("{}.log", slot.name)),
            &header(&slot.name, "eval", &plan.flake, None),
            &lines,
        )
    });
    host.log_excerpt = head(&lines);
    host
}

/// One host's own evaluation and how long it took (ms).
type Evaluated = (Result<Drv, NixError>, u64);

/// Step 2: hosts whose evaluation failed (or was not attempted), one by
/// one, `jobs` at once, to get each error message.
fn evaluate_failed(
    nix: &Nix,
    plan: &Plan,
    slots: &mut [Slot],
    log_dir: &Logs<'_>,
    limits: RunLimits,
    progress: &dyn Progress,
) {
    let todo: Vec<usize> = (0..slots.len())
        .filter(|&i| slots[i].needs_eval && slots[i].done.is_none())
        .collect();
    let results: Mutex<BTreeMap<usize, Evaluated>> = Mutex::default();
    let next = AtomicUsize::new(0);
    let shared: &[Slot] = slots;
    std::thread::scope(|s| {
        for _ in 0..plan.jobs.min(todo.len()) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = todo.get(k) else { break };
                    if nixcli::is_interrupted() {
                        break;
                    }
                    let slot = &shared[i];
                    progress.started(&slot.name, "evaluating");
                    let start = Instant::now();
                    let r = nix.eval_host(&plan.flake, &slot.name, attr_of(slot.level), limits);
                    let took = ms(start.elapsed());
                    lock(&results).insert(i, (r, took));
                }
            });
        }
    });
    for (i, (r, took)) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let slot = &mut slots[i];
        slot.eval_ms = took;
        match r {
            Ok(d) => slot.drv = Some(d),
            Err(e) => {
                let host = eval_failure(slot, plan, log_dir, &error_text(&e), took);
                progress.finished(&host);
                slot.done = Some(host);
            }
        }
    }
}

/// Steps 3 and 4: eval-level hosts are done; build-level hosts whose
/// outputs are already valid are skipped.
fn decide(nix: &Nix, slots: &mut [Slot], warnings: &mut Vec<Warning>, progress: &dyn Progress) {
    for s in slots.iter_mut() {
        if s.done.is_none() && s.level == Level::Eval && s.drv.is_some() {
            let host = s.host(BuildStatus::Ok, None, s.eval_ms);
            progress.finished(&host);
            s.done = Some(host);
        }
    }
    let outs: Vec<String> = slots
        .iter()
        .filter(|s| s.done.is_none())
        .filter_map(|s| s.drv.as_ref().map(|d| d.out.clone()))
        .collect();
    if outs.is_empty() || nixcli::is_interrupted() {
        return;
    }
    match nix.valid_paths(&outs) {
        Ok(valid) => {
            for s in slots.iter_mut() {
                if s.done.is_none() && s.drv.as_ref().is_some_and(|d| valid.contains(&d.out)) {
                    let host = s.host(BuildStatus::Skipped, Some("already built".into()), 0);
                    progress.finished(&host);
                    s.done = Some(host);
                }
            }
        }
        Err(e) => warnings.push(Warning {
            path: None,
            message: format!(
                "could not ask the store which outputs exist, building them all: {}",
                first_line(&e.to_string())
            ),
        }),
    }
}

/// Step 5: the builds, all hosts in one `nix build` (see [`super::batch`]),
/// its log split into one file per host.
fn build(
    nix: &Nix,
    plan: &Plan,
    slots: &mut [Slot],
    log_dir: &Logs<'_>,
    limits: RunLimits,
    progress: &dyn Progress,
) {
    let todo: Vec<usize> = (0..slots.len())
        .filter(|&i| slots[i].done.is_none() && slots[i].drv.is_some())
        .collect();
    if todo.is_empty() {
        return;
    }
    // A failure before this step (an evaluation) counts like a build
    // failure: without --keep-going nothing new starts.
    let failed_before = slots
        .iter()
        .filter_map(|s| s.done.as_ref())
        .find(|d| d.status == BuildStatus::Failed)
        .map(|d| d.name.clone());
    if let (Some(f), false) = (&failed_before, plan.keep_going) {
        for &i in &todo {
            let host = slots[i].host(
                BuildStatus::Skipped,
                Some(format!(
                    "not built: {f} failed first (--keep-going builds the rest)"
                )),
                0,
            );
            progress.finished(&host);
            slots[i].done = Some(host);
        }
        return;
    }
    if nixcli::is_interrupted() {
        return;
    }
    let drvs: Vec<String> = todo
        .iter()
        .map(|&i| slots[i].drv.as_ref().expect("filtered").drv.clone())
        .collect();
    let closures: Vec<_> = drvs.iter().map(|d| super::batch::drv_closure(d)).collect();
    let mut router = super::batch::Router::new(&closures);
    let mut states: Vec<LogState> = todo.iter().map(|_| LogState::new()).collect();
    // The first write error of each log (a full disk): the log is then
    // incomplete, so the report names no log file and warns instead.
    let mut write_errs: Vec<Option<std::io::Error>> = todo.iter().map(|_| None).collect();
    let mut files: Vec<Option<BufWriter<File>>> = Vec::new();
    for (k, &i) in todo.iter().enumerate() {
        let slot = &slots[i];
        let level = level_name(slot.level);
        progress.started(&slot.name, &format!("{level} {}", drv_name(&drvs[k])));
        let path = log_dir.dir.map(|d| d.join(format!("{}.log", slot.name)));
        files.push(path.and_then(|p| match File::create(&p) {
            Ok(f) => {
                let mut w = BufWriter::new(f);
                let hdr = header(&slot.name, level, &plan.flake, Some(&drvs[k]));
                if let Err(e) = w.write_all(hdr.as_bytes()) {
                    write_errs[k].get_or_insert(e);
                }
                Some(w)
            }
            Err(e) => {
                write_errs[k] = Some(e);
                None
            }
        }));
    }
    let names: Vec<String> = todo.iter().map(|&i| slots[i].name.clone()).collect();
    let batch_limits = RunLimits {
        timeout: limits
            .timeout
            .map(|t| t.saturating_mul(u32::try_from(todo.len()).unwrap_or(u32::MAX))),
    };
    let nix = with_max_jobs(nix, plan.jobs);
    let start = Instant::now();
    let result = nix.build_drvs(&drvs, plan.keep_going, batch_limits, &mut |line| {
        let line = redact_secrets(line);
        for k in router.route(&line) {
            let fed = states[k].feed(&line);
            if let (Some(f), None) = (files[k].as_mut(), &write_errs[k]) {
                for l in &fed.lines {
                    if let Err(e) = writeln!(f, "{l}") {
                        write_errs[k] = Some(e);
                        break;
                    }
                }
            }
            if let Some(d) = &fed.build_started {
                progress.build_started(&names[k], d);
            }
            if fed.status_changed {
                progress.status(&names[k], &states[k].status());
            }
        }
    });
    let took = ms(start.elapsed());
    // Which outputs exist now: on failure nix's JSON answer is missing,
    // and with --keep-going some hosts were built all the same.
    let outs: BTreeMap<String, String> = match &result {
        Ok(v) => super::batch::outs_of(v),
        Err(_) => {
            let want: Vec<String> = todo
                .iter()
                .filter_map(|&i| slots[i].drv.as_ref().map(|d| d.out.clone()))
                .collect();
            let valid = nix.valid_paths(&want).unwrap_or_default();
            todo.iter()
                .filter_map(|&i| slots[i].drv.as_ref())
                .filter(|d| valid.contains(&d.out))
                .map(|d| (d.drv.clone(), d.out.clone()))
                .collect()
        }
    };
    let first_failed: Option<String> = (0..todo.len())
        .find(|&k| !outs.contains_key(&drvs[k]) && router.own_error[k])
        .map(|k| names[k].clone());
    for (k, &i) in todo.iter().enumerate() {
        let slot = &slots[i];
        let mut host = if let Some(o) = outs.get(&drvs[k]) {
            let mut h = slot.host(BuildStatus::Ok, None, took);
            h.out_path = Some(o.clone());
            h
        } else {
            match &result {
                Err(NixError::Interrupted { .. }) => {
                    slot.host(BuildStatus::Skipped, Some("interrupted".into()), took)
                }
                Err(e @ NixError::TimedOut { .. }) => {
                    let message = error_text(e);
                    note_in_log(&mut files[k], &mut write_errs[k], &message);
                    let mut h = slot.host(BuildStatus::Failed, Some(reason_of(&message)), took);
                    let mut t = states[k].tail();
                    t.push(format!("guard: {message}"));
                    h.log_excerpt = tail(&t);
                    h
                }
                Err(e) if router.own_error[k] || todo.len() == 1 => {
                    let own = states[k].errors.join("\n");
                    let message = if own.is_empty() { error_text(e) } else { own };
                    if let (NixError::Failed { .. }, Some(guard_dir)) = (e, plan.log_dir.parent()) {
                        // A real build failure (not a timeout or Ctrl-C):
                        // remember the derivation for `guard bisect`.
                        crate::build::memory::record_failure(guard_dir, &drvs[k]);
                    }
                    let mut h = slot.host(BuildStatus::Failed, Some(reason_of(&message)), took);
                    h.log_excerpt = tail(&states[k].tail());
                    h
                }
                Err(e) => match &first_failed {
                    Some(f) => slot.host(
                        BuildStatus::Skipped,
                        Some(format!(
                            "not built: {f} failed first (--keep-going builds the rest)"
                        )),
                        took,
                    ),
                    None => {
                        let message = error_text(e);
                        let mut h = slot.host(BuildStatus::Failed, Some(reason_of(&message)), took);
                        h.log_excerpt = tail(&states[k].tail());
                        h
                    }
                },
                Ok(_) => slot.host(
                    BuildStatus::Failed,
                    Some("nix build succeeded but did not name this host's output".into()),
                    took,
                ),
            }
        };
        host.built_on = router.machines[k].iter().cloned().collect();
        let path = log_dir.dir.map(|d| d.join(format!("{}.log", slot.name)));
        if let Some(mut f) = files[k].take()
            && let Err(e) = f.flush()
        {
            write_errs[k].get_or_insert(e);
        }
        match (path, write_errs[k].take()) {
            (Some(p), Some(e)) => log_dir.failed(&p, &e),
            (p, None) => host.log = p.map(|p| p.display().to_string()),
            (None, Some(_)) => {}
        }
        progress.finished(&host);
        slots[i].done = Some(host);
    }
}

/// Step 6: each built host's closure against its base toplevel, when
/// both are in the store.
fn closure_diffs(
    nix: &Nix,
    slots: &mut [Slot],
    warnings: &mut Vec<Warning>,
    progress: &dyn Progress,
) {
    let built = |s: &Slot| {
        s.base.is_some()
            && s.level >= Level::Build
            && s.done.as_ref().is_some_and(|d| {
                d.status == BuildStatus::Ok
                    || (d.status == BuildStatus::Skipped
                        && d.reason.as_deref() == Some("already built"))
            })
    };
    let bases: Vec<String> = slots
        .iter()
        .filter(|s| built(s))
        .filter_map(|s| s.base.as_ref().map(|b| b.out.clone()))
        .collect();
    if bases.is_empty() || nixcli::is_interrupted() {
        return;
    }
    progress.phase("comparing closures with the base");
    let valid = nix.valid_paths(&bases).unwrap_or_default();
    let mut missing = Vec::new();
    let mut roots: Vec<String> = valid.iter().cloned().collect();
    roots.extend(
        slots
            .iter()
            .filter(|s| built(s))
            .filter_map(|s| s.done.as_ref().and_then(|d| d.out_path.clone())),
    );
    let info = match nix.closure_info(&roots) {
        Ok(i) => i,
        Err(e) => {
            warnings.push(Warning {
                path: None,
                message: format!(
                    "cannot read the closures to compare with the base: {}",
                    first_line(&e.to_string())
                ),
            });
            return;
        }
    };
    for s in slots.iter_mut().filter(|s| built(s)) {
        let (Some(base), Some(done)) = (s.base.clone(), s.done.as_mut()) else {
            continue;
        };
        let Some(new_out) = done.out_path.clone() else {
            continue;
        };
        if !valid.contains(&base.out) {
            missing.push(s.name.clone());
            continue;
        }
        let old = super::diff::closure_of(&base.out, &info);
        let new = super::diff::closure_of(&new_out, &info);
        done.closure_diff = Some(super::diff::diff(&base.out, &old, &new));
    }
    progress.phase_done("compared closures with the base");
    if !missing.is_empty() {
        warnings.push(Warning {
            path: None,
            message: format!(
                "no closure difference for {}: the base revision's toplevel is not in the store (build it once, or use a binary cache that has it)",
                missing.join(", ")
            ),
        });
    }
}

/// `--max-jobs <jobs>` for the batch build, unless the nix arguments set it.
fn with_max_jobs(nix: &Nix, jobs: usize) -> Nix {
    let mut nix = nix.clone();
    let set = nix
        .extra_args
        .iter()
        .any(|a| a == "--max-jobs" || a == "-j" || a.starts_with("--max-jobs="));
    if !set {
        nix.extra_args
            .splice(0..0, ["--max-jobs".to_string(), jobs.max(1).to_string()]);
    }
    nix
}

/// Timeouts and interrupts are guard's words, not nix's: written into the
/// host's log as such.
fn note_in_log(
    file: &mut Option<BufWriter<File>>,
    err: &mut Option<std::io::Error>,
    message: &str,
) {
    if let (Some(f), None) = (file.as_mut(), &err)
        && let Err(e) = writeln!(f, "guard: {message}")
    {
        *err = Some(e);
    }
}

fn flake_check(
    nix: &Nix,
    plan: &Plan,
    log_dir: &Logs<'_>,
    limits: RunLimits,
    progress: &dyn Progress,
) -> BuildHost {
    let build = plan.hosts.iter().any(|(_, l)| *l >= Level::Build);
    let level = if build { "build" } else { "eval" };
    let name = "flake check";
    progress.started(name, "nix flake check");
    let log_path = log_dir.dir.map(|d| d.join(FLAKE_CHECK_LOG));
    let mut lines = Vec::new();
    let mut state = LogState::new();
    let start = Instant::now();
    let r = nix.flake_check(&plan.flake, build, limits, &mut |line| {
        let fed = state.feed(&redact_secrets(line));
        lines.extend(fed.lines);
        if fed.status_changed {
            progress.status(name, &state.status());
        }
    });
    let took = ms(start.elapsed());
    let mut host = BuildHost {
        name: name.into(),
        status: BuildStatus::Ok,
        level: level.into(),
        drv_path: None,
        out_path: None,
        duration_ms: took,
        log: None,
        reason: None,
        log_excerpt: Vec::new(),
        built_on: Vec::new(),
        closure_diff: None,
    };
    if let Err(e) = &r {
        let message = error_text(e);
        host.status = BuildStatus::Failed;
        host.reason = Some(reason_of(&message));
        host.log_excerpt = tail(&state.tail());
    }
    host.log =
        log_path.and_then(|p| log_dir.write(&p, &header(name, level, &plan.flake, None), &lines));
    progress.finished(&host);
    host
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn header(host: &str, level: &str, flake: &str, drv: Option<&str>) -> String {
    let mut h = format!("# guard: {host} at level {level}\n# flake: {flake}\n");
    if let Some(d) = drv {
        h.push_str(&format!("# derivation: {d}\n"));
    }
    h
}

/// Writes a whole log file; returns its path on success.
/// Where host logs go (`None` when the directory could not be created),
/// and the messages of writes that failed: a full disk is a warning in the
/// report, never a silently truncated log the report points to.
struct Logs<'a> {
    dir: Option<&'a Path>,
    failed: Mutex<Vec<String>>,
}

impl Logs<'_> {
    fn failed(&self, path: &Path, e: &std::io::Error) {
        lock(&self.failed).push(format!(
            "cannot write the log {}: {e}; the report shows the end of the log only",
            path.display()
        ));
    }

    /// Writes a whole log; its path, or `None` (with a warning) on failure.
    fn write(&self, path: &Path, header: &str, lines: &[String]) -> Option<String> {
        let write = || -> std::io::Result<()> {
            let mut f = BufWriter::new(File::create(path)?);
            f.write_all(header.as_bytes())?;
            for l in lines {
                writeln!(f, "{l}")?;
            }
            f.flush()
        };
        match write() {
            Ok(()) => Some(path.display().to_string()),
            Err(e) => {
                self.failed(path, &e);
                None
            }
        }
    }
}

/// How many lines of an evaluation error the report shows: the message and
/// the innermost location.
const EVAL_HEAD_LINES: usize = 12;

/// The first lines, trailing blank lines dropped.
fn head(lines: &[String]) -> Vec<String> {
    let mut h: Vec<String> = lines.iter().take(EVAL_HEAD_LINES).cloned().collect();
    while h.last().is_some_and(|l| l.trim().is_empty()) {
        h.pop();
    }
    h
}

fn tail(lines: &[String]) -> Vec<String> {
    lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec()
}

/// The message of an error without the `nix <what> failed:` wrapper.
fn error_text(e: &NixError) -> String {
    match e {
        NixError::Failed { message, .. } => message
            .lines()
            .map(redact_secrets)
            .collect::<Vec<_>>()
            .join("\n"),
        NixError::TimedOut { secs, .. } => {
            format!(
                "timed out after {secs}s ([build].timeout_secs); nix and its builders were stopped"
            )
        }
        NixError::Interrupted { .. } => "interrupted".into(),
        other => other.to_string(),
    }
}

/// The message of a failure that is the same for every host, so that the
/// hosts are not evaluated one by one only to fail alike (a fetch of a
/// missing input retries for seconds per host): a flake input that cannot
/// be fetched, or a repository path this nix cannot read.
fn same_for_every_host(e: &NixError, inputs: &FlakeInputs) -> Option<String> {
    match e {
        NixError::Unsupported { message } => Some(message.clone()),
        NixError::Failed { message, .. } => {
            let failure = inputs.failure_in(message)?;
            let text = error_text(e);
            let name = failure
                .input
                .map(|n| format!("flake input '{n}'"))
                .unwrap_or_else(|| "a flake input".into());
            Some(format!(
                "cannot fetch {name}: {}\n\
                 hint: every host needs it, so it was tried once, not host by host. Without \
                 network nix can use only what the store has: fetch the inputs once where \
                 there is network (`nix flake archive`), configure a substituter that has \
                 them, or pass `-- --offline`.\n\n{text}",
                reason_of(&text)
            ))
        }
        _ => None,
    }
}

/// The one-line reason: the first non-empty line, without `error: `.
fn reason_of(message: &str) -> String {
    let line = first_line(message);
    line.strip_prefix("error: ")
        .unwrap_or(line)
        .trim()
        .to_string()
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_line_without_prefix() {
        assert_eq!(
            reason_of("error: broken module\n       at /x.nix:1:1"),
            "broken module"
        );
        assert_eq!(reason_of("\n\nbuilder failed"), "builder failed");
        assert_eq!(reason_of(""), "");
    }

    #[test]
    fn tails_keep_the_last_lines() {
        let lines: Vec<String> = (0..30).map(|i| i.to_string()).collect();
        let t = tail(&lines);
        assert_eq!(t.len(), TAIL_LINES);
        assert_eq!(t[0], "10");
        assert_eq!(tail(&lines[..3]).len(), 3);
    }

    #[test]
    fn vm_level_builds_the_vm_attribute() {
        assert_eq!(attr_of(Level::Vm), HostAttr::Vm);
        assert_eq!(attr_of(Level::Build), HostAttr::Toplevel);
        assert_eq!(attr_of(Level::Eval), HostAttr::Toplevel);
    }
}

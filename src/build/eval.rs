//! Bounded evaluation: up to `workers` nix processes ([`Worker`]s), each
//! handed hosts one after another from one queue, each replaced when its
//! resident memory passes the limit, so the peak memory of a run is about
//! workers × limit whatever the fleet's size (nix-eval-jobs' scheme).
//!
//! A worker found over the limit while evaluating is killed at once; the
//! host goes back to the front of the queue for a fresh worker, unless the
//! worker was fresh (the host was its first): then the host alone needs
//! more than the limit and is reported so. A worker that ends a host over
//! the limit is retired before it takes the next one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::progress::Progress;
use crate::nix::cli::{HostAttr, Nix, NixError};
use crate::nix::repl::{Answer, Worker};

/// One evaluation to do: a host's attribute in one flake.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Job {
    /// Index into the flakes passed to [`evaluate`].
    pub flake: usize,
    pub host: String,
    pub attr: HostAttr,
    /// Ask for the host's module graph instead of its derivation (the
    /// self-check, `super::selfcheck`).
    pub graph: bool,
}

impl Job {
    /// The module graph of `host` at the new revision (flake 0).
    pub fn graph_of(host: &str) -> Job {
        Job {
            flake: 0,
            host: host.to_string(),
            attr: HostAttr::Toplevel,
            graph: true,
        }
    }
}

/// How one evaluation ended, and how long it took.
#[derive(Debug, Clone)]
pub struct Done {
    pub answer: Answer,
    pub ms: u64,
}

pub use crate::report::EvalStats;

impl EvalStats {
    /// Adds a second run's counts (the same limits).
    pub fn absorb(&mut self, o: &EvalStats) {
        self.started += o.started;
        self.replaced += o.replaced;
        self.evaluated += o.evaluated;
        self.cached += o.cached;
        self.peak_worker_memory = self.peak_worker_memory.max(o.peak_worker_memory);
    }

    /// One line for people: what the workers did.
    pub fn summary(&self) -> String {
        format!(
            "evaluation: {} by nix, {} from the cache; {} {} started ({} replaced past {}), peak {} per worker",
            self.evaluated,
            self.cached,
            self.started,
            if self.started == 1 {
                "worker"
            } else {
                "workers"
            },
            self.replaced,
            human_bytes(self.max_memory),
            human_bytes(self.peak_worker_memory)
        )
    }
}

/// Options of one [`evaluate`] call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub workers: usize,
    pub max_memory: u64,
    pub timeout: Option<Duration>,
}

/// Evaluates every job with at most `limits.workers` workers. A flake whose
/// worker cannot start (an input cannot be fetched) is tried once: its
/// jobs are dropped and its error returned, the same for every host; when
/// the new revision (flake 0) is broken, nothing else is evaluated.
pub fn evaluate(
    nix: &Nix,
    flakes: &[String],
    jobs: Vec<Job>,
    limits: Limits,
    progress: &dyn Progress,
) -> (BTreeMap<Job, Done>, EvalStats, BTreeMap<usize, NixError>) {
    let queue: Mutex<VecDeque<(Job, usize)>> =
        Mutex::new(jobs.iter().cloned().map(|j| (j, 0)).collect());
    let results: Mutex<BTreeMap<Job, Done>> = Mutex::default();
    let stats = Mutex::new(EvalStats {
        workers: limits.workers,
        max_memory: limits.max_memory,
        ..Default::default()
    });
    // The start failure of each flake: its jobs are not retried.
    let broken: Mutex<BTreeMap<usize, NixError>> = Mutex::default();
    let n = limits.workers.min(jobs.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                let mut current: Option<(usize, Worker)> = None;
                // A host taken back from a replaced worker: this thread
                // evaluates it again at once, with a fresh worker.
                let mut retry: Option<(Job, usize)> = None;
                loop {
                    if crate::process::is_interrupted() {
                        break;
                    }
                    let Some((job, attempts)) = retry.take().or_else(|| lock(&queue).pop_front())
                    else {
                        break;
                    };
                    {
                        let b = lock(&broken);
                        if b.contains_key(&job.flake) || b.contains_key(&0) {
                            continue;
                        }
                    }
                    if current.as_ref().is_some_and(|(f, _)| *f != job.flake)
                        && let Some((_, w)) = current.take()
                    {
                        w.finish();
                    }
                    if current.is_none() {
                        lock(&stats).started += 1;
                        match Worker::start(nix, &flakes[job.flake], limits.timeout) {
                            Ok(w) => current = Some((job.flake, w)),
                            Err(e) => {
                                lock(&broken).entry(job.flake).or_insert(e);
                                continue;
                            }
                        }
                    }
                    let (_, worker) = current.as_mut().expect("started above");
                    if job.flake == 0 && !job.graph {
                        // The base's evaluations are not the host's news.
                        progress.started(&job.host, "evaluating");
                    }
                    let start = Instant::now();
                    let mut peak = 0;
                    let fresh = worker.evaluated == 0;
                    let answer = if job.graph {
                        worker.graph(
                            &job.host,
                            Some(limits.max_memory),
                            limits.timeout,
                            &mut peak,
                        )
                    } else {
                        worker.eval(
                            &job.host,
                            job.attr,
                            Some(limits.max_memory),
                            limits.timeout,
                            &mut peak,
                        )
                    };
                    let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                    {
                        let mut st = lock(&stats);
                        st.peak_worker_memory = st.peak_worker_memory.max(peak);
                    }
                    match &answer {
                        Answer::OverLimit { .. } | Answer::Died(_) if !fresh && attempts == 0 => {
                            // Memory the worker gathered from earlier hosts:
                            // a fresh worker takes this host again.
                            current = None;
                            lock(&stats).replaced += 1;
                            retry = Some((job, attempts + 1));
                            continue;
                        }
                        Answer::OverLimit { .. }
                        | Answer::Died(_)
                        | Answer::TimedOut { .. }
                        | Answer::Interrupted => current = None,
                        Answer::Ok(_)
                        | Answer::Graph(_)
                        | Answer::NoGraph
                        | Answer::Missing
                        | Answer::Failed(_) => {
                            // Module graphs (the self-check) are not
                            // evaluations of a host's derivation.
                            if !job.graph {
                                lock(&stats).evaluated += 1;
                            }
                            let rss = worker.rss();
                            {
                                let mut st = lock(&stats);
                                st.peak_worker_memory = st.peak_worker_memory.max(rss);
                            }
                            if rss > limits.max_memory {
                                if let Some((_, w)) = current.take() {
                                    w.finish();
                                }
                                lock(&stats).replaced += 1;
                            }
                        }
                    }
                    lock(&results).insert(job, Done { answer, ms });
                }
                if let Some((_, w)) = current {
                    w.finish();
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let stats = stats.into_inner().unwrap_or_else(|e| e.into_inner());
    let broken = broken.into_inner().unwrap_or_else(|e| e.into_inner());
    (results, stats, broken)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// "1.5 GiB" / "300 MiB".
pub fn human_bytes(b: u64) -> String {
    let mib = b as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

//! Affected-aware bisection: the search over candidate commits, and how the
//! candidates are chosen.
//!
//! A first-parent commit that cannot change a host's import closure cannot
//! change its drvPath, so its result equals its parent's: only commits the
//! import graph (of that commit) says affect the host are candidates. The
//! search itself is git bisect's, over candidates only, with skips.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::affected::{Analysis, Query, affected_hosts};
use crate::config::Config;
use crate::git::{GitError, ObjectId, Repo, SnapshotSpec};
use crate::nix::graph::ParseCache;
use crate::nix::hosts;
use crate::report::Reason;

/// The outcome of testing one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Good,
    Bad,
    /// Could not be tested (not the host's fault): the search goes around it.
    Skip,
}

/// How a verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum How {
    /// nix evaluated the host (level eval).
    Evaluated,
    /// nix built the host.
    Built,
    /// The host's drvPath equals one already tested: its result reused.
    EvalDeduped,
    /// The host's output is already valid in the store (built before, a
    /// deployed generation): good without building.
    InStore,
    /// The host's derivation failed to build before (`guard build`,
    /// `check` or `ci` saw it fail): bad without building.
    KnownFailure,
    /// The user's `--run` command decided.
    Ran,
    /// Read back from a `--replay` log.
    Replayed,
}

/// One tested commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tested {
    #[serde(with = "oid_hex")]
    pub commit: ObjectId,
    pub result: Verdict,
    pub how: How,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drv_path: Option<String>,
    /// Why, in a few words (the nix error's first line, a skip reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What `guard bisect` concluded, for its writers. The skipped fields are
/// for the human text only.
#[derive(Debug, Clone, Serialize)]
pub struct Bisection {
    /// Skipped commits hide which of `first_bad_range` is the first bad one.
    pub ambiguous: bool,
    /// nix evaluations (level eval) or builds that were not deduplicated.
    pub builds: usize,
    pub candidates: usize,
    pub deduped: usize,
    pub first_bad: String,
    pub first_bad_range: Vec<String>,
    pub host: String,
    pub range_commits: usize,
    pub tested: Vec<Tested>,
    /// `first_bad_range` with each commit's subject.
    #[serde(skip)]
    pub range_subjects: Vec<(String, String)>,
    #[serde(skip)]
    pub first_bad_subject: String,
    #[serde(skip)]
    pub first_bad_author: String,
    /// The import chains by which the first bad commit changes the host.
    #[serde(skip)]
    pub chains: Option<Vec<Vec<String>>>,
    /// The last lines of its failure log.
    #[serde(skip)]
    pub tail: Vec<String>,
    /// Tested at level eval (the counts are evaluations, not builds).
    #[serde(skip)]
    pub evaluated: bool,
}

mod oid_hex {
    use crate::git::ObjectId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &ObjectId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectId, D::Error> {
        let s = String::deserialize(d)?;
        ObjectId::from_hex(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// What the search concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion {
    /// This candidate is the first bad one.
    FirstBad(usize),
    /// The first bad one is among these candidates (skips hide which).
    Ambiguous(Vec<usize>),
}

/// Binary search over candidates (oldest first) whose last one is known
/// bad. Each index has at most one verdict.
#[derive(Debug, Clone)]
pub struct Search {
    n: usize,
    results: BTreeMap<usize, Verdict>,
}

impl Search {
    /// `n` candidates; the last is bad (it carries `--bad`'s result).
    pub fn new(n: usize) -> Search {
        assert!(n > 0, "a search needs at least one candidate");
        Search {
            n,
            results: BTreeMap::from([(n - 1, Verdict::Bad)]),
        }
    }

    /// Records a verdict for candidate `i`.
    pub fn record(&mut self, i: usize, v: Verdict) {
        self.results.insert(i, v);
    }

    pub fn verdict(&self, i: usize) -> Option<Verdict> {
        self.results.get(&i).copied()
    }

    /// (last good index, or None for `--good` itself; first bad index after it).
    fn window(&self) -> (Option<usize>, usize) {
        let good = self
            .results
            .iter()
            .filter(|(_, v)| **v == Verdict::Good)
            .map(|(i, _)| *i)
            .max();
        let bad = self
            .results
            .iter()
            .filter(|(i, v)| **v == Verdict::Bad && good.is_none_or(|g| **i > g))
            .map(|(i, _)| *i)
            .min()
            .unwrap_or(self.n - 1);
        (good, bad)
    }

    /// The next candidate to test, or the conclusion.
    pub fn next(&self) -> Result<usize, Conclusion> {
        let (good, bad) = self.window();
        let lo = good.map_or(0, |g| g + 1);
        let open: Vec<usize> = (lo..bad)
            .filter(|i| !self.results.contains_key(i))
            .collect();
        if open.is_empty() {
            let skipped: Vec<usize> = (lo..bad)
                .filter(|i| self.results.get(i) == Some(&Verdict::Skip))
                .collect();
            return Err(if skipped.is_empty() {
                Conclusion::FirstBad(bad)
            } else {
                Conclusion::Ambiguous(skipped.into_iter().chain([bad]).collect())
            });
        }
        // The open candidate nearest the middle of the window halves it.
        let mid2 = lo + bad; // twice the midpoint of [lo, bad)
        Ok(*open
            .iter()
            .min_by_key(|&&i| (2 * i).abs_diff(mid2.saturating_sub(1)))
            .expect("open is not empty"))
    }
}

/// A commit of the range and whether it can change the host.
#[derive(Debug, Clone)]
pub struct RangeCommit {
    pub id: ObjectId,
    /// Why it can affect the host (empty: it cannot).
    pub reasons: Vec<Reason>,
    /// The host exists at this commit.
    pub host_exists: bool,
}

/// Errors choosing candidates.
#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("--good {good} is not a first-parent ancestor of --bad {bad}")]
    NotAncestor { good: String, bad: String },
    #[error(transparent)]
    Affected(#[from] crate::affected::AffectedError),
}

/// The first-parent commits in (good, bad], oldest first, each with the
/// reasons (from the import graph of that commit) it can affect `host`.
/// The parse cache is shared, so each commit re-parses only what changed.
pub fn range_commits(
    repo: &Repo,
    good: ObjectId,
    bad: ObjectId,
    host: &str,
    flake_dir: &str,
    config: &Config,
) -> Result<Vec<RangeCommit>, BisectError> {
    let mut ids = repo.first_parent_history(bad, Some(good))?;
    ids.reverse();
    match ids.first() {
        None if good != bad => {
            return Err(BisectError::NotAncestor {
                good: good.to_string(),
                bad: bad.to_string(),
            });
        }
        Some(first) if repo.commit_info(*first)?.parents.first() != Some(&good) => {
            return Err(BisectError::NotAncestor {
                good: good.to_string(),
                bad: bad.to_string(),
            });
        }
        _ => {}
    }
    let cache = ParseCache::new();
    let mut out = Vec::with_capacity(ids.len());
    let mut parent = repo.snapshot(SnapshotSpec::Commit(good))?;
    let mut parent_hosts = hosts::discover(&parent, flake_dir, &config.hosts, &cache);
    for id in ids {
        let snap = repo.snapshot(SnapshotSpec::Commit(id))?;
        let changes = repo.diff(parent, snap.clone())?;
        let analysis = Analysis::of(&snap, flake_dir, config, &cache);
        let result = affected_hosts(&analysis, &parent_hosts, &Query::of(&changes, true), config)?;
        let host_exists = analysis.hosts.hosts.contains_key(host);
        let mut reasons: Vec<Reason> = result
            .hosts
            .into_iter()
            .find(|h| h.name == host)
            .map(|h| h.reasons)
            .unwrap_or_default();
        if result.removed_hosts.iter().any(|h| h == host) {
            reasons.push(Reason {
                path: String::new(),
                chain: vec![format!("host {host} removed")],
                uncertain: None,
            });
        }
        out.push(RangeCommit {
            id,
            reasons,
            host_exists,
        });
        parent = snap;
        parent_hosts = analysis.hosts;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search where candidates >= `first_bad` are bad and the ones in
    /// `skips` cannot be tested; returns the conclusion and how many tests.
    fn simulate(n: usize, first_bad: usize, skips: &[usize]) -> (Conclusion, usize) {
        let mut s = Search::new(n);
        let mut tests = 0;
        loop {
            match s.next() {
                Ok(i) => {
                    tests += 1;
                    assert!(tests <= n, "the search does not terminate");
                    let v = if skips.contains(&i) {
                        Verdict::Skip
                    } else if i >= first_bad {
                        Verdict::Bad
                    } else {
                        Verdict::Good
                    };
                    s.record(i, v);
                }
                Err(c) => return (c, tests),
            }
        }
    }

    #[test]
    fn finds_the_first_bad_candidate_in_log_steps() {
        for n in 1..=70 {
            for first_bad in 0..n {
                let (c, tests) = simulate(n, first_bad, &[]);
                assert_eq!(
                    c,
                    Conclusion::FirstBad(first_bad),
                    "n={n} first_bad={first_bad}"
                );
                let bound = (n as f64).log2().ceil() as usize;
                assert!(tests <= bound.max(1), "n={n}: {tests} tests > {bound}");
            }
        }
    }

    #[test]
    fn skips_are_gone_around() {
        // The skipped candidate is not the culprit: still exact.
        let (c, _) = simulate(16, 9, &[4]);
        assert_eq!(c, Conclusion::FirstBad(9));
        // The culprit's predecessor cannot be tested: ambiguous between them.
        let (c, _) = simulate(16, 9, &[8]);
        assert_eq!(c, Conclusion::Ambiguous(vec![8, 9]));
        // The culprit itself is skipped: ambiguous up to the next bad one.
        let (c, _) = simulate(16, 9, &[9]);
        assert_eq!(c, Conclusion::Ambiguous(vec![9, 10]));
    }

    #[test]
    fn one_candidate_needs_no_test() {
        assert_eq!(simulate(1, 0, &[]), (Conclusion::FirstBad(0), 0));
    }

    #[test]
    fn tested_round_trips_through_json() {
        let t = Tested {
            commit: ObjectId::from_hex(b"0123456789abcdef0123456789abcdef01234567").unwrap(),
            result: Verdict::Skip,
            how: How::EvalDeduped,
            drv_path: Some("/nix/store/x.drv".into()),
            note: None,
        };
        let s = serde_json::to_string(&t).unwrap();
        assert!(s.contains("\"result\":\"skip\""), "{s}");
        assert!(s.contains("\"how\":\"eval-deduped\""), "{s}");
        assert_eq!(serde_json::from_str::<Tested>(&s).unwrap(), t);
    }
}

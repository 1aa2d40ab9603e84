//! Command-line settings of the evaluation and build pipeline: the flags
//! `guard build`, `check`, `ci` and `bisect` share (and only they show).

use std::path::PathBuf;

/// How hosts are evaluated, cached and reported (`build`, `check`, `ci`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {
    #[command(flatten)]
    pub eval: EvalSettings,

    /// Also write a Markdown PR-comment body (one section per host) here.
    #[arg(long, value_name = "FILE")]
    pub comment_file: Option<PathBuf>,
}

/// How hosts are evaluated and cached (`build`, `check`, `ci`, `bisect`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EvalSettings {
    /// Evaluation workers (nix processes) at once [default: from cores and
    /// memory: min(cores, memory / --eval-max-memory)].
    #[arg(long, value_name = "N")]
    pub eval_workers: Option<usize>,

    /// Resident memory at which an evaluation worker is replaced, in MiB
    /// (a host that alone needs more fails with that reason) [default: 2560,
    /// two workers fit a 7 GB runner].
    #[arg(long, value_name = "MIB")]
    pub eval_max_memory: Option<u64>,

    /// Do not read or write the evaluation cache (drvPaths by content under
    /// the git dir).
    #[arg(long)]
    pub no_eval_cache: bool,

    /// Evaluate every host even when the cache has it, and report each
    /// cached drvPath that differs from nix's as a guard bug.
    #[arg(long, conflicts_with = "no_eval_cache")]
    pub verify_cache: bool,
}

/// Default memory limit per worker (MiB).
pub const DEFAULT_MAX_MEMORY_MIB: u64 = 2560;

impl EvalSettings {
    /// The memory limit per worker, in bytes.
    pub fn max_memory(&self) -> u64 {
        self.eval_max_memory.unwrap_or(DEFAULT_MAX_MEMORY_MIB) * 1024 * 1024
    }

    /// The number of workers: the flag, else min(cores, total memory /
    /// limit), at least 1.
    pub fn workers(&self) -> usize {
        if let Some(n) = self.eval_workers {
            return n.max(1);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let by_memory = total_memory().map_or(cores as u64, |m| m / self.max_memory());
        (cores as u64).min(by_memory).max(1) as usize
    }
}

/// MemTotal of /proc/meminfo, in bytes.
fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_follow_flags_and_memory() {
        let s = EvalSettings {
            eval_workers: Some(0),
            ..Default::default()
        };
        assert_eq!(s.workers(), 1);
        let s = EvalSettings {
            eval_max_memory: Some(u64::MAX / (1 << 21)),
            ..Default::default()
        };
        assert_eq!(s.workers(), 1, "a limit larger than memory: one worker");
        assert_eq!(EvalSettings::default().max_memory(), 2560 << 20);
    }
}

//! Evaluate and build the affected hosts with nix: evaluation by bounded
//! workers with an evaluation cache keyed by content (drvPath comparison
//! against the base, usually without evaluating it), builds only of what
//! is not in the store yet, all in one `nix build`, live progress parsed
//! from nix's internal-json log, a full log per host, and each built
//! host's closure difference against the base.
//!
//! Everything that runs nix goes through [`crate::nix`] (and every child
//! process through [`crate::process`]); this module
//! decides what to run and turns the answers into a
//! [`BuildReport`](crate::report::BuildReport)'s host list.

pub mod batch;
pub mod cache;
pub mod comment;
pub mod diff;
pub mod eval;
pub mod log;
pub mod memory;
pub mod progress;
pub mod runner;
pub mod selfcheck;
pub mod settings;
pub mod signals;

use globset::Glob;

pub use runner::{Outcome, Plan, run};

use crate::config::BuildConfig;
use crate::report::Level;

/// Errors preparing a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("guard.toml: invalid glob {glob:?} in [build.levels]: {message}")]
    Glob { glob: String, message: String },
}

/// The name of a level in reports and JSON.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::None => "none",
        Level::Eval => "eval",
        Level::Build => "build",
        Level::Vm => "vm",
    }
}

/// Each host's level: the highest of `level`, every `[build.levels]` glob
/// that matches the host, and `vm` for `[build].critical` hosts. Level
/// `none` means no nix at all and stays `none` for every host.
pub fn host_levels(
    hosts: &[String],
    level: Level,
    config: &BuildConfig,
) -> Result<Vec<(String, Level)>, BuildError> {
    if level == Level::None {
        return Ok(hosts.iter().map(|h| (h.clone(), Level::None)).collect());
    }
    let mut globs = Vec::new();
    for (g, l) in &config.levels {
        let m = Glob::new(g)
            .map_err(|e| BuildError::Glob {
                glob: g.clone(),
                message: e.to_string(),
            })?
            .compile_matcher();
        globs.push((m, *l));
    }
    Ok(hosts
        .iter()
        .map(|h| {
            let mut l = level;
            for (m, gl) in &globs {
                if m.is_match(h) {
                    l = l.max(*gl);
                }
            }
            if config.critical.iter().any(|c| c == h) {
                l = l.max(Level::Vm);
            }
            (h.clone(), l)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_only_go_up() {
        let mut c = BuildConfig {
            critical: vec!["cortex-alpha".into()],
            ..Default::default()
        };
        c.levels.insert("display-*".into(), Level::Build);
        c.levels.insert("swarm-*".into(), Level::Eval);
        let hosts: Vec<String> = ["cortex-alpha", "display-0", "swarm-1", "linda"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = host_levels(&hosts, Level::Eval, &c).unwrap();
        assert_eq!(
            got.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
            vec![Level::Vm, Level::Build, Level::Eval, Level::Eval]
        );
        let got = host_levels(&hosts, Level::Build, &c).unwrap();
        assert_eq!(got[2].1, Level::Build, "a lower glob level never lowers");
        let none = host_levels(&hosts, Level::None, &c).unwrap();
        assert!(none.iter().all(|(_, l)| *l == Level::None));
    }
}

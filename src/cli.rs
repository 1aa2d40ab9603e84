//! Command-line definitions (clap derive). The doc comments here are the
//! `--help` text; `docs/cli.md` in the design notes is the contract they
//! implement. Nothing here runs an analysis: `app` does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// guard: keeps a NixOS fleet repository safe before a commit exists and
/// before a change merges.
///
/// It answers four questions about a change, cheapest first: which hosts it
/// can affect (static Nix import graph), whether it leaks a plaintext secret,
/// whether the age-encrypted secrets are still right, and whether the
/// affected hosts still evaluate and build.
///
/// Exit codes: 0 clean, 1 findings or failures, 2 usage, configuration or
/// internal error.
#[derive(Debug, Parser)]
#[command(name = "guard", version, max_term_width = 100)]
#[command(after_help = "Examples:\n  \
guard affected --staged              hosts the staged change can affect\n  \
guard affected --base origin/main    hosts a branch can affect\n  \
guard scan --staged                  plaintext secrets in what is being committed\n  \
guard -C examples/fleet affected --all --format json")]
pub struct Cli {
    /// Run as if guard was started in <DIR> (any directory inside the work tree).
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,

    /// Configuration file (default: guard.toml at the repository root, else
    /// built-in defaults).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// When to use colours (NO_COLOR is respected by `auto`).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,

    /// Print only findings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Explain more (why each decision was taken).
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Output formats of the analysis commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable text on stdout.
    Human,
    /// One JSON document on stdout, stable field names.
    Json,
    /// GitHub Actions: annotations on stdout, outputs to $GITHUB_OUTPUT.
    Github,
    /// SARIF 2.1.0 for code scanning.
    Sarif,
}

/// The flags of [`Selector`], for commands that offer an alternative to it.
const SELECTOR_FLAGS: [&str; 5] = ["staged", "commit", "base", "worktree", "all"];

/// Which change to judge. Exactly one may be given; each command has its own
/// default (see its help).
#[derive(Debug, Clone, Default, Args)]
pub struct Selector {
    /// The staged content (the index, honouring GIT_INDEX_FILE) against HEAD:
    /// what `git commit` would record, not the working tree.
    #[arg(long, conflicts_with_all = ["commit", "base", "worktree", "all"])]
    pub staged: bool,

    /// One commit against its first parent.
    #[arg(long, value_name = "REV", conflicts_with_all = ["base", "worktree", "all"])]
    pub commit: Option<String>,

    /// A branch: merge-base(<BASE>, <HEAD>) against <HEAD> (default HEAD).
    #[arg(long, value_name = "REV", conflicts_with_all = ["worktree", "all"])]
    pub base: Option<String>,

    /// With --base: the tip of the range (default HEAD).
    #[arg(long, value_name = "REV", requires = "base")]
    pub head: Option<String>,

    /// Tracked working-tree files against HEAD (interactive use).
    #[arg(long, conflicts_with = "all")]
    pub worktree: bool,

    /// Everything: every host affected, every file scanned.
    #[arg(long)]
    pub all: bool,
}

impl Selector {
    /// The git-layer selector, or `default` when no flag was given.
    pub fn resolve(&self, default: crate::git::Selector) -> crate::git::Selector {
        use crate::git::Selector as S;
        if self.staged {
            S::Staged
        } else if let Some(rev) = &self.commit {
            S::Commit(rev.clone())
        } else if let Some(base) = &self.base {
            S::Range {
                base: base.clone(),
                head: self.head.clone(),
            }
        } else if self.worktree {
            S::Worktree
        } else if self.all {
            S::All
        } else {
            default
        }
    }
}

/// Build levels, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Deserialize)]
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hosts a change can affect, through the static Nix import graph.
    ///
    /// Default change: --worktree. Each host comes with the import chain that
    /// explains it. `--format github` writes `hosts=<json array>` and
    /// `count=<n>` to $GITHUB_OUTPUT for a build matrix.
    Affected {
        #[command(flatten)]
        selector: Selector,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Also ask nix for the host list and warn where it differs from the
        /// statically discovered one.
        #[arg(long)]
        verify_hosts: bool,
    },

    /// Every import chain from a host's entry module to <PATH>.
    Explain {
        /// Repository-relative path of a file or directory.
        path: String,
        /// Only chains from this host.
        #[arg(long)]
        host: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },

    /// Print the import graph.
    Graph {
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        /// Only the closure of this host.
        #[arg(long)]
        host: Option<String>,
    },

    /// Plaintext secrets in a change, in history, or in files on disk.
    ///
    /// Default change: --worktree. Findings always show a redacted value.
    /// Allow a false positive with a `guard:allow` comment on the line (or the
    /// line before), or adopt an existing repository with --write-baseline.
    Scan {
        #[command(flatten)]
        selector: Selector,
        /// Every commit reachable from HEAD (each blob once).
        #[arg(long, conflicts_with_all = SELECTOR_FLAGS)]
        history: bool,
        /// With --history: only commits after <REV>.
        #[arg(long, value_name = "REV", requires = "history")]
        since: Option<String>,
        /// Files or directories on disk to scan instead of a change.
        #[arg(value_name = "PATH", conflicts_with_all = ["staged", "commit", "base", "worktree", "all", "history"])]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Write the current findings' fingerprints to the baseline file.
        #[arg(long)]
        write_baseline: bool,
    },

    /// age/secrix checks: real ciphertext, encrypted to every host using it.
    Secrets {
        #[command(flatten)]
        selector: Selector,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Decrypt with this identity to prove the secrets it should read are
        /// readable (nothing is written or printed).
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },

    /// Evaluate or build the affected hosts with nix, in parallel.
    Build {
        #[command(flatten)]
        selector: Selector,
        /// Build exactly these hosts (comma separated).
        #[arg(long, value_delimiter = ',', conflicts_with_all = SELECTOR_FLAGS)]
        hosts: Vec<String>,
        #[arg(long, value_enum)]
        level: Option<Level>,
        /// Hosts evaluated/built at once.
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Continue with other hosts after a failure.
        #[arg(long)]
        keep_going: bool,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Extra arguments passed to nix (after `--`).
        #[arg(last = true)]
        nix_args: Vec<String>,
    },

    /// affected + scan + secrets (+ build at --level): what the hook and CI run.
    Check {
        #[command(flatten)]
        selector: Selector,
        #[arg(long, value_enum)]
        level: Option<Level>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },

    /// `check --staged` at the configured pre-commit level (default: no nix).
    PreCommit,

    /// `check` over a range, reading the GitHub Actions environment.
    Ci {
        #[arg(long, value_name = "REV")]
        base: Option<String>,
        #[arg(long, value_name = "REV")]
        head: Option<String>,
        /// Also write SARIF 2.1.0 to <FILE>.
        #[arg(long, value_name = "FILE")]
        sarif: Option<PathBuf>,
    },

    /// Find the first commit at which a host fails, testing only commits that
    /// can have changed it.
    Bisect {
        #[arg(long)]
        host: String,
        #[arg(long, value_name = "REV")]
        good: String,
        #[arg(long, value_name = "REV")]
        bad: Option<String>,
        #[arg(long, value_enum)]
        level: Option<Level>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },

    /// Install, remove or inspect guard's git hooks.
    Hook {
        #[arg(value_enum)]
        action: HookAction,
    },

    /// Write a commented guard.toml listing the hosts guard found.
    Init,
}

/// `guard hook` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookAction {
    Install,
    Uninstall,
    Status,
}

/// `guard graph` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn selectors_are_mutually_exclusive() {
        let err = Cli::try_parse_from(["guard", "affected", "--staged", "--all"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn head_requires_base() {
        assert!(Cli::try_parse_from(["guard", "affected", "--head", "x"]).is_err());
        let cli = Cli::try_parse_from(["guard", "affected", "--base", "a", "--head", "b"]).unwrap();
        let Command::Affected { selector, .. } = cli.command else {
            panic!()
        };
        assert!(matches!(
            selector.resolve(crate::git::Selector::Worktree),
            crate::git::Selector::Range { base, head: Some(h) } if base == "a" && h == "b"
        ));
    }
}

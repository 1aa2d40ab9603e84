//! Command-line definitions (clap derive). The doc comments here are the
//! `--help` text; `docs/cli.md` is the contract they
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

/// Build levels live in the model (configuration and the build stage use
/// them too); the CLI only parses them.
pub use crate::report::Level;

use crate::build::settings::{EvalSettings, Settings as BuildSettings};

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
        /// Also ask nix for each host's module graph and report repository
        /// files nix imports that the static answer misses (soundness
        /// misses); a host whose missed file changed is listed.
        #[arg(long)]
        self_check: bool,
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

    /// What makes each host churn on every commit, or guard's answer for it
    /// imprecise, with file:line and the fix.
    ///
    /// Revision stamps (`self.rev`), paths inside the whole source's store
    /// path (`"${self}/secrets/x"`: use `"${./secrets/x}"`, copied on its
    /// own), whole-tree copies (`src = self`), cross-host reads
    /// (`self.nixosConfigurations`), computed paths, `<nixpkgs>` lookups and
    /// files outside the repository. Advice only: exit 0.
    Doctor {
        #[arg(long, value_enum, default_value_t = DoctorFormat::Human)]
        format: DoctorFormat,
    },

    /// Print the import graph.
    Graph {
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        /// Only this host: its closure and the flake wiring that reaches it
        /// (what `affected` and `explain` use); no other host's files.
        #[arg(long)]
        host: Option<String>,
        /// At most N nodes: directories merge into one node each (the
        /// fullest first) until the graph fits, and the graph says so
        /// (dot and mermaid; 0 = every file). Default: 40 for mermaid (a
        /// step summary), 0 for dot; json always lists every file.
        #[arg(long, value_name = "N")]
        collapse: Option<usize>,
    },

    /// Plaintext secrets in a change, in history, or in files on disk.
    ///
    /// Default change: --worktree (whole changed files). --staged reads the
    /// index blobs (what would be committed); --commit and --base report only
    /// the lines each commit added; --history scans every commit reachable
    /// from HEAD, each blob once; paths scan files on disk (.gitignore is
    /// honoured). Binary files are skipped with a notice; age ciphertext is
    /// never flagged. Findings always show a redacted value.
    ///
    /// Allow a false positive with a `guard:allow` comment on the line (or the
    /// line before; `guard:allow <rule-id>` to name the rule), with
    /// [secrets.allow] paths/regexes/fingerprints in guard.toml, or adopt an
    /// existing repository with --write-baseline.
    ///
    /// Exit 1 when an error-severity finding remains (hashed-password is a
    /// warning).
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
        /// Write the current findings' fingerprints (never the values) to the
        /// baseline file ([secrets] baseline, default .guard-baseline.json)
        /// and exit 0; later scans drop those findings. This is the only
        /// file guard scan ever writes. Without a selector it records
        /// everything in HEAD (--all).
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
        #[command(flatten)]
        settings: BuildSettings,
        /// Extra arguments passed to nix (after `--`).
        #[arg(last = true)]
        nix_args: Vec<String>,
    },

    /// Deploy waves for a change (canaries first, critical hosts last), with
    /// the commands; printed, never run.
    ///
    /// guard prints the plan; it never deploys.
    /// Default change: --worktree; in CI, `guard plan --base origin/main`.
    /// Waves: the canaries first (`[rollout] canary = ["monitor", "swarm-*"]`
    /// in guard.toml), then every other changed host, the `[build] critical`
    /// hosts last (a critical host is never a canary). Commands are those of
    /// the deploy tool the flake is set up for: nixinate
    /// (`nix run .#apps.nixinate.<host>`), colmena (`colmena apply --on
    /// <hosts>`, one per wave), deploy-rs (`deploy .#<host>`), otherwise
    /// `nixos-rebuild switch --flake .#<host> --target-host root@<host>`
    /// (`[rollout] tool` and `target_host` override). Hosts whose system
    /// differs only by a revision stamp (restamped) are listed apart, in no
    /// wave. `--format json` is for a pipeline that runs the waves:
    /// `{"tool", "waves": [{"name", "hosts", "commands"}], "restamped",
    /// "removed", "warnings"}`.
    #[command(after_help = "Example:\n  \
guard plan --base origin/main\n  \
guard plan --base origin/main --format json | jq -r '.waves[].commands[]'")]
    Plan {
        #[command(flatten)]
        selector: Selector,
        #[arg(long, value_enum, default_value_t = DoctorFormat::Human)]
        format: DoctorFormat,
    },

    /// affected + scan + secrets (+ build at --level): what the hook and CI run.
    Check {
        #[command(flatten)]
        selector: Selector,
        #[arg(long, value_enum)]
        level: Option<Level>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        settings: BuildSettings,
        /// At a nix level, do not compare the static answer with the module
        /// graph nix collects for each host (the soundness self-check).
        #[arg(long)]
        no_self_check: bool,
    },

    /// `check --staged` at the configured pre-commit level (default: no nix).
    ///
    /// What the git hook runs (`guard hook install`). Judges exactly the
    /// index git is committing (GIT_INDEX_FILE), never the working tree, and
    /// prints a compact verdict on stderr. When the pre-commit framework
    /// passes a range (PRE_COMMIT_FROM_REF / PRE_COMMIT_TO_REF, e.g. the
    /// pre-push stage or `pre-commit run --from-ref A --to-ref B`), judges
    /// that range instead.
    PreCommit {
        /// Judge every finding in the staged files, not only those on the
        /// lines this commit adds or changes (the default, like gitleaks'
        /// pre-commit mode: what is already committed is `scan --history`'s
        /// job).
        #[arg(long)]
        full_files: bool,
    },

    /// `check` over a range, reading the GitHub Actions environment.
    ///
    /// Base and head come from --base/--head, else from the event payload
    /// ($GITHUB_EVENT_NAME, $GITHUB_EVENT_PATH): `push` compares `before`
    /// with `after` (a new branch or a force push falls back to the merge
    /// base with the default branch), `pull_request` compares the PR's base
    /// with its head. Writes `hosts`, `count` and `findings` to
    /// $GITHUB_OUTPUT, a markdown summary to $GITHUB_STEP_SUMMARY and
    /// annotations on stdout when run under GitHub Actions. Needs the history
    /// of both commits (actions/checkout with `fetch-depth: 0`).
    Ci {
        #[arg(long, value_name = "REV")]
        base: Option<String>,
        #[arg(long, value_name = "REV")]
        head: Option<String>,
        /// Also write SARIF 2.1.0 to <FILE>.
        #[arg(long, value_name = "FILE")]
        sarif: Option<PathBuf>,
        /// nix level (default: `[build] level` from guard.toml, `eval`).
        #[arg(long, value_enum)]
        level: Option<Level>,
        /// Output on stdout (default: github under GitHub Actions, else human).
        #[arg(long, value_enum)]
        format: Option<Format>,
        #[command(flatten)]
        settings: BuildSettings,
        /// At a nix level, do not compare the static answer with the module
        /// graph nix collects for each host (the soundness self-check).
        #[arg(long)]
        no_self_check: bool,
    },

    /// Find the first commit at which a host fails, testing only commits that
    /// can have changed it.
    ///
    /// Only first-parent commits in (GOOD, BAD] whose change reaches the
    /// host's import closure (in the graph of that commit) are candidates;
    /// each is built from git objects (never your work tree or bisect
    /// state), and a candidate whose drvPath equals one already tested
    /// reuses that result. Exit 0 when a first bad commit is found, 1 when
    /// the host is fine at BAD, 2 on error.
    #[command(after_help = "Examples:\n  \
guard bisect --host cortex-alpha --good v1.0                 build level from guard.toml\n  \
guard bisect --host swarm-0 --good HEAD~50 --level build --log bisect.log\n  \
guard bisect --host swarm-0 --good HEAD~50 --replay bisect.log --log bisect.log\n  \
guard bisect --host monitor --good main~20 --run './tests/smoke.sh'")]
    Bisect {
        /// The host that broke.
        #[arg(long)]
        host: String,
        /// A commit where the host is good.
        #[arg(long, value_name = "REV")]
        good: String,
        /// A commit where the host is bad (default HEAD).
        #[arg(long, value_name = "REV")]
        bad: Option<String>,
        /// What "good" means: evaluates (eval), builds (build), its VM builds
        /// (vm); default [build].level (at least eval), or none with --run.
        #[arg(long, value_enum)]
        level: Option<Level>,
        /// Also (or, with --level none, only) run this shell command in a
        /// checkout of each candidate made under the git dir: exit 0 good,
        /// 125 skip, 1-127 bad, above 127 aborts (git bisect run's meaning).
        #[arg(long, value_name = "CMD")]
        run: Option<String>,
        /// Exit codes of --run that mean "skip" besides 125.
        #[arg(long, value_name = "CODE")]
        skip_exit_code: Vec<i32>,
        /// Append every tested commit to this file (JSON lines).
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// Reuse the results recorded in a --log file (resume a bisect).
        #[arg(long, value_name = "FILE")]
        replay: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        settings: EvalSettings,
    },

    /// Install, remove or inspect guard's git hooks (pre-commit and
    /// pre-merge-commit).
    ///
    /// Installs into the directory git runs hooks from (`core.hooksPath` if
    /// set, else the common git dir's `hooks/`). An existing hook that guard
    /// did not write is kept as `<hook>.legacy` and run first (its failure
    /// blocks the commit); `uninstall` puts it back. Re-installing is a
    /// no-op. Writes nothing outside the hooks directory.
    Hook {
        #[arg(value_enum)]
        action: HookAction,
        /// Install even when core.hooksPath comes from your global or system
        /// git config (the hook then runs in every repository using it).
        #[arg(long)]
        force: bool,
    },

    /// Write a commented guard.toml listing the hosts guard found.
    ///
    /// Discovers the hosts and the age-encrypted secret files of the
    /// repository and writes guard.toml at its root. Refuses to overwrite an
    /// existing file unless --force.
    Init {
        /// Overwrite an existing guard.toml.
        #[arg(long)]
        force: bool,
        /// Print the guard.toml it would write, with how each host was
        /// found, and write nothing.
        #[arg(long)]
        dry_run: bool,
    },

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// e.g. `guard completions bash > ~/.local/share/bash-completion/completions/guard`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff) generated from these definitions.
    ///
    /// e.g. `guard man > ~/.local/share/man/man1/guard.1`.
    Man,
}

impl Command {
    /// The evaluation and build settings of the commands that run nix
    /// (defaults for the others).
    pub fn build_settings(&self) -> BuildSettings {
        match self {
            Command::Build { settings, .. }
            | Command::Check { settings, .. }
            | Command::Ci { settings, .. } => settings.clone(),
            Command::Bisect { settings, .. } => BuildSettings {
                eval: settings.clone(),
                comment_file: None,
            },
            _ => BuildSettings::default(),
        }
    }
}

/// `guard hook` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookAction {
    Install,
    Uninstall,
    Status,
}

/// `guard doctor` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    /// Readable text on stdout.
    Human,
    /// One JSON document on stdout, for CI.
    Json,
}

/// `guard graph` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

/// Writes the completion script for `shell`, generated from the same clap
/// definitions as `--help`, so the two cannot drift apart.
pub fn write_completions(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    // clap_complete panics on a write error; render into memory so that a
    // closed pipe (`guard completions bash | head`) is an ordinary error.
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "guard", &mut buf);
    out.write_all(&buf)?;
    out.flush()
}

/// Writes the `guard(1)` man page (roff), generated from the same clap
/// definitions as `--help`.
pub fn write_man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(cmd).render(out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn completions_and_man_page_cover_every_command() {
        let mut bash = Vec::new();
        write_completions(clap_complete::Shell::Bash, &mut bash).unwrap();
        let bash = String::from_utf8(bash).unwrap();
        let mut man = Vec::new();
        write_man(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(
            man.starts_with(".ie") || man.contains(".TH guard"),
            "{man:.200}"
        );
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            assert!(bash.contains(name), "bash completion lacks {name}");
            // roff writes `-` as `\-`.
            let roff = name.replace('-', "\\-");
            assert!(man.contains(&roff), "man page lacks {name}");
        }
        assert!(bash.contains("--staged") && bash.contains("--sarif"));
    }

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

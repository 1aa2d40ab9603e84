//! Glue between the CLI and the analyses: opens the repository, loads the
//! configuration, runs what a command asks and hands the `Report` to a
//! writer. Commands stay thin; analyses never print.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::cli::{Cli, ColorChoice, Command, Format};
use crate::config::Config;
use crate::git::Repo;
use crate::report::Style;

mod bisect;
mod build;
mod check;
mod ci;
mod commands;
mod hook;
mod init;
mod pipeline;
mod scan;
mod secrets;

/// Exit codes of docs/cli.md.
pub mod exit {
    /// Clean, success.
    pub const OK: i32 = 0;
    /// Findings or failures.
    pub const FINDINGS: i32 = 1;
    /// Usage, configuration or internal error.
    pub const ERROR: i32 = 2;
    /// Interrupted (Ctrl-C), as shells report SIGINT.
    pub const INTERRUPTED: i32 = 130;
}

/// What every command starts from.
pub struct Context {
    pub repo: Repo,
    /// The work tree root (or the git dir of a bare repository).
    pub root: PathBuf,
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub style: Style,
    /// Repository-relative directory of flake.nix ("" = the root).
    pub flake_dir: String,
    /// The directory guard runs in (`-C`, else the current directory),
    /// absolute: paths the user types are relative to it, as in git.
    pub cwd: PathBuf,
    /// Evaluation/build settings of the command line (global flags).
    pub build: crate::build::settings::Settings,
}

impl Context {
    /// Opens the repository containing `dir` and loads its configuration.
    pub fn open(dir: &Path, config: Option<&Path>, style: Style) -> Result<Context> {
        let repo = Repo::discover(dir)?;
        let root = repo
            .workdir()
            .unwrap_or_else(|| repo.git_dir())
            .to_path_buf();
        // Absolute: the root ends up in flake URLs (`git+file://<root>`),
        // which have no notion of a relative path (`-C examples/fleet`).
        let root = std::path::absolute(&root).unwrap_or(root);
        let (config, config_path) = load_config(&root, config)?;
        let flake_dir = match &config.flake.dir {
            Some(d) => crate::nix::parse::normalize(d).unwrap_or_default(),
            None => find_flake_dir(&root, dir),
        };
        Ok(Context {
            repo,
            root,
            config,
            config_path,
            style,
            flake_dir,
            cwd: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
            build: Default::default(),
        })
    }

    /// A path the user typed, as git resolves it: relative to the directory
    /// guard runs in, or absolute; `None` when it lies outside the work tree.
    pub fn repo_path(&self, typed: &str) -> Option<String> {
        let p = Path::new(typed);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        };
        let rel = abs.strip_prefix(&self.root).ok()?;
        crate::nix::parse::normalize(&rel.to_string_lossy())
    }
}

impl Context {
    /// The parse cache of this repository (kept under the git dir).
    pub fn parse_cache(&self) -> crate::nix::graph::ParseCache {
        crate::nix::graph::ParseCache::persistent(self.repo.git_dir(), &self.flake_dir)
    }
}

/// Loads the configuration (`Config::load`) and checks the syntax of the
/// recipient keys it lists with the age layer's parser.
pub(crate) fn load_config(
    root: &Path,
    explicit: Option<&Path>,
) -> Result<(Config, Option<PathBuf>), crate::config::ConfigError> {
    let (config, path) = Config::load(root, explicit)?;
    if let Some(p) = &path {
        config.check_keys(p, |k| {
            crate::secrets::age::keys::parse_public_key(k).map(drop)
        })?;
    }
    Ok((config, path))
}

/// The nearest directory from `start` up to `root` that holds a flake.nix,
/// repository-relative; the root when there is none.
fn find_flake_dir(root: &Path, start: &Path) -> String {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let mut cur = start.canonicalize().unwrap_or_else(|_| start.to_path_buf());
    while cur.starts_with(&root) {
        if cur.join("flake.nix").is_file() {
            let rel = cur.strip_prefix(&root).unwrap_or(Path::new(""));
            return rel.to_string_lossy().replace('\\', "/");
        }
        if !cur.pop() {
            break;
        }
    }
    String::new()
}

/// Runs one command and returns its exit code. Errors are returned to
/// `main`, which prints them on one line and exits 2.
pub fn run(cli: Cli) -> Result<i32> {
    let result = dispatch(cli);
    if std::env::var_os(pipeline::DEBUG_ENV).is_some() {
        eprintln!("guard: debug: {}", pipeline::debug_counts());
    }
    result
}

fn dispatch(cli: Cli) -> Result<i32> {
    let dir = match &cli.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let style = Style {
        color: use_color(cli.color),
        verbose: cli.verbose,
    };
    let name = command_name(&cli.command);
    // Commands that need no repository, or no configuration: a broken
    // guard.toml must not stop `guard hook uninstall` or `guard init --force`.
    match &cli.command {
        Command::Completions { shell } => {
            crate::cli::write_completions(*shell, &mut std::io::stdout().lock())?;
            return Ok(exit::OK);
        }
        Command::Man => {
            crate::cli::write_man(&mut std::io::stdout().lock())?;
            return Ok(exit::OK);
        }
        Command::Hook { action, force } => return hook::hook(&dir, *action, *force),
        Command::Init { force, dry_run } => return init::init(&dir, *force, *dry_run, style),
        _ => {}
    }
    check_format(&cli.command, name)?;
    // `guard scan PATH…` scans plain directories too, as every peer does.
    if let Some(args) = scan_args(&cli)
        && !args.paths.is_empty()
        && matches!(
            Repo::discover(&dir),
            Err(crate::git::GitError::NotARepo { .. })
        )
    {
        return scan::scan_without_repo(&dir, cli.config.as_deref(), style, args);
    }
    let mut ctx = Context::open(&dir, cli.config.as_deref(), style)?;
    ctx.build = cli.command.build_settings();
    if let Some(args) = scan_args(&cli) {
        return scan::scan(&ctx, args);
    }
    run_in_repository(ctx, &cli, name)
}

/// The commands that run in an opened repository with its configuration.
fn run_in_repository(ctx: Context, cli: &Cli, name: &str) -> Result<i32> {
    match &cli.command {
        Command::Affected {
            selector,
            format,
            verify_hosts,
            self_check,
        } => commands::affected(
            &ctx,
            selector,
            *format,
            *verify_hosts,
            *self_check,
            cli.quiet,
        ),
        Command::Explain { path, host, format } => {
            commands::explain(&ctx, path, host.as_deref(), *format)
        }
        Command::Graph {
            format,
            host,
            collapse,
        } => commands::graph(&ctx, *format, host.as_deref(), *collapse),
        Command::Doctor { format } => commands::doctor(&ctx, *format),
        Command::Plan { selector, format } => commands::plan(&ctx, selector, *format),
        Command::Build {
            selector,
            hosts,
            level,
            jobs,
            keep_going,
            format,
            nix_args,
            ..
        } => build::build(
            &ctx,
            selector,
            build::BuildArgs {
                hosts,
                level: *level,
                jobs: *jobs,
                keep_going: *keep_going,
                format: *format,
                nix_args,
                quiet: cli.quiet,
            },
        ),
        Command::Check {
            selector,
            level,
            format,
            no_self_check,
            ..
        } => check::check(&ctx, selector, *level, *format, cli.quiet, !*no_self_check),
        Command::Secrets {
            selector,
            format,
            identity,
        } => secrets::secrets(&ctx, selector, *format, identity.as_deref()),
        Command::PreCommit { full_files } => ci::pre_commit(&ctx, cli.quiet, *full_files),
        Command::Ci {
            base,
            head,
            sarif,
            level,
            format,
            no_self_check,
            ..
        } => ci::ci(
            &ctx,
            ci::CiArgs {
                base: base.as_deref(),
                head: head.as_deref(),
                sarif: sarif.as_deref(),
                level: *level,
                format: *format,
                quiet: cli.quiet,
                self_check: !*no_self_check,
            },
        ),
        Command::Bisect {
            host,
            good,
            bad,
            level,
            run,
            skip_exit_code,
            log,
            replay,
            format,
            ..
        } => bisect::bisect(
            &ctx,
            bisect::BisectArgs {
                host,
                good,
                bad: bad.as_deref(),
                level: *level,
                format: *format,
                run: run.as_deref(),
                skip_exit_codes: skip_exit_code,
                log: log.as_deref(),
                replay: replay.as_deref(),
            },
        ),
        // Handled before the match.
        Command::Scan { .. }
        | Command::Completions { .. }
        | Command::Man
        | Command::Hook { .. }
        | Command::Init { .. } => {
            anyhow::bail!("internal error: `guard {name}` was dispatched twice")
        }
    }
}

/// The formats each command can write: the one place `--format` is
/// checked. A format a command cannot write is a usage error (exit 2),
/// before any work. (`github` for a command without annotations or
/// outputs writes what it always wrote: explain its human text, bisect
/// its JSON.)
fn check_format(command: &Command, name: &str) -> Result<()> {
    use Format::{Github, Human, Json, Sarif};
    const FINDINGS: &[Format] = &[Human, Json, Github, Sarif];
    const NO_SARIF: &[Format] = &[Human, Json, Github];
    let (format, writes) = match command {
        Command::Scan { format, .. } | Command::Secrets { format, .. } => (*format, FINDINGS),
        Command::Ci {
            format: Some(f), ..
        } => (*f, FINDINGS),
        Command::Affected { format, .. }
        | Command::Explain { format, .. }
        | Command::Build { format, .. }
        | Command::Check { format, .. }
        | Command::Bisect { format, .. } => (*format, NO_SARIF),
        _ => return Ok(()),
    };
    if writes.contains(&format) {
        return Ok(());
    }
    let names: Vec<&str> = writes.iter().map(|f| format_name(*f)).collect();
    let why = if format == Sarif {
        " (sarif is for findings: scan, secrets, ci)"
    } else {
        ""
    };
    anyhow::bail!(
        "--format {}: `guard {name}` writes {}{why}",
        format_name(format),
        names.join(", ")
    )
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Human => "human",
        Format::Json => "json",
        Format::Github => "github",
        Format::Sarif => "sarif",
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Affected { .. } => "affected",
        Command::Explain { .. } => "explain",
        Command::Graph { .. } => "graph",
        Command::Doctor { .. } => "doctor",
        Command::Plan { .. } => "plan",
        Command::Scan { .. } => "scan",
        Command::Secrets { .. } => "secrets",
        Command::Build { .. } => "build",
        Command::Check { .. } => "check",
        Command::PreCommit { .. } => "pre-commit",
        Command::Ci { .. } => "ci",
        Command::Bisect { .. } => "bisect",
        Command::Hook { .. } => "hook",
        Command::Init { .. } => "init",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
    }
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

/// The arguments of `guard scan`, in or outside a repository.
fn scan_args(cli: &Cli) -> Option<scan::ScanArgs<'_>> {
    let Command::Scan {
        selector,
        history,
        since,
        paths,
        format,
        write_baseline,
    } = &cli.command
    else {
        return None;
    };
    Some(scan::ScanArgs {
        selector,
        history: *history,
        since: since.as_deref(),
        paths,
        format: *format,
        write_baseline: *write_baseline,
        dir: cli.dir.as_deref(),
    })
}

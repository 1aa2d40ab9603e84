//! `guard build`, and the build stage of the pipeline (also run by `guard
//! check`): the affected hosts of a change, evaluated or built with nix at
//! the snapshot being judged (never "whatever is on disk", except for
//! --worktree, which says so).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use super::pipeline::Pipeline;
use super::{Context, exit};
use crate::build::eval::Done;
use crate::build::{self, Plan, progress};
use crate::cli::{Format, Level, Selector};
use crate::config::is_valid_host_name;
use crate::git::{self, ChangeSet, TempRef};
use crate::nix::cli::{self as nixcli, Nix};
use crate::report::{self, Affected, BuildHost, BuildReport, BuildStatus, Report, Warning};

/// Options of `guard build` beyond the selector.
pub struct BuildArgs<'a> {
    pub hosts: &'a [String],
    pub level: Option<Level>,
    pub jobs: Option<usize>,
    pub keep_going: bool,
    pub format: Format,
    pub nix_args: &'a [String],
    pub quiet: bool,
}

/// `guard build`.
pub fn build(ctx: &Context, selector: &Selector, args: BuildArgs<'_>) -> Result<i32> {
    let level = args.level.unwrap_or(ctx.config.build.level);
    let opts = RunOpts {
        level,
        jobs: args.jobs,
        keep_going: args.keep_going || ctx.config.build.keep_going,
        nix_args: args.nix_args,
        quiet: args.quiet,
        graphs: &[],
    };
    let Ran {
        report: build_report,
        interrupted,
        ..
    } = if args.hosts.is_empty() {
        let sel = selector.resolve(git::Selector::Worktree);
        let mut p = Pipeline::new(ctx, sel)?;
        let affected = p.take_affected()?;
        let names: Vec<String> = affected.hosts.iter().map(|h| h.name.clone()).collect();
        let mut r = run(ctx, &p.sel, &p.changes, &names, &opts)?;
        r.report
            .hosts
            .extend(restamped_skips(&affected, opts.level));
        // The static analysis' warnings explain why hosts were selected.
        let mut warnings = affected.warnings;
        warnings.append(&mut r.report.warnings);
        r.report.warnings = warnings;
        r
    } else {
        for h in args.hosts {
            if !is_valid_host_name(h) {
                bail!("--hosts: {h:?} is not a valid host name (letters, digits, '-', '_', '.')");
            }
        }
        // Named hosts: the work tree as it is, nothing to compare against.
        let mut names = args.hosts.to_vec();
        names.sort();
        names.dedup();
        run_without_base(ctx, &names, &opts)?
    };
    let report = Report {
        build: Some(build_report),
        ..Default::default()
    };
    write(ctx, &report, args.format)?;
    write_comment(ctx, &report)?;
    Ok(if interrupted {
        exit::INTERRUPTED
    } else {
        report.exit_code()
    })
}

/// The restamped hosts, listed as skipped with the stamp that restamps
/// them: their drvPath changes, but no byte their build reads does (see
/// README, "changed and restamped"); `[affected] stamps = "build"` makes
/// them changed hosts instead.
fn restamped_skips(affected: &Affected, level: Level) -> Vec<BuildHost> {
    affected
        .restamped
        .iter()
        .map(|h| {
            let stamp = h.stamp().unwrap_or("a stamp");
            BuildHost {
                name: h.name.clone(),
                status: BuildStatus::Skipped,
                level: build::level_name(level).to_string(),
                drv_path: None,
                out_path: None,
                duration_ms: 0,
                log: None,
                reason: Some(format!(
                    "restamped only ({stamp}): its build reads the same bytes; \
                     [affected] stamps = \"build\" builds it"
                )),
                log_excerpt: Vec::new(),
                built_on: Vec::new(),
                closure_diff: None,
            }
        })
        .collect()
}

/// The build part of `check` for one change.
pub struct BuildSection {
    /// `None` at level `none` (no nix was run).
    pub report: Option<BuildReport>,
    /// Ctrl-C stopped it: the caller exits 130.
    pub interrupted: bool,
    /// The module graphs the workers answered (see [`build_section`]).
    pub graphs: BTreeMap<String, Done>,
}

impl BuildSection {
    /// Takes in a second round for more hosts (those the self-check found
    /// changed): their rows replace any row of the same host (a restamped
    /// host's "not built").
    pub fn absorb(&mut self, more: BuildSection) {
        if let (Some(r), Some(m)) = (self.report.as_mut(), more.report) {
            r.hosts
                .retain(|h| !m.hosts.iter().any(|a| a.name == h.name));
            r.hosts.extend(m.hosts);
            r.warnings.extend(m.warnings);
            r.interrupted |= m.interrupted;
            match (r.eval.as_mut(), m.eval) {
                (Some(a), Some(b)) => a.absorb(&b),
                (None, b) => r.eval = b,
                (Some(_), None) => {}
            }
        }
        self.interrupted |= more.interrupted;
    }
}

/// What one run of the build pipeline gave.
struct Ran {
    report: BuildReport,
    interrupted: bool,
    graphs: BTreeMap<String, Done>,
}

/// Evaluates/builds the affected hosts of `changes` at `level` (hosts of
/// `[build].critical` / `[build.levels]` may go higher). The seam for every
/// command that runs `check` (`check`, `ci`, `pre-commit`). The same
/// workers answer the module graphs of `graphs` (the self-check).
pub fn build_section(
    ctx: &Context,
    sel: &git::Selector,
    changes: &ChangeSet,
    affected: &Affected,
    level: Level,
    quiet: bool,
    graphs: &[String],
) -> Result<BuildSection> {
    if level == Level::None {
        return Ok(BuildSection {
            report: None,
            interrupted: false,
            graphs: BTreeMap::new(),
        });
    }
    let names: Vec<String> = affected.hosts.iter().map(|h| h.name.clone()).collect();
    let opts = RunOpts {
        level,
        jobs: None,
        keep_going: ctx.config.build.keep_going,
        nix_args: &[],
        quiet,
        graphs,
    };
    let Ran {
        mut report,
        interrupted,
        graphs,
    } = run(ctx, sel, changes, &names, &opts)?;
    report.hosts.extend(restamped_skips(affected, level));
    Ok(BuildSection {
        report: Some(report),
        interrupted,
        graphs,
    })
}

pub(super) fn write(ctx: &Context, report: &Report, format: Format) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => report::write_json(report, &mut out)?,
        Format::Github => {
            report::github::write_build_annotations(report, &mut out)?;
            // Annotations of findings, then the readable report (with the
            // nix log excerpts, which quote repository text) fenced by
            // stop-commands.
            report::write_github(report, ctx.style, &mut out)?;
        }
        _ => report::write_human(report, ctx.style, &mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// The PR-comment body, when `--comment-file` asks for it.
pub(super) fn write_comment(ctx: &Context, report: &Report) -> Result<()> {
    if let Some(p) = &ctx.build.comment_file {
        let p = &ctx.cwd.join(p);
        build::comment::write_file(p, report)
            .with_context(|| format!("cannot write --comment-file {}", p.display()))?;
    }
    Ok(())
}

struct RunOpts<'a> {
    level: Level,
    jobs: Option<usize>,
    keep_going: bool,
    nix_args: &'a [String],
    quiet: bool,
    /// Hosts whose module graph the workers answer too.
    graphs: &'a [String],
}

/// The snapshot nix evaluates.
struct Target {
    flake: String,
    base: Option<git::ObjectId>,
    source: String,
    /// Keeps the temporary commit of the index alive while nix reads it.
    _temp: Option<TempRef>,
    /// The hosts were named on the command line (not found by analysis).
    named_hosts: bool,
    warnings: Vec<Warning>,
}

fn short(id: git::ObjectId) -> String {
    id.to_hex_with_len(7).to_string()
}

fn target(ctx: &Context, sel: &git::Selector, changes: &ChangeSet) -> Result<Target> {
    let base = changes.old.commit();
    let t = match sel {
        git::Selector::Staged => {
            let temp = ctx
                .repo
                .temp_commit_of_index()
                .context("cannot make a temporary commit of the staged content")?;
            let commit = temp.commit().to_string();
            Target {
                flake: nixcli::flake_url_at_ref(&ctx.root, &ctx.flake_dir, temp.name(), &commit),
                base,
                source: format!(
                    "staged content (temporary commit {} at {})",
                    short(temp.commit()),
                    temp.name()
                ),
                _temp: Some(temp),
                named_hosts: false,
                warnings: Vec::new(),
            }
        }
        git::Selector::Worktree => worktree_target(ctx, base),
        _ => {
            let Some(new) = changes.new.commit() else {
                bail!("internal error: {} is not a commit", changes.new.label());
            };
            Target {
                flake: nixcli::flake_url(&ctx.root, &ctx.flake_dir, Some(&new.to_string())),
                base,
                source: format!("commit {}", short(new)),
                _temp: None,
                named_hosts: false,
                warnings: Vec::new(),
            }
        }
    };
    Ok(t)
}

fn worktree_target(ctx: &Context, base: Option<git::ObjectId>) -> Target {
    Target {
        flake: nixcli::flake_url(&ctx.root, &ctx.flake_dir, None),
        base,
        source: "work tree".into(),
        _temp: None,
        named_hosts: false,
        warnings: vec![Warning {
            path: None,
            message: "building the work tree as it is on disk: uncommitted changes are included, untracked files are invisible to nix (use --staged or --commit to build a snapshot)".into(),
        }],
    }
}

fn run(
    ctx: &Context,
    sel: &git::Selector,
    changes: &ChangeSet,
    names: &[String],
    opts: &RunOpts<'_>,
) -> Result<Ran> {
    if (names.is_empty() && opts.graphs.is_empty()) || opts.level == Level::None {
        // Nothing to judge (or level none): no nix, no temporary commit.
        let source = match sel {
            git::Selector::Staged => "staged content".to_string(),
            git::Selector::Worktree => "work tree".to_string(),
            _ => changes.new.label(),
        };
        let warnings = if opts.level == Level::None && !names.is_empty() {
            vec![Warning {
                path: None,
                message: format!(
                    "level none: {} affected {} not evaluated",
                    names.len(),
                    if names.len() == 1 {
                        "host was"
                    } else {
                        "hosts were"
                    }
                ),
            }]
        } else {
            Vec::new()
        };
        return Ok(Ran {
            report: BuildReport {
                source,
                warnings,
                ..Default::default()
            },
            interrupted: false,
            graphs: BTreeMap::new(),
        });
    }
    build::signals::install().context("cannot install the Ctrl-C handler")?;
    // nix first: a missing nix should not cost a temporary commit.
    let nix = Nix::detect()?;
    let target = target(ctx, sel, changes)?;
    execute(ctx, nix, target, Some(changes), names, opts)
}

fn run_without_base(ctx: &Context, names: &[String], opts: &RunOpts<'_>) -> Result<Ran> {
    build::signals::install().context("cannot install the Ctrl-C handler")?;
    let nix = Nix::detect()?;
    let target = Target {
        named_hosts: true,
        ..worktree_target(ctx, None)
    };
    execute(ctx, nix, target, None, names, opts)
}

fn execute(
    ctx: &Context,
    nix: Nix,
    target: Target,
    changes: Option<&ChangeSet>,
    names: &[String],
    opts: &RunOpts<'_>,
) -> Result<Ran> {
    let cfg = &ctx.config.build;
    let hosts = build::host_levels(names, opts.level, cfg)?;
    let mut args = cfg.nix_args.clone();
    if let Some(b) = &cfg.builders
        && !opts.nix_args.iter().any(|a| a == "--builders")
    {
        args.push("--builders".into());
        args.push(b.clone());
    }
    args.extend(opts.nix_args.iter().cloned());
    let nix = nix.with_args(args);
    let base_flake = target
        .base
        .map(|b| nixcli::flake_url(&ctx.root, &ctx.flake_dir, Some(&b.to_string())));
    let cache = build::cache::plan(
        ctx.repo.git_dir(),
        changes.map(|c| &c.new),
        changes.filter(|_| target.base.is_some()).map(|c| &c.old),
        &ctx.flake_dir,
        &ctx.config,
        &ctx.parse_cache(),
        &build::runner::host_attrs(&hosts),
        &nix,
        &ctx.build.eval,
    );
    let plan = Plan {
        flake: target.flake.clone(),
        base_flake,
        hosts,
        jobs: opts.jobs.unwrap_or(cfg.jobs).max(1),
        keep_going: opts.keep_going,
        timeout: (cfg.timeout_secs > 0).then(|| Duration::from_secs(cfg.timeout_secs)),
        log_dir: ctx.repo.git_dir().join("guard").join("logs"),
        flake_check: cfg.flake_check,
        missing_fails: target.named_hosts,
        inputs: flake_inputs(ctx),
        eval: build::eval::Limits {
            workers: ctx.build.eval.workers(),
            max_memory: ctx.build.eval.max_memory(),
            timeout: (cfg.timeout_secs > 0).then(|| Duration::from_secs(cfg.timeout_secs)),
        },
        cache,
        graphs: opts.graphs.to_vec(),
    };
    let progress = progress::for_stderr(opts.quiet);
    let outcome = build::run(&nix, &plan, progress.as_ref());
    progress.clear();
    let mut warnings = target.warnings;
    warnings.extend(outcome.warnings);
    let report = BuildReport {
        hosts: outcome.hosts,
        source: target.source,
        flake: target.flake,
        base: target.base.map(|b| b.to_string()),
        flake_check: outcome.flake_check,
        interrupted: outcome.interrupted,
        warnings,
        eval: outcome.eval,
    };
    // `target` (and with it the temporary ref) is dropped here, before the
    // report is written.
    Ok(Ran {
        report,
        interrupted: outcome.interrupted,
        graphs: outcome.graphs,
    })
}

/// The flake's inputs as the work tree has them (only to name an input
/// whose fetch failed; a snapshot whose inputs differ at worst names none).
fn flake_inputs(ctx: &Context) -> crate::nix::inputs::FlakeInputs {
    let dir = ctx.root.join(&ctx.flake_dir);
    let lock = std::fs::read(dir.join("flake.lock")).ok();
    let flake = std::fs::read_to_string(dir.join("flake.nix")).ok();
    crate::nix::inputs::FlakeInputs::read(lock.as_deref(), flake.as_deref())
}

//! `guard scan`: picks the mode, runs the scanner over it, writes the
//! report. The only file it ever writes is the baseline, and only with
//! `--write-baseline`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use super::{Context, exit};
use crate::cli::{Format, Selector};
use crate::git;
use crate::report::{self, Report};
use crate::secrets::scan::{Baseline, Scanner, run};
use crate::secrets::scheme::Scheme;

/// The flags of `guard scan`.
pub struct ScanArgs<'a> {
    pub selector: &'a Selector,
    pub history: bool,
    pub since: Option<&'a str>,
    pub paths: &'a [PathBuf],
    pub format: Format,
    pub write_baseline: bool,
    /// `-C`, against which relative paths are resolved.
    pub dir: Option<&'a Path>,
}

/// `guard scan`.
pub fn scan(ctx: &Context, args: ScanArgs<'_>) -> Result<i32> {
    let scanner = build_scanner(&ctx.config, ctx.config_path.as_deref())?;
    let baseline_path = baseline_path(&ctx.config, &ctx.root)?;
    let scanner = if args.write_baseline {
        // The baseline being written must contain every current finding,
        // including those the old baseline accepted.
        scanner
    } else {
        let b = Baseline::load(&baseline_path)?;
        scanner.with_baseline(&b)
    };

    let outcome = run_mode(ctx, &scanner, &args)?;
    // The fix a finding suggests names the scheme the repository uses.
    let scheme = match ctx.repo.snapshot(crate::git::SnapshotSpec::Index) {
        Ok(s) => Scheme::detect(&s, &ctx.flake_dir),
        Err(_) => Scheme::Unknown,
    };
    finish(&scanner, outcome, &args, &baseline_path, ctx.style, scheme)
}

/// `guard scan PATH…` where no git repository holds the current directory:
/// a plain directory is scanned like any other path (ignore files honoured,
/// hidden files scanned). `guard.toml` and the baseline are looked for in
/// the current directory (or `-C`).
pub fn scan_without_repo(
    dir: &Path,
    config: Option<&Path>,
    style: crate::report::Style,
    args: ScanArgs<'_>,
) -> Result<i32> {
    if args.paths.is_empty() || args.history || args.since.is_some() {
        bail!(
            "not a git repository: {} (outside a repository `guard scan` needs the files or \
             directories to scan: `guard scan PATH…`)",
            dir.display()
        );
    }
    let (config, config_path) = super::load_config(dir, config)?;
    let scanner = build_scanner(&config, config_path.as_deref())?;
    let baseline_path = baseline_path(&config, dir)?;
    let scanner = if args.write_baseline {
        scanner
    } else {
        scanner.with_baseline(&Baseline::load(&baseline_path)?)
    };
    let outcome = run::scan_paths(&scanner, args.paths, args.dir)?;
    finish(
        &scanner,
        outcome,
        &args,
        &baseline_path,
        style,
        Scheme::Unknown,
    )
}

fn build_scanner(config: &crate::config::Config, path: Option<&Path>) -> Result<Scanner> {
    Scanner::new(config).with_context(|| match path {
        Some(p) => format!("invalid [secrets] settings in {}", p.display()),
        None => "invalid [secrets] settings".to_string(),
    })
}

/// Writes the baseline or the report of a scan; returns the exit code.
fn finish(
    scanner: &Scanner,
    outcome: run::Outcome,
    args: &ScanArgs<'_>,
    baseline_path: &Path,
    style: crate::report::Style,
    scheme: Scheme,
) -> Result<i32> {
    if args.write_baseline {
        let findings: Vec<_> = outcome.located.iter().map(|l| l.finding.clone()).collect();
        let text = Baseline::render(&findings);
        std::fs::write(baseline_path, text)
            .with_context(|| format!("cannot write the baseline {}", baseline_path.display()))?;
        let unique: std::collections::HashSet<&str> =
            findings.iter().map(|f| f.fingerprint.as_str()).collect();
        let mut err = std::io::stderr().lock();
        writeln!(
            err,
            "guard: wrote {} fingerprint{} ({} finding{}) to {}; commit it to accept them",
            unique.len(),
            if unique.len() == 1 { "" } else { "s" },
            findings.len(),
            if findings.len() == 1 { "" } else { "s" },
            baseline_path.display()
        )?;
        return Ok(exit::OK);
    }

    let mut findings = outcome.into_findings();
    for f in &mut findings.findings {
        f.message = scheme.adapt(&f.message);
    }
    let report = Report {
        scan: Some(findings),
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Human => report::write_human(&report, style, &mut out)?,
        Format::Json => report::write_json(&report, &mut out)?,
        Format::Github => {
            report::write_github(&report, style, &mut out)?;
            let n = report.scan.as_ref().map_or(0, |s| s.findings.len());
            // Outside Actions the annotations already say everything.
            let env = crate::github_env::Env::from_process();
            report::github::write_outputs(
                env.output.as_deref(),
                &[("findings", n.to_string())],
                report::github::Unset::Skip,
            )?;
        }
        Format::Sarif => {
            let rules = super::pipeline::rules(scanner.rule_infos(), Some(scheme));
            report::write_sarif(&report, &rules, &mut out)?;
        }
    }
    out.flush()?;
    Ok(report.exit_code())
}

fn run_mode(ctx: &Context, scanner: &Scanner, args: &ScanArgs<'_>) -> Result<run::Outcome> {
    let repo = &ctx.repo;
    if !args.paths.is_empty() {
        return Ok(run::scan_paths(scanner, args.paths, args.dir)?);
    }
    if args.history {
        let head = repo
            .head_commit()?
            .ok_or(git::GitError::EmptyRepo)
            .context("--history needs at least one commit")?;
        let since = match args.since {
            Some(rev) => Some(repo.resolve(rev)?),
            None => None,
        };
        return Ok(run::scan_history(scanner, repo, head, since)?);
    }
    // --write-baseline adopts a repository: by default everything in HEAD.
    let default = if args.write_baseline {
        git::Selector::All
    } else {
        git::Selector::Worktree
    };
    let sel = args.selector.resolve(default);
    Ok(match sel {
        git::Selector::Commit(rev) => {
            let id = repo.resolve(&rev)?;
            run::scan_commits(scanner, repo, &[id])?
        }
        git::Selector::Range { base, head } => {
            let head_rev = head.as_deref().unwrap_or("HEAD");
            let head_id = repo.resolve(head_rev)?;
            let base_id = repo.resolve(&base)?;
            let mb = repo.merge_base(base_id, head_id)?;
            let commits = repo.first_parent_history(head_id, Some(mb))?;
            run::scan_commits(scanner, repo, &commits)?
        }
        sel => {
            let changes = repo.change_set(&sel)?;
            run::scan_change_set(scanner, &changes)?
        }
    })
}

/// The configured baseline path, which must stay inside the repository
/// (or the scanned directory): it is the one file `guard scan` may write.
fn baseline_path(config: &crate::config::Config, root: &Path) -> Result<PathBuf> {
    let rel = &config.secrets.baseline;
    let p = Path::new(rel);
    if rel.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        bail!("secrets.baseline {rel:?} must be a path inside the repository");
    }
    Ok(root.join(p))
}

//! What `guard check` runs on one change, shared by `check`, `ci` and
//! `pre-commit`: affected hosts, the plaintext-secret scan, the age/secrix
//! checks and, at a nix level, the build section.

use anyhow::{Context as _, Result};

use super::Context;
use crate::affected::{Analysis, Query, affected_hosts};
use crate::cli::Level;
use crate::git;
use crate::nix::hosts;
use crate::report::{Report, RuleInfo};
use crate::secrets::age;
use crate::secrets::scan::{Baseline, Scanner, run};

/// What `check` found, with what the SARIF writer needs beyond the report.
pub(crate) struct Verdict {
    pub report: Report,
    pub code: i32,
    pub rules: Vec<RuleInfo>,
    /// (fingerprint, line, column) -> (end line, end column) of scan findings.
    pub regions: run::Regions,
}

/// Runs what `guard check` runs on one change: affected hosts, the
/// plaintext-secret scan, the age checks and, at a nix level, the build
/// section (`app::build::build_section`, the same code as `guard check`).
/// `guard check`, `guard ci` and `guard pre-commit` all call this, so the
/// hook, CI and an interactive check cannot drift apart.
pub(crate) fn judge(
    ctx: &Context,
    sel: &git::Selector,
    level: Level,
    quiet: bool,
    verify_hosts: bool,
) -> Result<Verdict> {
    let changes = ctx.repo.change_set(sel)?;
    let new_revision = sel.makes_revision(&changes);
    let cache = ctx.parse_cache();
    let analysis = Analysis::of(&changes.new, &ctx.flake_dir, &ctx.config, &cache);
    let old_hosts = hosts::discover(&changes.old, &ctx.flake_dir, &ctx.config.hosts, &cache);
    let mut affected = affected_hosts(
        &analysis,
        &old_hosts,
        &Query::of(&changes, new_revision).all_warnings(ctx.style.verbose),
        &ctx.config,
    )?;
    if verify_hosts {
        super::commands::verify_hosts(ctx, &changes.new, &mut affected);
    }

    let scanner = Scanner::new(&ctx.config).with_context(|| match &ctx.config_path {
        Some(p) => format!("invalid [secrets] settings in {}", p.display()),
        None => "invalid [secrets] settings".to_string(),
    })?;
    let baseline = Baseline::load(&ctx.root.join(&ctx.config.secrets.baseline))?;
    let scanner = scanner.with_baseline(&baseline);
    // A range is judged commit by commit (a secret added and removed again
    // inside the range is still in history); the index and `--all` as a whole.
    let outcome = match sel {
        git::Selector::Range { .. } => {
            let head = changes
                .new
                .commit()
                .context("internal error: the head of a range is not a commit")?;
            let base = changes.old.commit();
            let commits = ctx.repo.first_parent_history(head, base)?;
            run::scan_commits(&scanner, &ctx.repo, &commits)?
        }
        _ => run::scan_change_set(&scanner, &changes)?,
    };
    let (scan, regions) = outcome.into_findings();

    let all = *sel == git::Selector::All;
    let age = age::check_change(
        &changes,
        &ctx.flake_dir,
        &ctx.config,
        all,
        new_revision,
        &cache,
    )
    .with_context(|| format!("checking the secrets of {}", changes.new.label()))?;
    let mut secrets = age.findings;
    // The scan already reports an identity committed in a file it read:
    // one finding per (path, line, rule) across sections.
    let reported: std::collections::HashSet<(&str, usize, &str)> = scan
        .findings
        .iter()
        .map(|f| (f.path.as_str(), f.line, f.rule.as_str()))
        .collect();
    let leaks: Vec<_> = age::identity_leaks(&changes, &ctx.config, &baseline)?
        .into_iter()
        .filter(|f| !reported.contains(&(f.path.as_str(), f.line, f.rule.as_str())))
        .collect();
    secrets.findings.extend(leaks);

    // The fix a finding suggests names the scheme the repository uses.
    let scheme = crate::secrets::scheme::Scheme::detect(&changes.new, &ctx.flake_dir);
    let mut scan = scan;
    for f in scan.findings.iter_mut().chain(secrets.findings.iter_mut()) {
        f.message = scheme.adapt(&f.message);
    }
    let mut rules = scanner.rule_infos();
    for r in &mut rules {
        r.help = scheme.adapt(&r.help);
    }
    let section = super::build::build_section(ctx, sel, &changes, &affected, level, quiet)?;
    let report = Report {
        affected: Some(affected),
        scan: Some(scan),
        secrets: Some(secrets),
        build: section.report,
    };
    let code = if section.interrupted {
        super::exit::INTERRUPTED
    } else {
        report.exit_code()
    };
    Ok(Verdict {
        report,
        code,
        rules,
        regions,
    })
}

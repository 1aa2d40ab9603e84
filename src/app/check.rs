//! `guard check`, and what it runs on one change, shared by `check`, `ci`
//! and `pre-commit`: every stage of the [`Pipeline`] (affected hosts, the
//! plaintext-secret scan, the age/secrix checks, the fleet policy when
//! guard.toml has a `[policy]` and, at a nix level, the build section).

use std::collections::BTreeSet;

use anyhow::Result;

use super::pipeline::{self, Pipeline};
use super::{Context, exit};
use crate::cli::{Format, Level, Selector};
use crate::git;
use crate::report::{Affected, Report, Rules};

/// What `check` found: the report, its exit code, and the rules it can
/// use (for writers that describe rules).
pub(crate) struct Verdict {
    pub report: Report,
    pub code: i32,
    pub rules: Rules,
    /// The change judged (`None` when there was nothing to judge).
    pub changes: Option<git::ChangeSet>,
}

/// `guard check`: affected + scan + secrets + build at the level, one
/// report, one exit code.
pub fn check(
    ctx: &Context,
    selector: &Selector,
    level: Option<Level>,
    format: Format,
    quiet: bool,
    self_check: bool,
) -> Result<i32> {
    let level = level.unwrap_or(ctx.config.build.level);
    let sel = selector.resolve(git::Selector::Worktree);
    let verdict = judge(ctx, &sel, level, quiet, false, self_check)?;
    super::build::write(ctx, &verdict.report, format)?;
    super::build::write_comment(ctx, &verdict.report)?;
    Ok(verdict.code)
}

/// Runs every stage of `guard check` on one change: affected hosts, the
/// plaintext-secret scan, the age checks and, at a nix level, the build
/// section (`app::build::build_section`, the same code as `guard build`).
/// `guard check`, `guard ci` and `guard pre-commit` all call this, so the
/// hook, CI and an interactive check cannot drift apart. `self_check`: at
/// a nix level, compare the static answer with nix's module graphs first
/// (a host whose missed file changed is then built too).
pub(crate) fn judge(
    ctx: &Context,
    sel: &git::Selector,
    level: Level,
    quiet: bool,
    verify_hosts: bool,
    self_check: bool,
) -> Result<Verdict> {
    let mut p = Pipeline::new(ctx, sel.clone())?.with_age();
    p.affected()?;
    let scan = p.scan()?;
    // The age stage reads the static affected set (as `guard secrets`
    // does), not the one nix's host list may correct below.
    let age = p.age()?;
    let mut secrets = age.findings;
    // The scan already reports an identity committed in a file it read:
    // one finding per (path, line, rule) across sections.
    secrets
        .findings
        .extend(p.identity_leaks(Some(&scan.findings))?);
    let mut affected = p.take_affected()?;
    if verify_hosts {
        pipeline::verify_hosts(ctx, &p.changes.new, &mut affected);
    }
    // The self-check's graphs are answered by the build's own workers.
    let plan = (self_check && level != Level::None).then(|| p.self_check_plan(&affected));
    let ask: &[String] = match &plan {
        Some(Ok(plan)) => &plan.ask,
        _ => &[],
    };

    // The fix a finding suggests names the scheme the repository uses.
    let scheme = p.scheme();
    let mut findings = scan.findings;
    for f in findings
        .findings
        .iter_mut()
        .chain(secrets.findings.iter_mut())
    {
        f.message = scheme.adapt(&f.message);
    }
    let rules = pipeline::rules(scan.rules, Some(scheme));
    let policy = p.policy()?;
    let mut section =
        super::build::build_section(ctx, sel, &p.changes, &affected, level, quiet, ask)?;
    match plan {
        Some(Ok(plan)) => {
            let before: BTreeSet<String> = affected.hosts.iter().map(|h| h.name.clone()).collect();
            let answers = std::mem::take(&mut section.graphs);
            p.self_check_finish(plan, Some(answers), &mut affected, quiet);
            // Hosts the self-check found changed: built now, at the level.
            let added = Affected {
                hosts: affected
                    .hosts
                    .iter()
                    .filter(|h| !before.contains(&h.name))
                    .cloned()
                    .collect(),
                ..Default::default()
            };
            if !added.hosts.is_empty() && !section.interrupted {
                let more =
                    super::build::build_section(ctx, sel, &p.changes, &added, level, quiet, &[])?;
                section.absorb(more);
            }
        }
        Some(Err(skipped)) => affected.self_check = Some(skipped),
        None => {}
    }
    let report = Report {
        affected: Some(affected),
        scan: Some(findings),
        secrets: Some(secrets),
        build: section.report,
        policy,
    };
    let code = if section.interrupted {
        exit::INTERRUPTED
    } else {
        report.exit_code()
    };
    Ok(Verdict {
        report,
        code,
        rules,
        changes: Some(p.changes),
    })
}

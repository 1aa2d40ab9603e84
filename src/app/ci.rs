//! The two entry points that run `check` where the user already is:
//! `guard pre-commit` (the git hook: the staged content, a compact verdict
//! on stderr) and `guard ci` (GitHub Actions: a range from the event, step
//! outputs, a job summary, annotations and SARIF).
//!
//! Both call [`judge`](super::check::judge), the one place that runs the
//! analyses of `check`; this module only picks the change and writes the
//! answer.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use super::Context;
use super::check::{Verdict, judge};
use crate::cli::{Format, Level};
use crate::git::{self, GitError};
use crate::github_env::{self as github, EventRange};
use crate::report::github::SummaryContext;
use crate::report::{self, Report};
use crate::secrets::scan::ALLOW_HINT;

/// The flags of `guard ci`.
pub struct CiArgs<'a> {
    pub base: Option<&'a str>,
    pub head: Option<&'a str>,
    pub sarif: Option<&'a Path>,
    pub level: Option<Level>,
    pub format: Option<Format>,
    pub quiet: bool,
    /// Compare with nix's module graphs at a nix level.
    pub self_check: bool,
}

/// `guard pre-commit`.
pub fn pre_commit(ctx: &Context, quiet: bool, full_files: bool) -> Result<i32> {
    let start = Instant::now();
    let (sel, what) = match framework_range() {
        Some((from, to)) => {
            let what = format!("{}..{}", short(&from), short(&to));
            (
                git::Selector::Range {
                    base: from,
                    head: Some(to),
                },
                what,
            )
        }
        None => {
            check_index_file()?;
            (git::Selector::Staged, "staged".to_string())
        }
    };
    let mut level = ctx.config.build.pre_commit_level;
    let mut notes = Vec::new();
    // git-hooks.nix runs hooks inside a Nix build: no daemon, no network.
    if level != Level::None && std::env::var_os("NIX_BUILD_TOP").is_some() {
        notes.push("nix level skipped inside a Nix build".to_string());
        level = Level::None;
    }
    let mut verdict = judge(ctx, &sel, level, quiet, false, false)?;
    if !full_files && sel == git::Selector::Staged {
        let older = keep_added_lines(&mut verdict);
        if older > 0 {
            notes.push(format!(
                "{older} older finding{} in the touched files not judged (already committed: \
                 `guard scan --history` reports {}; `guard pre-commit --full-files` judges {})",
                if older == 1 { "" } else { "s" },
                if older == 1 { "it" } else { "them" },
                if older == 1 { "it" } else { "them" },
            ));
        }
    }
    // What the scan says about one file (it does not parse as Nix, its blob
    // is missing, it was too large for the Nix rule) belongs in the verdict.
    for w in verdict.report.scan.iter().flat_map(|s| &s.warnings) {
        if let Some(p) = &w.path {
            notes.push(format!("{p}: {}", w.message));
        }
    }
    let mut err = std::io::stderr().lock();
    report::hook::write_verdict(
        &verdict.report,
        &report::hook::HookContext {
            what: &what,
            notes: &notes,
            elapsed_ms: start.elapsed().as_millis(),
            quiet,
            allow_hint: ALLOW_HINT,
        },
        ctx.style,
        &mut err,
    )?;
    err.flush()?;
    Ok(verdict.code)
}

/// Keeps only the scan findings on lines the staged change adds or changes
/// (a new file is all added); returns how many older ones were set aside.
fn keep_added_lines(verdict: &mut Verdict) -> usize {
    let Some(scan) = verdict.report.scan.as_mut() else {
        return 0;
    };
    if scan.findings.is_empty() {
        return 0;
    }
    let Some(changes) = verdict.changes.as_ref() else {
        return 0;
    };
    let mut added: HashMap<String, Option<Vec<bool>>> = HashMap::new();
    let before = scan.findings.len();
    let mut kept = Vec::with_capacity(before);
    for f in std::mem::take(&mut scan.findings) {
        let lines = added
            .entry(f.path.clone())
            .or_insert_with(|| added_lines(changes, &f.path));
        // Unknown (no old blob, unreadable, not text): judge the whole file.
        if lines
            .as_ref()
            .is_none_or(|l| l.get(f.line).copied().unwrap_or(false))
        {
            kept.push(f);
        }
    }
    let older = before - kept.len();
    scan.findings = kept;
    if verdict.code != super::exit::INTERRUPTED {
        verdict.code = verdict.report.exit_code();
    }
    older
}

/// Which lines of `path` (1-based index) the change adds or changes, as
/// the history scan judges them; `None` when the file is new or unreadable.
fn added_lines(changes: &git::ChangeSet, path: &str) -> Option<Vec<bool>> {
    use git::ByteSlice as _;
    let change = changes
        .changes
        .iter()
        .find(|c| c.path.as_slice() == path.as_bytes())?;
    let old_path = match &change.kind {
        git::ChangeKind::Renamed { from } => from.to_str_lossy().into_owned(),
        _ => path.to_string(),
    };
    change.old.as_ref()?;
    let old = changes.old.read(git::BStr::new(&old_path)).ok()??;
    let new = changes.new.read(git::BStr::new(path)).ok()??;
    Some(crate::secrets::scan::run::added_lines(&old, &new))
}

/// git exports `GIT_INDEX_FILE` to the hook, often relative (`.git/index`)
/// to the directory the hook runs in. guard never changes directory (not
/// even for `-C`), so the path stays valid; but a missing file would read as
/// an empty index and judge "every file deleted", so refuse it instead.
fn check_index_file() -> Result<()> {
    let Some(idx) = std::env::var_os("GIT_INDEX_FILE").filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let p = Path::new(&idx);
    if !p.exists() {
        let cwd = std::env::current_dir().unwrap_or_default();
        bail!(
            "GIT_INDEX_FILE={} does not exist (relative paths are taken from the current \
             directory, {}); run guard from the directory git ran the hook in",
            p.display(),
            cwd.display()
        );
    }
    Ok(())
}

/// The range the pre-commit framework passes for its pre-push stage and for
/// `pre-commit run --from-ref A --to-ref B` (docs/integration-conventions.md 2.1).
fn framework_range() -> Option<(String, String)> {
    let get = |k: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty() && !v.bytes().all(|b| b == b'0'))
    };
    Some((get("PRE_COMMIT_FROM_REF")?, get("PRE_COMMIT_TO_REF")?))
}

fn short(rev: &str) -> &str {
    if rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        &rev[..10]
    } else {
        rev
    }
}

/// Which change `guard ci` judges, and what to say about it.
struct CiPlan {
    /// `None`: nothing to judge (a deleted branch).
    sel: Option<git::Selector>,
    summary: SummaryContext,
}

/// Base and head from the flags, else from the event (docs/integration-conventions.md 3.5).
fn plan(ctx: &Context, args: &CiArgs<'_>, env: &github::Env) -> Result<CiPlan> {
    let mut summary = SummaryContext::default();
    if let Some(base) = args.base {
        summary.source = format!("--base {base}");
        return Ok(CiPlan {
            sel: Some(git::Selector::Range {
                base: base.to_string(),
                head: args.head.map(String::from),
            }),
            summary,
        });
    }
    let (Some(event), Some(payload)) = (env.event_name.as_deref(), env.payload()?) else {
        bail!(
            "guard ci needs --base <rev> outside GitHub Actions \
             ($GITHUB_EVENT_NAME and $GITHUB_EVENT_PATH are not set)"
        );
    };
    let range = github::event_range(event, &payload, env.sha.as_deref())?;
    let head_override = |h: String| args.head.map(String::from).unwrap_or(h);
    summary.source = match event {
        "push" => format!(
            "push to {}",
            payload
                .get("ref")
                .and_then(|r| r.as_str())
                .unwrap_or("a branch")
        ),
        "pull_request" | "pull_request_target" => match payload
            .pointer("/pull_request/number")
            .and_then(|n| n.as_u64())
        {
            Some(n) => format!("pull request #{n}"),
            None => "pull request".into(),
        },
        other => format!("{other} event"),
    };
    let sel = match range {
        EventRange::Deleted => {
            summary
                .notes
                .push("the branch was deleted: nothing to judge".into());
            None
        }
        EventRange::Compare { base, head, forced } => {
            let head = head_override(head);
            match ctx.repo.resolve(&base) {
                Ok(_) => Some(git::Selector::Range {
                    base,
                    head: Some(head),
                }),
                Err(GitError::UnknownRev { .. }) if forced => {
                    summary.notes.push(format!(
                        "force push: the previous tip {} is not in this clone; compared with the default branch instead",
                        short(&base)
                    ));
                    Some(new_branch_selector(
                        ctx,
                        head,
                        payload
                            .pointer("/repository/default_branch")
                            .and_then(|v| v.as_str()),
                        &mut summary,
                    ))
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot find the base {base} of the {event} event")
                    });
                }
            }
        }
        EventRange::NewBranch {
            head,
            default_branch,
            pushed_ref,
        } => {
            let head = head_override(head);
            let default = default_branch
                .filter(|d| pushed_ref.as_deref() != Some(format!("refs/heads/{d}").as_str()));
            summary
                .notes
                .push("a new branch: compared with the default branch".into());
            Some(new_branch_selector(
                ctx,
                head,
                default.as_deref(),
                &mut summary,
            ))
        }
        EventRange::NoBase { head } => {
            if let Some(h) = head.as_deref().or(args.head)
                && ctx.repo.resolve(h).ok() != ctx.repo.head_commit()?
            {
                bail!(
                    "the {event} event has no base revision and {h} is not the checked-out HEAD; \
                     pass --base <rev> (and --head)"
                );
            }
            summary.notes.push(format!(
                "the {event} event has no base revision: judging everything (every host); pass --base to narrow it"
            ));
            Some(git::Selector::All)
        }
    };
    Ok(CiPlan { sel, summary })
}

/// A pushed branch without a usable previous tip: its merge base with the
/// default branch when that is known here, else everything (and say so:
/// never silently diff against the empty tree).
fn new_branch_selector(
    ctx: &Context,
    head: String,
    default_branch: Option<&str>,
    summary: &mut SummaryContext,
) -> git::Selector {
    if let Some(d) = default_branch {
        for candidate in [
            format!("refs/remotes/origin/{d}"),
            format!("refs/heads/{d}"),
        ] {
            if ctx.repo.resolve(&candidate).is_ok() {
                return git::Selector::Range {
                    base: candidate,
                    head: Some(head),
                };
            }
        }
    }
    summary.notes.push(
        "no default branch to compare with in this clone: judging everything (every host)".into(),
    );
    git::Selector::All
}

/// `guard ci`.
pub fn ci(ctx: &Context, args: CiArgs<'_>) -> Result<i32> {
    let env = github::Env::from_process();
    let format = args.format.unwrap_or(if env.actions {
        Format::Github
    } else {
        Format::Human
    });
    let CiPlan { sel, mut summary } = plan(ctx, &args, &env)?;
    let level = args.level.unwrap_or(ctx.config.build.level);
    let verdict = match &sel {
        Some(sel) => {
            // nix evaluates the hosts at a nix level anyway: its host
            // list is a free second opinion on the static one.
            let v = judge(
                ctx,
                sel,
                level,
                args.quiet,
                level != Level::None,
                args.self_check,
            )?;
            let (base, head) = range_ids(ctx, sel)?;
            summary.base = base;
            summary.head = head;
            v
        }
        None => Verdict {
            report: Report {
                affected: Some(Default::default()),
                ..Default::default()
            },
            code: super::exit::OK,
            rules: Default::default(),
            changes: None,
        },
    };
    let report = &verdict.report;

    let mut out = std::io::stdout().lock();
    match format {
        Format::Github => {
            report::github::write_build_annotations(report, &mut out)?;
            report::write_github(report, ctx.style, &mut out)?;
            report::github::write_notices(&summary.notes, &mut out)?;
        }
        Format::Json => report::write_json(report, &mut out)?,
        Format::Human => {
            for n in &summary.notes {
                writeln!(out, "note: {n}")?;
            }
            report::write_human(report, ctx.style, &mut out)?;
        }
        Format::Sarif => write_sarif(&verdict, &mut out)?,
    }
    out.flush()?;

    if let Some(path) = args.sarif {
        let mut f = std::fs::File::create(path)
            .with_context(|| format!("cannot write the SARIF file {}", path.display()))?;
        write_sarif(&verdict, &mut f)?;
    }
    let hosts: Vec<&str> = report
        .affected
        .iter()
        .flat_map(|a| &a.hosts)
        .map(|h| h.name.as_str())
        .collect();
    let restamped: Vec<&str> = report
        .affected
        .iter()
        .flat_map(|a| &a.restamped)
        .map(|h| h.name.as_str())
        .collect();
    let findings = report.findings().count();
    report::github::write_outputs(
        env.output.as_deref(),
        &[
            ("hosts", serde_json::to_string(&hosts)?),
            ("count", hosts.len().to_string()),
            ("restamped", serde_json::to_string(&restamped)?),
            ("findings", findings.to_string()),
            ("base", summary.base.clone().unwrap_or_default()),
            ("head", summary.head.clone().unwrap_or_default()),
        ],
        // Outside Actions the report already says everything.
        report::github::Unset::Skip,
    )?;
    if let Some(p) = &ctx.build.comment_file {
        crate::build::comment::write_file(&ctx.cwd.join(p), report)
            .with_context(|| format!("cannot write --comment-file {}", p.display()))?;
    }
    if let Some(path) = &env.step_summary {
        report::github::append(
            path,
            &report::github::summary_markdown(report, &summary),
            "$GITHUB_STEP_SUMMARY",
        )?;
    }
    if !args.quiet && format != Format::Human {
        let mut err = std::io::stderr().lock();
        let n_hosts = report.affected.as_ref().map_or(0, |a| a.hosts.len());
        writeln!(
            err,
            "guard ci: {n_hosts} host{} affected, exit {}",
            if n_hosts == 1 { "" } else { "s" },
            verdict.code
        )?;
    }
    Ok(verdict.code)
}

/// The commit ids a selector compared (for the summary and outputs).
fn range_ids(ctx: &Context, sel: &git::Selector) -> Result<(Option<String>, Option<String>)> {
    Ok(match sel {
        git::Selector::Range { base, head } => {
            let h = ctx.repo.resolve(head.as_deref().unwrap_or("HEAD"))?;
            let b = ctx.repo.resolve(base)?;
            let mb = ctx.repo.merge_base(b, h)?;
            (Some(mb.to_string()), Some(h.to_string()))
        }
        _ => (None, ctx.repo.head_commit()?.map(|h| h.to_string())),
    })
}

fn write_sarif(v: &Verdict, out: &mut dyn Write) -> std::io::Result<()> {
    report::write_sarif(&v.report, &v.rules, out)
}

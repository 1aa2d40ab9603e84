//! The pre-commit hook's verdict (`guard pre-commit`, on stderr): one line
//! when clean, each finding and failed host with its fix when blocked.

use std::io::Write;

use super::{BuildHost, BuildStatus, Finding, Report, Severity, Style};

/// What the hook says beside the report.
#[derive(Debug, Clone, Copy)]
pub struct HookContext<'a> {
    /// What was judged: `staged`, or the framework's range.
    pub what: &'a str,
    /// Remarks, one line each (`guard: note: …`).
    pub notes: &'a [String],
    pub elapsed_ms: u128,
    /// `-q`: nothing at all when clean.
    pub quiet: bool,
    /// The scan's "how to allow" sentence: cut from each message, since
    /// the verdict says it once at the end.
    pub allow_hint: &'a str,
}

/// The hook's verdict: one line when clean; when blocked, each finding with
/// its fix and each host that failed at the nix level, then how to accept a
/// false positive. Never suggests skipping the hook.
pub fn write_verdict(
    report: &Report,
    hook: &HookContext<'_>,
    style: Style,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let findings: Vec<&Finding> = report.findings().collect();
    let built: Vec<&BuildHost> = report
        .build
        .iter()
        .flat_map(|b| b.hosts.iter().chain(b.flake_check.iter()))
        .collect();
    let failed: Vec<&BuildHost> = built
        .iter()
        .copied()
        .filter(|h| h.status == BuildStatus::Failed)
        .collect();
    let summary = summary_line(report, hook.what, &built, failed.len());
    let clean = findings.is_empty() && failed.is_empty();
    if hook.quiet && clean {
        return Ok(());
    }
    if clean {
        writeln!(
            out,
            "guard: {} · {summary} · {} ms",
            paint(style, "32", "ok"),
            hook.elapsed_ms
        )?;
        return write_notes(hook.notes, out);
    }
    writeln!(out, "guard: {summary}")?;
    write_problems(&findings, &failed, hook.allow_hint, style, out)?;
    write_notes(hook.notes, out)?;
    write_closing(&findings, failed.len(), hook.elapsed_ms, style, out)
}

fn paint(style: Style, code: &str, s: &str) -> String {
    if style.color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `N staged paths, H of A hosts affected (names)[, level: K ok, F failed]`.
fn summary_line(report: &Report, what: &str, built: &[&BuildHost], failed: usize) -> String {
    let s = plural;
    let affected = report.affected.as_ref();
    let hosts: Vec<&str> = affected
        .map(|a| a.hosts.iter().map(|h| h.name.as_str()).collect())
        .unwrap_or_default();
    let all = affected.map_or(0, |a| a.all_hosts.len());
    let changed = affected.map_or(0, |a| a.changed_paths.len());
    let host_list = match hosts.len() {
        0 => String::new(),
        1..=5 => format!(" ({})", hosts.join(", ")),
        n => format!(" ({}, … (+{}))", hosts[..4].join(", "), n - 4),
    };
    let mut summary = format!(
        "{changed} {what} path{}, {} of {all} host{} affected{host_list}",
        s(changed),
        hosts.len(),
        s(all)
    );
    let restamped = affected.map_or(0, |a| a.restamped.len());
    if restamped > 0 {
        summary.push_str(&format!(" (+{restamped} restamped only)"));
    }
    if let Some(b) = &report.build {
        let level = b.hosts.first().map_or("nix", |h| h.level.as_str());
        let ok = built.iter().filter(|h| h.status == BuildStatus::Ok).count();
        summary.push_str(&format!(", {level}: {ok} ok, {failed} failed"));
    }
    summary
}

/// Each finding with its fix, each failed host with nix's first line.
fn write_problems(
    findings: &[&Finding],
    failed: &[&BuildHost],
    allow_hint: &str,
    style: Style,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    for f in findings {
        let sev = match f.severity {
            Severity::Error => paint(style, "31", "error"),
            Severity::Warning => paint(style, "33", "warning"),
            Severity::Info => "info".to_string(),
        };
        writeln!(
            out,
            "  {}:{}:{}  {sev}  {}{}",
            f.path,
            f.line,
            f.column,
            f.rule,
            match f.secret.as_str() {
                "" => String::new(),
                secret => format!("  {secret}"),
            }
        )?;
        let msg = f.message.trim_end();
        let msg = msg.strip_suffix(allow_hint).unwrap_or(msg).trim_end();
        writeln!(out, "      {msg}")?;
    }
    for h in failed {
        writeln!(
            out,
            "  {}  {}  {}",
            h.name,
            paint(style, "31", &format!("failed at {}", h.level)),
            h.reason
                .as_deref()
                .and_then(|r| r.lines().next())
                .unwrap_or_default()
        )?;
        if let Some(log) = &h.log {
            writeln!(out, "      full log: {log}")?;
        }
    }
    Ok(())
}

fn write_notes(notes: &[String], out: &mut dyn Write) -> std::io::Result<()> {
    for n in notes {
        writeln!(out, "guard: note: {n}")?;
    }
    Ok(())
}

/// The last line: what blocks the commit and how to go on, or "ok" with
/// the non-blocking findings counted.
fn write_closing(
    findings: &[&Finding],
    failed: usize,
    elapsed_ms: u128,
    style: Style,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let s = plural;
    let blocking = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    if blocking + failed == 0 {
        return writeln!(
            out,
            "guard: {} · {} non-blocking finding{} · {elapsed_ms} ms",
            paint(style, "32", "ok"),
            findings.len(),
            s(findings.len())
        );
    }
    let what = match (blocking, failed) {
        (0, f) => format!("{f} host{} failing at the nix level", s(f)),
        (b, 0) => format!("{b} finding{}", s(b)),
        (b, f) => format!("{b} finding{} and {f} failing host{}", s(b), s(f)),
    };
    writeln!(
        out,
        "guard: {} · fix the staged content (`git add` the fix) and commit again · \
         {elapsed_ms} ms",
        paint(style, "1;31", &format!("commit blocked by {what}")),
    )?;
    if blocking > 0 {
        writeln!(
            out,
            "  A false positive? Add a `guard:allow` comment on its line (or the line \
             before), stage it, commit again.\n  Already known and accepted? Record it in \
             the baseline: `guard scan --write-baseline`, then commit the baseline file."
        )?;
    }
    Ok(())
}

//! The job summary (`$GITHUB_STEP_SUMMARY`, docs/integration-conventions.md
//! 3.4): markdown of a report, inert to whatever text the repository holds,
//! bounded below GitHub's limit.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{BuildStatus, Finding, Report, Severity};

/// GitHub refuses a step summary above 1 MiB; stay well below it.
const SUMMARY_LIMIT: usize = 900 * 1024;
/// Rows per table before the rest is only counted.
const MAX_ROWS: usize = 300;
/// Edges of the mermaid graph; a bigger graph is unreadable and slow to render.
const MAX_EDGES: usize = 120;

/// What the summary says about where the comparison came from.
#[derive(Debug, Clone, Default)]
pub struct SummaryContext {
    /// e.g. "push to refs/heads/main", "pull request", "--base origin/main".
    pub source: String,
    /// The old side (a commit id), if any.
    pub base: Option<String>,
    /// The new side (a commit id).
    pub head: Option<String>,
    /// Fallbacks taken and other remarks, one line each.
    pub notes: Vec<String>,
}

/// Text from the repository (paths, nix messages) as inert markdown:
/// no HTML, no links, no emphasis, no table breaks, one line.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("\\|"),
            '\n' | '\r' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A mermaid node label: inside `["…"]`, only `"` and HTML need escaping.
fn mermaid_label(s: &str) -> String {
    s.replace('&', "#amp;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
        .replace(['\n', '\r'], " ")
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn findings_of(report: &Report) -> Vec<&Finding> {
    let mut all: Vec<&Finding> = report.findings().collect();
    all.sort_by_key(|f| std::cmp::Reverse(f.severity));
    all
}

/// The job summary: headline, what was compared, affected hosts with why,
/// a mermaid graph of changed file → hosts, findings, build results and
/// warnings. Never contains a secret (findings carry only `Redacted`
/// values); bounded below GitHub's 1 MiB limit.
pub fn summary_markdown(report: &Report, ctx: &SummaryContext) -> String {
    let mut s = String::new();
    let findings = findings_of(report);
    let affected = report.affected.as_ref();
    let n_hosts = affected.map_or(0, |a| a.hosts.len());
    let blocking = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let failed = report.build.as_ref().map_or(0, |b| {
        b.hosts
            .iter()
            .chain(b.flake_check.iter())
            .filter(|h| h.status == BuildStatus::Failed)
            .count()
    });
    let verdict = if blocking > 0 || failed > 0 {
        "❌"
    } else {
        "✅"
    };
    let _ = write!(
        s,
        "## {verdict} guard: {} of {} affected",
        plural(n_hosts, "host", "hosts"),
        affected.map_or(0, |a| a.all_hosts.len())
    );
    let _ = write!(s, ", {}", plural(findings.len(), "finding", "findings"));
    if report.build.is_some() {
        let _ = write!(s, ", {}", plural(failed, "failed build", "failed builds"));
    }
    s.push_str("\n\n");
    let range = match (&ctx.base, &ctx.head) {
        (Some(b), Some(h)) => format!("`{}` → `{}`", short(b), short(h)),
        (None, Some(h)) => format!("everything at `{}`", short(h)),
        _ => "the change".into(),
    };
    let _ = writeln!(s, "Compared {range} ({}).", md(&ctx.source));
    for n in &ctx.notes {
        let _ = writeln!(s, "\n> {}", md(n));
    }
    s.push('\n');

    if let Some(a) = affected {
        write_hosts_table(&mut s, a);
        write_mermaid(&mut s, a);
    }
    if !findings.is_empty() {
        write_findings_table(&mut s, &findings);
    }
    if let Some(b) = &report.build {
        write_builds(&mut s, b);
    }
    let warnings: Vec<&crate::report::Warning> = affected
        .map(|a| a.warnings.iter())
        .into_iter()
        .flatten()
        .chain(report.finding_sections().flat_map(|f| &f.warnings))
        .chain(report.build.iter().flat_map(|b| &b.warnings))
        .collect();
    if let Some(c) = affected.and_then(|a| a.self_check.as_ref())
        && (!c.misses.is_empty() || c.skipped.is_some())
    {
        let _ = writeln!(
            s,
            "### Self-check ({})\n",
            plural(c.misses.len(), "soundness miss", "soundness misses")
        );
        for m in c.misses.iter().take(MAX_ROWS) {
            let _ = writeln!(
                s,
                "- `{}` imports {} ({}): {}",
                md(&m.host),
                md(&m.path),
                md(&m.chain.join(" → ")),
                md(&m.message)
            );
        }
        if let Some(why) = &c.skipped {
            let _ = writeln!(s, "- {}", md(why));
        }
        s.push('\n');
    }
    if !warnings.is_empty() {
        let _ = writeln!(s, "### Warnings ({})\n", warnings.len());
        for w in warnings.iter().take(MAX_ROWS) {
            match &w.path {
                Some(p) => {
                    let _ = writeln!(s, "- {}: {}", md(p), md(&w.message));
                }
                None => {
                    let _ = writeln!(s, "- {}", md(&w.message));
                }
            }
        }
        if warnings.len() > MAX_ROWS {
            let _ = writeln!(s, "- … and {} more", warnings.len() - MAX_ROWS);
        }
        s.push('\n');
    }
    if s.len() > SUMMARY_LIMIT {
        let mut cut = SUMMARY_LIMIT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n\n… (summary truncated at 900 KiB; the full report is in the step log)\n");
    }
    s
}

fn write_hosts_table(s: &mut String, a: &crate::report::Affected) {
    let _ = writeln!(
        s,
        "### Affected hosts ({} of {})\n",
        a.hosts.len(),
        a.all_hosts.len()
    );
    if a.hosts.is_empty() {
        let _ = writeln!(
            s,
            "No host is affected by the {}.\n",
            plural(a.changed_paths.len(), "changed path", "changed paths")
        );
    } else {
        s.push_str("| host | why: changed path | import chain |\n|---|---|---|\n");
        for h in a.hosts.iter().take(MAX_ROWS) {
            let (why, chain) = match h.reasons.first() {
                Some(r) => {
                    let more = if h.reasons.len() > 1 {
                        format!(" (+{} more paths)", h.more_paths())
                    } else {
                        String::new()
                    };
                    (
                        format!("{}{more}", md(&r.path)),
                        r.chain
                            .iter()
                            .map(|c| md(c))
                            .collect::<Vec<_>>()
                            .join(" → "),
                    )
                }
                None => (String::new(), String::new()),
            };
            let _ = writeln!(s, "| {} | {why} | {chain} |", md(&h.name));
        }
        if a.hosts.len() > MAX_ROWS {
            let _ = writeln!(s, "| … | {} more hosts | |", a.hosts.len() - MAX_ROWS);
        }
        s.push('\n');
    }
    if !a.removed_hosts.is_empty() {
        let names: Vec<String> = a.removed_hosts.iter().map(|h| md(h)).collect();
        let _ = writeln!(s, "Removed hosts: {}\n", names.join(", "));
    }
    if !a.restamped.is_empty() {
        let names: Vec<String> = a
            .restamped
            .iter()
            .take(MAX_ROWS)
            .map(|h| md(&h.name))
            .collect();
        let stamp = a
            .restamped
            .first()
            .and_then(|h| h.stamp())
            .map(md)
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "Restamped only ({}, not built: the drvPath changes only through a stamp, e.g. {stamp}): {}\n",
            a.restamped.len(),
            names.join(", ")
        );
    }
    if !a.changed_paths.is_empty() {
        let _ = writeln!(
            s,
            "<details><summary>{}</summary>\n",
            plural(a.changed_paths.len(), "changed path", "changed paths")
        );
        for p in a.changed_paths.iter().take(MAX_ROWS) {
            let _ = writeln!(s, "- {}", md(p));
        }
        if a.changed_paths.len() > MAX_ROWS {
            let _ = writeln!(s, "- … and {} more", a.changed_paths.len() - MAX_ROWS);
        }
        s.push_str("\n</details>\n\n");
    }
}

/// `graph LR` of changed file → affected host, one edge per (reason path,
/// host), bounded.
fn write_mermaid(s: &mut String, a: &crate::report::Affected) {
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for h in &a.hosts {
        for r in &h.reasons {
            edges
                .entry(r.path.as_str())
                .or_default()
                .push(h.name.as_str());
        }
    }
    let n_edges: usize = edges.values().map(Vec::len).sum();
    if n_edges == 0 {
        return;
    }
    if n_edges > MAX_EDGES {
        let _ = writeln!(
            s,
            "_The graph of changed files → hosts has {n_edges} edges; it is left out above {MAX_EDGES}._\n"
        );
        return;
    }
    s.push_str("```mermaid\ngraph LR\n");
    let mut host_ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (path, hosts)) in edges.iter().enumerate() {
        let _ = writeln!(s, "  f{i}[\"{}\"]", mermaid_label(path));
        for h in hosts {
            let next = host_ids.len();
            let id = *host_ids.entry(h).or_insert(next);
            let _ = writeln!(s, "  f{i} --> h{id}");
        }
    }
    for (h, id) in &host_ids {
        let _ = writeln!(s, "  h{id}([\"{}\"])", mermaid_label(h));
    }
    s.push_str("```\n\n");
}

fn write_findings_table(s: &mut String, findings: &[&Finding]) {
    let _ = writeln!(s, "### Findings ({})\n", findings.len());
    s.push_str("| severity | location | rule | value | what to do |\n|---|---|---|---|---|\n");
    for f in findings.iter().take(MAX_ROWS) {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let commit = f
            .commit
            .as_deref()
            .map(|c| format!(" (commit `{}`)", short(c)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {sev} | {}:{}:{}{commit} | {} | {} | {} |",
            md(&f.path),
            f.line,
            f.column,
            md(&f.rule),
            md(f.secret.as_str()),
            md(&f.message)
        );
    }
    if findings.len() > MAX_ROWS {
        let _ = writeln!(s, "| | … {} more | | | |", findings.len() - MAX_ROWS);
    }
    s.push_str(
        "\nA false positive is accepted with a `guard:allow` comment on its line; \
         findings that are already known go into the baseline (`guard scan --write-baseline`).\n\n",
    );
}

fn write_builds(s: &mut String, b: &crate::report::BuildReport) {
    let rows: Vec<&crate::report::BuildHost> = b.hosts.iter().chain(b.flake_check.iter()).collect();
    let _ = writeln!(s, "### Builds ({})\n", md(&b.source));
    if rows.is_empty() {
        s.push_str("Nothing to evaluate or build.\n\n");
        return;
    }
    s.push_str("| host | level | status | time | note |\n|---|---|---|---|---|\n");
    for h in rows.iter().take(MAX_ROWS) {
        let status = match h.status {
            BuildStatus::Ok => "✅ ok",
            BuildStatus::Failed => "❌ failed",
            BuildStatus::Skipped => "skipped",
        };
        let note = h
            .reason
            .as_deref()
            .and_then(|r| r.lines().next())
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {status} | {:.1}s | {} |",
            md(&h.name),
            md(&h.level),
            h.duration_ms as f64 / 1000.0,
            md(note)
        );
    }
    if rows.len() > MAX_ROWS {
        let _ = writeln!(s, "| … {} more | | | | |", rows.len() - MAX_ROWS);
    }
    s.push('\n');
    for h in rows.iter().take(MAX_ROWS) {
        if let Some(d) = &h.closure_diff {
            let _ = writeln!(
                s,
                "<details><summary>{}: closure vs base</summary>\n\n{}\n</details>\n",
                md(&h.name),
                d.markdown()
            );
        }
    }
    for h in rows.iter().filter(|h| h.status == BuildStatus::Failed) {
        if h.log_excerpt.is_empty() {
            continue;
        }
        // nix's log is untrusted: a fence longer than any backtick run in it.
        let longest = h
            .log_excerpt
            .iter()
            .map(|l| max_backticks(l))
            .max()
            .unwrap_or(0);
        let fence = "`".repeat(longest.max(2) + 1);
        let _ = writeln!(
            s,
            "<details><summary>{} log (last lines)</summary>\n\n{fence}text",
            md(&h.name)
        );
        for l in h.log_excerpt.iter().rev().take(100).rev() {
            let _ = writeln!(s, "{}", l.replace(['\r'], ""));
        }
        let _ = writeln!(s, "{fence}\n\n</details>\n");
    }
}

fn max_backticks(line: &str) -> usize {
    let mut best = 0;
    let mut run = 0;
    for c in line.chars() {
        if c == '`' {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{
        Affected, AffectedHost, BuildHost, BuildReport, Findings, Reason, Redacted,
    };

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn markdown_of_repository_text_is_inert() {
        let s = md("a|b <script>[x](http://e) `c`\n::error::");
        assert!(!s.contains('<') && !s.contains('\n'));
        assert!(s.contains("a\\|b"));
        assert!(s.contains("\\[x\\](http"));
        assert_eq!(mermaid_label("a\"<b>"), "a#quot;#lt;b#gt;");
    }

    fn report() -> Report {
        Report {
            affected: Some(Affected {
                hosts: vec![AffectedHost {
                    name: "monitor".into(),
                    reasons: vec![Reason {
                        path: "services/prometheus.nix".into(),
                        chain: vec![
                            "machines/monitor/default.nix".into(),
                            "services/prometheus.nix".into(),
                        ],
                        uncertain: None,
                    }],
                    truncated: 0,
                }],
                all_hosts: vec!["monitor".into(), "web".into()],
                changed_paths: vec!["services/prometheus.nix".into()],
                ..Default::default()
            }),
            scan: Some(Findings {
                findings: vec![Finding {
                    rule: "wireguard-private-key".into(),
                    severity: Severity::Error,
                    path: "machines/web/wg|x.nix".into(),
                    line: 3,
                    column: 19,
                    commit: Some(B.into()),
                    secret: Redacted::new("kP3xq1S9mWcT0b7Jf2hL8ZyNvE4uDsGrAoIe6Ck5pH0="),
                    fingerprint: "f".into(),
                    message: "Move it to secrix".into(),
                    end: None,
                }],
                ..Default::default()
            }),
            secrets: None,
            build: Some(BuildReport {
                hosts: vec![BuildHost {
                    name: "monitor".into(),
                    status: BuildStatus::Failed,
                    level: "eval".into(),
                    drv_path: None,
                    out_path: None,
                    duration_ms: 1200,
                    log: None,
                    reason: Some("error: attribute 'x' missing\nmore".into()),
                    log_excerpt: vec!["```".into(), "error: boom".into()],
                    built_on: Vec::new(),
                    closure_diff: None,
                }],
                source: "commit 2222222".into(),
                ..Default::default()
            }),
            policy: None,
        }
    }

    #[test]
    fn summary_has_hosts_graph_findings_and_builds() {
        let ctx = SummaryContext {
            source: "push to refs/heads/main".into(),
            base: Some(A.into()),
            head: Some(B.into()),
            notes: vec![],
        };
        let s = summary_markdown(&report(), &ctx);
        assert!(
            s.starts_with("## ❌ guard: 1 host of 2 affected, 1 finding, 1 failed build"),
            "{s}"
        );
        assert!(s.contains("`111111111111` → `222222222222`"));
        assert!(s.contains("| monitor | services/prometheus.nix | machines/monitor/default.nix → services/prometheus.nix |"), "{s}");
        assert!(s.contains("```mermaid\ngraph LR\n  f0[\"services/prometheus.nix\"]\n  f0 --> h0\n  h0([\"monitor\"])\n```"), "{s}");
        assert!(s.contains("machines/web/wg\\|x.nix:3:19"), "{s}");
        assert!(s.contains("kP3x…(redacted)"));
        assert!(!s.contains("q1S9mWcT"), "never the secret");
        assert!(
            s.contains("| monitor | eval | ❌ failed | 1.2s | error: attribute 'x' missing |"),
            "{s}"
        );
        assert!(
            s.contains("````text\n```\nerror: boom\n````"),
            "fence outlasts the log's backticks: {s}"
        );
    }

    #[test]
    fn summary_lists_soundness_misses_with_nix_chain() {
        let mut r = report();
        r.affected.as_mut().unwrap().self_check = Some(crate::report::SelfCheck {
            hosts_checked: 2,
            misses: vec![crate::report::SoundnessMiss {
                host: "web".into(),
                path: "environments/zfs.nix".into(),
                chain: vec![
                    "machines/web/default.nix".into(),
                    "environments/zfs.nix".into(),
                ],
                changed: true,
                message: "nix imports environments/zfs.nix into host web".into(),
            }],
            ..Default::default()
        });
        let s = summary_markdown(&r, &SummaryContext::default());
        assert!(s.contains("### Self-check (1 soundness miss)"), "{s}");
        assert!(
            s.contains("- `web` imports environments/zfs.nix (machines/web/default.nix → environments/zfs.nix)"),
            "{s}"
        );
    }

    #[test]
    fn summary_is_bounded() {
        let mut r = report();
        let a = r.affected.as_mut().unwrap();
        a.changed_paths = (0..100_000)
            .map(|i| format!("very/long/path/{i:08}/x.nix"))
            .collect();
        a.hosts = (0..5000)
            .map(|i| AffectedHost {
                name: format!("h{i}"),
                reasons: vec![Reason {
                    path: format!("p{i}.nix"),
                    chain: vec![format!("p{i}.nix")],
                    uncertain: None,
                }],
                truncated: 0,
            })
            .collect();
        let s = summary_markdown(&r, &SummaryContext::default());
        assert!(s.len() < 1024 * 1024);
        assert!(s.contains("4700 more hosts"));
        assert!(s.contains("it is left out above 120"));
    }
}

//! The GitHub Actions environment (integration-conventions.md, section 3):
//! which revisions an event asks guard to compare, the step outputs
//! (`$GITHUB_OUTPUT`), the job summary (`$GITHUB_STEP_SUMMARY`) and the
//! build-failure annotations. Pure functions of their inputs plus the two
//! file writers; git is asked nothing here (the caller resolves revisions).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::{BuildStatus, Finding, Report, Severity, escape_data, escape_property};

/// Errors reading the event payload.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("cannot read the event payload {path} ($GITHUB_EVENT_PATH): {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the event payload {path} ($GITHUB_EVENT_PATH) is not JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("the {event} event payload has no {field}")]
    Missing { event: String, field: &'static str },
    #[error("cannot write {what} ({path}): {source}")]
    Write {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// The variables of the Actions environment guard reads. Empty values count
/// as unset.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `GITHUB_ACTIONS=true`.
    pub actions: bool,
    pub event_name: Option<String>,
    pub event_path: Option<PathBuf>,
    pub sha: Option<String>,
    pub output: Option<PathBuf>,
    pub step_summary: Option<PathBuf>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let text = |k: &str| var(k).map(|v| v.to_string_lossy().into_owned());
        Env {
            actions: text("GITHUB_ACTIONS").as_deref() == Some("true"),
            event_name: text("GITHUB_EVENT_NAME"),
            event_path: var("GITHUB_EVENT_PATH").map(PathBuf::from),
            sha: text("GITHUB_SHA"),
            output: var("GITHUB_OUTPUT").map(PathBuf::from),
            step_summary: var("GITHUB_STEP_SUMMARY").map(PathBuf::from),
        }
    }

    /// The event payload, when the environment names one.
    pub fn payload(&self) -> Result<Option<Value>, GithubError> {
        let Some(path) = &self.event_path else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| GithubError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| GithubError::Json {
                path: path.clone(),
                message: e.to_string(),
            })
    }
}

/// What an event asks guard to compare. Revisions are as the payload gives
/// them (full hex ids); the caller resolves them and decides the fallbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventRange {
    /// `merge-base(base, head)..head`.
    Compare {
        base: String,
        head: String,
        /// `push` with `forced: true`: `base` may be gone or unrelated.
        forced: bool,
    },
    /// A push that created a branch: `before` is all zeros. Compare with
    /// the default branch when it is known and not the pushed branch.
    NewBranch {
        head: String,
        default_branch: Option<String>,
        /// The pushed ref (`refs/heads/x`).
        pushed_ref: Option<String>,
    },
    /// A push that deleted a branch: nothing to judge.
    Deleted,
    /// An event without a base (`workflow_dispatch`, `schedule`, ...).
    NoBase { head: Option<String> },
}

fn is_zero(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// The comparison an event asks for (integration-conventions.md 3.5).
pub fn event_range(
    event: &str,
    payload: &Value,
    github_sha: Option<&str>,
) -> Result<EventRange, GithubError> {
    let missing = |field| GithubError::Missing {
        event: event.to_string(),
        field,
    };
    match event {
        "push" => {
            if payload.get("deleted").and_then(Value::as_bool) == Some(true) {
                return Ok(EventRange::Deleted);
            }
            let head = str_at(payload, &["after"])
                .filter(|s| !is_zero(s))
                .or(github_sha)
                .ok_or_else(|| missing("after"))?
                .to_string();
            let before = str_at(payload, &["before"]);
            let created = payload.get("created").and_then(Value::as_bool) == Some(true);
            match before {
                Some(b) if !is_zero(b) && !created => Ok(EventRange::Compare {
                    base: b.to_string(),
                    head,
                    forced: payload.get("forced").and_then(Value::as_bool) == Some(true),
                }),
                _ => Ok(EventRange::NewBranch {
                    head,
                    default_branch: str_at(payload, &["repository", "default_branch"])
                        .map(String::from),
                    pushed_ref: str_at(payload, &["ref"]).map(String::from),
                }),
            }
        }
        "pull_request" | "pull_request_target" => {
            let base = str_at(payload, &["pull_request", "base", "sha"])
                .ok_or_else(|| missing("pull_request.base.sha"))?;
            let head = str_at(payload, &["pull_request", "head", "sha"])
                .ok_or_else(|| missing("pull_request.head.sha"))?;
            Ok(EventRange::Compare {
                base: base.to_string(),
                head: head.to_string(),
                forced: false,
            })
        }
        "merge_group" => {
            let base = str_at(payload, &["merge_group", "base_sha"])
                .ok_or_else(|| missing("merge_group.base_sha"))?;
            let head = str_at(payload, &["merge_group", "head_sha"])
                .ok_or_else(|| missing("merge_group.head_sha"))?;
            Ok(EventRange::Compare {
                base: base.to_string(),
                head: head.to_string(),
                forced: false,
            })
        }
        _ => Ok(EventRange::NoBase {
            head: github_sha.map(String::from),
        }),
    }
}

/// Appends step outputs to the `$GITHUB_OUTPUT` file. Single-line values
/// use `name=value`; others the `name<<DELIM` form with a delimiter that
/// does not occur in the value (as the Actions toolkit does).
pub fn write_outputs(path: &Path, outputs: &[(&str, String)]) -> Result<(), GithubError> {
    let mut text = String::new();
    for (name, value) in outputs {
        if value.contains('\n') || value.contains('\r') {
            let mut delim = format!("ghadelimiter_{}", crate::report::stop_token());
            while value.contains(&delim) {
                delim.push('_');
            }
            let _ = write!(text, "{name}<<{delim}\n{value}\n{delim}\n");
        } else {
            let _ = writeln!(text, "{name}={value}");
        }
    }
    append(path, &text, "$GITHUB_OUTPUT")
}

/// Appends to a file the runner gave us (it exists; create it if not, so a
/// local run with the variable pointing at a new file works too).
pub fn append(path: &Path, text: &str, what: &'static str) -> Result<(), GithubError> {
    let err = |source| GithubError::Write {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// `::error` workflow commands for hosts (and the flake check) that failed
/// to evaluate or build. Host names are from a safe alphabet; nix's reason
/// is escaped, so it cannot end the command or start another one.
pub fn write_build_annotations(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let Some(b) = &report.build else {
        return Ok(());
    };
    for h in b
        .hosts
        .iter()
        .chain(b.flake_check.iter())
        .filter(|h| h.status == BuildStatus::Failed)
    {
        writeln!(
            out,
            "::error title={}::{}",
            escape_property(&format!("guard: {} failed at level {}", h.name, h.level)),
            escape_data(h.reason.as_deref().unwrap_or("failed"))
        )?;
    }
    Ok(())
}

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
    let mut all: Vec<&Finding> = [&report.scan, &report.secrets]
        .into_iter()
        .flatten()
        .flat_map(|f| &f.findings)
        .collect();
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
        .chain(
            [&report.scan, &report.secrets]
                .into_iter()
                .flatten()
                .flat_map(|f| &f.warnings),
        )
        .chain(report.build.iter().flat_map(|b| &b.warnings))
        .collect();
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
    use serde_json::json;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn push_compares_before_with_after() {
        let p = json!({"before": A, "after": B, "ref": "refs/heads/main"});
        assert_eq!(
            event_range("push", &p, None).unwrap(),
            EventRange::Compare {
                base: A.into(),
                head: B.into(),
                forced: false
            }
        );
        let p = json!({"before": A, "after": B, "forced": true});
        assert!(matches!(
            event_range("push", &p, None).unwrap(),
            EventRange::Compare { forced: true, .. }
        ));
    }

    #[test]
    fn new_branch_and_deletion() {
        let p = json!({"before": Z, "after": B, "created": true, "ref": "refs/heads/feature",
                       "repository": {"default_branch": "main"}});
        assert_eq!(
            event_range("push", &p, None).unwrap(),
            EventRange::NewBranch {
                head: B.into(),
                default_branch: Some("main".into()),
                pushed_ref: Some("refs/heads/feature".into())
            }
        );
        let p = json!({"before": A, "after": Z, "deleted": true});
        assert_eq!(event_range("push", &p, None).unwrap(), EventRange::Deleted);
    }

    #[test]
    fn pull_request_uses_base_and_head_shas_not_the_test_merge() {
        let p = json!({"pull_request": {"base": {"sha": A, "ref": "main"}, "head": {"sha": B}}});
        assert_eq!(
            event_range("pull_request", &p, Some("3333")).unwrap(),
            EventRange::Compare {
                base: A.into(),
                head: B.into(),
                forced: false
            }
        );
        let err = event_range("pull_request", &json!({}), None).unwrap_err();
        assert!(err.to_string().contains("pull_request.base.sha"), "{err}");
    }

    #[test]
    fn other_events_have_no_base() {
        assert_eq!(
            event_range("workflow_dispatch", &json!({}), Some(B)).unwrap(),
            EventRange::NoBase {
                head: Some(B.into())
            }
        );
    }

    #[test]
    fn outputs_single_and_multi_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        std::fs::write(&p, "earlier=1\n").unwrap();
        write_outputs(
            &p,
            &[("hosts", r#"["a","b"]"#.into()), ("text", "x\ny".into())],
        )
        .unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.starts_with("earlier=1\nhosts=[\"a\",\"b\"]\ntext<<ghadelimiter_"));
        let delim = s.lines().nth(2).unwrap().trim_start_matches("text<<");
        assert!(s.ends_with(&format!("\nx\ny\n{delim}\n")));
    }

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
    fn build_annotations_escape_nix_text() {
        let mut out = Vec::new();
        write_build_annotations(&report(), &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "::error title=guard%3A monitor failed at level eval::error: attribute 'x' missing%0Amore\n"
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

//! GitHub Actions output for findings (docs/integration-conventions.md 3.3):
//! `::error file=…,line=…,col=…,title=…::message` workflow commands on
//! stdout, most severe first, with the escaping of the Actions toolkit; then
//! the readable report inside a `::stop-commands::<token>` block, so that no
//! repository text (paths are chosen by whoever wrote the commit) can be
//! parsed as a workflow command.

use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};

use super::{BuildStatus, Finding, Report, SOUNDNESS_MISS, Severity, Style, write_human};

pub mod outputs;
pub mod summary;

pub use outputs::{Unset, WriteError, append, write_outputs};
pub use summary::{SummaryContext, md, summary_markdown};

/// Escapes a workflow command message (`%`, CR, LF), `%` first.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command property value (also `:` and `,`).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// A fresh token for `::stop-commands::` (random per run, not guessable
/// from repository content).
pub fn stop_token() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    format!("guard-{a:016x}{:016x}", h.finish())
}

fn command(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "notice",
    }
}

fn annotation(f: &Finding) -> String {
    let mut msg = match f.secret.as_str() {
        "" => f.message.clone(),
        secret => format!("{} ({secret})", f.message),
    };
    if let Some(c) = &f.commit {
        msg = format!("in commit {}: {msg}", &c[..c.len().min(12)]);
    }
    format!(
        "::{} file={},line={},col={},title={}::{}",
        command(f.severity),
        escape_property(&f.path),
        f.line,
        f.column,
        escape_property(&format!("guard: {}", f.rule)),
        escape_data(&msg)
    )
}

/// Writes annotations for every finding (errors first; GitHub shows only the
/// first few per level) and warnings, then the human report fenced by
/// stop-commands.
pub fn write_github(report: &Report, style: Style, out: &mut dyn Write) -> io::Result<()> {
    let mut findings: Vec<&Finding> = report.findings().collect();
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    for f in &findings {
        writeln!(out, "{}", annotation(f))?;
    }
    for m in report.soundness_misses() {
        writeln!(
            out,
            "::warning file={},line=1,title={}::{}",
            escape_property(&m.path),
            escape_property(&format!("guard: {SOUNDNESS_MISS} ({})", m.host)),
            escape_data(&format!(
                "{} nix's chain: {}",
                m.message,
                m.chain.join(" → ")
            ))
        )?;
    }
    for w in report.finding_sections().flat_map(|f| &f.warnings) {
        match &w.path {
            Some(p) => writeln!(
                out,
                "::warning file={}::{}",
                escape_property(p),
                escape_data(&w.message)
            )?,
            None => writeln!(out, "::warning::{}", escape_data(&w.message))?,
        }
    }
    let token = stop_token();
    writeln!(out, "::stop-commands::{token}")?;
    let plain = Style {
        color: false,
        ..style
    };
    write_human(report, plain, out)?;
    writeln!(out, "::{token}::")
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

/// `::notice` workflow commands for remarks about the run (a fallback
/// taken, nothing to judge), escaped.
pub fn write_notices(notes: &[String], out: &mut dyn Write) -> io::Result<()> {
    for n in notes {
        writeln!(out, "::notice title=guard::{}", escape_data(n))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{BuildHost, BuildReport, Findings, Redacted};

    #[test]
    fn build_annotations_escape_nix_text() {
        let report = Report {
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
                    log_excerpt: Vec::new(),
                    built_on: Vec::new(),
                    closure_diff: None,
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut out = Vec::new();
        write_build_annotations(&report, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "::error title=guard%3A monitor failed at level eval::error: attribute 'x' missing%0Amore\n"
        );
    }

    #[test]
    fn escaping_follows_the_toolkit() {
        assert_eq!(escape_data("a%b\r\nc"), "a%25b%0D%0Ac");
        assert_eq!(escape_property("a:b,c%"), "a%3Ab%2Cc%25");
    }

    #[test]
    fn annotations_then_a_fenced_report() {
        let f = Finding {
            rule: "jwt".into(),
            severity: Severity::Error,
            path: "evil,path:\n::add-mask::x.txt".into(),
            line: 2,
            column: 5,
            commit: None,
            secret: Redacted::new("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"),
            fingerprint: "f".into(),
            message: "JSON Web Token. Fix: revoke it".into(),
            end: None,
        };
        let report = Report {
            scan: Some(Findings {
                findings: vec![f],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut buf = Vec::new();
        let style = Style {
            color: true,
            verbose: false,
        };
        write_github(&report, style, &mut buf).unwrap();
        let s = String::from_utf8(buf).unwrap();
        let first = s.lines().next().unwrap();
        assert!(
            first.starts_with("::error file=evil%2Cpath%3A%0A%3A%3Aadd-mask%3A%3Ax.txt,line=2,col=5,title=guard%3A jwt::"),
            "{first}"
        );
        assert!(first.contains("eyJh…(redacted)"));
        assert!(!s.contains("IxIn0"));
        let token_line = s
            .lines()
            .find(|l| l.starts_with("::stop-commands::"))
            .unwrap();
        let token = token_line.trim_start_matches("::stop-commands::");
        assert!(token.len() > 20);
        assert!(s.trim_end().ends_with(&format!("::{token}::")));
        // The raw path only appears inside the fenced block.
        let fenced_start = s.find(token_line).unwrap();
        assert!(s.find("::add-mask::").unwrap() > fenced_start);
        assert!(!s.contains("\x1b["), "no colour codes in CI logs");
        assert_ne!(stop_token(), stop_token());
    }
}

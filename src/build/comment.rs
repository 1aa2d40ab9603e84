//! The PR-comment body (`--comment-file`): one Markdown section per
//! evaluated or built host (changed, unchanged or restamped only, why it
//! was selected, the build result, what changed in its closure), starting
//! with a marker line so that the composite action, given a token, updates
//! its one comment in place instead of adding a new one per push.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::github::md;
use crate::report::{BuildStatus, Report};

/// The first line of every comment guard writes: what the action looks for.
pub const MARKER: &str = "<!-- guard:build-comment -->";

/// How many chains of one host the comment lists.
const MAX_CHAINS: usize = 3;

/// The comment body for `report`.
pub fn markdown(report: &Report) -> String {
    let mut s = format!("{MARKER}\n");
    let Some(b) = &report.build else {
        s.push_str("## guard\n\nNo host was evaluated.\n");
        return s;
    };
    let n = b.hosts.len();
    let _ = writeln!(
        s,
        "## guard: {} {} ({})\n",
        n,
        if n == 1 { "host" } else { "hosts" },
        md(&b.source)
    );
    if n == 0 {
        s.push_str("No host is affected.\n");
    }
    for h in &b.hosts {
        let (icon, status) = match h.status {
            BuildStatus::Ok => ("✅", "ok"),
            BuildStatus::Failed => ("❌", "failed"),
            BuildStatus::Skipped => ("⏭️", "skipped"),
        };
        let verdict = match h.reason.as_deref() {
            Some("unchanged drvPath") => "unchanged (same drvPath as the base)",
            Some(r) if r.starts_with("restamped only") => "restamped only (not built)",
            _ if b.base.is_some() && h.drv_path.is_some() => "changed",
            _ => "not compared",
        };
        let _ = writeln!(s, "### {icon} {} — {verdict}\n", md(&h.name));
        if let Some(a) = report.affected.as_ref().and_then(|a| {
            a.hosts
                .iter()
                .chain(&a.restamped)
                .find(|x| x.name == h.name)
        }) {
            for r in a.reasons.iter().take(MAX_CHAINS) {
                let _ = writeln!(
                    s,
                    "- why: {}",
                    r.chain
                        .iter()
                        .map(|c| format!("`{}`", c.replace('`', "'")))
                        .collect::<Vec<_>>()
                        .join(" → ")
                );
            }
            let more = a.reasons.len().saturating_sub(MAX_CHAINS) + a.truncated;
            if more > 0 {
                let _ = writeln!(s, "- … and {more} more");
            }
        }
        let mut result = format!(
            "- {} at level {}: {status}",
            if h.level == "eval" {
                "evaluation"
            } else {
                "build"
            },
            md(&h.level)
        );
        if let Some(r) = &h.reason {
            let _ = write!(result, " ({})", md(r.lines().next().unwrap_or_default()));
        }
        if !h.built_on.is_empty() {
            let _ = write!(result, ", built on {}", md(&h.built_on.join(", ")));
        }
        let _ = writeln!(s, "{result}");
        if let Some(d) = &h.closure_diff {
            let _ = writeln!(s, "- closure vs base: {}", d.summary());
            for l in d.lines() {
                let _ = writeln!(s, "  - `{}`", l.replace('`', "'"));
            }
        }
        s.push('\n');
    }
    s
}

/// Writes the body to `path`.
pub fn write_file(path: &Path, report: &Report) -> std::io::Result<()> {
    std::fs::write(path, markdown(report))
}

//! `guard bisect`'s answer: the first bad commit (or the range skipped
//! commits leave), why it concerns the host, and what the search cost.

use std::io::{self, Write};

use crate::bisect::Bisection;

/// The readable answer.
pub fn write_human(b: &Bisection, out: &mut dyn Write) -> io::Result<()> {
    if b.ambiguous {
        writeln!(
            out,
            "the first bad commit for {} is one of (skipped commits hide which):",
            b.host
        )?;
        for (id, subject) in &b.range_subjects {
            writeln!(out, "  {id} {subject}")?;
        }
    } else {
        writeln!(
            out,
            "first bad commit for {}: {} {}",
            b.host, b.first_bad, b.first_bad_subject
        )?;
    }
    writeln!(out, "  author: {}", b.first_bad_author)?;
    if let Some(chains) = &b.chains {
        writeln!(out, "  changes {} through:", b.host)?;
        for c in chains {
            writeln!(out, "    {}", c.join(" → "))?;
        }
    }
    if !b.tail.is_empty() {
        writeln!(out, "  failure (last lines):")?;
        for l in &b.tail {
            writeln!(out, "    {l}")?;
        }
    }
    writeln!(
        out,
        "{} tested, {} nix {}, {} deduplicated by drvPath; {} candidates of {} commits",
        b.tested.len(),
        b.builds,
        if b.evaluated { "evaluations" } else { "builds" },
        b.deduped,
        b.candidates,
        b.range_commits
    )
}

/// One JSON document.
pub fn write_json(b: &Bisection, out: &mut dyn Write) -> io::Result<()> {
    // Through a Value: its keys are sorted, at every level (the order
    // this output always had).
    let v = serde_json::to_value(b).map_err(io::Error::other)?;
    serde_json::to_writer_pretty(&mut *out, &v).map_err(io::Error::other)?;
    writeln!(out)
}

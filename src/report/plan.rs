//! The writers of `guard plan`.

use std::io::{self, Write};

use super::{Plan, Style, write_warning};

/// The waves in order, each with its hosts and commands; restamped and
/// removed hosts apart.
pub fn write_human(p: &Plan, style: Style, out: &mut dyn Write) -> io::Result<()> {
    let changed: usize = p.waves.iter().map(|w| w.hosts.len()).sum();
    if changed == 0 {
        writeln!(out, "nothing to deploy: no host's system changes")?;
    } else {
        writeln!(
            out,
            "{} in {} with {} (guard prints the plan; it never deploys)",
            style.bold(&format!(
                "{changed} changed {}",
                if changed == 1 { "host" } else { "hosts" }
            )),
            if p.waves.len() == 1 {
                "1 wave".to_string()
            } else {
                format!("{} waves", p.waves.len())
            },
            p.tool
        )?;
    }
    for (i, w) in p.waves.iter().enumerate() {
        let what = match w.name.as_str() {
            "canary" => "canary, first",
            "critical" => "critical, last",
            _ => "main",
        };
        writeln!(
            out,
            "{} {}",
            style.bold(&format!("wave {} · {what}:", i + 1)),
            w.hosts.join(", ")
        )?;
        for c in &w.commands {
            writeln!(out, "  {c}")?;
        }
    }
    if !p.restamped.is_empty() {
        writeln!(
            out,
            "{}",
            style.dim(&format!(
                "not deployed, restamped only (their systems differ only by a revision stamp or the source's store path): {}",
                p.restamped.join(", ")
            ))
        )?;
    }
    if !p.removed.is_empty() {
        writeln!(
            out,
            "{}",
            style.dim(&format!("removed by the change: {}", p.removed.join(", ")))
        )?;
    }
    for w in &p.warnings {
        write_warning(w, style, out)?;
    }
    Ok(())
}

/// One JSON document: `{"tool", "waves": [{"name", "hosts", "commands"}],
/// "restamped", "removed", "warnings"}`.
pub fn write_json(p: &Plan, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, p).map_err(io::Error::from)?;
    writeln!(out)
}

//! `guard explain`'s answer: each host that reads a path, with every
//! import chain from its entry module to it.

use std::io::{self, Write};

use super::AffectedHost;

/// Each host, then its chains; "no host reads PATH" when there is none.
pub fn write_human(hosts: &[AffectedHost], path: &str, out: &mut dyn Write) -> io::Result<()> {
    if hosts.is_empty() {
        writeln!(out, "no host reads {path}")?;
    }
    for h in hosts {
        writeln!(out, "{}", h.name)?;
        for r in &h.reasons {
            writeln!(out, "  {}", r.chain.join(" → "))?;
        }
    }
    Ok(())
}

/// The hosts as a JSON array (name, reasons with their chains).
pub fn write_json(hosts: &[AffectedHost], out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, hosts).map_err(io::Error::other)?;
    writeln!(out)
}

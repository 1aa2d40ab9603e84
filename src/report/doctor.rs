//! The writers of `guard doctor`.

use std::io::{self, Write};

use super::{Doctor, Style};

/// One block per piece of advice: what, where, which hosts, why, the fix.
pub fn write_human(d: &Doctor, style: Style, out: &mut dyn Write) -> io::Result<()> {
    if d.advice.is_empty() {
        writeln!(
            out,
            "guard doctor: {} hosts; nothing makes them churn on every commit or guard's \
             answer for them imprecise",
            d.hosts.len()
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "guard doctor: {} hosts; {} {} to look at (most hosts first)",
        d.hosts.len(),
        d.advice.len(),
        if d.advice.len() == 1 {
            "thing"
        } else {
            "things"
        }
    )?;
    for a in &d.advice {
        let at = match a.line {
            Some(l) => format!("{}:{l}", a.file),
            None => a.file.clone(),
        };
        let hosts = if a.hosts.len() == d.hosts.len() && d.hosts.len() > 1 {
            format!("all {} hosts", d.hosts.len())
        } else if a.hosts.len() > 6 && !style.verbose {
            format!("{}, … ({} hosts)", a.hosts[..6].join(", "), a.hosts.len())
        } else {
            a.hosts.join(", ")
        };
        writeln!(out)?;
        writeln!(
            out,
            "{}  {at}  {}",
            style.bold(a.kind.title()),
            style.dim(&format!("`{}`", a.expression))
        )?;
        writeln!(out, "  hosts: {hosts}")?;
        writeln!(out, "  why:   {}", a.why)?;
        writeln!(out, "  fix:   {}", a.fix)?;
    }
    Ok(())
}

/// The model as JSON, for CI.
pub fn write_json(d: &Doctor, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, d)?;
    writeln!(out)
}

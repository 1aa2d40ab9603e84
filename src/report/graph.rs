//! `guard graph`'s writers: JSON for tools, Graphviz dot, mermaid (for
//! a step summary or a README).

use std::io::{self, Write};

use super::Graph;

/// The graph as one JSON document.
pub fn write_json(g: &Graph, out: &mut dyn Write) -> io::Result<()> {
    // Through a Value: its keys are sorted, at every level (the order
    // this output always had).
    let v = serde_json::to_value(g).map_err(io::Error::other)?;
    serde_json::to_writer_pretty(&mut *out, &v).map_err(io::Error::other)?;
    writeln!(out)
}

/// Graphviz dot: hosts as ellipses, each pointing at its entry and at
/// flake.nix (the wiring).
pub fn write_dot(g: &Graph, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "digraph guard {{\n  rankdir=LR;\n  node [shape=box];")?;
    if let Some(note) = &g.note {
        writeln!(out, "  label={};\n  labelloc=t;", dot_id(note))?;
    }
    for h in &g.hosts {
        let id = dot_id(&format!("host:{}", h.name));
        writeln!(out, "  {id} [shape=ellipse];")?;
        writeln!(out, "  {id} -> {};", dot_id(&h.entry))?;
        writeln!(
            out,
            "  {id} -> {} [label=\"wiring\"];",
            dot_id(&g.flake_nix)
        )?;
    }
    for e in &g.edges {
        writeln!(
            out,
            "  {} -> {} [label={}];",
            dot_id(&e.from),
            dot_id(&e.to),
            dot_id(&e.kind)
        )?;
    }
    writeln!(out, "}}")
}

/// A mermaid `graph LR`: node ids are hashes (mermaid ids cannot hold `/`
/// or `.`), labels escaped.
pub fn write_mermaid(g: &Graph, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "graph LR")?;
    if let Some(note) = &g.note {
        writeln!(out, "  note[\"{}\"]", mermaid_text(note))?;
    }
    let id = |s: &str| format!("n{:x}", fnv(s));
    for h in &g.hosts {
        let host = id(&format!("host:{}", h.name));
        writeln!(
            out,
            "  {host}([\"{}\"]) --> {}[\"{}\"]",
            mermaid_text(&h.name),
            id(&h.entry),
            mermaid_text(&h.entry)
        )?;
        writeln!(
            out,
            "  {host} -->|wiring| {}[\"{}\"]",
            id(&g.flake_nix),
            mermaid_text(&g.flake_nix)
        )?;
    }
    for e in &g.edges {
        writeln!(
            out,
            "  {}[\"{}\"] -->|{}| {}[\"{}\"]",
            id(&e.from),
            mermaid_text(&e.from),
            e.kind,
            id(&e.to),
            mermaid_text(&e.to)
        )?;
    }
    Ok(())
}

/// Text inside a mermaid `["…"]` label: quotes and HTML escaped.
fn mermaid_text(s: &str) -> String {
    s.replace('&', "#amp;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A stable short id for mermaid node names.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_ids_escape_quotes_and_backslashes() {
        assert_eq!(dot_id(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}

//! The commands that are built so far. Each one builds a change, calls the
//! analyses and hands the result to a writer.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::{Context as _, Result, bail};

use super::{Context, exit};
use crate::affected::{Analysis, Query, affected_hosts};
use crate::cli::{Format, GraphFormat, Selector};
use crate::git::{self, SnapshotSpec};
use crate::nix::hosts;
use crate::report::{self, Affected, Report, Warning};

/// `guard affected`.
pub fn affected(ctx: &Context, selector: &Selector, format: Format, verify: bool) -> Result<i32> {
    let sel = selector.resolve(git::Selector::Worktree);
    let changes = ctx.repo.change_set(&sel)?;
    let cache = ctx.parse_cache();
    let new = Analysis::of(&changes.new, &ctx.flake_dir, &ctx.config, &cache);
    let old_hosts = hosts::discover(&changes.old, &ctx.flake_dir, &ctx.config.hosts, &cache);
    let new_revision = sel.makes_revision(&changes);
    let mut result = affected_hosts(
        &new,
        &old_hosts,
        &Query::of(&changes, new_revision).all_warnings(ctx.style.verbose),
        &ctx.config,
    )?;
    if verify {
        verify_hosts(ctx, &changes.new, &mut result);
    }
    write_affected(ctx, result, format)
}

fn write_affected(ctx: &Context, result: Affected, format: Format) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let report = Report {
                affected: Some(result),
                ..Default::default()
            };
            report::write_json(&report, &mut out)?;
        }
        Format::Human => {
            let report = Report {
                affected: Some(result),
                ..Default::default()
            };
            report::write_human(&report, ctx.style, &mut out)?;
        }
        Format::Github => {
            let names: Vec<&str> = result.hosts.iter().map(|h| h.name.as_str()).collect();
            let lines = format!(
                "hosts={}\ncount={}\n",
                serde_json::to_string(&names)?,
                names.len()
            );
            write_github_output(&lines)?;
            let report = Report {
                affected: Some(result),
                ..Default::default()
            };
            report::write_human(&report, ctx.style, &mut out)?;
        }
        Format::Sarif => {
            bail!("--format sarif is for findings (scan, secrets, ci), not affected hosts")
        }
    }
    Ok(exit::OK)
}

/// Appends `lines` to $GITHUB_OUTPUT, or prints them when it is not set
/// (running the GitHub format outside Actions, e.g. to try it).
fn write_github_output(lines: &str) -> Result<()> {
    match std::env::var_os("GITHUB_OUTPUT") {
        Some(path) if !path.is_empty() => {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .with_context(|| {
                    format!("cannot open $GITHUB_OUTPUT ({})", path.to_string_lossy())
                })?;
            f.write_all(lines.as_bytes())?;
        }
        _ => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "GITHUB_OUTPUT is not set; the outputs would be:")?;
            err.write_all(lines.as_bytes())?;
        }
    }
    Ok(())
}

/// Compares the static host list with what nix evaluates. nix's list wins
/// for this run: a host only nix knows is listed as affected by any change
/// (guard cannot tell what it reads), a host only guard found is dropped.
/// A failed evaluation is a warning with nix's own message, never an abort.
fn verify_hosts(ctx: &Context, snapshot: &git::Snapshot, result: &mut Affected) {
    let warn = |result: &mut Affected, message: String| {
        result.warnings.push(Warning {
            path: None,
            message,
        })
    };
    let Some(rev) = snapshot.commit().map(|c| c.to_string()) else {
        // The index or work tree: nix would read the work tree, which is
        // not the snapshot; say so rather than compare the wrong thing.
        warn(
            result,
            "--verify-hosts compares a commit's host list; use --commit, --base or --all".into(),
        );
        return;
    };
    let evaluated = crate::nix::cli::Nix::detect().and_then(|nix| {
        let url = crate::nix::cli::flake_url(&ctx.root, &ctx.flake_dir, Some(&rev));
        nix.eval_json(
            &format!("{url}#nixosConfigurations"),
            Some("builtins.attrNames"),
        )
    });
    let value = match evaluated {
        Ok(v) => v,
        Err(e) => {
            let cause = format!("{e:#}");
            let first = cause.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            warn(
                result,
                format!(
                    "--verify-hosts: nix could not list nixosConfigurations, the static list stands: {first}"
                ),
            );
            return;
        }
    };
    let evaluated: BTreeSet<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let statics: BTreeSet<String> = result.all_hosts.iter().cloned().collect();
    for missing in evaluated.difference(&statics) {
        warn(
            result,
            format!(
                "host {missing} exists in nixosConfigurations but guard did not find it statically; \
                 listed as affected for this run (add it under [hosts] in guard.toml, and please report the layout)"
            ),
        );
        if !result.changed_paths.is_empty() {
            result.hosts.push(report::AffectedHost {
                name: missing.clone(),
                reasons: vec![report::Reason {
                    path: "(found only by nix: guard cannot tell what it reads)".into(),
                    chain: Vec::new(),
                }],
                truncated: 0,
            });
        }
    }
    for extra in statics.difference(&evaluated) {
        warn(
            result,
            format!(
                "guard found host {extra} statically, but nix does not define it; dropped for this run"
            ),
        );
    }
    result.hosts.retain(|h| evaluated.contains(&h.name));
    result.hosts.sort_by(|a, b| a.name.cmp(&b.name));
    result.all_hosts = evaluated.into_iter().collect();
}

/// `guard explain <path>`: every chain from a host to `path`, in the work tree.
pub fn explain(ctx: &Context, path: &str, host: Option<&str>, format: Format) -> Result<i32> {
    let snapshot = ctx.repo.snapshot(SnapshotSpec::Worktree)?;
    let empty = ctx.repo.snapshot(SnapshotSpec::Empty)?;
    let cache = ctx.parse_cache();
    let analysis = Analysis::of(&snapshot, &ctx.flake_dir, &ctx.config, &cache);
    let typed = path;
    let Some(path) = ctx.repo_path(typed.trim_end_matches('/')) else {
        eprintln!("{typed}: outside the repository ({})", ctx.root.display());
        return Ok(exit::FINDINGS);
    };
    let tree = crate::nix::graph::Tree::new(&snapshot);
    if !tree.is_file(&path) && !tree.is_dir(&path) {
        eprintln!("{path}: not tracked by git, so no host can read it");
        return Ok(exit::FINDINGS);
    }
    if let Some(h) = host
        && !analysis.hosts.hosts.contains_key(h)
    {
        bail!(
            "no host named {h:?} (hosts: {})",
            analysis.hosts.names().join(", ")
        );
    }
    let query = Query {
        paths: BTreeSet::from([path.clone()]),
        // Against an empty tree every dependency on the path shows, as if
        // it were added.
        old: &empty,
        new: &snapshot,
        new_revision: false,
        every_chain: true,
        all_warnings: ctx.style.verbose,
    };
    let mut result = affected_hosts(&analysis, &analysis.hosts, &query, &ctx.config)?;
    if let Some(h) = host {
        result.hosts.retain(|x| x.name == h);
    }
    // Only chains that end at the path asked about: an empty "before" makes
    // every input look changed, which is not what explain is asked.
    for h in &mut result.hosts {
        h.reasons
            .retain(|r| r.path == path || crate::nix::hosts::is_below(&r.path, &path));
    }
    result.hosts.retain(|h| !h.reasons.is_empty());
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &result.hosts)?;
            writeln!(out)?;
        }
        _ => {
            if result.hosts.is_empty() {
                writeln!(out, "no host reads {path}")?;
            }
            for h in &result.hosts {
                writeln!(out, "{}", h.name)?;
                for r in &h.reasons {
                    writeln!(out, "  {}", r.chain.join(" → "))?;
                }
            }
        }
    }
    // Like grep: nothing found is exit 1, so scripts can tell.
    Ok(if result.hosts.is_empty() {
        exit::FINDINGS
    } else {
        exit::OK
    })
}

/// `guard graph`: the import graph of the work tree.
pub fn graph(ctx: &Context, format: GraphFormat, host: Option<&str>) -> Result<i32> {
    let snapshot = ctx.repo.snapshot(SnapshotSpec::Worktree)?;
    let cache = ctx.parse_cache();
    let analysis = Analysis::of(&snapshot, &ctx.flake_dir, &ctx.config, &cache);
    let files: BTreeSet<&str> = match host {
        Some(h) => {
            if !analysis.hosts.hosts.contains_key(h) {
                bail!(
                    "no host named {h:?} (hosts: {})",
                    analysis.hosts.names().join(", ")
                );
            }
            analysis.closure(h).into_iter().map(|(f, _)| f).collect()
        }
        None => analysis.graph.nodes.keys().map(String::as_str).collect(),
    };
    let hosts: Vec<&hosts::Host> = analysis
        .hosts
        .hosts
        .values()
        .filter(|h| host.is_none_or(|x| x == h.name))
        .collect();
    let mut edges: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for f in &files {
        let node = &analysis.graph.nodes[*f];
        for (to, dep) in &node.edges {
            if files.contains(to.as_str()) {
                edges.insert((f, to.as_str(), kind_name(node.deps[*dep].kind)));
            }
        }
        for d in &node.deps {
            if !matches!(
                d.kind,
                crate::nix::graph::DepKind::File | crate::nix::graph::DepKind::Copy
            ) || !files.contains(d.path.as_str())
            {
                // data files and directories: show them as leaves
                if !d.path.is_empty() && !analysis.graph.nodes.contains_key(&d.path) {
                    edges.insert((f, d.path.as_str(), kind_name(d.kind)));
                }
            }
        }
    }
    let mut out = std::io::stdout().lock();
    match format {
        GraphFormat::Json => {
            let v = serde_json::json!({
                "hosts": hosts.iter().map(|h| serde_json::json!({"name": h.name, "entry": h.entry})).collect::<Vec<_>>(),
                "files": files,
                "edges": edges.iter().map(|(a, b, k)| serde_json::json!({"from": a, "to": b, "kind": k})).collect::<Vec<_>>(),
            });
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        GraphFormat::Dot => {
            writeln!(out, "digraph guard {{\n  rankdir=LR;\n  node [shape=box];")?;
            for h in &hosts {
                writeln!(
                    out,
                    "  {} [shape=ellipse];",
                    dot_id(&format!("host:{}", h.name))
                )?;
                writeln!(
                    out,
                    "  {} -> {};",
                    dot_id(&format!("host:{}", h.name)),
                    dot_id(&h.entry)
                )?;
            }
            for (a, b, k) in &edges {
                writeln!(
                    out,
                    "  {} -> {} [label={}];",
                    dot_id(a),
                    dot_id(b),
                    dot_id(k)
                )?;
            }
            writeln!(out, "}}")?;
        }
        GraphFormat::Mermaid => {
            writeln!(out, "graph LR")?;
            let id = |s: &str| format!("n{:x}", fnv(s));
            for h in &hosts {
                writeln!(
                    out,
                    "  {}([\"{}\"]) --> {}[\"{}\"]",
                    id(&format!("host:{}", h.name)),
                    h.name,
                    id(&h.entry),
                    h.entry
                )?;
            }
            for (a, b, k) in &edges {
                writeln!(
                    out,
                    "  {}[\"{}\"] -->|{}| {}[\"{}\"]",
                    id(a),
                    a,
                    k,
                    id(b),
                    b
                )?;
            }
        }
    }
    Ok(exit::OK)
}

fn kind_name(k: crate::nix::graph::DepKind) -> &'static str {
    use crate::nix::graph::DepKind::*;
    match k {
        File => "file",
        Copy => "copy",
        List => "list",
        Exists => "exists",
        Tree => "tree",
        Rev => "rev",
    }
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A stable short id for mermaid node names (which cannot hold `/` or `.`).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

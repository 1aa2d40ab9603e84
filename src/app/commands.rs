//! The commands that are built so far. Each one builds a change, calls the
//! analyses and hands the result to a writer.

use std::collections::BTreeSet;

use anyhow::{Result, bail};

use super::pipeline::{self, Pipeline};
use super::{Context, exit};
use crate::affected::Analysis;
use crate::cli::{Format, GraphFormat, Selector};
use crate::git::{self, SnapshotSpec};
use crate::report::{self, Affected, Report};

/// `guard affected`.
pub fn affected(
    ctx: &Context,
    selector: &Selector,
    format: Format,
    verify: bool,
    self_check: bool,
    quiet: bool,
) -> Result<i32> {
    let sel = selector.resolve(git::Selector::Worktree);
    let mut p = Pipeline::new(ctx, sel)?;
    let mut result = p.take_affected()?;
    if verify {
        pipeline::verify_hosts(ctx, &p.changes.new, &mut result);
    }
    if self_check {
        p.self_check(&mut result, quiet);
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
            let restamped: Vec<&str> = result.restamped.iter().map(|h| h.name.as_str()).collect();
            // The outputs are what `--format github` is for (a build
            // matrix): outside Actions, show them.
            let env = crate::github_env::Env::from_process();
            report::github::write_outputs(
                env.output.as_deref(),
                &[
                    ("hosts", serde_json::to_string(&names)?),
                    ("count", names.len().to_string()),
                    ("restamped", serde_json::to_string(&restamped)?),
                ],
                report::github::Unset::Show(&mut std::io::stderr().lock()),
            )?;
            let report = Report {
                affected: Some(result),
                ..Default::default()
            };
            report::write_human(&report, ctx.style, &mut out)?;
        }
        Format::Sarif => bail!("internal error: --format sarif reached `guard affected`"),
    }
    Ok(exit::OK)
}

/// `guard explain <path>`: every chain from a host to `path`, in the work tree.
pub fn explain(ctx: &Context, path: &str, host: Option<&str>, format: Format) -> Result<i32> {
    let snapshot = ctx.repo.snapshot(SnapshotSpec::Worktree)?;
    let empty = ctx.repo.snapshot(SnapshotSpec::Empty)?;
    let analysis = pipeline::analysis_of(ctx, &snapshot, &ctx.parse_cache());
    // A host that does not exist is a usage error, whatever the path.
    if let Some(h) = host
        && !analysis.hosts.hosts.contains_key(h)
    {
        bail!(
            "no host named {h:?} (hosts: {})",
            analysis.hosts.names().join(", ")
        );
    }
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
    let mut result = pipeline::chains_to(ctx, &analysis, &snapshot, &empty, &path)?;
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
        Format::Json => report::explain::write_json(&result.hosts, &mut out)?,
        _ => report::explain::write_human(&result.hosts, &path, &mut out)?,
    }
    // Like grep: nothing found is exit 1, so scripts can tell.
    Ok(if result.hosts.is_empty() {
        exit::FINDINGS
    } else {
        exit::OK
    })
}

/// Nodes of a mermaid graph at most, unless `--collapse` says otherwise
/// (directories merge until it fits): a step summary renders slowly and
/// reads badly past a few dozen nodes.
const MERMAID_COLLAPSE: usize = 40;

/// `guard graph`: the import graph of the work tree. With a host, its
/// closure and the flake wiring that reaches it (what `affected` and
/// `explain` use), and no other host's files.
/// `guard doctor`: advice on the working tree's hosts (exit 0).
pub fn doctor(ctx: &Context, format: crate::cli::DoctorFormat) -> Result<i32> {
    let snapshot = ctx.repo.snapshot(SnapshotSpec::Worktree)?;
    let analysis = pipeline::analysis_of(ctx, &snapshot, &ctx.parse_cache());
    if analysis.hosts.hosts.is_empty() {
        anyhow::bail!(
            "no NixOS hosts found in {}: nothing to diagnose\n\
             hint: `guard init --dry-run` shows what discovery saw",
            analysis.hosts.flake_nix
        );
    }
    let model = crate::doctor::diagnose(&analysis);
    let mut out = std::io::stdout().lock();
    match format {
        crate::cli::DoctorFormat::Json => report::doctor::write_json(&model, &mut out)?,
        crate::cli::DoctorFormat::Human => {
            report::doctor::write_human(&model, ctx.style, &mut out)?
        }
    }
    Ok(exit::OK)
}

/// `guard plan`: the changed hosts in deploy waves (printed, never run).
pub fn plan(ctx: &Context, selector: &Selector, format: crate::cli::DoctorFormat) -> Result<i32> {
    let sel = selector.resolve(git::Selector::Worktree);
    let p = Pipeline::new(ctx, sel)?;
    let affected = p.affected()?;
    let plan = crate::rollout::plan(affected, &p.analysis().hosts, &ctx.flake_dir, &ctx.config);
    let mut out = std::io::stdout().lock();
    match format {
        crate::cli::DoctorFormat::Json => report::plan::write_json(&plan, &mut out)?,
        crate::cli::DoctorFormat::Human => report::plan::write_human(&plan, ctx.style, &mut out)?,
    }
    Ok(exit::OK)
}

pub fn graph(
    ctx: &Context,
    format: GraphFormat,
    host: Option<&str>,
    collapse: Option<usize>,
) -> Result<i32> {
    let snapshot = ctx.repo.snapshot(SnapshotSpec::Worktree)?;
    let analysis = pipeline::analysis_of(ctx, &snapshot, &ctx.parse_cache());
    let collapse = match (collapse, format) {
        (Some(n), _) => n,
        (None, GraphFormat::Mermaid) => MERMAID_COLLAPSE,
        (None, _) => 0,
    };
    // JSON is for tools: every file, never collapsed.
    let collapse = if format == GraphFormat::Json {
        0
    } else {
        collapse
    };
    let model = graph_model(&analysis, host, collapse)?;
    let mut out = std::io::stdout().lock();
    match format {
        GraphFormat::Json => report::graph::write_json(&model, &mut out)?,
        GraphFormat::Dot => report::graph::write_dot(&model, &mut out)?,
        GraphFormat::Mermaid => report::graph::write_mermaid(&model, &mut out)?,
    }
    Ok(exit::OK)
}

/// The graph `guard graph` draws: the files (a host's closure and the
/// wiring, or every file), their edges, directories merged down to
/// `collapse` nodes (0: none).
fn graph_model(analysis: &Analysis, host: Option<&str>, collapse: usize) -> Result<report::Graph> {
    // Every host depends on the wiring: flake.nix and what it evaluates
    // outside hosts (`affected` lists a change there for every host).
    let flake_nix = analysis.hosts.flake_nix.as_str();
    let wiring: Vec<&str> = analysis.wiring().into_iter().map(|(f, _)| f).collect();
    let files: BTreeSet<&str> = match host {
        Some(h) => {
            if !analysis.hosts.hosts.contains_key(h) {
                bail!(
                    "no host named {h:?} (hosts: {})",
                    analysis.hosts.names().join(", ")
                );
            }
            let mut files: BTreeSet<&str> =
                analysis.closure(h).into_iter().map(|(f, _)| f).collect();
            files.extend(&wiring);
            files.insert(flake_nix);
            files
        }
        None => analysis.graph.nodes.keys().map(String::as_str).collect(),
    };
    let hosts: Vec<report::GraphHost> = analysis
        .hosts
        .hosts
        .values()
        .filter(|h| host.is_none_or(|x| x == h.name))
        .map(|h| report::GraphHost {
            entry: h.entry.clone(),
            name: h.name.clone(),
        })
        .collect();
    let edges = graph_edges(analysis, &files, host);
    let (edges, collapsed) = if collapse > 0 {
        let keep: BTreeSet<String> = hosts
            .iter()
            .map(|h| h.entry.clone())
            .chain([flake_nix.to_string()])
            .collect();
        collapse_dirs(edges, &keep, collapse)
    } else {
        let edges = edges
            .into_iter()
            .map(|(a, b, k)| (a, b, k.to_string()))
            .collect();
        (edges, Vec::new())
    };
    Ok(report::Graph {
        edges: edges
            .into_iter()
            .map(|(from, to, kind)| report::GraphEdge { from, kind, to })
            .collect(),
        files: files.into_iter().map(String::from).collect(),
        hosts,
        wiring: wiring.into_iter().map(String::from).collect(),
        flake_nix: flake_nix.to_string(),
        note: collapse_note(&collapsed, collapse),
    })
}

/// The edges between `files` (and to data files and directories, drawn as
/// leaves), labelled; with a host, not the wiring's references to other
/// hosts (they are theirs).
fn graph_edges<'a>(
    analysis: &'a Analysis,
    files: &BTreeSet<&str>,
    host: Option<&str>,
) -> BTreeSet<(String, String, &'a str)> {
    use crate::nix::graph::DepKind;
    let foreign = |node: &crate::nix::graph::Node, dep: usize, to: &str| {
        host.is_some_and(|h| {
            analysis.is_host_edge(node, &node.deps[dep])
                && analysis.hosts.owner(to).is_some_and(|o| o != h)
        })
    };
    let mut edges: BTreeSet<(String, String, &str)> = BTreeSet::new();
    for f in files {
        let node = &analysis.graph.nodes[*f];
        for (to, dep) in &node.edges {
            if files.contains(to.as_str()) && !foreign(node, *dep, to) {
                edges.insert((
                    f.to_string(),
                    to.clone(),
                    edge_label(analysis, f, node, *dep),
                ));
            }
        }
        for (i, d) in node.deps.iter().enumerate() {
            if !matches!(d.kind, DepKind::File | DepKind::Copy) || !files.contains(d.path.as_str())
            {
                // data files and directories: show them as leaves
                if !d.path.is_empty()
                    && !analysis.graph.nodes.contains_key(&d.path)
                    && !foreign(node, i, &d.path)
                {
                    edges.insert((
                        f.to_string(),
                        d.path.clone(),
                        edge_label(analysis, f, node, i),
                    ));
                }
            }
        }
    }
    edges
}

/// What the drawing says about merged directories.
fn collapse_note(collapsed: &[String], collapse: usize) -> Option<String> {
    if collapsed.is_empty() {
        return None;
    }
    let mut shown: Vec<&str> = collapsed.iter().take(6).map(String::as_str).collect();
    let more = format!("and {} more", collapsed.len().saturating_sub(6));
    if collapsed.len() > 6 {
        shown.push(&more);
    }
    let n = collapsed.len();
    Some(format!(
        "at most {collapse} nodes: {n} {} drawn as one node each ({}); \
         guard graph --collapse 0 shows every file",
        if n == 1 {
            "directory is"
        } else {
            "directories are"
        },
        shown.join(", ")
    ))
}

/// The label of the edge made by `node.deps[dep]`: its kind, or "computed"
/// for a path computed at evaluation time (`./hosts/${name}`: any file
/// below the directory), or "host" for a reference from outside every
/// host's directory to a host (the flake wiring that reaches it).
fn edge_label(
    analysis: &Analysis,
    from: &str,
    node: &crate::nix::graph::Node,
    dep: usize,
) -> &'static str {
    let d = &node.deps[dep];
    if analysis.hosts.owner(from).is_none() && analysis.is_host_edge(node, d) {
        return "host";
    }
    match d.reference.map(|i| &node.refs.refs[i]) {
        Some(r) if matches!(r.target, crate::nix::parse::Target::Under(_)) => "computed",
        _ => kind_name(d.kind),
    }
}

/// Merges directories into one node each (`dir/ (n files)`), the deepest
/// first, until at most `max` nodes are left (or only top-level ones); `keep` (host entries, flake.nix) stay visible. Edges
/// between the same two nodes become one, with their labels joined.
/// Returns the edges and the merged directories.
fn collapse_dirs(
    edges: BTreeSet<(String, String, &str)>,
    keep: &BTreeSet<String>,
    max: usize,
) -> (BTreeSet<(String, String, String)>, Vec<String>) {
    use std::collections::BTreeMap;
    // Current node -> the original nodes it stands for.
    let mut nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (a, b, _) in &edges {
        for n in [a, b] {
            nodes.entry(n.clone()).or_insert_with(|| vec![n.clone()]);
        }
    }
    let mut merged = Vec::new();
    while nodes.len() > max {
        // Nodes at or below each directory (a directory drawn as a leaf,
        // `nixos`, counts for `nixos/`); the root never merges.
        let mut below: BTreeMap<&str, usize> = BTreeMap::new();
        for n in nodes.keys().filter(|n| !keep.contains(*n)) {
            let mut d = n.trim_end_matches('/');
            loop {
                *below.entry(d).or_default() += 1;
                match d.rfind('/') {
                    Some(i) => d = &d[..i],
                    None => break,
                }
            }
        }
        // The deepest directory that merges two nodes or more.
        let Some(dir) = below
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .max_by_key(|(d, n)| (d.matches('/').count(), *n, std::cmp::Reverse(*d)))
            .map(|(d, _)| d.to_string())
        else {
            break;
        };
        let prefix = format!("{dir}/");
        let name = prefix.clone();
        let members: Vec<String> = nodes
            .keys()
            .filter(|n| (**n == dir || n.starts_with(&prefix)) && !keep.contains(*n))
            .cloned()
            .collect();
        let mut inside = Vec::new();
        for m in &members {
            inside.extend(nodes.remove(m).unwrap_or_default());
        }
        merged.push(name.clone());
        nodes.insert(name, inside);
    }
    let mut rename: BTreeMap<&str, String> = BTreeMap::new();
    for (node, inside) in &nodes {
        let label = if node.ends_with('/') {
            format!("{node} ({} files)", inside.len())
        } else {
            node.clone()
        };
        for o in inside {
            rename.insert(o.as_str(), label.clone());
        }
    }
    let mut joined: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for (a, b, k) in &edges {
        let (a, b) = (rename[a.as_str()].clone(), rename[b.as_str()].clone());
        if a != b {
            joined.entry((a, b)).or_default().insert(k);
        }
    }
    let out = joined
        .into_iter()
        .map(|((a, b), k)| (a, b, k.into_iter().collect::<Vec<_>>().join(", ")))
        .collect();
    let mut merged: Vec<String> = merged
        .into_iter()
        .filter(|m| nodes.contains_key(m))
        .collect();
    merged.sort();
    (out, merged)
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
        TreePath => "tree-path",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(a: &str, b: &str) -> (String, String, &'static str) {
        (a.into(), b.into(), "file")
    }

    #[test]
    fn collapse_merges_deepest_directories_and_keeps_entries() {
        // A directory drawn as a leaf (`m`, a copied directory) and the
        // files below it become one node; nothing is lost on the way.
        let edges: BTreeSet<_> = [
            e("flake.nix", "m"),
            e("flake.nix", "m/a/x.nix"),
            e("m/a/x.nix", "m/a/y.nix"),
            e("m/a/y.nix", "m/b.nix"),
            e("h/one/default.nix", "m/a/x.nix"),
            e("h/one/default.nix", "h/one/hw.nix"),
        ]
        .into();
        let keep: BTreeSet<String> = ["flake.nix".into(), "h/one/default.nix".into()].into();
        let (out, merged) = collapse_dirs(edges, &keep, 4);
        // m/a/ first (deepest), then m/ (with m/a/ in it); then 4 nodes fit.
        assert_eq!(merged, ["m/"]);
        let out: Vec<(&str, &str, &str)> = out
            .iter()
            .map(|(a, b, k)| (a.as_str(), b.as_str(), k.as_str()))
            .collect();
        assert_eq!(
            out,
            [
                ("flake.nix", "m/ (4 files)", "file"),
                ("h/one/default.nix", "h/one/hw.nix", "file"),
                ("h/one/default.nix", "m/ (4 files)", "file"),
            ]
        );
    }
}

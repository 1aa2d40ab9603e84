//! The import picture of `src/`: data flows one way (git and the model at
//! the bottom, analyses above them, the command layer `app` on top), so no
//! module below `app` may name `app` or `cli`. This reads every `crate::`
//! path in the sources (not only `use` lines: inline paths count too) and
//! checks it against the table of allowed dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> the top-level modules it may name. `report` is the
/// model (`report.rs`) with its writers below it (`report/`); `app` and
/// the binary may use everything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("git", &[]),
    ("report", &[]),
    // The writers (src/report/) may read the answers analyses model
    // themselves (bisect's).
    ("report/", &["bisect", "git"]),
    ("config", &["report"]),
    // Child processes: spawning, process groups, signals, timeouts.
    ("process", &[]),
    ("nix", &["config", "git", "process", "report"]),
    ("affected", &["config", "git", "nix", "report"]),
    ("secrets", &["affected", "config", "git", "nix", "report"]),
    // Rollout waves from the affected set and the hosts' deploy tools.
    ("rollout", &["config", "nix", "report"]),
    // Fleet policy: input rules over the graph, lock hygiene.
    ("policy", &["affected", "config", "git", "nix", "report"]),
    ("bisect", &["affected", "config", "git", "nix", "report"]),
    ("doctor", &["affected", "nix", "report"]),
    (
        "build",
        &[
            "affected", "config", "git", "nix", "process", "report", "secrets",
        ],
    ),
    ("github_env", &[]),
    // The command line flattens build's own flags (build::settings).
    ("cli", &["build", "git", "report"]),
];

/// Modules only `app` (and `main`) may reach.
const TOP: &[&str] = &["app", "cli"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a source file belongs to (`src/nix/cli.rs` -> nix);
/// `report/` for the writers below the model (`src/report/*.rs`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    if rel.starts_with("report") && rel.components().count() > 1 {
        return "report/".into();
    }
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::<module>` a line of code (not a comment) names.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_reaches_up_to_the_command_layer() {
    let src = src_dir();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut bad = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &files {
        let module = module_of(&src, f);
        seen.insert(module.clone());
        if matches!(module.as_str(), "app" | "main" | "lib") {
            continue;
        }
        let Some(ok) = allowed.get(module.as_str()) else {
            bad.push(format!(
                "{}: module {module} is not in the layering table",
                f.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for used in named_modules(&text) {
            if used != module.trim_end_matches('/') && !ok.contains(&used.as_str()) {
                bad.push(format!("{}: {module} -> {used}", f.display()));
            }
        }
    }
    // The table must not go stale: every module in it exists.
    for (m, _) in ALLOWED {
        assert!(
            seen.contains(*m),
            "the layering table names {m}, which is gone"
        );
    }
    for (_, deps) in ALLOWED {
        for d in *deps {
            assert!(!TOP.contains(d), "the table lets a module reach {d}");
        }
    }
    assert!(
        bad.is_empty(),
        "arrows against the layering:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_checker_sees_inline_paths() {
    let text =
        "use crate::git::Repo;\n// crate::app in a comment\nlet x = crate::cli::Level::Eval;";
    assert_eq!(
        named_modules(text).into_iter().collect::<Vec<_>>(),
        ["cli", "git"]
    );
}

#[test]
fn only_the_pipeline_builds_graphs_and_affected_sets_for_a_change() {
    // `init` analyses the defaults before any configuration exists; every
    // other command gets its graph and affected set from app/pipeline.rs.
    let app = src_dir().join("app");
    let mut files = Vec::new();
    sources(&app, &mut files);
    let mut bad = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name == "pipeline.rs" || name == "init.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for needle in ["Analysis::of(", "affected_hosts(", "hosts::discover("] {
            if text.contains(needle) {
                bad.push(format!("{}: {needle}", f.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "outside app/pipeline.rs:\n{}",
        bad.join("\n")
    );
}

/// The sibling modules one file of `src/app/` names through `super::`
/// (`super::check::judge`, `use super::{build, Context}`).
fn siblings_named(text: &str, siblings: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("super::") {
            let after = &rest[i + "super::".len()..];
            let names: Vec<&str> = match after.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|p| p.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![
                    after
                        .split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap_or(""),
                ],
            };
            out.extend(
                names
                    .into_iter()
                    .filter(|n| siblings.contains(*n))
                    .map(String::from),
            );
            rest = after;
        }
    }
    out
}

#[test]
fn command_modules_do_not_call_each_other_in_a_cycle() {
    let app = src_dir().join("app");
    let mut files = Vec::new();
    sources(&app, &mut files);
    let siblings: BTreeSet<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let me = f.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        let mut named = siblings_named(&text, &siblings);
        named.remove(&me);
        deps.insert(me, named);
    }
    // The pipeline is below every command.
    assert!(
        deps["pipeline"].is_empty(),
        "pipeline names {:?}",
        deps["pipeline"]
    );
    // Depth-first search for a cycle.
    fn visit(
        m: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!(
                "a cycle between command modules: {} -> {m}",
                path[i..].join(" -> ")
            );
        }
        path.push(m.to_string());
        for d in &deps[m] {
            visit(d, deps, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in deps.keys() {
        visit(m, &deps, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_cycle_check_reads_grouped_imports() {
    let siblings: BTreeSet<String> = ["build", "check", "pipeline"].map(String::from).into();
    let text = "use super::{build, Context};\nuse super::pipeline::{self, Pipeline};\n// super::check\nlet v = super::check::judge();";
    assert_eq!(
        siblings_named(text, &siblings)
            .into_iter()
            .collect::<Vec<_>>(),
        ["build", "check", "pipeline"]
    );
}

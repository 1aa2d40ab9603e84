//! `guard doctor`: per host, what makes it churn on every deploy or makes
//! guard's answer for it imprecise, each with file:line and the fix.
//!
//! Read from the static analysis of one snapshot: every reference a host's
//! evaluation can reach (its closure and its wiring, outside the flake
//! outputs it does not read) is classified. Nothing here changes an answer
//! of `guard affected`; it explains them.

use std::collections::{BTreeMap, BTreeSet};

use crate::affected::Analysis;
use crate::nix::parse::{RefKind, Reference, Target};
use crate::report::{Advice, AdviceKind, Doctor};

/// The advice for every host of `analysis`.
pub fn diagnose(analysis: &Analysis) -> Doctor {
    // (file, line, kind) -> (advice without hosts, hosts)
    let mut found: BTreeMap<(String, u32, AdviceKind), (Advice, BTreeSet<String>)> =
        BTreeMap::new();
    for name in analysis.hosts.hosts.keys() {
        for (file, refs) in analysis.host_references(name) {
            for r in refs {
                let Some(kind) = classify(r) else { continue };
                if kind == AdviceKind::ComputedPath && analysis.is_host_template(r) {
                    continue;
                }
                let key = (file.to_string(), r.line, kind);
                found
                    .entry(key)
                    .or_insert_with(|| (advice(file, r, kind), BTreeSet::new()))
                    .1
                    .insert(name.clone());
            }
        }
        for (file, line) in analysis.cross_host_readers(name) {
            let key = (file.clone(), line, AdviceKind::CrossHostRead);
            found
                .entry(key)
                .or_insert_with(|| {
                    (
                        Advice {
                            kind: AdviceKind::CrossHostRead,
                            file: file.clone(),
                            line: Some(line),
                            expression: "nixosConfigurations".into(),
                            why: "reads other hosts' configurations (`nixosConfigurations`, \
                                  `nodes`): whatever changes a host it reads changes this \
                                  one, so guard lists it with them (with every host when \
                                  the name is computed)"
                                .into(),
                            fix: "read one value per host where you can (a hosts table in \
                                  a data file both sides import, e.g. hosts.toml), so a \
                                  change to one host does not change the others"
                                .into(),
                            hosts: Vec::new(),
                        },
                        BTreeSet::new(),
                    )
                })
                .1
                .insert(name.clone());
        }
    }
    let mut advice: Vec<Advice> = found
        .into_values()
        .map(|(mut a, hosts)| {
            a.hosts = hosts.into_iter().collect();
            a
        })
        .collect();
    // Most hosts first: the fix that calms the most deployments.
    advice.sort_by(|a, b| {
        b.hosts
            .len()
            .cmp(&a.hosts.len())
            .then(a.kind.cmp(&b.kind))
            .then(a.file.cmp(&b.file))
            .then(a.line.cmp(&b.line))
    });
    Doctor {
        hosts: analysis.hosts.names(),
        advice,
    }
}

fn classify(r: &Reference) -> Option<AdviceKind> {
    match (&r.kind, &r.target) {
        (RefKind::Rev, _) if r.text.starts_with("inputs") => None,
        (RefKind::Rev, _) => Some(AdviceKind::RevisionStamp),
        (RefKind::TreePath, _) => Some(AdviceKind::WholeTreePath),
        (RefKind::Tree, _) => Some(AdviceKind::WholeTreeCopy),
        (RefKind::External, _) if r.unreached => None,
        (RefKind::External, _) if r.text.starts_with('<') => Some(AdviceKind::SearchPath),
        (RefKind::External, _) => Some(AdviceKind::OutsideRepository),
        (_, Target::Under(_)) if r.text.starts_with("(") => None,
        (_, Target::Under(_)) => Some(AdviceKind::ComputedPath),
        _ => None,
    }
}

fn advice(file: &str, r: &Reference, kind: AdviceKind) -> Advice {
    let (why, fix) = match kind {
        AdviceKind::RevisionStamp => (
            "the revision is part of the configuration: every commit changes the host's \
             drvPath, though no byte its build reads changed (guard lists it as restamped \
             and does not build it)"
                .to_string(),
            "drop it, or keep it knowing every deploy of every host is a new generation; \
             `system.configurationRevision` is the one place NixOS shows it"
                .to_string(),
        ),
        AdviceKind::WholeTreePath if !r.text.contains('/') => (
            "the whole source's store path is linked or registered (`ln -s ${self}`, \
             `registry.x.flake = self`, inputs passed whole): the host changes with every \
             commit by design (guard lists it as restamped and does not build it)"
                .to_string(),
            "keep it if you want the source on the host (`/run/current-system/flake`, \
             `nix registry`); drop it otherwise"
                .to_string(),
        ),
        AdviceKind::WholeTreePath => (
            "a path inside the whole source's store path (`\"${self}/x\"`, `self + \"/x\"`): \
             it changes with every commit, so the units that use it restart on every deploy \
             (guard reads the sub-path as content, the rest as a stamp)"
                .to_string(),
            sub_path_fix(file, r),
        ),
        AdviceKind::WholeTreeCopy => (
            "the whole repository is copied or read: any change of any file changes this \
             host"
                .to_string(),
            "copy only what is needed: a path literal of the sub-directory (`./pkgs/x`), \
             or `lib.fileset.toSource { root = ./.; fileset = ...; }`"
                .to_string(),
        ),
        AdviceKind::SearchPath => (
            "a `<...>` lookup reads NIX_PATH, outside the repository and its lock: guard \
             cannot see it change, and builds differ between machines"
                .to_string(),
            "use the flake input instead (`inputs.nixpkgs`, passed through specialArgs)"
                .to_string(),
        ),
        AdviceKind::OutsideRepository => (
            "reads a file outside the repository: guard cannot see it change, and a pure \
             evaluation fails on it"
                .to_string(),
            "commit the file (encrypted if it is a secret) and refer to it with a path \
             literal"
                .to_string(),
        ),
        AdviceKind::ComputedPath => (
            format!(
                "a computed path: guard assumes any {}file below {} can be read",
                r.suffix
                    .as_deref()
                    .map(|s| format!("*{s} "))
                    .unwrap_or_default(),
                match &r.target {
                    Target::Under(d) if d.is_empty() => "the repository root".to_string(),
                    Target::Under(d) => format!("{d}/"),
                    _ => "its directory".to_string(),
                }
            ),
            "name the files with path literals (`./hosts/alpha.nix`), or end the computed \
             part with a constant file name (`./hosts + \"/${name}.yml\"` narrows it to \
             .yml files)"
                .to_string(),
        ),
        AdviceKind::CrossHostRead => (String::new(), String::new()),
    };
    Advice {
        kind,
        file: file.to_string(),
        line: Some(r.line),
        expression: r.text.clone(),
        why,
        fix,
        hosts: Vec::new(),
    }
}

/// The fix for a sub-path of the whole source: the same path as a literal.
fn sub_path_fix(file: &str, r: &Reference) -> String {
    let text = &r.text;
    let sub = text
        .split_once("}/")
        .map(|(_, rest)| rest.trim_end_matches('"'))
        .or_else(|| {
            text.split_once("+ \"/")
                .map(|(_, rest)| rest.trim_end_matches('"'))
        })
        .or_else(|| text.split_once("+ /").map(|(_, rest)| rest));
    match sub {
        Some(sub) if !sub.is_empty() && !sub.contains("${") => {
            let literal = relative_literal(file, sub);
            let name = sub.rsplit('/').next().unwrap_or(sub);
            format!(
                "use a path literal: `\"${{{literal}}}\"` or `builtins.path {{ path = \
                 {literal}; name = \"{name}\"; }}`: copied on its own, it changes only when \
                 {sub} does (checked with Nix 2.8 and 2.26)"
            )
        }
        _ => "use a path literal relative to this file (`\"${./x}\"` or `builtins.path { \
              path = ./x; name = \"x\"; }`): copied on its own, it changes only when x does; \
              a link to the whole source (`ln -s ${self}`, a registry entry) changes with \
              every commit by design"
            .to_string(),
    }
}

/// `sub` (repository-relative) as a path literal written in `file`.
fn relative_literal(file: &str, sub: &str) -> String {
    let depth = file.matches('/').count();
    if depth == 0 {
        format!("./{sub}")
    } else {
        format!("{}{sub}", "../".repeat(depth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_literals_are_relative_to_the_file() {
        assert_eq!(relative_literal("flake.nix", "secrets/x"), "./secrets/x");
        assert_eq!(
            relative_literal("modules/home/a.nix", "secrets/x"),
            "../../secrets/x"
        );
    }
}

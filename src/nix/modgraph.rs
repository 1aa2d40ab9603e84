//! The module graph nix collects for a host: nixpkgs' `lib.evalModules`
//! result carries `graph` (where nixpkgs is new enough), the tree of
//! modules the module system imported, one `{ key, file, disabled,
//! imports }` per module. guard asks for it through the evaluation workers
//! ([`super::repl::Worker::graph`]) in a compact form (`f`, `d`, `i`), and
//! maps its files back to repository paths here.

use std::collections::BTreeMap;

/// One module of the tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ModuleNode {
    /// The module's file as nix names it (a store path; `None` for an
    /// inline module without `_file`).
    #[serde(rename = "f")]
    pub file: Option<String>,
    /// `disabledModules` removed it (and with it its imports).
    #[serde(rename = "d", default)]
    pub disabled: bool,
    #[serde(rename = "i", default)]
    pub imports: Vec<ModuleNode>,
}

/// A host's module graph and the store path of the flake's source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct NixGraph {
    /// `sourceInfo.outPath` of the flake: the repository's root.
    pub source: String,
    #[serde(rename = "graph")]
    pub roots: Vec<ModuleNode>,
}

/// The repl expression that answers a host's graph, tagged with `n`
/// (`h` is the quoted attribute name).
pub(super) fn graph_expr(n: u64, h: &str) -> String {
    format!(
        "builtins.toJSON (let cs = guardFlake.nixosConfigurations; \
         conv = ms: map (m: {{ f = if (m.file or null) == null then null else toString m.file; \
         d = m.disabled or false; i = conv (m.imports or [ ]); }}) ms; in \
         if !(cs ? {h}) then {{ guard = {n}; missing = true; }} \
         else if !(cs.{h} ? graph) then {{ guard = {n}; nograph = true; }} \
         else {{ guard = {n}; source = guardFlake.sourceInfo.outPath; graph = conv cs.{h}.graph; }})\n\"guard-sync-{n}\"\n"
    )
}

/// Where one file of the graph lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Below the flake's source (or a copy of the whole source): the
    /// repository path.
    Repo(String),
    /// Below a store path named `<name>` that is not the source: a copy of
    /// a repository directory or file (`"${./hosts}/x.nix"`), or another
    /// store path (an input). `rest` is the part below it ("" for the
    /// store path itself).
    Copied { name: String, rest: String },
    /// Not a store path (an inline module's label, `<unknown-file>`).
    Other,
}

/// The store path prefix `/nix/store/<32 chars>-` and the rest.
fn store_name(p: &str) -> Option<(&str, &str)> {
    let rest = p.strip_prefix("/nix/store/")?;
    let (hash, after) = rest.split_at_checked(33)?;
    (hash.ends_with('-') && hash[..32].bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((&p[..11 + 32], after))
}

/// Maps a graph file to where it lives. Module-system annotations are
/// dropped first: `"<f>, via option x"` and flake-parts' `"<f>#x"`.
pub fn place(file: &str, source: &str) -> Place {
    let f = file.split(", via option ").next().unwrap_or(file);
    let f = match f.rfind('#') {
        Some(i) if !f[i..].contains('/') => &f[..i],
        _ => f,
    };
    if let Some(rel) = f.strip_prefix(source).and_then(|r| r.strip_prefix('/')) {
        return Place::Repo(rel.to_string());
    }
    let Some((_, after)) = store_name(f) else {
        return Place::Other;
    };
    let (name, rest) = after.split_once('/').unwrap_or((after, ""));
    // `"${self}"` inside a string copies the source again, named after
    // the source's own store path: `<hash>-<source hash>-source`.
    if let Some((_, src_name)) = store_name(source)
        && name.len() > src_name.len()
        && name.ends_with(src_name)
        && store_name(&format!("/nix/store/{name}")).is_some_and(|(_, n)| n == src_name)
    {
        return Place::Repo(rest.to_string());
    }
    Place::Copied {
        name: name.to_string(),
        rest: rest.to_string(),
    }
}

/// A readable name of a graph file for a chain: the repository path, else
/// the store path without its hash.
pub fn label(file: &str, source: &str) -> String {
    match place(file, source) {
        Place::Repo(r) => r,
        Place::Copied { name, rest } if rest.is_empty() => name,
        Place::Copied { name, rest } => format!("{name}/{rest}"),
        Place::Other => file.to_string(),
    }
}

/// Every file of the graph (enabled modules only) with the first chain of
/// files that reaches it, from an entry module down to it.
pub fn files_with_chains(graph: &NixGraph) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack: Vec<(&ModuleNode, Vec<String>)> =
        graph.roots.iter().rev().map(|n| (n, Vec::new())).collect();
    while let Some((node, mut chain)) = stack.pop() {
        if node.disabled {
            continue;
        }
        if let Some(f) = &node.file {
            // Several inline modules of one file: one link.
            if chain.last() != Some(f) {
                chain.push(f.clone());
            }
            out.entry(f.clone()).or_insert_with(|| chain.clone());
        }
        for child in node.imports.iter().rev() {
            stack.push((child, chain.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "/nix/store/ar9lxp1f8yqj7bswkqkzyhi0zrb18cps-source";

    #[test]
    fn files_map_to_the_repository_its_copies_or_elsewhere() {
        assert_eq!(
            place(&format!("{SRC}/machines/a/default.nix"), SRC),
            Place::Repo("machines/a/default.nix".into())
        );
        assert_eq!(
            place(
                &format!("{SRC}/modules/x.nix, via option flake.nixosModules.x"),
                SRC
            ),
            Place::Repo("modules/x.nix".into())
        );
        assert_eq!(
            place(&format!("{SRC}/flake.nix#nixosModules.default"), SRC),
            Place::Repo("flake.nix".into())
        );
        assert_eq!(
            place(
                "/nix/store/0000000000000000000000000000000z-ar9lxp1f8yqj7bswkqkzyhi0zrb18cps-source/lib/x.nix",
                SRC
            ),
            Place::Repo("lib/x.nix".into())
        );
        assert_eq!(
            place(
                "/nix/store/0000000000000000000000000000000z-hosts/web/default.nix",
                SRC
            ),
            Place::Copied {
                name: "hosts".into(),
                rest: "web/default.nix".into()
            }
        );
        assert_eq!(place("<unknown-file>", SRC), Place::Other);
        assert_eq!(
            label(
                "/nix/store/0000000000000000000000000000000z-source/nixos/modules/a.nix",
                SRC
            ),
            "source/nixos/modules/a.nix"
        );
    }

    #[test]
    fn chains_run_from_an_entry_and_skip_disabled_modules() {
        let n = |f: &str, i: Vec<ModuleNode>| ModuleNode {
            file: Some(f.into()),
            disabled: false,
            imports: i,
        };
        let mut off = n("/off.nix", vec![n("/below-off.nix", vec![])]);
        off.disabled = true;
        let g = NixGraph {
            source: SRC.into(),
            roots: vec![n(
                "/a.nix",
                vec![n("/a.nix", vec![n("/b.nix", vec![])]), off],
            )],
        };
        let files = files_with_chains(&g);
        assert_eq!(files["/b.nix"], vec!["/a.nix", "/b.nix"]);
        assert_eq!(files["/a.nix"], vec!["/a.nix"]);
        assert!(!files.contains_key("/off.nix") && !files.contains_key("/below-off.nix"));
    }
}

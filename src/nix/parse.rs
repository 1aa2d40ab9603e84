//! Static references of one Nix file: every way its evaluation can read
//! another file, the whole source tree, the revision, or something outside
//! the repository (design notes: nix-references.md).
//!
//! This is a pure function of the file's text and its repository path. It
//! never guesses in the unsafe direction: whatever it cannot resolve becomes
//! a wider dependency (a directory prefix, the whole tree) marked `dynamic`.

use std::collections::{BTreeMap, BTreeSet};

use rnix::{SyntaxKind, SyntaxKind::*, SyntaxNode};
use serde::{Deserialize, Serialize};

/// How a reference depends on its target (nix-references.md, section 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RefKind {
    /// `import p`, `imports = [ p ]`, `callPackage p`: p is evaluated as Nix.
    Import,
    /// `readFile p`, `hashFile _ p`, `importJSON p`: p's content.
    File,
    /// `readDir p`: the entries directly inside p.
    List,
    /// `pathExists p`, `readFileType p`: whether p exists, and its type.
    Exists,
    /// A path used as a value (`"${p}"`, `source = p;`): p copied to the
    /// store, so every byte, name and mode below it. Any `.nix` file below
    /// it may be imported by whatever receives the value.
    Copy,
    /// The whole source tree: `toString p`, `"${self}"`, `self.outPath`.
    Tree,
    /// The revision itself: `self.rev`, `self.lastModified`, ...
    Rev,
    /// The store path of the whole source as a string, not its content:
    /// `"${self}/secrets/x"` and `self + "/x"` (a path inside the source's
    /// store path, recorded beside the sub-path's own content), `inputs`
    /// passed on as a whole (`mapAttrs f inputs` reaches `self`). It
    /// changes with every change of any file, yet carries no bytes.
    TreePath,
    /// Outside the repository: `<nixpkgs>`, `/etc/x`, `~/x`.
    External,
}

/// What a reference points at, as a repository-relative path ("" is the
/// repository root).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    /// Exactly this path.
    Path(String),
    /// Some path below this directory, computed at evaluation time
    /// (`./hosts/${name}.nix`, `./. + "/${h}"`).
    Under(String),
    /// Nothing inside the repository (Tree, Rev, External), or a path that
    /// leaves the repository (`../../etc`).
    None,
}

/// One reference found in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub kind: RefKind,
    pub target: Target,
    /// 1-based line and column of the expression.
    pub line: u32,
    pub column: u32,
    /// Part of the target was computed at evaluation time.
    pub dynamic: bool,
    /// The expression, shortened, for explanations.
    pub text: String,
    /// No host evaluation reaches the expression: it is (inside) the
    /// default of a function argument (`{ pkgs ? import <nixpkgs> {} }:`,
    /// evaluated only when a caller omits the argument, which the module
    /// system and fleet code do not), or inside a devShells-like output.
    /// Still a dependency (soundness); it only quiets warnings.
    pub unreached: bool,
    /// The flake output whose value holds the expression when it is one
    /// no NixOS host evaluates unless a host reads it (`devShells`,
    /// `perSystem`, `checks`, `packages`, `darwinConfigurations`, ...).
    pub output: Option<String>,
    /// The configurations whose `modules` (or `imports`) list holds the
    /// expression: `garfield = nixosSystem { modules = [ ./x ]; }` gives
    /// ["garfield"]; a let-bound list (`computeModules = [ ./x ];`) gives
    /// every configuration whose list uses it. Empty when unknown. When
    /// all are hosts, the flake names `./x` for those hosts alone.
    pub module_list_of: Vec<String>,
    /// The computed part is exactly `config.networking.hostName`
    /// (`./hosts + "/${config.networking.hostName}.yml"`): for a host whose
    /// hostName guard knows, one file.
    pub per_host_name: bool,
    /// For a computed path (`./hosts/${name}.yml`), its constant end
    /// (".yml", "/configuration.nix"): only such paths below the directory
    /// can be meant ([`matches_suffix`]).
    pub suffix: Option<String>,
}

/// Everything one file refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRefs {
    pub refs: Vec<Reference>,
    /// Flake inputs mentioned by name (`inputs.foo`, or an identifier `foo`
    /// that may be a destructured input). A superset; matched against the
    /// inputs a flake.lock change touched.
    pub idents: BTreeSet<String>,
    /// The file uses the `inputs` set as a whole (`attrValues inputs`), so
    /// it may depend on every input.
    pub all_inputs: bool,
    /// Syntax errors (the references found are still reported; the file's
    /// own directory is added as a conservative dependency).
    pub errors: Vec<String>,
    /// Host-optional flake outputs this file reads from the flake itself
    /// (`self.packages`, `outputs.checks`, `config.flake.devShells`,
    /// `inherit (self) packages`); "perSystem" when it reaches per-system
    /// outputs some other way (`self'`, `withSystem`). Each with the
    /// host-optional output whose value holds the read, if any (a read in a
    /// `checks` value counts only where `checks` is read).
    pub output_reads: BTreeSet<(String, Option<String>)>,
    /// Path functions this file defines: `relativeToRoot = lib.path.append
    /// ../.;` gives ("relativeToRoot", the repository root). Their base is
    /// not a dependency by itself; their calls are ([`FileRefs::path_calls`]).
    pub path_functions: BTreeMap<String, String>,
    /// Applications of a name to a path-like string (`f "hosts/x.nix"`,
    /// `map f [ "a" "b" ]`): resolved once the graph knows which names are
    /// path functions.
    pub path_calls: Vec<PathCall>,
    /// How often each name of `path_calls` occurs in the file at all: more
    /// occurrences than calls means it is also passed on as a value.
    pub name_uses: BTreeMap<String, u32>,
    /// Literal `networking.hostName = "x"` definitions (also through
    /// `mkDefault`/`mkForce`) in this file.
    pub host_names: Vec<String>,
    /// Reads of other hosts' configurations: `self.nixosConfigurations.b`
    /// (host "b"), colmena's `nodes.b.config`, or the whole set ("*":
    /// `mapAttrs … self.nixosConfigurations`), each with the line and the
    /// flake output whose value holds the read, if any ("deploy" for
    /// deploy-rs/colmena node lists, which no host evaluates).
    pub host_reads: Vec<HostRead>,
}

/// Whether a host read's pattern (a name, or a prefix ending in "*")
/// matches the host `name`.
pub fn host_pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// One read of another host's configuration (see [`FileRefs::host_reads`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostRead {
    /// The host read: a name, or a prefix ending in "*" ("*": any host).
    pub host: String,
    pub line: u32,
    /// The flake output whose value holds the read (see
    /// [`FileRefs::output_reads`]), or "deploy".
    pub within: Option<String>,
    /// The option path read (`config.networking.hostName` gives
    /// ["networking", "hostName"]), when spelled out.
    pub option: Vec<String>,
}

/// `relativeToRoot "hosts/common/core"`: a call of a possible path function
/// with a constant (prefix of a) path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathCall {
    pub name: String,
    /// The argument's constant text (up to the first interpolation).
    pub arg: String,
    /// The argument is entirely constant.
    pub complete: bool,
    /// What the call's result is used for (Import or Copy, as for a path).
    pub kind: RefKind,
    pub line: u32,
    pub column: u32,
    pub text: String,
    /// The argument's constant file-name end after its last interpolation.
    pub suffix: Option<String>,
    /// The host-optional output the call sits in, as for a reference.
    pub output: Option<String>,
}

/// Attributes of a flake's `self` that change with every commit.
const REV_ATTRS: &[&str] = &[
    "rev",
    "shortRev",
    "dirtyRev",
    "dirtyShortRev",
    "lastModified",
    "lastModifiedDate",
    "revCount",
];

/// Extracts the references of the Nix file at repository path `path`.
/// `flake_dir` is the repository-relative directory of flake.nix (what
/// `self` denotes).
pub fn references(src: &str, path: &str, flake_dir: &str) -> FileRefs {
    let parse = rnix::Root::parse(src);
    let root = parse.syntax();
    let mut cx = Extractor {
        src,
        dir: parent(path),
        flake_dir: normalize_dir(flake_dir),
        out: FileRefs::default(),
        line_starts: line_starts(src),
    };
    for e in parse.errors() {
        cx.out.errors.push(e.to_string());
    }
    for node in root.descendants() {
        cx.visit(&node);
    }
    if !cx.out.path_calls.is_empty() {
        let names: BTreeSet<String> = cx.out.path_calls.iter().map(|c| c.name.clone()).collect();
        for node in root.descendants() {
            if node.kind() == NODE_IDENT && names.contains(node.text().to_string().as_str()) {
                let binding = matches!(
                    node.parent().map(|p| p.kind()),
                    Some(NODE_PAT_ENTRY | NODE_IDENT_PARAM | NODE_PAT_BIND)
                ) || node.parent().is_some_and(|p| {
                    p.kind() == NODE_ATTRPATH
                        && p.parent().is_some_and(|g| g.kind() == NODE_ATTRPATH_VALUE)
                });
                if !binding {
                    *cx.out.name_uses.entry(node.text().to_string()).or_default() += 1;
                }
            }
        }
    }
    if !cx.out.errors.is_empty() {
        // A file that does not parse may reach anything near it.
        cx.out.refs.push(Reference {
            kind: RefKind::Copy,
            target: Target::Under(cx.dir.clone()),
            line: 1,
            column: 1,
            dynamic: true,
            text: "(file does not parse)".into(),
            unreached: false,
            output: None,
            module_list_of: Vec::new(),
            per_host_name: false,
            suffix: None,
        });
    }
    cx.out.refs.sort_by_key(|r| (r.line, r.column));
    cx.out.refs.dedup();
    cx.out
}

struct Extractor<'a> {
    src: &'a str,
    /// Directory of the file, repository-relative ("" = root).
    dir: String,
    flake_dir: String,
    out: FileRefs,
    line_starts: Vec<usize>,
}

/// The constant part of a path expression, as a repository-absolute string
/// ("/machines/./x"), and whether the expression is entirely constant.
struct PathExpr {
    text: String,
    complete: bool,
    /// The expression is (or starts from) `self` / `inputs.self`.
    from_self: bool,
}

impl Extractor<'_> {
    fn visit(&mut self, node: &SyntaxNode) {
        match node.kind() {
            NODE_PATH_REL | NODE_PATH_ABS | NODE_PATH_HOME | NODE_PATH_SEARCH => {
                self.visit_path(node)
            }
            NODE_IDENT => self.visit_ident(node),
            NODE_SELECT => self.visit_output_read(node),
            NODE_APPLY => self.visit_path_call(node),
            NODE_ATTRPATH_VALUE => self.visit_host_name(node),
            NODE_INHERIT => self.visit_inherit_from_self(node),
            _ => {}
        }
    }

    /// `self.packages...`, `outputs.checks`, `config.flake.apps`, `self'.x`:
    /// which host-optional outputs a file reads from its own flake.
    fn visit_output_read(&mut self, sel: &SyntaxNode) {
        let Some(base) = first_child(sel) else { return };
        let mut chain = vec![base.text().to_string()];
        chain.extend(select_attrs(sel));
        // `inherit (self.nixosModules) a b;` names its attributes itself.
        if sel.parent().is_some_and(|p| p.kind() == NODE_INHERIT_FROM)
            && chain.len() >= 2
            && PER_ATTR_OUTPUTS.contains(&chain[chain.len() - 1].as_str())
            && SELF_NAMES.contains(&chain[chain.len() - 2].as_str())
        {
            return;
        }
        // Other hosts' configurations: `self.nixosConfigurations.b…`,
        // colmena's `nodes.b.config…`.
        let read_host = chain.iter().enumerate().find_map(|(i, name)| {
            let next = chain.get(i + 1)?;
            // `"install-iso-${system}"` may be any host so prefixed.
            let named = |a: Option<&String>| match a {
                Some(a) if is_plain_name(a) => a.clone(),
                Some(a) if a.contains("${") => {
                    format!("{}*", &a[..a.find("${").unwrap_or_default()])
                }
                _ => "*".to_string(),
            };
            // The option path read below `config`, when spelled out.
            let option = |at: usize| -> Vec<String> {
                match chain.get(at) {
                    Some(c) if c == "config" => chain[at + 1..].to_vec(),
                    _ => Vec::new(),
                }
            };
            if SELF_NAMES.contains(&name.as_str()) && next == "nixosConfigurations" {
                Some((named(chain.get(i + 2)), option(i + 3)))
            } else if i == 0 && name == "nodes" && chain.get(2).is_some_and(|c| c == "config") {
                Some((named(Some(next)), option(2)))
            } else {
                None
            }
        });
        if let Some((host, option)) = read_host {
            self.read_host(sel, host, option);
        }
        for (i, name) in chain.iter().enumerate() {
            if name == "self'" || name == "inputs'" && chain.get(i + 1).is_some_and(|n| n == "self")
            {
                self.read_output(sel, "perSystem");
            }
            if SELF_NAMES.contains(&name.as_str())
                && let Some(next) = chain.get(i + 1)
            {
                if HOST_OPTIONAL_OUTPUTS.contains(&next.as_str()) {
                    self.read_output(sel, next);
                }
                if PER_ATTR_OUTPUTS.contains(&next.as_str()) || next == "modules" {
                    // `self.nixosModules.web01`; a dynamic or missing name
                    // may be any of them.
                    let attr = match chain.get(i + 2) {
                        Some(a) if is_plain_name(a) => a.as_str(),
                        _ => "*",
                    };
                    self.read_output(sel, &format!("{next}.{attr}"));
                }
            }
        }
    }

    /// `networking.hostName = "alpha";` (or `networking = { hostName = …; }`).
    fn visit_host_name(&mut self, binding: &SyntaxNode) {
        let names = attrpath_names(binding);
        let is_host_name = match names.as_slice() {
            [.., n, h] if n == "networking" && h == "hostName" => true,
            [h] if h == "hostName" => binding
                .parent()
                .and_then(|set| set.parent())
                .filter(|b| b.kind() == NODE_ATTRPATH_VALUE)
                .is_some_and(|b| attrpath_names(&b).last().is_some_and(|n| n == "networking")),
            _ => false,
        };
        if !is_host_name {
            return;
        }
        // Anything but a literal (`hostName = name;`) makes the name
        // unknowable: recorded as such, so no literal elsewhere is trusted.
        const COMPUTED: &str = "\u{0}computed";
        let Some(mut value) = binding.children().nth(1).map(|v| unparen(&v)) else {
            return;
        };
        // mkDefault "x" / lib.mkForce "x"
        if value.kind() == NODE_APPLY {
            let f = value
                .children()
                .next()
                .and_then(|f| last_name(&unparen(&f)));
            let arg = value.children().last();
            match (f.as_deref(), arg) {
                (Some("mkDefault" | "mkForce" | "mkOverride"), Some(arg)) => value = unparen(&arg),
                _ => {
                    self.out.host_names.push(COMPUTED.into());
                    return;
                }
            }
        }
        match string_prefix(&value) {
            Some((text, true)) => self.out.host_names.push(text),
            _ => self.out.host_names.push(COMPUTED.into()),
        }
    }

    /// `name = lib.path.append ../.;`: records a path function and takes
    /// the base out of the file's own dependencies (its calls stand for it).
    fn path_function_base(&mut self, node: &SyntaxNode) -> bool {
        let Some(apply) = skip_parens_up(node).filter(|p| p.kind() == NODE_APPLY) else {
            return false;
        };
        let mut kids = apply.children();
        let (Some(func), Some(arg)) = (kids.next(), kids.next()) else {
            return false;
        };
        if unparen(&arg) != *node {
            return false;
        }
        let func = unparen(&func);
        let is_append = func.kind() == NODE_SELECT && {
            let attrs = select_attrs(&func);
            attrs.len() >= 2
                && attrs[attrs.len() - 1] == "append"
                && attrs[attrs.len() - 2] == "path"
        };
        if !is_append {
            return false;
        }
        let Some(binding) = skip_parens_up(&apply).filter(|p| p.kind() == NODE_ATTRPATH_VALUE)
        else {
            return false;
        };
        let names = attrpath_names(&binding);
        let (Some(name), Some(pe)) = (names.last(), self.path_expr(node)) else {
            return false;
        };
        let (Target::Path(base), _) = resolve(&pe) else {
            return false;
        };
        self.out.path_functions.insert(name.clone(), base);
        true
    }

    /// `f "hosts/x.nix"` or `map f [ "a" "b" ]` with a path-like string.
    fn visit_path_call(&mut self, apply: &SyntaxNode) {
        let mut kids = apply.children();
        let (Some(func), Some(arg)) = (kids.next(), kids.next()) else {
            return;
        };
        let func = unparen(&func);
        let arg = unparen(&arg);
        // `map f [ ... ]`: func is `map f`, arg the list.
        if func.kind() == NODE_APPLY && arg.kind() == NODE_LIST {
            let mut inner = func.children();
            let (Some(map), Some(f)) = (inner.next(), inner.next()) else {
                return;
            };
            if last_name(&unparen(&map)).as_deref() != Some("map") {
                return;
            }
            let Some(name) = last_name(&unparen(&f)) else {
                return;
            };
            let kind = self.list_producer_kind(apply);
            for item in arg.children() {
                self.record_path_call(&name, &unparen(&item), kind, apply);
            }
            return;
        }
        let Some(name) = last_name(&func) else { return };
        if name == "map" {
            return;
        }
        let kind = match self.context(apply) {
            Ctx::Import => RefKind::Import,
            Ctx::Read => RefKind::File,
            Ctx::List => RefKind::List,
            Ctx::Exists => RefKind::Exists,
            Ctx::ToString => RefKind::Tree,
            Ctx::Interpolated | Ctx::Value => RefKind::Copy,
        };
        self.record_path_call(&name, &arg, kind, apply);
    }

    /// Import when the list a `map` makes is concatenated into an
    /// `imports`/`modules` list; a copy otherwise.
    fn list_producer_kind(&self, apply: &SyntaxNode) -> RefKind {
        let mut cur = apply.clone();
        while let Some(p) = cur.parent() {
            match p.kind() {
                NODE_PAREN => cur = p,
                NODE_BIN_OP if bin_op(&p) == Some(TOKEN_CONCAT) => cur = p,
                NODE_ATTRPATH_VALUE => {
                    let names = attrpath_names(&p);
                    return match names.last() {
                        Some(t) if t == "imports" || t == "modules" || t.ends_with("Modules") => {
                            RefKind::Import
                        }
                        _ => RefKind::Copy,
                    };
                }
                _ => return RefKind::Copy,
            }
        }
        RefKind::Copy
    }

    fn record_path_call(&mut self, name: &str, arg: &SyntaxNode, kind: RefKind, at: &SyntaxNode) {
        let Some((text, complete)) = string_prefix(arg) else {
            return;
        };
        // Only what can name a path in the repository (no spaces, URLs or
        // absolute paths): anything else is no call of a path function.
        let path_like = text.len() <= 200
            && !text.starts_with('/')
            && (text.is_empty() && !complete
                || !text.is_empty()
                    && text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-+@/".contains(c)));
        if !path_like {
            return;
        }
        let start = usize::from(at.text_range().start());
        let (line, column) = self.position(start);
        let suffix = if complete { None } else { string_suffix(arg) };
        self.out.path_calls.push(PathCall {
            name: name.to_string(),
            arg: text,
            complete,
            kind,
            line,
            column,
            text: arg.text().to_string().chars().take(80).collect(),
            suffix,
            output: flake_output(at),
        });
    }

    /// `inherit (self) packages;`
    fn visit_inherit_from_self(&mut self, node: &SyntaxNode) {
        let Some(from) = node.children().find(|c| c.kind() == NODE_INHERIT_FROM) else {
            return;
        };
        let inner = from.text().to_string();
        let inner = inner.trim_matches(|c| c == '(' || c == ')').trim();
        let from_self =
            SELF_NAMES.contains(&inner) || inner.ends_with(".self") || inner.ends_with(".flake");
        // `inherit (self.nixosModules) web01 server;`
        let per_attr = PER_ATTR_OUTPUTS.iter().find(|m| {
            SELF_NAMES
                .iter()
                .any(|s| inner == format!("{s}.{m}") || inner.ends_with(&format!(".self.{m}")))
        });
        if let Some(m) = per_attr {
            for attr in node.children().filter(|c| c.kind() != NODE_INHERIT_FROM) {
                let name = attr.text().to_string();
                self.read_output(node, &format!("{m}.{name}"));
            }
            return;
        }
        if !from_self {
            return;
        }
        for attr in node.children().filter(|c| c.kind() != NODE_INHERIT_FROM) {
            let name = attr.text().to_string();
            if name == "nixosConfigurations" {
                self.read_host(node, "*".to_string(), Vec::new());
            }
            if HOST_OPTIONAL_OUTPUTS.contains(&name.as_str()) {
                self.read_output(node, &name);
            }
            if PER_ATTR_OUTPUTS.contains(&name.as_str()) {
                self.read_output(node, &format!("{name}.*"));
            }
        }
    }

    fn read_host(&mut self, node: &SyntaxNode, host: String, option: Vec<String>) {
        let within = if in_deploy_output(node) {
            Some("deploy".to_string())
        } else {
            flake_output(node)
        };
        let (line, _) = self.position(usize::from(node.text_range().start()));
        let read = HostRead {
            host,
            line,
            within,
            option,
        };
        if !self.out.host_reads.contains(&read) {
            self.out.host_reads.push(read);
        }
    }

    fn read_output(&mut self, node: &SyntaxNode, output: &str) {
        self.out
            .output_reads
            .insert((output.to_string(), flake_output(node)));
    }

    fn visit_path(&mut self, node: &SyntaxNode) {
        if self.path_function_base(node) {
            return;
        }
        match node.kind() {
            NODE_PATH_SEARCH | NODE_PATH_HOME => {
                self.push(node, RefKind::External, Target::None, false);
                return;
            }
            NODE_PATH_ABS => {
                let text = node.text().to_string();
                // `self + /modules/x` (or `./. + /x`): the absolute path is
                // appended to the left operand, inside the repository; the
                // sum is classified from its left end.
                if self.is_appended(node) {
                    return;
                }
                if !text.starts_with("/nix/store") {
                    self.push(node, RefKind::External, Target::None, false);
                }
                return;
            }
            _ => {}
        }
        // A path on the left of `+` is handled as part of the whole sum.
        let top = self.outer_sum(node);
        let Some(pe) = self.path_expr(&top) else {
            return;
        };
        self.classify(&top, pe);
    }

    fn visit_ident(&mut self, node: &SyntaxNode) {
        let name = node.text().to_string();
        let parent = node.parent();
        let parent_kind = parent.as_ref().map(|p| p.kind());
        // Record identifiers and `x.<attr>` names that are uses (not
        // binding names or function parameters): flake inputs are matched
        // against these (a superset).
        let binding_name = match parent_kind {
            Some(NODE_PAT_ENTRY | NODE_PAT_BIND | NODE_IDENT_PARAM) => true,
            Some(NODE_ATTRPATH) => parent
                .as_ref()
                .and_then(|p| p.parent())
                .is_some_and(|g| g.kind() == NODE_ATTRPATH_VALUE),
            Some(NODE_LAMBDA) => true,
            _ => false,
        };
        if !binding_name && !in_non_host_output(node) {
            self.out.idents.insert(name.clone());
        }
        if name == "inputs" {
            self.visit_inputs_use(node);
        }
        if matches!(
            name.as_str(),
            "withSystem" | "moduleWithSystem" | "getSystem"
        ) && !binding_name
        {
            self.read_output(node, "perSystem");
        }
        let is_self = name == "self"
            && parent_kind != Some(NODE_ATTRPATH)
            && parent_kind != Some(NODE_PAT_ENTRY)
            && !matches!(parent_kind, Some(NODE_INHERIT));
        if is_self {
            self.visit_self(node);
        }
        // `inputs.self.rev` etc.
        if name == "self"
            && parent_kind == Some(NODE_ATTRPATH)
            && let Some(sel) = parent.as_ref().and_then(|p| p.parent())
            && sel.kind() == NODE_SELECT
            && self_position(&sel).is_some()
        {
            self.visit_self_select(&sel, node);
        }
    }

    /// `self` used as a value.
    fn visit_self(&mut self, node: &SyntaxNode) {
        let parent = node.parent();
        let Some(parent) = parent else { return };
        match parent.kind() {
            NODE_SELECT if first_child(&parent).as_ref() == Some(node) => {
                self.visit_self_select(&parent, node);
            }
            NODE_BIN_OP => {
                let top = self.outer_sum(node);
                if let Some(pe) = self.path_expr(&top) {
                    self.classify(&top, pe);
                }
            }
            _ => self.whole_source(node),
        }
    }

    /// `self` (or `inputs.self`) used whole, not selected from.
    fn whole_source(&mut self, node: &SyntaxNode) {
        match self.context(node) {
            Ctx::Interpolated => {
                if self.sub_path_of_source(node) {
                    return;
                }
                // `ln -s ${self} $out/flake`: a link names the source, it
                // reads no byte of it.
                let kind = if linked_in_script(node) || written_verbatim(node) {
                    RefKind::TreePath
                } else {
                    RefKind::Tree
                };
                self.push(node, kind, Target::None, false);
            }
            Ctx::ToString => self.push(node, RefKind::Tree, Target::None, false),
            Ctx::Value => {
                // The value of a binding: `src = self` builds from every
                // byte; `srvos.flake = self`, `registry.x.flake = self`,
                // `etc."x".source = self` name the source's store path.
                let Some(binding) =
                    skip_parens_up(node).filter(|p| p.kind() == NODE_ATTRPATH_VALUE)
                else {
                    return;
                };
                // Passed on as an argument: whatever receives it is read
                // (and judged) where it uses it.
                let passed_on = binding.ancestors().any(|a| {
                    a.kind() == NODE_ATTRPATH_VALUE
                        && attrpath_names(&a).iter().any(|n| {
                            matches!(n.as_str(), "specialArgs" | "extraSpecialArgs" | "args")
                        })
                });
                if passed_on {
                    return;
                }
                let names = attrpath_names(&binding);
                let kind = if names.last().is_some_and(|n| n == "src") {
                    RefKind::Tree
                } else {
                    RefKind::TreePath
                };
                self.push(node, kind, Target::None, false);
            }
            _ => {}
        }
    }

    /// `"${self}/sub/path"`: the string names a path inside the whole
    /// source's store path. Records the sub-path's content (a copy of it,
    /// as whatever receives the string may read anything below it) and the
    /// source's store path (a stamp). False when no literal `/...` follows.
    fn sub_path_of_source(&mut self, node: &SyntaxNode) -> bool {
        let Some(interpol) = node.ancestors().find(|a| a.kind() == NODE_INTERPOL) else {
            return false;
        };
        let mut text = String::new();
        let mut complete = true;
        let mut next = interpol.next_sibling_or_token();
        while let Some(item) = next {
            match &item {
                rnix::NodeOrToken::Token(t) if t.kind() == TOKEN_STRING_CONTENT => {
                    text.push_str(&unescape(t.text()));
                }
                rnix::NodeOrToken::Token(_) => {}
                rnix::NodeOrToken::Node(_) => {
                    complete = false;
                    break;
                }
            }
            next = item.next_sibling_or_token();
        }
        if !text.starts_with('/') {
            return false;
        }
        let pe = PathExpr {
            text: format!("/{}{}", self.flake_dir, text),
            complete,
            from_self: true,
        };
        let (target, dynamic) = resolve(&pe);
        if target == Target::None {
            return false;
        }
        self.push(&interpol, RefKind::Copy, target, dynamic);
        self.push(&interpol, RefKind::TreePath, Target::None, false);
        true
    }

    /// `self.<attr>` or `inputs.self.<attr>`; `sel` is the select node.
    fn visit_self_select(&mut self, sel: &SyntaxNode, anchor: &SyntaxNode) {
        let attrs = select_attrs(sel);
        // For `inputs.self.x` and `flake.inputs.self.x`, what follows "self".
        let skip = self_position(sel).map_or(0, |i| i + 1);
        let rest: Vec<&str> = attrs.iter().skip(skip).map(String::as_str).collect();
        match rest.first() {
            // The select itself is shown (`self.rev`), at the same place.
            Some(a) if REV_ATTRS.contains(a) => {
                self.push(sel, RefKind::Rev, Target::None, false);
            }
            Some(&"sourceInfo") if rest.get(1).is_some_and(|a| REV_ATTRS.contains(a)) => {
                self.push(sel, RefKind::Rev, Target::None, false);
            }
            // `self.outPath + "/x"` is `self + "/x"`; used whole, as `self`.
            Some(&"outPath")
                if rest.len() == 1
                    && skip_parens_up(sel).is_some_and(|p| p.kind() == NODE_BIN_OP) =>
            {
                let top = self.outer_sum(sel);
                if let Some(pe) = self.path_expr(&top) {
                    self.classify(&top, pe);
                }
            }
            Some(&"outPath") if rest.len() == 1 => self.whole_source(sel),
            Some(&"outPath") | Some(&"sourceInfo") => {
                self.push(anchor, RefKind::Tree, Target::None, false);
            }
            // `inputs.self` itself, used as `self` is.
            None if skip_parens_up(sel).is_some_and(|p| p.kind() == NODE_BIN_OP) => {
                let top = self.outer_sum(sel);
                if let Some(pe) = self.path_expr(&top) {
                    self.classify(&top, pe);
                }
            }
            None => self.whole_source(sel),
            _ => {}
        }
    }

    /// `inputs` used other than as `inputs.<name>`: with a function applied
    /// to it (`attrValues inputs`, `mapAttrs f inputs`) every input, `self`
    /// included, may flow into the configuration.
    fn visit_inputs_use(&mut self, node: &SyntaxNode) {
        let Some(parent) = node.parent() else { return };
        match parent.kind() {
            NODE_SELECT | NODE_PAT_BIND | NODE_PAT_ENTRY | NODE_INHERIT | NODE_ATTRPATH => {}
            NODE_APPLY if parent.children().nth(1).as_ref() == Some(node) => {
                self.out.all_inputs = true;
                self.push(node, RefKind::Rev, Target::None, true);
                self.push(node, RefKind::TreePath, Target::None, true);
            }
            NODE_WITH => {
                self.out.all_inputs = true;
            }
            _ => {}
        }
    }

    /// Walks up through `+` operators whose left operand is this path
    /// expression, returning the outermost one.
    fn outer_sum(&self, node: &SyntaxNode) -> SyntaxNode {
        let mut cur = node.clone();
        while let Some(p) = skip_parens_up(&cur) {
            if p.kind() == NODE_BIN_OP
                && bin_op(&p) == Some(TOKEN_ADD)
                && first_child(&p).is_some_and(|l| unparen(&l) == unparen(&cur) || l == cur)
            {
                cur = p;
            } else {
                break;
            }
        }
        cur
    }

    /// The constant prefix of a path expression: a path literal, `self`, or
    /// a `+` chain starting with one.
    fn path_expr(&self, node: &SyntaxNode) -> Option<PathExpr> {
        let node = unparen(node);
        match node.kind() {
            NODE_PATH_REL => {
                let mut text = format!("/{}/", self.dir);
                let mut complete = true;
                for child in node.children_with_tokens() {
                    match child {
                        rnix::NodeOrToken::Token(t) => text.push_str(t.text()),
                        rnix::NodeOrToken::Node(_) => {
                            complete = false;
                            break;
                        }
                    }
                }
                Some(PathExpr {
                    text,
                    complete,
                    from_self: false,
                })
            }
            NODE_IDENT if is_ident(&node, "self") => Some(PathExpr {
                text: format!("/{}", self.flake_dir),
                complete: true,
                from_self: true,
            }),
            NODE_SELECT if self_source_select(&node) => Some(PathExpr {
                text: format!("/{}", self.flake_dir),
                complete: true,
                from_self: true,
            }),
            NODE_BIN_OP if bin_op(&node) == Some(TOKEN_ADD) => {
                let mut kids = node.children();
                let lhs = kids.next()?;
                let rhs = kids.next()?;
                let mut pe = self.path_expr(&lhs)?;
                if !pe.complete {
                    return Some(pe);
                }
                match string_prefix(&unparen(&rhs)).or_else(|| abs_path_text(&unparen(&rhs))) {
                    Some((s, complete)) => {
                        pe.text.push_str(&s);
                        pe.complete = complete;
                    }
                    None => pe.complete = false,
                }
                Some(pe)
            }
            _ => None,
        }
    }

    /// `node` is the right operand of a `+` whose left operand is a path
    /// expression guard resolves (`self + /x`, `./. + /x`).
    fn is_appended(&self, node: &SyntaxNode) -> bool {
        let Some(sum) = skip_parens_up(node) else {
            return false;
        };
        sum.kind() == NODE_BIN_OP
            && bin_op(&sum) == Some(TOKEN_ADD)
            && first_child(&sum).is_some_and(|l| unparen(&l) != unparen(node))
            && first_child(&sum).is_some_and(|l| self.path_expr(&l).is_some())
    }

    /// Decides the reference kind from where the path expression is used.
    fn classify(&mut self, node: &SyntaxNode, pe: PathExpr) {
        let ctx = self.context(node);
        let (target, dynamic) = resolve(&pe);
        let kind = match ctx {
            Ctx::Import => RefKind::Import,
            Ctx::Read => RefKind::File,
            Ctx::List => RefKind::List,
            Ctx::Exists => RefKind::Exists,
            Ctx::ToString => RefKind::Tree,
            Ctx::Interpolated | Ctx::Value => RefKind::Copy,
        };
        // `self` as a value is the whole source, whatever receives it.
        let kind = if pe.from_self
            && kind == RefKind::Copy
            && target == Target::Path(self.flake_dir.clone())
        {
            RefKind::Tree
        } else {
            kind
        };
        let target = if kind == RefKind::Tree {
            Target::None
        } else {
            target
        };
        if target == Target::None && !matches!(kind, RefKind::Tree) {
            // The path leaves the repository.
            self.push(node, RefKind::External, Target::None, dynamic);
            return;
        }
        // `self + "/x"` as a value: a string inside the whole source's store
        // path, so beside x's content it carries that path (a stamp).
        let stamped = pe.from_self && kind == RefKind::Copy;
        let computed = matches!(target, Target::Under(_));
        self.push(node, kind, target, dynamic);
        if computed && let Some(r) = self.out.refs.last_mut() {
            r.suffix = path_suffix(node);
            let text = node.text().to_string();
            r.per_host_name = text.matches("${").count() == 1
                && text.contains("${config.networking.hostName}")
                && !r.suffix.as_deref().unwrap_or_default().contains('/');
        }
        if stamped {
            self.push(node, RefKind::TreePath, Target::None, false);
        }
    }

    fn context(&self, node: &SyntaxNode) -> Ctx {
        let mut cur = node.clone();
        loop {
            let Some(parent) = cur.parent() else {
                return Ctx::Value;
            };
            match parent.kind() {
                NODE_PAREN => {
                    cur = parent;
                    continue;
                }
                NODE_INTERPOL => return Ctx::Interpolated,
                NODE_APPLY => {
                    let mut kids = parent.children();
                    let func = kids.next();
                    let arg = kids.next();
                    if arg.as_ref() != Some(&cur) {
                        return Ctx::Value;
                    }
                    return func.map_or(Ctx::Value, |f| function_ctx(&f));
                }
                NODE_LIST => {
                    return if is_imports_list(&parent) {
                        Ctx::Import
                    } else {
                        Ctx::Value
                    };
                }
                _ => return Ctx::Value,
            }
        }
    }

    fn push(&mut self, node: &SyntaxNode, kind: RefKind, target: Target, dynamic: bool) {
        let start = usize::from(node.text_range().start());
        let (line, column) = self.position(start);
        let mut text = node.text().to_string();
        if text.len() > 80 {
            let mut cut = 77;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        let dynamic = dynamic || matches!(target, Target::Under(_));
        let unreached =
            node.ancestors().any(|a| a.kind() == NODE_PAT_ENTRY) || in_non_host_output(node);
        self.out.refs.push(Reference {
            kind,
            target,
            line,
            column,
            dynamic,
            text,
            unreached,
            output: flake_output(node),
            module_list_of: module_list_owners(node, 0),
            per_host_name: false,
            suffix: None,
        });
    }

    fn position(&self, offset: usize) -> (u32, u32) {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self.src[start..offset.min(self.src.len())].chars().count() + 1;
        (line as u32, column as u32)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Import,
    Read,
    List,
    Exists,
    ToString,
    Interpolated,
    Value,
}

/// Flake outputs no NixOS host evaluates: inputs used only there (a
/// devShell's tooling) cannot change a host.
const NON_HOST_OUTPUTS: &[&str] = &["devShells", "devShell", "formatter", "apps", "templates"];

/// Flake outputs that no NixOS host evaluates unless the host reads them
/// (`self.packages.${system}.x`, `config.flake.checks`): a reference in
/// their value counts for hosts only then. `nixosModules`, `overlays` and
/// `lib` are not here: hosts read them as a rule.
pub const HOST_OPTIONAL_OUTPUTS: &[&str] = &[
    "apps",
    "checks",
    "darwinConfigurations",
    "devShell",
    "devShells",
    "formatter",
    "herculesCI",
    "homeConfigurations",
    "hydraJobs",
    "legacyPackages",
    "nixOnDroidConfigurations",
    "packages",
    "perSystem",
    "templates",
];

/// Inside a deploy-rs `deploy = …` or colmena `colmena = …` output: node
/// lists that deploy tools read, no host's evaluation.
fn in_deploy_output(node: &SyntaxNode) -> bool {
    node.ancestors().any(|a| {
        a.kind() == NODE_ATTRPATH_VALUE && {
            let names = attrpath_names(&a);
            output_path(&names)
                .first()
                .is_some_and(|n| matches!(n.as_str(), "deploy" | "colmena" | "colmenaHive"))
                && in_output_position(&a)
        }
    })
}

/// A binding's names as output names: flake-parts' `flake.checks` is
/// `checks`.
fn output_path(names: &[String]) -> &[String] {
    match names {
        [first, rest @ ..] if first == "flake" && !rest.is_empty() => rest,
        all => all,
    }
}

/// The flake output (one of [`HOST_OPTIONAL_OUTPUTS`]) whose value holds
/// `node`: a binding `packages = ...`, `flake.checks = ...` or
/// `perSystem = ...` in an output position, that is not nested in another
/// binding's value or in a list (so `users.users.x = { packages = ...; }`
/// and a module in `modules = [ ... ]` are never outputs), except the
/// values of `outputs = ...` and flake-parts' `flake = ...` and
/// `perSystem = ...`. The innermost such binding names the output.
///
/// A value given to a non-NixOS builder (`homeManagerConfiguration { … }`,
/// `darwinSystem { … }`) is that builder's output, wherever the call sits
/// (a `mkHome` helper in a library file): only that output evaluates it.
fn flake_output(node: &SyntaxNode) -> Option<String> {
    builder_region(node).or_else(|| output_region(node, 0))
}

/// Builders of configurations that are not NixOS hosts, with the output
/// their results go in.
const OTHER_BUILDERS: &[(&str, &str)] = &[
    ("homeManagerConfiguration", "homeConfigurations"),
    ("darwinSystem", "darwinConfigurations"),
    ("nixOnDroidConfiguration", "nixOnDroidConfigurations"),
];

/// The output of the innermost non-NixOS builder call whose argument holds
/// `node`, if any.
fn builder_region(node: &SyntaxNode) -> Option<String> {
    node.ancestors()
        .filter(|a| a.kind() == NODE_APPLY)
        .find_map(|a| {
            let mut children = a.children();
            let (f, arg) = (children.next()?, children.next()?);
            if !arg.text_range().contains_range(node.text_range()) {
                return None;
            }
            let name = last_name(&unparen(&f))?;
            OTHER_BUILDERS
                .iter()
                .find(|(b, _)| *b == name)
                .map(|(_, o)| o.to_string())
        })
}

fn output_region(node: &SyntaxNode, depth: usize) -> Option<String> {
    if depth > 6 {
        return None;
    }
    for a in node.ancestors() {
        if a.kind() != NODE_ATTRPATH_VALUE {
            continue;
        }
        let Some(value) = a.children().nth(1) else {
            continue;
        };
        if !value.text_range().contains_range(node.text_range()) {
            continue;
        }
        // `let mkApp = ...; in { apps = ... mkApp ...; }`: a let binding
        // every use of which sits in one output belongs to that output.
        if a.parent().is_some_and(|p| p.kind() == NODE_LET_IN) {
            if let Some(o) = let_binding_region(&a, depth) {
                return Some(o);
            }
            continue;
        }
        let names = attrpath_names(&a);
        let rest = output_path(&names);
        let Some(name) = rest.first() else { continue };
        if HOST_OPTIONAL_OUTPUTS.contains(&name.as_str()) && in_output_position(&a) {
            // The innermost: `checks` inside `perSystem` is `checks`.
            return Some(name.clone());
        }
        // flake-parts' `flake.modules.<class>.<name>` (only so spelled:
        // `modules` alone is every builder's module list).
        if let [f, m, class, ..] = names.as_slice()
            && f == "flake"
            && m == "modules"
            && is_plain_name(class)
            && in_output_position(&a)
        {
            return Some(format!("modules.{class}"));
        }
        // `nixosModules.web01 = ...`, `flake.nixosModules = { web01 = ...; }`.
        if PER_ATTR_OUTPUTS.contains(&name.as_str()) && in_output_position(&a) {
            return Some(match rest.get(1) {
                Some(attr) if is_plain_name(attr) => format!("{name}.{attr}"),
                _ => name.clone(),
            });
        }
        if let [attr, ..] = names.as_slice()
            && is_plain_name(attr)
            && let Some(m) = per_attr_set_of(&a)
        {
            return Some(format!("{m}.{attr}"));
        }
    }
    None
}

/// Outputs hosts read by attribute (`self.nixosModules.web01`): a reference
/// in one attribute's value counts for the hosts that read that attribute
/// (or the whole set: `attrValues self.nixosModules`).
pub const PER_ATTR_OUTPUTS: &[&str] = &[
    "darwinModules",
    "homeManagerModules",
    "homeModules",
    "nixosModules",
];

fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-'".contains(c))
}

/// For a binding `web01 = ...` directly in the set `nixosModules = { ... }`
/// (or `flake.nixosModules = { ... }`) of an output position: the output.
fn per_attr_set_of(binding: &SyntaxNode) -> Option<String> {
    let set = binding.parent().filter(|p| p.kind() == NODE_ATTR_SET)?;
    let outer = set.parent().filter(|p| p.kind() == NODE_ATTRPATH_VALUE)?;
    let names = attrpath_names(&outer);
    let m = match names.as_slice() {
        [f, m] if f == "flake" => m,
        [m] => m,
        _ => return None,
    };
    (PER_ATTR_OUTPUTS.contains(&m.as_str()) && in_output_position(&outer)).then(|| m.clone())
}

/// The one host-optional output every use of a `let` binding lies in, if
/// there is one (uses in other bindings of the same `let` count through
/// theirs). A shadowing name counts as a use too, which can only widen.
fn let_binding_region(binding: &SyntaxNode, depth: usize) -> Option<String> {
    let names = attrpath_names(binding);
    let [name] = names.as_slice() else {
        return None;
    };
    let let_in = binding.parent()?;
    let mut region: Option<String> = None;
    let mut uses = 0;
    for u in let_in.descendants().filter(|n| {
        n.kind() == NODE_IDENT
            && n.text() == name.as_str()
            && !matches!(
                n.parent().map(|p| p.kind()),
                Some(NODE_ATTRPATH | NODE_PAT_ENTRY | NODE_IDENT_PARAM | NODE_PAT_BIND)
            )
    }) {
        uses += 1;
        if uses > 64 {
            return None;
        }
        let r = output_region(&u, depth + 1)?;
        match &region {
            None => region = Some(r),
            Some(o) if *o == r => {}
            Some(_) => return None,
        }
    }
    region
}

/// The names of the bindings around the `modules = [ ... ]` (or `imports`)
/// lists that hold `node`, as an element or inside an inline module:
/// directly (`x = nixosSystem { modules = [ n ]; }` gives ["x"]), or
/// through a `let` binding of a list every use of which is in such lists
/// (`common = [ n ]; in { a.imports = common ++ [ ]; b... }` gives
/// ["a", "b"]). Empty when any use is elsewhere (unknown).
fn module_list_owners(node: &SyntaxNode, depth: usize) -> Vec<String> {
    // The innermost list that is a module list (the node an element of it,
    // or inside an inline module that is one).
    for list in node.ancestors().filter(|a| a.kind() == NODE_LIST) {
        let owners = owners_of_position(&list, depth);
        if !owners.is_empty() {
            return owners;
        }
    }
    Vec::new()
}

/// The owners of a list (or of a name standing for a let-bound list) at
/// this position: up through `++` and parentheses to the binding it is the
/// value of: `modules`/`imports` name the configuration around them; a
/// `let` binding of a list, the owners of all its uses.
fn owners_of_position(start: &SyntaxNode, depth: usize) -> Vec<String> {
    if depth > 6 {
        return Vec::new();
    }
    let mut cur = start.clone();
    while let Some(p) = cur.parent() {
        match p.kind() {
            NODE_PAREN => {}
            NODE_BIN_OP if bin_op(&p) == Some(TOKEN_CONCAT) => {}
            _ => break,
        }
        cur = p;
    }
    let Some(binding) = cur.parent().filter(|p| p.kind() == NODE_ATTRPATH_VALUE) else {
        return Vec::new();
    };
    if binding.children().nth(1).as_ref() != Some(&cur) {
        return Vec::new();
    }
    let names = attrpath_names(&binding);
    let Some(last) = names.last() else {
        return Vec::new();
    };
    if last == "modules" || last == "imports" {
        // `a.imports = ...` names `a`; else the next binding out does.
        if names.len() >= 2 {
            return vec![names[names.len() - 2].clone()];
        }
        return binding
            .ancestors()
            .skip(1)
            .find(|b| b.kind() == NODE_ATTRPATH_VALUE)
            .and_then(|b| attrpath_names(&b).last().cloned())
            .into_iter()
            .collect();
    }
    // A let-bound module list: the owners of every use.
    let Some(let_in) = binding.parent().filter(|p| p.kind() == NODE_LET_IN) else {
        return Vec::new();
    };
    if names.len() != 1 {
        return Vec::new();
    }
    let mut owners: Vec<String> = Vec::new();
    let mut uses = 0;
    for u in let_in.descendants().filter(|n| {
        n.kind() == NODE_IDENT
            && n.text() == names[0].as_str()
            && !matches!(
                n.parent().map(|p| p.kind()),
                Some(NODE_ATTRPATH | NODE_PAT_ENTRY | NODE_IDENT_PARAM | NODE_PAT_BIND)
            )
    }) {
        uses += 1;
        let o = owners_of_position(&u, depth + 1);
        if o.is_empty() || uses > 64 {
            return Vec::new();
        }
        owners.extend(o);
    }
    owners.sort();
    owners.dedup();
    owners
}

fn attrpath_names(binding: &SyntaxNode) -> Vec<String> {
    binding
        .children()
        .next()
        .filter(|p| p.kind() == NODE_ATTRPATH)
        .map(|p| {
            p.children()
                .map(|a| a.text().to_string().trim_matches('"').to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Is `binding` a binding of the attribute set a flake's `outputs` (or a
/// flake-parts module) returns? Walks up through functions, applications,
/// `//`, `let`, `with` and parentheses; stops at a list or at another
/// binding (other than `outputs` / `flake`).
fn in_output_position(binding: &SyntaxNode) -> bool {
    let Some(mut cur) = binding.parent() else {
        return false;
    };
    if cur.kind() != NODE_ATTR_SET {
        return false;
    }
    while let Some(p) = cur.parent() {
        match p.kind() {
            NODE_ATTRPATH_VALUE => {
                let names = attrpath_names(&p);
                if !matches!(names.as_slice(), [n] if n == "outputs" || n == "flake" || n == "perSystem")
                {
                    return false;
                }
            }
            NODE_LIST => return false,
            // Only the body of a `let` (its last child), not a binding.
            NODE_LET_IN if p.children().last().as_ref() != Some(&cur) => return false,
            _ => {}
        }
        cur = p;
    }
    true
}

/// Builders that write their text out as it is (`writeShellApplication {
/// text = ...; }`, `writeShellScript "x" ''...''`): a store path in the text
/// is named, not read, while building.
const TEXT_WRITERS: &[&str] = &[
    "writeShellApplication",
    "writeShellScript",
    "writeShellScriptBin",
    "writeScript",
    "writeScriptBin",
    "writeText",
    "writeTextDir",
    "writeTextFile",
];

/// Is this `${...}` inside the text a [`TEXT_WRITERS`] builder writes?
fn written_verbatim(node: &SyntaxNode) -> bool {
    node.ancestors().any(|a| {
        a.kind() == NODE_APPLY
            && a.children()
                .next()
                .and_then(|f| last_name(&unparen(&f)))
                .is_some_and(|n| TEXT_WRITERS.contains(&n.as_str()))
            && a.children()
                .nth(1)
                .is_some_and(|arg| arg.text_range().contains_range(node.text_range()))
    })
}

/// Is this `${...}` the target of an `ln -s` in a script (`ln -s ${self} x`,
/// `ln -sfn ${self} x`)?
fn linked_in_script(node: &SyntaxNode) -> bool {
    let Some(interpol) = node.ancestors().find(|a| a.kind() == NODE_INTERPOL) else {
        return false;
    };
    let Some(rnix::NodeOrToken::Token(before)) = interpol.prev_sibling_or_token() else {
        return false;
    };
    let text = before.text();
    let Some(line) = text.rsplit('\n').next() else {
        return false;
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    line.ends_with(' ')
        && matches!(words.as_slice(), [.., "ln", flags] if flags.starts_with('-') && flags.contains('s'))
}

/// Names under which fleets pass their own flake around (`self`,
/// `outputs = self`, flake-parts' `config.flake`, `flake = self`).
const SELF_NAMES: &[&str] = &["self", "outputs", "flake"];

/// Is this node inside the value of a `devShells = ...`-like binding?
fn in_non_host_output(node: &SyntaxNode) -> bool {
    node.ancestors().any(|a| {
        a.kind() == NODE_ATTRPATH_VALUE
            && a.children().next().is_some_and(|path| {
                path.children().any(|attr| {
                    NON_HOST_OUTPUTS.contains(&attr.text().to_string().as_str())
                })
            })
            // The node must be in the value, not the attribute path itself.
            && a.children().nth(1).is_some_and(|v| v.text_range().contains_range(node.text_range()))
    })
}

/// What a function does with a path argument, by its name.
fn function_ctx(func: &SyntaxNode) -> Ctx {
    let func = unparen(func);
    // `hashFile "sha256" p`, `scopedImport attrs p`: look at the inner function.
    let (name, partial) = match func.kind() {
        NODE_APPLY => match first_child(&func) {
            Some(inner) => (last_name(&unparen(&inner)), true),
            None => (None, true),
        },
        _ => (last_name(&func), false),
    };
    let Some(name) = name else { return Ctx::Value };
    match (name.as_str(), partial) {
        ("import", false) | ("callPackage", false) | ("scopedImport", true) => Ctx::Import,
        ("callPackageWith", true) | ("callPackagesWith", true) | ("callPackages", false) => {
            Ctx::Import
        }
        ("importApply", false) => Ctx::Import,
        ("readFile", false)
        | ("fileContents", false)
        | ("importJSON", false)
        | ("importTOML", false)
        | ("hashFile", true) => Ctx::Read,
        ("readDir", false) => Ctx::List,
        ("pathExists", false)
        | ("readFileType", false)
        | ("pathType", false)
        | ("pathIsDirectory", false)
        | ("pathIsRegularFile", false) => Ctx::Exists,
        ("toString", false) => Ctx::ToString,
        _ => Ctx::Value,
    }
}

/// Is this list the value of an `imports` (or legacy `require`) binding,
/// possibly inside `++` concatenations?
fn is_imports_list(list: &SyntaxNode) -> bool {
    let mut cur = list.clone();
    loop {
        let Some(p) = cur.parent() else { return false };
        match p.kind() {
            NODE_PAREN => cur = p,
            NODE_BIN_OP if bin_op(&p) == Some(TOKEN_CONCAT) => cur = p,
            NODE_ATTRPATH_VALUE => {
                let Some(path) = first_child(&p) else {
                    return false;
                };
                let last = path.children().last();
                // `modules = [ ./x ]` (nixosSystem, evalModules, darwin,
                // home-manager), `sharedModules`, `commonModules = [ ... ]`:
                // the module system imports each path.
                return last.is_some_and(|n| {
                    let t = n.text().to_string();
                    t == "imports" || t == "require" || t == "modules" || t.ends_with("Modules")
                });
            }
            _ => return false,
        }
    }
}

/// The name a function expression is known by: `import`, `builtins.readFile`
/// -> `readFile`, `lib.importJSON` -> `importJSON`.
fn last_name(node: &SyntaxNode) -> Option<String> {
    match node.kind() {
        NODE_IDENT => Some(node.text().to_string()),
        NODE_SELECT => {
            let attrs = select_attrs(node);
            attrs.last().cloned()
        }
        _ => None,
    }
}

/// The attribute names of a select expression (`a.b.c` -> ["b", "c"]).
/// Where the flake's `self` sits in a select's attribute path:
/// `inputs.self…` (0) or `<x>.inputs.self…` (`flake.inputs.self`, as
/// flake-parts modules receive it).
fn self_position(sel: &SyntaxNode) -> Option<usize> {
    let attrs = select_attrs(sel);
    let i = attrs.iter().position(|a| a == "self")?;
    let after_inputs = if i == 0 {
        first_child(sel).is_some_and(|b| is_ident(&b, "inputs"))
    } else {
        attrs[i - 1] == "inputs"
    };
    after_inputs.then_some(i)
}

/// `inputs.self`, `self.outPath`, `inputs.self.outPath`: the source.
fn self_source_select(node: &SyntaxNode) -> bool {
    let attrs = select_attrs(node);
    match self_position(node) {
        Some(i) => attrs.len() == i + 1 || attrs.len() == i + 2 && attrs[i + 1] == "outPath",
        None => {
            first_child(node).is_some_and(|b| is_ident(&b, "self"))
                && attrs.len() == 1
                && attrs[0] == "outPath"
        }
    }
}

fn select_attrs(sel: &SyntaxNode) -> Vec<String> {
    sel.children()
        .find(|c| c.kind() == NODE_ATTRPATH)
        .map(|ap| {
            ap.children()
                .map(|a| a.text().to_string().trim_matches('"').to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The constant prefix of a string expression and whether it is entirely
/// constant. Only plain double-quoted strings count.
fn string_prefix(node: &SyntaxNode) -> Option<(String, bool)> {
    if node.kind() != NODE_STRING {
        return None;
    }
    if node.first_token().is_some_and(|t| t.text() == "''") {
        return Some((String::new(), false));
    }
    let mut s = String::new();
    for child in node.children_with_tokens() {
        match child {
            rnix::NodeOrToken::Token(t) if t.kind() == TOKEN_STRING_CONTENT => {
                s.push_str(&unescape(t.text()));
            }
            rnix::NodeOrToken::Token(_) => {}
            rnix::NodeOrToken::Node(_) => return Some((s, false)),
        }
    }
    Some((s, true))
}

/// The constant end of a computed path: in `./hosts + "/${h}.yml"` or
/// `./. + "/hosts/${h}.yml"`, ".yml"; in `./hosts/${n}/configuration.nix`,
/// "/configuration.nix" (the literal after the last interpolation).
fn path_suffix(sum: &SyntaxNode) -> Option<String> {
    let sum = unparen(sum);
    let last = match sum.kind() {
        NODE_BIN_OP => unparen(&sum.children().nth(1)?),
        NODE_PATH_REL => sum.clone(),
        _ => return None,
    };
    let mut tail = String::new();
    let mut interpolated = false;
    for child in last.children_with_tokens() {
        match child {
            rnix::NodeOrToken::Node(n) if n.kind() == NODE_INTERPOL => {
                interpolated = true;
                tail.clear();
            }
            rnix::NodeOrToken::Token(t)
                if t.kind() == TOKEN_STRING_CONTENT || t.kind() == TOKEN_PATH_REL =>
            {
                tail.push_str(t.text());
            }
            _ => {}
        }
    }
    (interpolated && !tail.is_empty() && !tail.contains("..")).then_some(tail)
}

/// Whether `path` can be what a computed path with this constant end names:
/// it ends so, or (for an end with a `/`, a directory) lies below it.
pub fn matches_suffix(path: &str, suffix: &str) -> bool {
    path.ends_with(suffix) || suffix.contains('/') && path.contains(&format!("{suffix}/"))
}

/// The literal end of an interpolated string after its last interpolation,
/// when it holds no `/`: ".nix" in `"home/${user}/${host}.nix"`.
fn string_suffix(node: &SyntaxNode) -> Option<String> {
    let mut tail = String::new();
    let mut interpolated = false;
    for child in node.children_with_tokens() {
        match child {
            rnix::NodeOrToken::Node(n) if n.kind() == NODE_INTERPOL => {
                interpolated = true;
                tail.clear();
            }
            rnix::NodeOrToken::Token(t) if t.kind() == TOKEN_STRING_CONTENT => {
                tail.push_str(&unescape(t.text()))
            }
            _ => {}
        }
    }
    (interpolated && !tail.is_empty() && !tail.contains("..")).then_some(tail)
}

/// The text of an absolute path literal, and whether it is constant (no
/// `${...}`), for `<path> + /abs`.
fn abs_path_text(node: &SyntaxNode) -> Option<(String, bool)> {
    if node.kind() != NODE_PATH_ABS {
        return None;
    }
    let mut s = String::new();
    for child in node.children_with_tokens() {
        match child {
            rnix::NodeOrToken::Token(t) => s.push_str(t.text()),
            rnix::NodeOrToken::Node(_) => return Some((s, false)),
        }
    }
    Some((s, true))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Turns a path expression into a target. Constant: the normalised path.
/// Computed: the deepest directory that the constant prefix fixes.
fn resolve(pe: &PathExpr) -> (Target, bool) {
    if pe.complete {
        match normalize(&pe.text) {
            Some(p) => (Target::Path(p), false),
            None => (Target::None, false),
        }
    } else {
        // `/machines/host-` + ... : anything in /machines; `/machines/` + ...:
        // anything below /machines.
        let dir = match pe.text.rfind('/') {
            Some(i) => &pe.text[..i],
            None => "",
        };
        match normalize(dir) {
            Some(p) => (Target::Under(p), true),
            None => (Target::None, true),
        }
    }
}

/// Lexical normalisation, as Nix does for path literals: "." and ".." are
/// removed before any symlink is looked at. None when it leaves the root.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn normalize_dir(dir: &str) -> String {
    normalize(dir).unwrap_or_default()
}

fn parent(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => path[..i].to_string(),
        None => String::new(),
    }
}

fn line_starts(src: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(src.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

fn first_child(node: &SyntaxNode) -> Option<SyntaxNode> {
    node.children().next()
}

fn is_ident(node: &SyntaxNode, name: &str) -> bool {
    node.kind() == NODE_IDENT && node.text() == name
}

/// The expression inside any parentheses.
pub(crate) fn unparen(node: &SyntaxNode) -> SyntaxNode {
    let mut cur = node.clone();
    while cur.kind() == NODE_PAREN {
        match first_child(&cur) {
            Some(c) => cur = c,
            None => break,
        }
    }
    cur
}

fn skip_parens_up(node: &SyntaxNode) -> Option<SyntaxNode> {
    let mut p = node.parent()?;
    while p.kind() == NODE_PAREN {
        p = p.parent()?;
    }
    Some(p)
}

fn bin_op(node: &SyntaxNode) -> Option<SyntaxKind> {
    node.children_with_tokens()
        .filter_map(|c| c.into_token())
        .map(|t| t.kind())
        .find(|k| !matches!(k, TOKEN_WHITESPACE | TOKEN_COMMENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(src: &str) -> Vec<(RefKind, Target)> {
        refs_at(src, "machines/alpha/default.nix")
    }

    fn refs_at(src: &str, path: &str) -> Vec<(RefKind, Target)> {
        let r = references(src, path, "");
        assert!(
            r.errors.is_empty(),
            "unexpected parse errors: {:?}",
            r.errors
        );
        r.refs.into_iter().map(|r| (r.kind, r.target)).collect()
    }

    fn p(s: &str) -> Target {
        Target::Path(s.into())
    }
    fn under(s: &str) -> Target {
        Target::Under(s.into())
    }

    #[test]
    fn imports_list_paths_are_imports() {
        assert_eq!(
            refs("{ imports = [ ../../lib/enable-wg.nix ./hardware.nix ../../environments ]; }"),
            vec![
                (RefKind::Import, p("lib/enable-wg.nix")),
                (RefKind::Import, p("machines/alpha/hardware.nix")),
                (RefKind::Import, p("environments")),
            ]
        );
    }

    #[test]
    fn imports_in_function_module_with_concat_and_let() {
        let src = "{ config, lib, ... }: let x = 1; in { imports = [ ./a.nix ] ++ [ (./b.nix) ]; }";
        assert_eq!(
            refs(src),
            vec![
                (RefKind::Import, p("machines/alpha/a.nix")),
                (RefKind::Import, p("machines/alpha/b.nix")),
            ]
        );
    }

    #[test]
    fn optional_import_is_still_a_dependency() {
        // lib.optional cond ./x.nix: a value handed to a function; Copy keeps it
        // (and the graph still follows .nix files below a Copy).
        assert_eq!(
            refs("{ imports = lib.optional true ./x.nix; }"),
            vec![(RefKind::Copy, p("machines/alpha/x.nix"))]
        );
    }

    #[test]
    fn import_and_call_package() {
        assert_eq!(
            refs(
                "let a = import ./a.nix; b = pkgs.callPackage ../pkgs/b { }; c = import ./c.nix { inherit x; }; in a"
            ),
            vec![
                (RefKind::Import, p("machines/alpha/a.nix")),
                (RefKind::Import, p("machines/pkgs/b")),
                (RefKind::Import, p("machines/alpha/c.nix")),
            ]
        );
        assert_eq!(
            refs("builtins.import ./a.nix"),
            vec![(RefKind::Import, p("machines/alpha/a.nix"))]
        );
        assert_eq!(
            refs("scopedImport { x = 1; } ./a.nix"),
            vec![(RefKind::Import, p("machines/alpha/a.nix"))]
        );
    }

    #[test]
    fn reads_lists_exists() {
        assert_eq!(
            refs(
                "{ a = builtins.fromJSON (builtins.readFile ../../lib/peers.json); b = builtins.readDir ./keys; c = builtins.pathExists ./x; d = builtins.hashFile \"sha256\" ./h; e = lib.importJSON ./j.json; }"
            ),
            vec![
                (RefKind::File, p("lib/peers.json")),
                (RefKind::List, p("machines/alpha/keys")),
                (RefKind::Exists, p("machines/alpha/x")),
                (RefKind::File, p("machines/alpha/h")),
                (RefKind::File, p("machines/alpha/j.json")),
            ]
        );
    }

    #[test]
    fn paths_as_values_are_copies() {
        assert_eq!(
            refs(
                "{ environment.etc.\"nginx.conf\".source = ./nginx.conf; x = \"${./scripts}/run.sh\"; }"
            ),
            vec![
                (RefKind::Copy, p("machines/alpha/nginx.conf")),
                (RefKind::Copy, p("machines/alpha/scripts")),
            ]
        );
    }

    #[test]
    fn root_dot_path() {
        assert_eq!(
            refs_at("{ src = ./.; }", "flake.nix"),
            vec![(RefKind::Copy, p(""))]
        );
        assert_eq!(
            refs("{ src = ./.; }"),
            vec![(RefKind::Copy, p("machines/alpha"))]
        );
    }

    #[test]
    fn interpolated_paths_depend_on_their_constant_directory() {
        assert_eq!(
            refs("{ imports = [ ./hosts/${name}.nix ]; }"),
            vec![(RefKind::Import, under("machines/alpha/hosts"))]
        );
        assert_eq!(
            refs("import (./hosts + \"/${h}\")"),
            vec![(RefKind::Import, under("machines/alpha/hosts"))]
        );
        // `./hosts + name` appends without a slash: a sibling of hosts.
        assert_eq!(
            refs("import (./hosts + name)"),
            vec![(RefKind::Import, under("machines/alpha"))]
        );
        assert_eq!(
            refs("import (./. + \"/${name}\")"),
            vec![(RefKind::Import, under("machines/alpha"))]
        );
        assert_eq!(
            refs("import (./. + \"/fixed.nix\")"),
            vec![(RefKind::Import, p("machines/alpha/fixed.nix"))]
        );
        let r = references("import ./x/${n}", "a.nix", "");
        assert!(r.refs[0].dynamic);
    }

    #[test]
    fn path_arithmetic_is_normalised_lexically() {
        assert_eq!(
            refs("import (./hosts + \"/../etc/x.nix\")"),
            vec![(RefKind::Import, p("machines/alpha/etc/x.nix"))]
        );
        assert_eq!(
            refs("import ./hosts/../common.nix"),
            vec![(RefKind::Import, p("machines/alpha/common.nix"))]
        );
    }

    #[test]
    fn paths_leaving_the_repository_are_external() {
        assert_eq!(
            refs("import ../../../../etc/passwd"),
            vec![(RefKind::External, Target::None)]
        );
        assert_eq!(
            refs("import <nixpkgs> { }"),
            vec![(RefKind::External, Target::None)]
        );
        assert_eq!(
            refs("{ a = /etc/hosts; b = ~/x; c = /nix/store/abc-x; }"),
            vec![
                (RefKind::External, Target::None),
                (RefKind::External, Target::None)
            ]
        );
    }

    #[test]
    fn to_string_of_a_path_is_the_whole_tree() {
        assert_eq!(
            refs("{ x = toString ./b/file; y = builtins.toString ./.; }"),
            vec![(RefKind::Tree, Target::None), (RefKind::Tree, Target::None)]
        );
    }

    #[test]
    fn self_forms() {
        assert_eq!(
            refs_at("{ a = \"${self}\"; }", "flake.nix"),
            vec![(RefKind::Tree, Target::None)]
        );
        assert_eq!(
            refs_at(
                "{ a = self.rev or \"dirty\"; b = self.lastModified; c = inputs.self.shortRev; }",
                "m.nix"
            ),
            vec![
                (RefKind::Rev, Target::None),
                (RefKind::Rev, Target::None),
                (RefKind::Rev, Target::None)
            ]
        );
        // `self.outPath` is `self`: bound to a name it is the source's path
        // (a stamp), as `src` it is every byte.
        assert_eq!(
            refs_at(
                "{ a = self.outPath; b = toString self; src = self.outPath; }",
                "m.nix"
            ),
            vec![
                (RefKind::TreePath, Target::None),
                (RefKind::Tree, Target::None),
                (RefKind::Tree, Target::None)
            ]
        );
        assert_eq!(
            refs_at("import (self + \"/hosts/alpha.nix\")", "lib/x.nix"),
            vec![(RefKind::Import, p("hosts/alpha.nix"))]
        );
        assert_eq!(
            refs_at("import (self + \"/hosts/${h}\")", "lib/x.nix"),
            vec![(RefKind::Import, under("hosts"))]
        );
        // Passing self along and selecting modules from it is no dependency by itself.
        assert_eq!(
            refs_at(
                "{ specialArgs = { inherit self; }; m = self.nixosModules.x; }",
                "flake.nix"
            ),
            vec![]
        );
    }

    #[test]
    fn self_in_a_subdirectory_flake_is_that_directory() {
        let r = references("import (self + \"/hosts/a.nix\")", "nix/flake.nix", "nix");
        assert_eq!(r.refs[0].target, p("nix/hosts/a.nix"));
    }

    #[test]
    fn all_inputs_used_as_a_whole() {
        let r = references(
            "{ inputs, ... }: { nix.registry = builtins.mapAttrs (_: f: { flake = f; }) inputs; }",
            "m.nix",
            "",
        );
        assert!(r.all_inputs);
        assert!(r.refs.iter().any(|r| r.kind == RefKind::Rev));
        let r = references(
            "{ inputs, ... }: { x = inputs.agenix.nixosModules.default; }",
            "m.nix",
            "",
        );
        assert!(!r.all_inputs);
        assert!(r.idents.contains("agenix"));
    }

    #[test]
    fn input_uses_exclude_bindings_and_dev_shells() {
        let src = "{ inputs.nixpkgs.url = \"x\"; outputs = { self, nixpkgs, devtools, agenix }: { nixosConfigurations.a = nixpkgs.lib.nixosSystem { modules = [ agenix.nixosModules.default ]; }; devShells.x86_64-linux.default = devtools.mkShell { }; }; }";
        let r = references(src, "flake.nix", "");
        assert!(r.idents.contains("nixpkgs"));
        assert!(r.idents.contains("agenix"));
        assert!(!r.idents.contains("devtools"), "{:?}", r.idents);
        assert!(!r.idents.contains("outputs"));
    }

    #[test]
    fn parse_errors_widen_to_the_directory() {
        let r = references(
            "{ imports = [ ./a.nix ]; broken = ",
            "machines/alpha/default.nix",
            "",
        );
        assert!(!r.errors.is_empty());
        assert!(r.refs.contains(&Reference {
            kind: RefKind::Copy,
            target: under("machines/alpha"),
            line: 1,
            column: 1,
            dynamic: true,
            text: "(file does not parse)".into(),
            unreached: false,
            output: None,
            module_list_of: Vec::new(),
            per_host_name: false,
            suffix: None,
        }));
        assert!(r.refs.iter().any(|x| x.target == p("machines/alpha/a.nix")));
    }

    #[test]
    fn absolute_path_appended_to_self_is_inside_the_repository() {
        // `self + /modules/x` is the repository's modules/x (srid's fleet
        // imports its modules this way): not a read outside the repository,
        // and not a computed path under the whole tree.
        assert_eq!(
            refs("{ imports = [ (self + /modules/nixos/gc.nix) ]; }"),
            vec![(RefKind::Import, p("modules/nixos/gc.nix"))]
        );
        // As a value, the sum is a string inside the whole source's store
        // path: the sub-path's content plus that path (a stamp).
        assert_eq!(
            refs("{ m = inputs.self + /modules/home; }"),
            vec![
                (RefKind::Copy, p("modules/home")),
                (RefKind::TreePath, Target::None)
            ]
        );
        assert_eq!(
            refs("{ m = flake.inputs.self + /secrets/key.age; r = flake.inputs.self.rev; }"),
            vec![
                (RefKind::Copy, p("secrets/key.age")),
                (RefKind::TreePath, Target::None),
                (RefKind::Rev, Target::None)
            ]
        );
        assert_eq!(
            refs("{ imports = [ (./. + /hardware.nix) ]; }"),
            vec![(RefKind::Import, p("machines/alpha/hardware.nix"))]
        );
        // Interpolated: anything below the constant part.
        assert_eq!(
            refs("{ imports = [ (self + /modules/${name}) ]; }"),
            vec![(RefKind::Import, under("modules"))]
        );
        // An absolute path on its own, or after a string, is still outside.
        assert_eq!(
            refs("{ a = /etc/hosts; b = \"x\" + /etc/passwd; }"),
            vec![
                (RefKind::External, Target::None),
                (RefKind::External, Target::None)
            ]
        );
    }

    #[test]
    fn lookups_no_host_reaches_are_marked() {
        let r = references(
            "{ pkgs ? import <nixpkgs> { } }: { x = <home-manager>; devShells.x = <dev>; }",
            "pkgs/default.nix",
            "",
        );
        let ext: Vec<(&str, bool)> = r
            .refs
            .iter()
            .filter(|r| r.kind == RefKind::External)
            .map(|r| (r.text.as_str(), r.unreached))
            .collect();
        assert_eq!(
            ext,
            vec![
                ("<nixpkgs>", true),
                ("<home-manager>", false),
                ("<dev>", true)
            ]
        );
    }

    #[test]
    fn positions_are_one_based() {
        let r = references("{\n  imports = [\n    ./a.nix\n  ];\n}\n", "x.nix", "");
        assert_eq!((r.refs[0].line, r.refs[0].column), (3, 5));
    }

    #[test]
    fn strings_that_look_like_paths_are_not_references() {
        assert_eq!(
            refs("{ passwordFile = \"/run/secrets/x\"; a = \"./not-a-path\"; }"),
            vec![]
        );
    }

    #[test]
    fn garbage_never_panics() {
        for src in [
            "",
            "{",
            "./",
            "''${",
            "import",
            "\u{0}\u{1}",
            "let in",
            "a.${b}.c",
            "./a/${",
        ] {
            let _ = references(src, "x.nix", "");
        }
    }
}

/// Stamps, flake-output regions, per-host module lists, computed-path
/// suffixes and path functions (issue 13).
#[cfg(test)]
mod precision_tests {
    use super::*;

    fn kinds(src: &str, path: &str) -> Vec<(RefKind, Target)> {
        references(src, path, "")
            .refs
            .into_iter()
            .map(|r| (r.kind, r.target))
            .collect()
    }

    fn p(s: &str) -> Target {
        Target::Path(s.into())
    }

    #[test]
    fn reads_of_other_hosts_name_the_host_and_the_option() {
        let reads = |src: &str| -> Vec<(String, Vec<String>, Option<String>)> {
            references(src, "m.nix", "")
                .host_reads
                .into_iter()
                .map(|r| (r.host, r.option, r.within))
                .collect()
        };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            reads("{ self, ... }: { x = self.nixosConfigurations.b.config.networking.hostName; }"),
            vec![("b".into(), s(&["networking", "hostName"]), None)]
        );
        assert_eq!(
            reads("{ nodes, ... }: { x = nodes.${n}.config.y; z = nodes.sentinel.config; }"),
            vec![
                ("*".into(), s(&["y"]), None),
                ("sentinel".into(), vec![], None)
            ]
        );
        assert_eq!(
            reads("{ packages.x = self.nixosConfigurations.\"iso-${system}\".config.a; }"),
            vec![("iso-*".into(), s(&["a"]), Some("packages".into()))]
        );
        assert_eq!(
            reads(
                "{ outputs = { self }: { deploy.nodes = mapAttrs f self.nixosConfigurations; }; }"
            ),
            vec![("*".into(), vec![], Some("deploy".into()))]
        );
        assert_eq!(
            reads("{ inputs, ... }: { x = inputs.self.nixosConfigurations; }"),
            vec![("*".into(), vec![], None)]
        );
        assert!(reads("{ nixosConfigurations.a = mk ./a.nix; }").is_empty());
        assert!(host_pattern_matches("iso-*", "iso-x86_64-linux"));
        assert!(!host_pattern_matches("iso-*", "web01"));
        assert!(host_pattern_matches("*", "web01") && host_pattern_matches("b", "b"));
    }

    #[test]
    fn sub_paths_of_the_source_are_content_plus_a_stamp() {
        assert_eq!(
            kinds("{ self }: { f = \"${self}/secrets/wg\"; }", "m.nix"),
            vec![
                (RefKind::Copy, p("secrets/wg")),
                (RefKind::TreePath, Target::None)
            ]
        );
        // `ln -s ${self}` names the source; `cp -r ${self} .` reads it.
        assert_eq!(
            kinds(
                "{ self }: { c = ''\n  ln -s ${self} $out/flake\n''; }",
                "m.nix"
            ),
            vec![(RefKind::TreePath, Target::None)]
        );
        assert_eq!(
            kinds("{ self }: { c = ''\n  cp -r ${self} src\n''; }", "m.nix"),
            vec![(RefKind::Tree, Target::None)]
        );
        // `outPath` is the source, as `self` is.
        assert_eq!(
            kinds(
                "{ inputs, self }: { a = inputs.self.outPath + \"/secrets/g\"; b = self.outPath + \"/x\"; }",
                "m.nix"
            ),
            vec![
                (RefKind::Copy, p("secrets/g")),
                (RefKind::TreePath, Target::None),
                (RefKind::Copy, p("x")),
                (RefKind::TreePath, Target::None)
            ]
        );
        // A script's text names the path; writing it reads nothing.
        assert_eq!(
            kinds(
                "{ self, pkgs }: { s = pkgs.writeShellApplication { name = \"x\"; text = ''\n  nix build path:${self}\n''; }; }",
                "m.nix"
            ),
            vec![(RefKind::TreePath, Target::None)]
        );
        assert_eq!(
            kinds("{ self }: { src = self; srvos.flake = self; }", "m.nix"),
            vec![
                (RefKind::Tree, Target::None),
                (RefKind::TreePath, Target::None)
            ]
        );
        // Passed on as an argument: judged where it is used.
        assert_eq!(
            kinds("{ self }: { specialArgs = { flake = self; }; }", "m.nix"),
            vec![]
        );
    }

    #[test]
    fn references_in_outputs_no_host_reads_name_the_output() {
        let outputs = |src: &str| -> Vec<Option<String>> {
            references(src, "flake.nix", "")
                .refs
                .into_iter()
                .map(|r| r.output)
                .collect()
        };
        assert_eq!(
            outputs(
                "{ outputs = { self }: { devShells.x = import ./shell.nix; nixosConfigurations.a = import ./a.nix; }; }"
            ),
            vec![Some("devShells".into()), None]
        );
        // flake-parts: the innermost output inside perSystem.
        assert_eq!(
            outputs(
                "{ perSystem = { pkgs, ... }: { packages.x = pkgs.callPackage ./p.nix { }; y = ./y; }; }"
            ),
            vec![Some("packages".into()), Some("perSystem".into())]
        );
        // A NixOS option named `packages` is not an output.
        assert_eq!(
            outputs(
                "{ users.users.a = { packages = [ ./x ]; }; modules = [ { packages = ./y; } ]; }"
            ),
            vec![None, None]
        );
        // A let binding used only in one output belongs to it.
        assert_eq!(
            outputs(
                "{ outputs = { self }: let mk = n: ./apps + \"/${n}\"; in { apps.x = mk \"a\"; }; }"
            ),
            vec![Some("apps".into())]
        );
        assert_eq!(
            outputs(
                "{ outputs = { self }: let m = ./m.nix; in { apps.x = m; nixosConfigurations.a = m; }; }"
            ),
            vec![None]
        );
        // A library's helpers: what a home-manager or darwin builder is
        // given belongs to that output, what nixosSystem is given does not.
        assert_eq!(
            outputs(
                "rec { mkHome = { h }: inputs.home-manager.lib.homeManagerConfiguration { modules = [ ../home-manager ]; }; \
                 mkDarwin = h: darwinSystem { modules = [ ../darwin ]; }; \
                 mkNixos = h: lib.nixosSystem { modules = [ ../nixos ]; }; }"
            ),
            vec![
                Some("homeConfigurations".into()),
                Some("darwinConfigurations".into()),
                None
            ]
        );
    }

    #[test]
    fn per_attribute_outputs_name_their_attribute() {
        let outputs = |src: &str| -> Vec<Option<String>> {
            references(src, "flake-module.nix", "")
                .refs
                .into_iter()
                .map(|r| r.output)
                .collect()
        };
        assert_eq!(
            outputs(
                "{ flake.nixosModules = { web01.imports = [ ./web01 ]; server = ./server.nix; }; flake.nixosModules.db = ./db.nix; flake.modules.terranix.x = ./t.nix; }"
            ),
            vec![
                Some("nixosModules.web01".into()),
                Some("nixosModules.server".into()),
                Some("nixosModules.db".into()),
                Some("modules.terranix".into())
            ]
        );
        // A builder's `modules` list is no output.
        assert_eq!(
            outputs("{ system = \"x\"; modules = [ ./a.nix ]; }"),
            vec![None]
        );
        let reads = |src: &str| -> Vec<String> {
            references(src, "m.nix", "")
                .output_reads
                .into_iter()
                .map(|(o, _)| o)
                .collect()
        };
        assert_eq!(
            reads("{ self, ... }: { imports = [ self.nixosModules.web01 ]; }"),
            vec!["nixosModules.web01"]
        );
        assert_eq!(
            reads("{ self, ... }: { imports = builtins.attrValues self.nixosModules; }"),
            vec!["nixosModules.*"]
        );
        assert_eq!(
            reads("{ self, name, ... }: { imports = [ self.nixosModules.${name} ]; }"),
            vec!["nixosModules.*"]
        );
        assert_eq!(
            reads("{ self, ... }: let inherit (self.nixosModules) a b; in { }"),
            vec!["nixosModules.a", "nixosModules.b"]
        );
        assert_eq!(
            reads("{ self, system, ... }: let inherit (self.packages.${system}) a; in { }"),
            vec!["packages"]
        );
    }

    #[test]
    fn reads_of_the_flakes_own_outputs_are_recorded() {
        let r = references(
            "{ self, config, ... }: { a = self.packages.x86_64-linux.foo; b = config.flake.checks; c = inputs.foo.packages.x; }",
            "m.nix",
            "",
        );
        let reads: Vec<&str> = r.output_reads.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(reads, vec!["checks", "packages"]);
        let r = references(
            "{ withSystem, ... }: { x = withSystem \"x\" (p: p); }",
            "m.nix",
            "",
        );
        assert!(r.output_reads.iter().any(|(o, _)| o == "perSystem"));
    }

    #[test]
    fn a_module_list_names_its_configuration() {
        let r = references(
            "{ garfield = nixosSystem { modules = [ ./hosts/garfield ]; }; common = [ ./c.nix ]; }",
            "flake.nix",
            "",
        );
        let owners: Vec<&[String]> = r.refs.iter().map(|r| r.module_list_of.as_slice()).collect();
        assert_eq!(owners, vec![&["garfield".to_string()][..], &[][..]]);
        // modules lists are imported, not copied.
        assert_eq!(r.refs[0].kind, RefKind::Import);
        // A let-bound list used by two configurations' imports.
        let r = references(
            "let common = [ ./users ]; more = common ++ [ ./x.nix ]; in { a = { imports = more ++ [ ./a.nix ]; }; b = { imports = more; }; c = { imports = [ ./c.nix ]; }; }",
            "configurations.nix",
            "",
        );
        let users = r.refs.iter().find(|r| r.text == "./users").unwrap();
        assert_eq!(users.module_list_of, vec!["a".to_string(), "b".to_string()]);
        // Used anywhere else: unknown.
        let r = references(
            "let common = [ ./users ]; in { a.imports = common; x = map f common; }",
            "configurations.nix",
            "",
        );
        assert!(r.refs[0].module_list_of.is_empty());
        // Inside an inline module of a let-bound list: the list's owners.
        let r = references(
            "let common = [ ({ config, ... }: { f = [ (./. + \"/h/${config.networking.hostName}.yml\") ]; }) ]; in { a.imports = common; }",
            "configurations.nix",
            "",
        );
        assert_eq!(r.refs[0].module_list_of, vec!["a".to_string()]);
    }

    #[test]
    fn a_computed_path_keeps_its_file_name_end() {
        let r = references("{ f = ./. + \"/hosts/${h}.yml\"; }", "m.nix", "");
        assert_eq!(r.refs[0].target, Target::Under("hosts".into()));
        assert_eq!(r.refs[0].suffix.as_deref(), Some(".yml"));
        let r = references("{ f = ./. + \"/hosts/${h}\"; }", "m.nix", "");
        assert_eq!(r.refs[0].suffix, None);
        let r = references("{ f = ./hosts/${n}/configuration.nix; }", "m.nix", "");
        assert_eq!(r.refs[0].suffix.as_deref(), Some("/configuration.nix"));
        assert!(matches_suffix(
            "hosts/a/configuration.nix",
            "/configuration.nix"
        ));
        assert!(matches_suffix("hosts/a/secrets/k", "/secrets"));
        assert!(!matches_suffix("hosts/known_hosts", "/configuration.nix"));
    }

    #[test]
    fn host_names_and_paths_computed_from_them() {
        let r = references(
            "{ config, ... }: { networking.hostName = \"ace\"; sops.defaultSopsFile = ./. + \"/hosts/${config.networking.hostName}.yml\"; }",
            "hosts/ace.nix",
            "",
        );
        assert_eq!(r.host_names, vec!["ace".to_string()]);
        assert!(r.refs[0].per_host_name);
        assert_eq!(r.refs[0].suffix.as_deref(), Some(".yml"));
        let r = references(
            "{ lib, name, ... }: { networking = { hostName = lib.mkDefault \"x\"; }; b.networking.hostName = name; }",
            "m.nix",
            "",
        );
        assert_eq!(r.host_names.len(), 2);
        assert_eq!(r.host_names[0], "x");
        assert!(
            r.host_names[1].starts_with('\u{0}'),
            "a computed name is marked"
        );
    }

    #[test]
    fn path_functions_and_their_calls() {
        let def = references(
            "{ lib, ... }: { relativeToRoot = lib.path.append ../.; }",
            "lib/default.nix",
            "",
        );
        assert!(def.refs.is_empty(), "{:?}", def.refs);
        assert_eq!(
            def.path_functions.get("relativeToRoot").map(String::as_str),
            Some("")
        );
        let calls = references(
            "{ lib, ... }: { imports = [ (lib.custom.relativeToRoot \"hosts/x.nix\") ] ++ (map lib.custom.relativeToRoot [ \"a\" \"b/c.nix\" ]); src = lib.custom.relativeToRoot \".\"; }",
            "hosts/h/default.nix",
            "",
        );
        let got: Vec<(&str, RefKind)> = calls
            .path_calls
            .iter()
            .map(|c| (c.arg.as_str(), c.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("hosts/x.nix", RefKind::Import),
                ("a", RefKind::Import),
                ("b/c.nix", RefKind::Import),
                (".", RefKind::Copy)
            ]
        );
        // Three occurrences of the name, three call sites: nothing passed
        // on as a value.
        assert_eq!(calls.name_uses.get("relativeToRoot"), Some(&3));
    }
}

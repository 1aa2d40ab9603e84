//! flake.lock: which root inputs a lock change touched. A host is affected
//! by a lock change only through the inputs it uses (design notes, 8.2).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The root inputs whose locked content (including their own inputs,
/// followed through `follows`) differs between two lock files. A missing
/// lock counts as having no inputs.
pub fn changed_inputs(old: Option<&[u8]>, new: Option<&[u8]>) -> Result<BTreeSet<String>, String> {
    let old = fingerprints(old)?;
    let new = fingerprints(new)?;
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    Ok(names
        .into_iter()
        .filter(|n| old.get(*n) != new.get(*n))
        .cloned()
        .collect())
}

/// Root input name -> canonical text of everything it locks.
fn fingerprints(lock: Option<&[u8]>) -> Result<BTreeMap<String, String>, String> {
    let Some(bytes) = lock else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let (nodes, root_key, root) = parts(&v)?;
    let mut out = BTreeMap::new();
    if let Some(inputs) = root.get("inputs").and_then(Value::as_object) {
        for (name, spec) in inputs {
            let key = resolve(nodes, root_key, spec, 0);
            let mut seen = BTreeSet::new();
            out.insert(name.clone(), node_text(nodes, key.as_deref(), &mut seen));
        }
    }
    Ok(out)
}

/// The nodes, the root's key and the root node of a parsed lock.
fn parts(v: &Value) -> Result<(&serde_json::Map<String, Value>, &str, &Value), String> {
    let nodes = v
        .get("nodes")
        .and_then(Value::as_object)
        .ok_or("no \"nodes\" object")?;
    let root_key = v.get("root").and_then(Value::as_str).unwrap_or("root");
    let root = nodes.get(root_key).ok_or("the root node is missing")?;
    Ok((nodes, root_key, root))
}

/// An input spec is a node key, or a `follows` path from the root.
fn resolve(
    nodes: &serde_json::Map<String, Value>,
    root_key: &str,
    spec: &Value,
    depth: usize,
) -> Option<String> {
    if depth > 64 {
        return None;
    }
    match spec {
        Value::String(k) => Some(k.clone()),
        Value::Array(path) => {
            let mut cur = root_key.to_string();
            for step in path {
                let next = nodes.get(&cur)?.get("inputs")?.get(step.as_str()?)?;
                cur = resolve(nodes, root_key, next, depth + 1)?;
            }
            Some(cur)
        }
        _ => None,
    }
}

fn node_text(
    nodes: &serde_json::Map<String, Value>,
    key: Option<&str>,
    seen: &mut BTreeSet<String>,
) -> String {
    let Some(key) = key else {
        return "(unresolved)".into();
    };
    if !seen.insert(key.to_string()) {
        return format!("(cycle {key})");
    }
    let Some(node) = nodes.get(key) else {
        return "(missing)".into();
    };
    let mut text = node
        .get("locked")
        .map(|l| l.to_string())
        .unwrap_or_default();
    text.push_str(&node.get("flake").map(|f| f.to_string()).unwrap_or_default());
    if let Some(inputs) = node.get("inputs").and_then(Value::as_object) {
        for (name, spec) in inputs {
            let sub = resolve(nodes, "root", spec, 0);
            text.push_str(&format!(
                "|{name}={}",
                node_text(nodes, sub.as_deref(), seen)
            ));
        }
    }
    seen.remove(key);
    text
}

/// One node of a lock file, as the hygiene checks read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockNode {
    /// The node's key in `nodes` (`nixpkgs_2`).
    pub key: String,
    /// `locked.type` (`github`, `git`, `path`, `tarball`, ...).
    pub kind: String,
    /// `owner/repo` of github/gitlab/sourcehut inputs.
    pub owner_repo: Option<String>,
    /// `url` of git/tarball/... inputs (locked, else original).
    pub url: Option<String>,
    /// `path` of a `path:` input (locked, else original).
    pub path: Option<String>,
    /// The branch or tag the input follows (`original.ref`, or the third
    /// part of a `github:owner/repo/ref` reference).
    pub reference: Option<String>,
    /// `original` names a commit (`?rev=`): pinned on purpose.
    pub pinned: bool,
    pub rev: Option<String>,
    pub nar_hash: Option<String>,
    /// `locked.lastModified` (seconds since the epoch).
    pub last_modified: Option<i64>,
    /// Whether the node has a `locked` attribute at all.
    pub has_locked: bool,
}

impl LockNode {
    /// Locked to a revision: git-like inputs by `rev`, others (`path`,
    /// `tarball`, `file`) by `narHash`.
    pub fn is_locked(&self) -> bool {
        if !self.has_locked {
            return false;
        }
        match self.kind.as_str() {
            "github" | "gitlab" | "sourcehut" | "git" | "mercurial" => self.rev.is_some(),
            _ => self.rev.is_some() || self.nar_hash.is_some(),
        }
    }

    /// A copy of nixpkgs fetched from upstream: `NixOS/nixpkgs` on a
    /// forge, or a URL naming it (a local `path:` stand-in is not one).
    pub fn is_nixpkgs(&self) -> bool {
        let named = |s: &str| s.to_ascii_lowercase().contains("nixos/nixpkgs");
        self.owner_repo.as_deref().is_some_and(named)
            || self
                .url
                .as_deref()
                .is_some_and(|u| named(u) || u.contains("nixos.org/channels"))
    }

    /// What the node is locked to, for messages: a short rev, else the
    /// narHash's start.
    pub fn locked_to(&self) -> String {
        match (&self.rev, &self.nar_hash) {
            (Some(r), _) => r.chars().take(12).collect(),
            (None, Some(h)) => h.chars().take(20).collect(),
            (None, None) => "nothing".into(),
        }
    }
}

/// A parsed flake.lock: root inputs and every node.
#[derive(Debug, Clone, Default)]
pub struct LockFile {
    /// Root input name -> node key (None: a follows path that leads
    /// nowhere).
    pub root_inputs: BTreeMap<String, Option<String>>,
    pub nodes: BTreeMap<String, LockNode>,
    /// Node key -> (input name, node key) of its own inputs, follows
    /// resolved.
    edges: BTreeMap<String, Vec<(String, Option<String>)>>,
}

impl LockFile {
    /// Parses flake.lock bytes (format version 7).
    pub fn parse(bytes: &[u8]) -> Result<LockFile, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let (nodes, root_key, root) = parts(&v)?;
        let inputs_of = |node: &Value| -> Vec<(String, Option<String>)> {
            node.get("inputs")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(n, spec)| (n.clone(), resolve(nodes, root_key, spec, 0)))
                .collect()
        };
        let mut out = LockFile {
            root_inputs: inputs_of(root).into_iter().collect(),
            ..LockFile::default()
        };
        for (key, node) in nodes {
            if key == root_key {
                continue;
            }
            out.edges.insert(key.clone(), inputs_of(node));
            out.nodes.insert(key.clone(), lock_node(key, node));
        }
        Ok(out)
    }

    /// The node keys root input `name` brings in: its node and, through
    /// its own inputs, theirs (follows resolved, so a followed input is
    /// the node it follows).
    pub fn closure_of(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<String> = self
            .root_inputs
            .get(name)
            .cloned()
            .flatten()
            .into_iter()
            .collect();
        while let Some(k) = stack.pop() {
            if !out.insert(k.clone()) {
                continue;
            }
            for (_, sub) in self.edges.get(&k).into_iter().flatten() {
                if let Some(sub) = sub {
                    stack.push(sub.clone());
                }
            }
        }
        out
    }

    /// Which input of `parent` (a node key) is node `key`, if one is.
    pub fn input_name(&self, parent: &str, key: &str) -> Option<&str> {
        self.edges
            .get(parent)?
            .iter()
            .find(|(_, k)| k.as_deref() == Some(key))
            .map(|(n, _)| n.as_str())
    }

    /// Copies of nixpkgs no root input names, each with the root inputs
    /// that bring it in and the node that declares it: what a `follows`
    /// would remove. Empty when the root has no nixpkgs to follow.
    pub fn duplicate_nixpkgs(&self) -> Vec<DuplicateNixpkgs> {
        let root_keys: BTreeSet<&str> = self
            .root_inputs
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        let Some(main) = self.main_nixpkgs() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, node) in &self.nodes {
            if !node.is_nixpkgs() || root_keys.contains(key.as_str()) {
                continue;
            }
            let via: Vec<String> = self
                .root_inputs
                .keys()
                .filter(|r| self.closure_of(r).contains(key))
                .cloned()
                .collect();
            let declared_by: Vec<(String, String)> = self
                .edges
                .keys()
                .filter_map(|parent| {
                    let name = self.input_name(parent, key)?;
                    let parent_root = self
                        .root_inputs
                        .iter()
                        .find(|(_, k)| k.as_deref() == Some(parent.as_str()))
                        .map(|(n, _)| n.clone())?;
                    Some((parent_root, name.to_string()))
                })
                .collect();
            out.push(DuplicateNixpkgs {
                key: key.clone(),
                via,
                declared_by,
                main: main.to_string(),
            });
        }
        out
    }

    /// The root input a copy of nixpkgs should follow: `nixpkgs` if it is
    /// one, else the first nixpkgs root input.
    pub fn main_nixpkgs(&self) -> Option<&str> {
        let is = |k: &Option<String>| {
            k.as_ref()
                .and_then(|k| self.nodes.get(k))
                .is_some_and(LockNode::is_nixpkgs)
        };
        if self.root_inputs.get("nixpkgs").is_some_and(is) {
            return Some("nixpkgs");
        }
        self.root_inputs
            .iter()
            .find(|(_, k)| is(k))
            .map(|(n, _)| n.as_str())
    }
}

/// Root inputs that are directories of this repository: `path:` inputs
/// with a relative path (`./inputs/x`), relative to the flake's directory.
/// An unreadable lock has none (the lock's own change is judged apart).
pub fn local_inputs(lock: Option<&[u8]>) -> Vec<(String, String)> {
    // Most locks have no `path` node at all: a byte search spares the whole
    // parse, which is most of `guard affected`'s time on a small fleet (nix
    // writes JSON strings unescaped, so a path node always holds `"path"`).
    let lock = lock.filter(|b| memchr::memmem::find(b, b"\"path\"").is_some());
    let Some(lock) = lock.and_then(|b| LockFile::parse(b).ok()) else {
        return Vec::new();
    };
    lock.root_inputs
        .iter()
        .filter_map(|(name, key)| {
            let node = lock.nodes.get(key.as_ref()?)?;
            let path = node.path.as_ref()?;
            (node.kind == "path" && !path.starts_with('/')).then(|| (name.clone(), path.clone()))
        })
        .collect()
}

/// A copy of nixpkgs that a `follows` would remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateNixpkgs {
    /// Its node key.
    pub key: String,
    /// The root inputs that bring it in (directly or deeper).
    pub via: Vec<String>,
    /// (root input, its input name) pairs that declare it directly: where
    /// `inputs.<root>.inputs.<name>.follows` goes.
    pub declared_by: Vec<(String, String)>,
    /// The root nixpkgs input to follow.
    pub main: String,
}

fn lock_node(key: &str, node: &Value) -> LockNode {
    let locked = node.get("locked");
    let original = node.get("original");
    let field = |v: Option<&Value>, k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let owner_repo = match (field(locked, "owner"), field(locked, "repo")) {
        (Some(o), Some(r)) => Some(format!("{o}/{r}")),
        _ => None,
    };
    LockNode {
        key: key.to_string(),
        kind: field(locked, "type")
            .or_else(|| field(original, "type"))
            .unwrap_or_default(),
        owner_repo,
        url: field(locked, "url").or_else(|| field(original, "url")),
        path: field(locked, "path").or_else(|| field(original, "path")),
        reference: field(original, "ref").or_else(|| {
            // `git+https://…?ref=nixos-24.05` keeps the ref in the URL.
            field(original, "url").and_then(|u| {
                let q = u.split_once('?')?.1;
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("ref="))
                    .map(|r| r.trim_start_matches("refs/heads/").to_string())
            })
        }),
        pinned: field(original, "rev").is_some(),
        rev: field(locked, "rev"),
        nar_hash: field(locked, "narHash"),
        last_modified: locked
            .and_then(|l| l.get("lastModified"))
            .and_then(Value::as_i64),
        has_locked: locked.is_some_and(Value::is_object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"{"nodes":{
        "nixpkgs":{"locked":{"narHash":"sha256-A","rev":"a"}},
        "devshell":{"locked":{"narHash":"sha256-D","rev":"d"},"inputs":{"nixpkgs":["nixpkgs"]}},
        "root":{"inputs":{"nixpkgs":"nixpkgs","devshell":"devshell"}}},
        "root":"root","version":7}"#;

    #[test]
    fn only_the_touched_input_changes() {
        let new = OLD.replace("sha256-D\",\"rev\":\"d", "sha256-E\",\"rev\":\"e");
        let c = changed_inputs(Some(OLD.as_bytes()), Some(new.as_bytes())).unwrap();
        assert_eq!(c, BTreeSet::from(["devshell".to_string()]));
    }

    #[test]
    fn follows_propagate() {
        let new = OLD.replace("sha256-A\",\"rev\":\"a", "sha256-B\",\"rev\":\"b");
        let c = changed_inputs(Some(OLD.as_bytes()), Some(new.as_bytes())).unwrap();
        assert_eq!(
            c,
            BTreeSet::from(["devshell".to_string(), "nixpkgs".to_string()])
        );
    }

    #[test]
    fn added_and_removed_inputs() {
        let empty = r#"{"nodes":{"root":{}},"root":"root","version":7}"#;
        let c = changed_inputs(Some(empty.as_bytes()), Some(OLD.as_bytes())).unwrap();
        assert_eq!(c.len(), 2);
        let c = changed_inputs(None, Some(empty.as_bytes())).unwrap();
        assert!(c.is_empty());
    }

    #[test]
    fn broken_lock_is_an_error() {
        assert!(changed_inputs(Some(b"{"), Some(OLD.as_bytes())).is_err());
        assert!(changed_inputs(Some(b"{}"), Some(OLD.as_bytes())).is_err());
    }

    const HYGIENE: &str = r#"{"nodes":{
        "nixpkgs":{"locked":{"type":"github","owner":"NixOS","repo":"nixpkgs","rev":"a","narHash":"sha256-A","lastModified":1700000000},
                   "original":{"type":"github","owner":"NixOS","repo":"nixpkgs","ref":"nixos-23.11"}},
        "nixpkgs_2":{"locked":{"type":"github","owner":"NixOS","repo":"nixpkgs","rev":"b","narHash":"sha256-B","lastModified":1690000000},
                   "original":{"type":"github","owner":"NixOS","repo":"nixpkgs","ref":"nixos-unstable"}},
        "hm":{"locked":{"type":"github","owner":"nix-community","repo":"home-manager","rev":"h"},"inputs":{"nixpkgs":"nixpkgs_2"}},
        "agenix":{"locked":{"type":"github","owner":"ryantm","repo":"agenix","rev":"g"},"inputs":{"nixpkgs":["nixpkgs"]}},
        "local":{"locked":{"type":"path","path":"./x","narHash":"sha256-L"},"original":{"type":"path","path":"./x"}},
        "floating":{"locked":{"type":"git","url":"https://example.org/x.git"},"original":{"type":"git","url":"https://example.org/x.git?ref=main"}},
        "root":{"inputs":{"nixpkgs":"nixpkgs","hm":"hm","agenix":"agenix","local":"local","floating":"floating"}}},
        "root":"root","version":7}"#;

    #[test]
    fn lock_nodes_and_duplicates() {
        let l = LockFile::parse(HYGIENE.as_bytes()).unwrap();
        let n = &l.nodes["nixpkgs"];
        assert!(n.is_nixpkgs() && n.is_locked());
        assert_eq!(n.reference.as_deref(), Some("nixos-23.11"));
        assert_eq!(n.last_modified, Some(1700000000));
        assert!(l.nodes["local"].is_locked() && !l.nodes["local"].is_nixpkgs());
        assert!(!l.nodes["floating"].is_locked());
        assert_eq!(l.nodes["floating"].reference.as_deref(), Some("main"));
        assert_eq!(l.main_nixpkgs(), Some("nixpkgs"));
        assert!(l.closure_of("agenix").contains("nixpkgs"));
        let d = l.duplicate_nixpkgs();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].key, "nixpkgs_2");
        assert_eq!(d[0].via, ["hm"]);
        assert_eq!(
            d[0].declared_by,
            [("hm".to_string(), "nixpkgs".to_string())]
        );
        assert!(LockFile::parse(b"[]").is_err());
        assert_eq!(
            local_inputs(Some(HYGIENE.as_bytes())),
            [("local".to_string(), "./x".to_string())]
        );
        assert!(local_inputs(None).is_empty());
    }

    #[test]
    fn cycles_terminate() {
        let cyc = r#"{"nodes":{"a":{"locked":{},"inputs":{"b":"b"}},"b":{"locked":{},"inputs":{"a":"a"}},"root":{"inputs":{"a":"a"}}},"root":"root","version":7}"#;
        assert!(
            changed_inputs(Some(cyc.as_bytes()), Some(cyc.as_bytes()))
                .unwrap()
                .is_empty()
        );
    }
}

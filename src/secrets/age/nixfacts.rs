//! What Nix files say about secrets, read statically with rnix: which
//! option each constant path literal is assigned to (`secrix.system.
//! secrets.<n>.encrypted.file`, `age.secrets.<n>.file`, …), the host's
//! `secrix.hostPubKey`, secrix user keys, and agenix `secrets.nix` rules.
//!
//! Pure functions of a file's text and repository path, like
//! `nix::parse`. Nothing is evaluated: a value guard cannot read as a
//! constant is reported as dynamic, never guessed.

use std::collections::BTreeMap;

use crate::nix::parse::unparen;
use rnix::{SyntaxKind::*, SyntaxNode};

use crate::nix::parse::normalize;

/// A constant relative path literal and the option it is assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathUse {
    /// Repository-relative path the literal resolves to.
    pub path: String,
    /// Dotted attribute path (`config.` removed), when the literal is the
    /// value (or inside the value) of an attribute definition.
    pub option: Option<String>,
    /// 1-based line of the literal.
    pub line: usize,
    /// `self + /secrets/x.age`: a path from the flake's root, which the
    /// import graph does not list (the use is read from here).
    pub rooted: bool,
}

/// The value of a key definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// A string literal.
    Literal(String),
    /// `readFile ./x.pub` / `lib.fileContents ./x.pub`: that file's content.
    File(String),
    /// Anything else (interpolation, a variable, a function call).
    Dynamic,
}

/// One `secrix.hostPubKey = …;` definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDef {
    /// `secrix.hostPubKey` or `age.rekey.hostPubkey`.
    pub option: &'static str,
    pub value: KeyValue,
    /// NixOS priority: `mkForce` 50, plain 100, `mkDefault` 1000.
    pub priority: u32,
    pub line: usize,
}

/// Everything guard reads from one Nix module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NixFacts {
    pub paths: Vec<PathUse>,
    pub host_keys: Vec<KeyDef>,
    /// Key strings under `secrix.defaultEncryptKeys` / `…encryptKeys`:
    /// users who may legitimately be recipients of secrets.
    pub user_keys: Vec<String>,
    /// agenix-rekey settings in this file.
    pub rekey: Option<super::rekey::RekeyConfig>,
    /// `sops.age.keyFile` is set: the host decrypts with an age key file.
    pub sops_key_file: bool,
    /// `sops.age.sshKeyPaths`: `Some(false)` for an empty list (no SSH
    /// key used), `Some(true)` for anything else.
    pub sops_ssh_paths: Option<bool>,
    /// Public keys the file declares (see `declared`).
    pub declared: Vec<super::declared::Declared>,
}

/// Reads the facts of the Nix file at repository path `path`.
pub fn facts(src: &str, path: &str) -> NixFacts {
    let root = rnix::Root::parse(src).syntax();
    let dir = parent(path);
    let lines = LineIndex::new(src);
    let mut out = NixFacts::default();
    for node in root.descendants() {
        match node.kind() {
            NODE_PATH_REL => {
                if let Some(p) = const_path(&node, &dir) {
                    out.paths.push(PathUse {
                        path: p,
                        option: option_of(&node),
                        line: lines.line(&node),
                        rooted: false,
                    });
                }
            }
            NODE_BIN_OP => {
                if let Some(p) = self_rooted(&node) {
                    out.paths.push(PathUse {
                        path: p,
                        option: option_of(&node),
                        line: lines.line(&node),
                        rooted: true,
                    });
                }
            }
            NODE_ATTRPATH_VALUE => {
                let Some(name) = full_attr_path(&node) else {
                    continue;
                };
                let Some(value) = node.children().nth(1) else {
                    continue;
                };
                if name == "secrix.hostPubKey" {
                    let (priority, inner) = strip_priority(&value);
                    out.host_keys.push(KeyDef {
                        option: "secrix.hostPubKey",
                        value: key_value(&inner, &dir),
                        priority,
                        line: lines.line(&node),
                    });
                } else if name == "sops.age.keyFile" {
                    out.sops_key_file = true;
                } else if name == "sops.age.sshKeyPaths" {
                    let v = unparen(&value);
                    let empty = v.kind() == NODE_LIST && v.children().next().is_none();
                    out.sops_ssh_paths = Some(out.sops_ssh_paths.unwrap_or(false) || !empty);
                } else if name == "age.rekey.hostPubkey" {
                    // agenix-rekey takes a key string or a path to a .pub
                    // file. A computed value (`secretsDir + "/host.pub"`)
                    // is left to the key declarations named after the host.
                    let (priority, inner) = strip_priority(&value);
                    let value = match key_value(&inner, &dir) {
                        KeyValue::Dynamic if inner.kind() == NODE_PATH_REL => {
                            match const_path(&inner, &dir) {
                                Some(p) => KeyValue::File(p),
                                None => KeyValue::Dynamic,
                            }
                        }
                        v => v,
                    };
                    if value != KeyValue::Dynamic {
                        out.host_keys.push(KeyDef {
                            option: "age.rekey.hostPubkey",
                            value,
                            priority,
                            line: lines.line(&node),
                        });
                    }
                } else if is_encrypt_keys_option(&name) {
                    for s in value.descendants().filter(|n| n.kind() == NODE_STRING) {
                        if let Some(text) = string_literal(&s)
                            && super::keys::looks_like_key(&text)
                        {
                            out.user_keys.push(text.trim().to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut rekey = super::rekey::RekeyConfig::default();
    if super::rekey::read_config(src, path, &mut rekey) {
        out.rekey = Some(rekey);
    }
    // A key is found once per enclosing binding (`defaultEncryptKeys` and
    // `defaultEncryptKeys.alice`).
    let mut seen = std::collections::HashSet::new();
    out.user_keys.retain(|k| seen.insert(k.clone()));
    out
}

/// secrix's user-key options: `secrix.defaultEncryptKeys.<user>` and
/// `secrix.{system,services.<svc>}.secrets.<n>.encryptKeys.<user>`.
fn is_encrypt_keys_option(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.first() == Some(&"secrix")
        && parts
            .iter()
            .any(|p| *p == "defaultEncryptKeys" || *p == "encryptKeys")
}

/// Whether an option names an encrypted secret file, and of which kind.
pub fn secret_option_kind(option: &str) -> Option<SecretKind> {
    let parts: Vec<&str> = option.split('.').collect();
    let ends = |suffix: &[&str]| parts.ends_with(suffix);
    // home-manager and nested configurations keep the same shape below a
    // prefix, so only the tail is matched.
    let pos = |name: &str| parts.iter().rposition(|p| *p == name);
    if ends(&["encrypted", "file"]) && pos("secrix").is_some() {
        return Some(SecretKind::Secrix);
    }
    if let Some(i) = pos("age")
        && parts.get(i + 1) == Some(&"secrets")
        && parts.len() == i + 4
    {
        match parts[i + 3] {
            "file" => return Some(SecretKind::Agenix),
            "rekeyFile" => return Some(SecretKind::Rekey),
            _ => {}
        }
    }
    if let Some(i) = pos("sops")
        && (parts[i + 1..] == ["defaultSopsFile"]
            || (parts.get(i + 1) == Some(&"secrets") && ends(&["sopsFile"])))
    {
        return Some(SecretKind::Sops);
    }
    None
}

/// The tools whose secret options guard recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretKind {
    Secrix,
    Agenix,
    /// agenix-rekey's `age.secrets.<n>.rekeyFile`: a master-encrypted
    /// source.
    Rekey,
    Sops,
}

/// `self + /secrets/x.age` (also `inputs.self`, `….outPath`): the
/// repository path `secrets/x.age`.
fn self_rooted(node: &SyntaxNode) -> Option<String> {
    let kids: Vec<SyntaxNode> = node.children().collect();
    let is_add = node.children_with_tokens().any(|t| t.kind() == TOKEN_ADD);
    if !is_add || kids.len() != 2 || kids[1].kind() != NODE_PATH_ABS {
        return None;
    }
    let lhs = kids[0].text().to_string();
    if !matches!(
        lhs.as_str(),
        "self" | "inputs.self" | "self.outPath" | "inputs.self.outPath"
    ) {
        return None;
    }
    let mut text = String::new();
    for child in kids[1].children_with_tokens() {
        match child {
            rnix::NodeOrToken::Token(t) => text.push_str(t.text()),
            rnix::NodeOrToken::Node(_) => return None,
        }
    }
    normalize(text.trim_start_matches('/'))
}

/// A path literal without interpolation, resolved against the file's
/// directory. `None` for paths that leave the repository.
fn const_path(node: &SyntaxNode, dir: &str) -> Option<String> {
    let mut text = String::new();
    for child in node.children_with_tokens() {
        match child {
            rnix::NodeOrToken::Token(t) => text.push_str(t.text()),
            rnix::NodeOrToken::Node(_) => return None,
        }
    }
    normalize(&format!("{dir}/{text}"))
}

/// The attribute path a value node is (inside) the value of, from the
/// nearest binding outwards. Let bindings and function arguments end the
/// walk without an option: `let f = ./x.age;` is not an option.
fn option_of(node: &SyntaxNode) -> Option<String> {
    let mut segments: Vec<String> = Vec::new();
    let mut cur = node.clone();
    let mut found = false;
    while let Some(p) = cur.parent() {
        match p.kind() {
            NODE_ATTRPATH_VALUE => {
                // Only as the value, not inside the attribute name.
                if p.children().next().as_ref() == Some(&cur) {
                    return None;
                }
                if p.parent().is_some_and(|g| g.kind() == NODE_LET_IN) {
                    return None;
                }
                let mut names = attrpath_names(&p.children().next()?);
                names.extend(segments);
                segments = names;
                found = true;
            }
            // `let … in body`: the body is still the module, the bindings
            // are not options.
            NODE_LET_IN if p.children().last().as_ref() != Some(&cur) => return None,
            _ => {}
        }
        cur = p;
    }
    if !found {
        return None;
    }
    if segments.first().map(String::as_str) == Some("config") {
        segments.remove(0);
    }
    Some(segments.join("."))
}

/// The full attribute path of a binding (its own path, prefixed by every
/// enclosing binding's), `config.` removed; `None` for let bindings.
fn full_attr_path(node: &SyntaxNode) -> Option<String> {
    if node.parent().is_some_and(|p| p.kind() == NODE_LET_IN) {
        return None;
    }
    // The walk from the value covers this binding's own names too.
    option_of(&node.children().nth(1)?)
}

/// The names of an attribute path; interpolated names become `*`.
fn attrpath_names(attrpath: &SyntaxNode) -> Vec<String> {
    attrpath
        .children()
        .map(|c| match c.kind() {
            NODE_IDENT => c.text().to_string(),
            NODE_STRING => string_literal(&c).unwrap_or_else(|| "*".into()),
            _ => "*".into(),
        })
        .collect()
}

/// The text of a string without interpolation.
pub fn string_literal(node: &SyntaxNode) -> Option<String> {
    if node.kind() != NODE_STRING {
        return None;
    }
    let mut s = String::new();
    for child in node.children_with_tokens() {
        match child {
            rnix::NodeOrToken::Token(t) if t.kind() == TOKEN_STRING_CONTENT => s.push_str(t.text()),
            rnix::NodeOrToken::Token(_) => {}
            rnix::NodeOrToken::Node(_) => return None,
        }
    }
    Some(s)
}

/// The last name of a function expression (`lib.mkDefault` -> `mkDefault`).
fn function_name(f: &SyntaxNode) -> Option<String> {
    let f = unparen(f);
    match f.kind() {
        NODE_IDENT => Some(f.text().to_string()),
        NODE_SELECT => f
            .children()
            .last()
            .and_then(|ap| ap.children().last())
            .map(|n| n.text().to_string()),
        _ => None,
    }
}

/// Unwraps `mkDefault x`, `mkForce x`, `mkOverride n x` into (priority, x).
fn strip_priority(value: &SyntaxNode) -> (u32, SyntaxNode) {
    let v = unparen(value);
    if v.kind() == NODE_APPLY {
        let kids: Vec<SyntaxNode> = v.children().collect();
        if kids.len() == 2 {
            match function_name(&kids[0]).as_deref() {
                Some("mkDefault") => return (1000, unparen(&kids[1])),
                Some("mkForce") => return (50, unparen(&kids[1])),
                _ => {}
            }
            // (mkOverride n) x
            let f = unparen(&kids[0]);
            if f.kind() == NODE_APPLY {
                let inner: Vec<SyntaxNode> = f.children().collect();
                if inner.len() == 2
                    && function_name(&inner[0]).as_deref() == Some("mkOverride")
                    && let Ok(n) = inner[1].text().to_string().parse::<u32>()
                {
                    return (n, unparen(&kids[1]));
                }
            }
        }
    }
    (100, v)
}

fn key_value(v: &SyntaxNode, dir: &str) -> KeyValue {
    if let Some(s) = string_literal(v) {
        return KeyValue::Literal(s.trim().to_string());
    }
    if v.kind() == NODE_APPLY {
        let kids: Vec<SyntaxNode> = v.children().collect();
        if kids.len() == 2
            && matches!(
                function_name(&kids[0]).as_deref(),
                Some("readFile" | "fileContents")
            )
        {
            let arg = unparen(&kids[1]);
            if arg.kind() == NODE_PATH_REL
                && let Some(p) = const_path(&arg, dir)
            {
                return KeyValue::File(p);
            }
        }
    }
    KeyValue::Dynamic
}

fn parent(path: &str) -> String {
    path.rfind('/')
        .map_or_else(String::new, |i| path[..i].to_string())
}

struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(src: &str) -> LineIndex {
        LineIndex(
            std::iter::once(0)
                .chain(src.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }
    fn line(&self, node: &SyntaxNode) -> usize {
        let off = usize::from(node.text_range().start());
        self.0.partition_point(|&s| s <= off)
    }
}

/// One rule of an agenix / ragenix `secrets.nix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgenixRule {
    /// Repository-relative path of the secret file.
    pub file: String,
    /// The recipient key strings guard could resolve.
    pub keys: Vec<String>,
    /// Some entries of `publicKeys` could not be resolved statically.
    pub incomplete: bool,
    pub line: usize,
}

/// What a `secrets.nix` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgenixRules {
    pub rules: Vec<AgenixRule>,
    /// Let-bound key strings by name (the last attribute name for keys
    /// inside an attribute set binding: `systems.alpha` -> `alpha`). A name
    /// equal to a host's is taken as that host's key.
    pub named_keys: BTreeMap<String, Vec<String>>,
    /// Other files the rules were computed from (imported key files,
    /// `readFile`d `.pub` files), sorted.
    pub inputs: Vec<String>,
}

/// A statically known value in `secrets.nix`.
#[derive(Debug, Clone)]
enum Val {
    Str(String),
    List(Vec<Val>),
    Set(BTreeMap<String, Val>),
    Unknown,
}

impl Val {
    fn strings(&self, out: &mut Vec<String>) -> bool {
        match self {
            Val::Str(s) => {
                out.push(s.clone());
                true
            }
            // Every item is visited (no short circuit): the known keys
            // are collected even when some are unknown.
            Val::List(v) => {
                let mut complete = true;
                for x in v {
                    complete &= x.strings(out);
                }
                complete
            }
            Val::Set(m) => {
                let mut complete = true;
                for x in m.values() {
                    complete &= x.strings(out);
                }
                complete
            }
            Val::Unknown => false,
        }
    }
}

/// Reads an agenix rules file (`secrets.nix` at repository path `path`):
/// `let <bindings> in { "<file>".publicKeys = [ … ]; … }` with string
/// literals, lists, `++`, attribute sets, `attrValues` and references to
/// bindings. `None` when the file has no `publicKeys` rule at all.
pub fn agenix_rules(src: &str, path: &str) -> Option<AgenixRules> {
    let root = rnix::Root::parse(src).syntax();
    let dir = parent(path);
    let lines = LineIndex::new(src);
    let mut env: BTreeMap<String, Val> = BTreeMap::new();
    let mut body = root.children().next()?;
    // Nested lets.
    while body.kind() == NODE_LET_IN {
        let kids: Vec<SyntaxNode> = body.children().collect();
        for b in kids.iter().filter(|k| k.kind() == NODE_ATTRPATH_VALUE) {
            let Some(ap) = b.children().next() else {
                continue;
            };
            let names = attrpath_names(&ap);
            let Some(v) = b.children().nth(1) else {
                continue;
            };
            if names.len() == 1 {
                let val = eval(&v, &env);
                env.insert(names[0].clone(), val);
            }
        }
        body = kids.last()?.clone();
    }
    let body = unparen(&body);
    if body.kind() != NODE_ATTR_SET {
        return None;
    }
    let mut out = AgenixRules::default();
    for (name, v) in &env {
        collect_named(name, v, &mut out.named_keys);
    }
    for b in body.children().filter(|k| k.kind() == NODE_ATTRPATH_VALUE) {
        let Some(ap) = b.children().next() else {
            continue;
        };
        let names = attrpath_names(&ap);
        let Some(v) = b.children().nth(1) else {
            continue;
        };
        let keys_expr = match names.as_slice() {
            [file, pk] if pk == "publicKeys" => Some((file.clone(), v)),
            [file] => unparen(&v)
                .children()
                .filter(|k| k.kind() == NODE_ATTRPATH_VALUE)
                .find(|k| {
                    k.children()
                        .next()
                        .is_some_and(|a| attrpath_names(&a) == ["publicKeys"])
                })
                .and_then(|k| k.children().nth(1))
                .map(|e| (file.clone(), e)),
            _ => None,
        };
        let Some((file, expr)) = keys_expr else {
            continue;
        };
        if file == "*" {
            continue;
        }
        let mut keys = Vec::new();
        let complete = eval(&expr, &env).strings(&mut keys);
        let Some(file) = normalize(&format!("{dir}/{file}")) else {
            continue;
        };
        out.rules.push(AgenixRule {
            file,
            keys: keys.into_iter().map(|k| k.trim().to_string()).collect(),
            incomplete: !complete,
            line: lines.line(&b),
        });
    }
    (!out.rules.is_empty()).then_some(out)
}

fn collect_named(name: &str, v: &Val, out: &mut BTreeMap<String, Vec<String>>) {
    match v {
        Val::Str(s) if super::keys::looks_like_key(s) => {
            out.entry(name.to_string())
                .or_default()
                .push(s.trim().to_string());
        }
        Val::Set(m) => {
            for (k, x) in m {
                collect_named(k, x, out);
            }
        }
        Val::List(items) => {
            // `alpha = [ key1 key2 ];`: a host with several keys.
            for i in items {
                if let Val::Str(k) = i
                    && super::keys::looks_like_key(k)
                {
                    out.entry(name.to_string())
                        .or_default()
                        .push(k.trim().to_string());
                }
            }
        }
        _ => {}
    }
}

/// A tiny static evaluator for the shapes rule files use.
fn eval(node: &SyntaxNode, env: &BTreeMap<String, Val>) -> Val {
    let node = unparen(node);
    match node.kind() {
        NODE_STRING => string_literal(&node).map_or(Val::Unknown, Val::Str),
        NODE_LIST => Val::List(node.children().map(|c| eval(&c, env)).collect()),
        NODE_IDENT => env
            .get(&node.text().to_string())
            .cloned()
            .unwrap_or(Val::Unknown),
        NODE_ATTR_SET => {
            let mut m = BTreeMap::new();
            for b in node.children().filter(|k| k.kind() == NODE_ATTRPATH_VALUE) {
                let (Some(ap), Some(v)) = (b.children().next(), b.children().nth(1)) else {
                    continue;
                };
                let names = attrpath_names(&ap);
                if names.len() == 1 {
                    m.insert(names[0].clone(), eval(&v, env));
                }
            }
            Val::Set(m)
        }
        NODE_SELECT => {
            // `users.alice`
            let kids: Vec<SyntaxNode> = node.children().collect();
            let mut cur = match kids.first() {
                Some(b) => eval(b, env),
                None => return Val::Unknown,
            };
            if let Some(ap) = kids.get(1) {
                for name in attrpath_names(ap) {
                    cur = match cur {
                        Val::Set(m) => m.get(&name).cloned().unwrap_or(Val::Unknown),
                        _ => Val::Unknown,
                    };
                }
            }
            cur
        }
        NODE_BIN_OP => {
            let is_concat = node
                .children_with_tokens()
                .any(|t| t.kind() == TOKEN_CONCAT);
            let kids: Vec<SyntaxNode> = node.children().collect();
            if is_concat && kids.len() == 2 {
                match (eval(&kids[0], env), eval(&kids[1], env)) {
                    (Val::List(mut a), Val::List(b)) => {
                        a.extend(b);
                        Val::List(a)
                    }
                    (a, b) => Val::List(vec![a, b]),
                }
            } else {
                Val::Unknown
            }
        }
        NODE_APPLY => {
            let kids: Vec<SyntaxNode> = node.children().collect();
            if kids.len() == 2 && function_name(&kids[0]).as_deref() == Some("attrValues") {
                match eval(&kids[1], env) {
                    Val::Set(m) => Val::List(m.into_values().collect()),
                    _ => Val::Unknown,
                }
            } else {
                Val::Unknown
            }
        }
        _ => Val::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_of_secret_paths() {
        let src = r#"{ config, lib, ... }: {
  secrix.system.secrets.wg.encrypted.file = ../../secrets/wg.age;
  secrix.services.grafana.secrets = {
    admin.encrypted = { file = ../../secrets/admin.age; };
  };
  config.age.secrets."db-pw".file = ./db.age;
  imports = [ ./x.nix ];
  services.x = lib.mkIf true { keyFile = ./k.age; };
}"#;
        let f = facts(src, "machines/a/default.nix");
        let got: Vec<(&str, Option<&str>, usize)> = f
            .paths
            .iter()
            .map(|p| (p.path.as_str(), p.option.as_deref(), p.line))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "secrets/wg.age",
                    Some("secrix.system.secrets.wg.encrypted.file"),
                    2
                ),
                (
                    "secrets/admin.age",
                    Some("secrix.services.grafana.secrets.admin.encrypted.file"),
                    4
                ),
                ("machines/a/db.age", Some("age.secrets.db-pw.file"), 6),
                ("machines/a/x.nix", Some("imports"), 7),
                ("machines/a/k.age", Some("services.x.keyFile"), 8),
            ]
        );
        assert_eq!(
            secret_option_kind("secrix.system.secrets.wg.encrypted.file"),
            Some(SecretKind::Secrix)
        );
        assert_eq!(
            secret_option_kind("age.secrets.db-pw.file"),
            Some(SecretKind::Agenix)
        );
        assert_eq!(
            secret_option_kind("home-manager.users.bob.age.secrets.x.file"),
            Some(SecretKind::Agenix)
        );
        assert_eq!(
            secret_option_kind("sops.defaultSopsFile"),
            Some(SecretKind::Sops)
        );
        assert_eq!(
            secret_option_kind("sops.secrets.x.sopsFile"),
            Some(SecretKind::Sops)
        );
        assert_eq!(secret_option_kind("services.x.keyFile"), None);
    }

    #[test]
    fn agenix_rekey_host_keys_and_sops_key_settings() {
        let src = r#"{ config, ... }: {
  age.rekey.hostPubkey = ./host.pub;
  age.rekey.hostPubkey = lib.mkDefault "ssh-ed25519 AAAA";
  age.rekey.hostPubkey = config.node.secretsDir + "/host.pub";
  sops.age.sshKeyPaths = [ ];
  sops.age.keyFile = "/var/lib/sops/key.txt";
}"#;
        let f = facts(src, "hosts/a/default.nix");
        let got: Vec<(&str, KeyValue, u32)> = f
            .host_keys
            .iter()
            .map(|k| (k.option, k.value.clone(), k.priority))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "age.rekey.hostPubkey",
                    KeyValue::File("hosts/a/host.pub".into()),
                    100
                ),
                (
                    "age.rekey.hostPubkey",
                    KeyValue::Literal("ssh-ed25519 AAAA".into()),
                    1000
                ),
            ]
        );
        assert!(f.sops_key_file);
        assert_eq!(f.sops_ssh_paths, Some(false));
        let g = facts("{ sops.age.sshKeyPaths = [ \"/etc/ssh/k\" ]; }", "x.nix");
        assert_eq!((g.sops_key_file, g.sops_ssh_paths), (false, Some(true)));
    }

    #[test]
    fn paths_from_the_flake_root() {
        let src = "{ self, ... }: { age.secrets.h = { file = self + /secrets/h.age; }; x = inputs.self + /a/${n}.age; }";
        let f = facts(src, "modules/nixos/h.nix");
        let got: Vec<(&str, Option<&str>, bool)> = f
            .paths
            .iter()
            .map(|p| (p.path.as_str(), p.option.as_deref(), p.rooted))
            .collect();
        assert_eq!(got, [("secrets/h.age", Some("age.secrets.h.file"), true)]);
    }

    #[test]
    fn let_bound_paths_have_no_option() {
        let f = facts("let s = ./s.age; in { a.file = s; }", "x.nix");
        assert_eq!(f.paths[0].option, None);
        // ...but the let body is still the module.
        let f = facts("let x = 1; in { a.file = ./s.age; }", "x.nix");
        assert_eq!(f.paths[0].option.as_deref(), Some("a.file"));
    }

    #[test]
    fn host_pub_keys_with_priorities_and_files() {
        let src = r#"{ lib, ... }: {
  secrix.hostPubKey = "ssh-ed25519 AAAA root@a";
  secrix = { hostPubKey = lib.mkDefault "ssh-ed25519 BBBB"; };
  config.secrix.hostPubKey = lib.mkForce (builtins.readFile ./host.pub);
  secrix.hostPubKey = lib.mkOverride 10 "${x}";
  secrix.hostPubKey = lib.fileContents ../keys/a.pub;
}"#;
        let f = facts(src, "machines/a/default.nix");
        let got: Vec<(KeyValue, u32)> = f
            .host_keys
            .iter()
            .map(|k| (k.value.clone(), k.priority))
            .collect();
        assert_eq!(
            got,
            [
                (KeyValue::Literal("ssh-ed25519 AAAA root@a".into()), 100),
                (KeyValue::Literal("ssh-ed25519 BBBB".into()), 1000),
                (KeyValue::File("machines/a/host.pub".into()), 50),
                (KeyValue::Dynamic, 10),
                (KeyValue::File("machines/keys/a.pub".into()), 100),
            ]
        );
    }

    #[test]
    fn secrix_user_keys() {
        let src = r#"{
  secrix.defaultEncryptKeys = { alice = [ "ssh-ed25519 AAAA alice" ]; };
  secrix.system.secrets.x.encryptKeys.bob = [ "age1abc" "not a key" ];
}"#;
        let f = facts(src, "a.nix");
        assert_eq!(f.user_keys, ["ssh-ed25519 AAAA alice", "age1abc"]);
    }

    #[test]
    fn agenix_rules_file() {
        let src = r#"
let
  alice = "ssh-ed25519 AAAAalice";
  users = [ alice ];
  systems = { alpha = "ssh-ed25519 AAAAalpha"; beta = "ssh-ed25519 AAAAbeta"; };
  allSystems = builtins.attrValues systems;
in
{
  "db.age".publicKeys = users ++ [ systems.alpha ];
  "wg-beta.age" = { publicKeys = [ alice systems.beta ]; armor = true; };
  "all.age".publicKeys = users ++ allSystems;
  "odd.age".publicKeys = [ (import ./keys.nix).x ];
}"#;
        let r = agenix_rules(src, "secrets/secrets.nix").unwrap();
        let got: Vec<(&str, Vec<&str>, bool)> = r
            .rules
            .iter()
            .map(|x| {
                (
                    x.file.as_str(),
                    x.keys.iter().map(String::as_str).collect(),
                    x.incomplete,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "secrets/db.age",
                    vec!["ssh-ed25519 AAAAalice", "ssh-ed25519 AAAAalpha"],
                    false
                ),
                (
                    "secrets/wg-beta.age",
                    vec!["ssh-ed25519 AAAAalice", "ssh-ed25519 AAAAbeta"],
                    false
                ),
                (
                    "secrets/all.age",
                    vec![
                        "ssh-ed25519 AAAAalice",
                        "ssh-ed25519 AAAAalpha",
                        "ssh-ed25519 AAAAbeta"
                    ],
                    false
                ),
                ("secrets/odd.age", vec![], true),
            ]
        );
        assert_eq!(r.named_keys["alpha"], ["ssh-ed25519 AAAAalpha"]);
        assert_eq!(r.named_keys["alice"], ["ssh-ed25519 AAAAalice"]);
        assert!(agenix_rules("{ a = 1; }", "secrets.nix").is_none());
        assert!(agenix_rules("not nix (", "secrets.nix").is_none());
    }
}

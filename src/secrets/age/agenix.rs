//! agenix rules files (`secrets.nix`) evaluated like nix would: guard's
//! static evaluator (`crate::nix::eval`) follows `let`, `with`, `inherit`,
//! `import ./keys.nix`, `builtins.readFile ./alpha.pub`, `++`,
//! `attrValues`, `map` and the rest, reading only the snapshot. What it
//! cannot know (an input, `<nixpkgs>`) stays unknown and marks the rule
//! incomplete, never guessed.
//!
//! When the evaluator gives up on a file as a whole, the syntactic reader
//! of [`nixfacts::agenix_rules`] is the fallback.

use std::rc::Rc;

use super::nixfacts::{self, AgenixRule, AgenixRules};
use crate::git::Snapshot;
use crate::nix::eval::{Attrs, Eval, Thunk, Value};
use crate::nix::parse::normalize;

/// The rules of the agenix rules file at `path` (its text is `text`):
/// `None` when it has no `publicKeys` rule (a NixOS module that happens to
/// be called `secrets.nix`, say).
pub fn rules(snapshot: &Snapshot, path: &str, text: &str) -> Option<AgenixRules> {
    let ev = Eval::new(snapshot);
    match evaluate(&ev, path, text) {
        Some(mut r) => {
            // What the rules depend on: a changed key file concerns every
            // secret the rules list.
            let mut reads: Vec<String> = ev
                .reads
                .borrow()
                .iter()
                .filter(|r| !r.starts_with('?') && !r.ends_with('/') && r.as_str() != path)
                .cloned()
                .collect();
            reads.sort();
            reads.dedup();
            r.inputs = reads;
            // Names bound to keys in the file's own `let` (the evaluator
            // gives the value, not the bindings).
            if let Some(syntactic) = nixfacts::agenix_rules(text, path) {
                r.named_keys = syntactic.named_keys;
            }
            Some(r)
        }
        None => nixfacts::agenix_rules(text, path),
    }
}

fn evaluate(ev: &Eval, path: &str, text: &str) -> Option<AgenixRules> {
    let mut v = ev.import(path).ok()?;
    // `{ ... }: { … }` rules files are called with no arguments by agenix;
    // an open set leaves whatever they ask for unknown.
    if matches!(v, Value::Lambda(_)) {
        let args = Value::Attrs(Rc::new(Attrs {
            map: Default::default(),
            open: Some(Rc::from("secrets.nix arguments")),
            lib: false,
        }));
        v = ev.apply(v, Thunk::value(args)).ok()?;
    }
    let set = ev.force_attrs(&v).ok()??;
    let dir = path.rfind('/').map_or("", |i| &path[..i]);
    let mut out = AgenixRules::default();
    for (name, thunk) in &set.map {
        let Ok(rule) = ev.force(thunk) else {
            continue;
        };
        let Ok(Some(rule)) = ev.force_attrs(&rule) else {
            continue;
        };
        let Some(pk) = rule.map.get("publicKeys") else {
            continue;
        };
        let mut keys = Vec::new();
        let complete = match ev.force(pk) {
            Ok(list) => strings(ev, &list, &mut keys, 0),
            Err(_) => false,
        };
        let Some(file) = normalize(&format!("{dir}/{name}")) else {
            continue;
        };
        out.rules.push(AgenixRule {
            file,
            keys: keys.into_iter().map(|k| k.trim().to_string()).collect(),
            incomplete: !complete,
            line: line_of(text, name),
        });
    }
    (!out.rules.is_empty()).then_some(out)
}

/// The strings of a (nested) list; `false` when some item is not known.
fn strings(ev: &Eval, v: &Value, out: &mut Vec<String>, depth: u32) -> bool {
    if depth > 8 {
        return false;
    }
    match v {
        Value::Str(s) => {
            out.push(s.to_string());
            true
        }
        Value::List(items) => {
            // Every item is visited: known keys count even when some are
            // unknown.
            let mut complete = true;
            for t in items.iter() {
                complete &= match ev.force(t) {
                    Ok(x) => strings(ev, &x, out, depth + 1),
                    Err(_) => false,
                };
            }
            complete
        }
        _ => false,
    }
}

/// The line of the rule for `name` (its quoted name, else its bare name).
fn line_of(text: &str, name: &str) -> usize {
    let quoted = format!("\"{name}\"");
    let at = text.find(&quoted).or_else(|| {
        text.match_indices(name)
            .find(|(i, _)| {
                let after = &text[i + name.len()..];
                after.trim_start().starts_with('=') || after.starts_with(".publicKeys")
            })
            .map(|(i, _)| i)
    });
    at.map_or(1, |i| text[..i].matches('\n').count() + 1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::git::{Repo, SnapshotSpec};

    /// A real git repository holding `files` (staged), and its index.
    pub(crate) fn with_repo<T>(files: &[(&str, &str)], f: impl FnOnce(&Snapshot) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let st = std::process::Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "git {args:?}");
        };
        git(&["init", "-q"]);
        for (p, text) in files {
            let full = dir.path().join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        git(&["add", "-A"]);
        let repo = Repo::discover(dir.path()).unwrap();
        let snapshot = repo.snapshot(SnapshotSpec::Index).unwrap();
        f(&snapshot)
    }

    const A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7Qtf8mf+FjBoeYaBiwNrJ9tm7BJgwdLi+hjqyoGQdt";
    const B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOKfR7GnwrIVemP/1kna8jboNRegIsaVL6mTi3oXwMdU";

    fn summary(r: &AgenixRules) -> Vec<(String, Vec<String>, bool)> {
        let mut v: Vec<_> = r
            .rules
            .iter()
            .map(|x| (x.file.clone(), x.keys.clone(), x.incomplete))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn with_imports_read_file_and_list_operations() {
        let keys = format!(
            "{{ hosts = {{ alpha = \"{A}\"; beta = builtins.readFile ./beta.pub; }}; users = {{ admin = \"{A}\"; }}; }}"
        );
        let rules = r#"
let
  keys = import ../keys.nix;
  inherit (keys) users;
  all = builtins.attrValues keys.hosts;
in
with keys.hosts;
{
  "a.age".publicKeys = [ alpha ] ++ builtins.attrValues users;
  "b.age" = { publicKeys = all; armor = true; };
  "c.age".publicKeys = map (k: k) [ beta ];
  "d.age".publicKeys = [ alpha (import <nixpkgs> {}).foo ];
}"#;
        let files = [
            ("keys.nix", keys.as_str()),
            ("beta.pub", &format!("{B} root@beta\n")),
            ("secrets/secrets.nix", rules),
        ];
        with_repo(&files, |s| {
            let r = rules_of(s, "secrets/secrets.nix", rules);
            let beta = format!("{B} root@beta");
            assert_eq!(
                summary(&r),
                vec![
                    ("secrets/a.age".into(), vec![A.into(), A.into()], false),
                    ("secrets/b.age".into(), vec![A.into(), beta.clone()], false),
                    ("secrets/c.age".into(), vec![beta.clone()], false),
                    ("secrets/d.age".into(), vec![A.into()], true),
                ]
            );
            assert_eq!(r.inputs, ["beta.pub", "keys.nix"]);
            assert_eq!(
                r.rules
                    .iter()
                    .find(|x| x.file == "secrets/c.age")
                    .unwrap()
                    .line,
                11
            );
        });
    }

    fn rules_of(s: &Snapshot, path: &str, text: &str) -> AgenixRules {
        rules(s, path, text).expect("rules")
    }

    #[test]
    fn function_files_and_modules_named_secrets_nix() {
        let f = format!("{{ pkgs ? null, ... }}: {{ \"x.age\".publicKeys = [ \"{A}\" ]; }}");
        let module = "{ config, lib, ... }: { options.x = lib.mkOption { }; }";
        with_repo(&[("secrets.nix", &f), ("m/secrets.nix", module)], |s| {
            let r = rules_of(s, "secrets.nix", &f);
            assert_eq!(summary(&r), vec![("x.age".into(), vec![A.into()], false)]);
            assert!(rules(s, "m/secrets.nix", module).is_none());
        });
    }

    #[test]
    fn evaluation_failure_falls_back_to_the_syntax() {
        // `throw` at the top: nix would fail; the syntactic reader still
        // sees the literal rule.
        let f = format!(
            "let k = \"{A}\"; in builtins.throw \"x\" // {{ \"x.age\".publicKeys = [ k ]; }}"
        );
        with_repo(&[("secrets.nix", &f)], |s| {
            // Not a plain attribute set for the syntax reader either.
            assert!(rules(s, "secrets.nix", &f).is_none());
        });
        let g = format!(
            "let k = \"{A}\"; in {{ \"x.age\".publicKeys = [ k ]; \"y.age\".publicKeys = import ./missing.nix; }}"
        );
        with_repo(&[("secrets.nix", &g)], |s| {
            let r = rules_of(s, "secrets.nix", &g);
            assert_eq!(
                summary(&r),
                vec![
                    ("x.age".into(), vec![A.into()], false),
                    ("y.age".into(), vec![], true)
                ]
            );
        });
    }
}

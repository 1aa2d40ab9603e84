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
    let nodes = v
        .get("nodes")
        .and_then(Value::as_object)
        .ok_or("no \"nodes\" object")?;
    let root_key = v.get("root").and_then(Value::as_str).unwrap_or("root");
    let root = nodes.get(root_key).ok_or("the root node is missing")?;
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

//! A flake's inputs by name and by the addresses nix fetches them from, so
//! that a failed fetch names the input: Nix 2.8 reports only the address
//! ("unable to download 'https://…'"), later versions also the input.

use serde_json::Value;

/// Root inputs of a flake: name and every address string they are known by
/// (flake.nix's `url`, flake.lock's original and locked forms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlakeInputs {
    inputs: Vec<(String, Vec<String>)>,
}

/// A fetch of a flake input that failed: the same for every host, so it is
/// reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFailure {
    /// The input's name, when known.
    pub input: Option<String>,
}

impl FlakeInputs {
    /// Reads the inputs from flake.lock (JSON) and flake.nix (text); either
    /// may be missing or unreadable, which gives fewer addresses, never an
    /// error.
    pub fn read(lock: Option<&[u8]>, flake_nix: Option<&str>) -> FlakeInputs {
        let mut f = FlakeInputs::default();
        if let Some(v) = lock.and_then(|b| serde_json::from_slice::<Value>(b).ok()) {
            f.add_lock(&v);
        }
        if let Some(text) = flake_nix {
            f.add_flake_nix(text);
        }
        f
    }

    fn add(&mut self, name: &str, address: String) {
        if address.len() < 4 {
            return;
        }
        match self.inputs.iter_mut().find(|(n, _)| n == name) {
            Some((_, a)) => {
                if !a.contains(&address) {
                    a.push(address);
                }
            }
            None => self.inputs.push((name.to_string(), vec![address])),
        }
    }

    fn add_lock(&mut self, v: &Value) {
        let Some(nodes) = v.get("nodes").and_then(Value::as_object) else {
            return;
        };
        let root = v.get("root").and_then(Value::as_str).unwrap_or("root");
        let Some(inputs) = nodes
            .get(root)
            .and_then(|r| r.get("inputs"))
            .and_then(Value::as_object)
        else {
            return;
        };
        for (name, key) in inputs {
            let Some(node) = key.as_str().and_then(|k| nodes.get(k)) else {
                continue;
            };
            for part in ["original", "locked"] {
                let Some(src) = node.get(part) else { continue };
                let field = |k: &str| src.get(k).and_then(Value::as_str);
                for k in ["url", "path"] {
                    if let Some(u) = field(k) {
                        self.add(name, u.to_string());
                    }
                }
                if let (Some(owner), Some(repo)) = (field("owner"), field("repo")) {
                    // github:/gitlab:/sourcehut: inputs are fetched from
                    // URLs holding `owner/repo`.
                    self.add(name, format!("{owner}/{repo}"));
                }
            }
        }
    }

    /// `inputs.NAME.url = "…"`, `NAME.url = "…"` and `NAME = { url = "…"; …}`.
    fn add_flake_nix(&mut self, text: &str) {
        let mut block: Option<String> = None;
        for line in text.lines() {
            let code = line.split('#').next().unwrap_or("");
            let t = code.trim();
            if let Some(name) = t
                .strip_suffix('{')
                .and_then(|l| l.trim_end().strip_suffix('='))
                .map(|l| l.trim().trim_start_matches("inputs."))
                .filter(|n| is_ident(n))
            {
                block = Some(name.to_string());
            }
            let Some(pos) = t.find("url") else { continue };
            let Some(value) = quoted(&t[pos..]) else {
                continue;
            };
            let before = t[..pos].trim_end_matches('.');
            let name = before
                .rsplit(|c: char| c.is_whitespace() || c == '{' || c == ';')
                .next()
                .map(|n| n.trim_start_matches("inputs."))
                .filter(|n| is_ident(n))
                .map(str::to_string)
                .or_else(|| block.clone());
            if let Some(n) = name {
                // `github:owner/repo/ref`: nix fetches from URLs holding
                // `owner/repo`.
                if let Some(rest) = ["github:", "gitlab:", "sourcehut:"]
                    .iter()
                    .find_map(|p| value.strip_prefix(p))
                {
                    let owner_repo: Vec<&str> = rest.split(['/', '?']).take(2).collect();
                    if owner_repo.len() == 2 {
                        self.add(&n, owner_repo.join("/"));
                    }
                }
                self.add(&n, value.to_string());
            }
        }
    }

    /// Whether nix's error text is a failed fetch of one of these inputs:
    /// nix names the flake input (Nix 2.10 and later), or the text holds
    /// an address of one.
    pub fn failure_in(&self, text: &str) -> Option<InputFailure> {
        for marker in ["while updating the flake input '", "flake input '"] {
            if let Some(i) = text.find(marker) {
                let rest = &text[i + marker.len()..];
                if let Some(end) = rest.find('\'') {
                    return Some(InputFailure {
                        input: Some(rest[..end].to_string()),
                    });
                }
            }
        }
        self.inputs
            .iter()
            .find(|(_, addresses)| addresses.iter().any(|a| text.contains(a.as_str())))
            .map(|(n, _)| InputFailure {
                input: Some(n.clone()),
            })
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''))
}

/// The first `"…"` string after `=`.
fn quoted(s: &str) -> Option<&str> {
    let after = &s[s.find('=')? + 1..];
    let start = after.find('"')? + 1;
    let len = after[start..].find('"')?;
    Some(&after[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAKE: &str = r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";
  inputs = {
    secrix = {
      url = "github:Platonic-Systems/secrix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    gone.url = "http://127.0.0.1:9/gone.tar.gz"; # comment "x"
  };
  outputs = { self, ... }: { };
}"#;

    #[test]
    fn inputs_of_flake_nix_are_named() {
        let f = FlakeInputs::read(None, Some(FLAKE));
        let name = |t: &str| f.failure_in(t).and_then(|x| x.input);
        assert_eq!(
            name("error: unable to download 'http://127.0.0.1:9/gone.tar.gz': Couldn't connect"),
            Some("gone".into())
        );
        assert_eq!(
            name("fetching github:Platonic-Systems/secrix failed"),
            Some("secrix".into())
        );
        assert_eq!(
            name("x github:NixOS/nixpkgs/nixos-24.05 y"),
            Some("nixpkgs".into())
        );
        assert_eq!(
            name("unable to download 'https://api.github.com/repos/NixOS/nixpkgs/commits/x'"),
            Some("nixpkgs".into())
        );
        assert_eq!(name("error: attribute 'x' missing"), None);
    }

    #[test]
    fn inputs_of_the_lock_and_of_nix_messages() {
        let lock = br#"{"nodes": {
            "root": {"inputs": {"np": "nixpkgs"}},
            "nixpkgs": {"locked": {"type": "github", "owner": "NixOS", "repo": "nixpkgs", "rev": "abc"},
                        "original": {"type": "github", "owner": "NixOS", "repo": "nixpkgs"}}
        }, "root": "root", "version": 7}"#;
        let f = FlakeInputs::read(Some(lock), None);
        let hit = f.failure_in(
            "error: unable to download 'https://github.com/NixOS/nixpkgs/archive/abc.tar.gz'",
        );
        assert_eq!(hit.and_then(|h| h.input), Some("np".into()));
        // Nix 2.26 names the input itself.
        let e = "error:\n … while updating the flake input 'gone'\n error: unable to download";
        assert_eq!(
            FlakeInputs::default().failure_in(e).and_then(|h| h.input),
            Some("gone".into())
        );
        assert!(
            FlakeInputs::read(Some(b"garbage"), None)
                .failure_in("x")
                .is_none()
        );
    }
}

//! Keys the repository declares anywhere: `.pub` files, recipients files
//! (`age -R`), key attribute sets in Nix (`alpha = "ssh-ed25519 …";`),
//! `.sops.yaml` anchors. A recipient is called *unknown* only when no
//! tracked file declares it (issue: no noise by construction).
//!
//! Each declaration carries the names it is given (an attribute name, a
//! YAML anchor, a recipients-file comment, a `.pub` file's name or
//! directories), so a key named like a host can serve as that host's key.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use regex::Regex;

use super::keys::{PublicKey, parse_public_key};
use crate::git::{BStr, ByteSlice, FileMode, GitError, ObjectId, Snapshot};

/// One declaration of a public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub key: PublicKey,
    /// `path:line` of the declaration.
    pub source: String,
    /// Names the declaration gives the key (lowercase not forced).
    pub names: Vec<String>,
}

/// Files larger than this are not key files.
const MAX_SIZE: usize = 256 * 1024;

/// Path components that say what a file is, not whose key it holds.
const GENERIC: &[&str] = &[
    "",
    ".",
    "age",
    "default",
    "authorized_keys",
    "host",
    "host_key",
    "hosts",
    "id_ed25519",
    "id_rsa",
    "key",
    "keys",
    "machine",
    "machines",
    "nixos",
    "pub",
    "pubkey",
    "pubkeys",
    "public",
    "public-keys",
    "public_keys",
    "publickey",
    "hostkey",
    "authorizedkeys",
    "openssh",
    "recipient",
    "recipients",
    "secrets",
    "ssh",
    "ssh_host_ed25519_key",
    "ssh_host_rsa_key",
    "ssh_host_ed25519",
    "users",
];

/// Names a key file's path gives its key: the last specific component
/// and all specific components joined by `-` (`hosts/ward/secrets/kanidm/
/// host.pub` -> `kanidm`, `ward-kanidm`).
pub fn names_from_path(path: &str) -> Vec<String> {
    let mut parts: Vec<&str> = path.split('/').collect();
    if let Some(last) = parts.last_mut() {
        *last = last
            .strip_suffix(".pub")
            .or_else(|| last.strip_suffix(".txt"))
            .or_else(|| last.strip_suffix(".nix"))
            .unwrap_or(last);
        // `zeph.ssh.pub`, `zeph.age.pub`
        *last = last
            .strip_suffix(".ssh")
            .or_else(|| last.strip_suffix(".age"))
            .unwrap_or(last);
    }
    let specific: Vec<&str> = parts
        .into_iter()
        .filter(|p| !GENERIC.contains(&p.to_ascii_lowercase().as_str()))
        .collect();
    let mut out = Vec::new();
    if let Some(last) = specific.last() {
        out.push(last.to_string());
    }
    if specific.len() > 1 {
        out.push(specific.join("-"));
    }
    out
}

/// Whether a tracked file may declare keys (by name; content decides).
/// JSON is read only when its name says keys or hosts (dashboards and
/// hardware reports are large and never do); clan's `secret` files are
/// sops files, read by the sops check.
fn candidate(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.ends_with(".age") || name.ends_with(".lock") || name == "secret" {
        return false;
    }
    let keyish = [
        "key",
        "pub",
        "recipient",
        "ssh",
        "host",
        "machine",
        "user",
        "age",
    ]
    .iter()
    .any(|k| name.contains(k));
    match name.rsplit_once('.').map(|(_, e)| e) {
        None | Some("pub" | "nix" | "yaml" | "yml" | "toml" | "txt" | "keys") => true,
        Some("json") => keyish,
        _ => name.contains("key") || name.contains("recipient"),
    }
}

struct Patterns {
    key: Regex,
    before: Regex,
    anchor: Regex,
}

fn patterns() -> &'static Patterns {
    static P: std::sync::OnceLock<Patterns> = std::sync::OnceLock::new();
    P.get_or_init(|| Patterns {
        key: Regex::new(
            r"(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]{40,}={0,2}|age1[a-z0-9-]*1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{20,}|age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}",
        )
        .unwrap(),
        // `alpha = "`, `"alpha" = [ "`, `alpha: `, `- alpha: `
        before: Regex::new(r#"([A-Za-z_][A-Za-z0-9_'.-]*)"?\s*[=:]\s*\[?\s*"?$"#).unwrap(),
        anchor: Regex::new(r"&([A-Za-z0-9_.-]+)\s*$").unwrap(),
    })
}

/// The declarations in one file's text (pure; `path` for sources and
/// names).
pub fn declarations(path: &str, text: &str) -> Vec<Declared> {
    let p = patterns();
    let is_pub = path.ends_with(".pub");
    let path_names = names_from_path(path);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for m in p.key.find_iter(line) {
            let Ok(key) = parse_public_key(m.as_str()) else {
                continue;
            };
            let mut names = Vec::new();
            let before = line[..m.start()].trim_end_matches(['"', '\'', ' ']);
            if let Some(c) = p.anchor.captures(before) {
                names.push(c[1].to_string());
            } else if let Some(c) = p.before.captures(&line[..m.start()]) {
                // The last specific segment: `knownHosts.alpha.publicKey`
                // names alpha.
                let n = c[1]
                    .rsplit('.')
                    .map(|x| x.trim_matches('"'))
                    .find(|x| !GENERIC.contains(&x.to_ascii_lowercase().as_str()))
                    .unwrap_or("");
                names.push(n.to_string());
            }
            // A recipients-file or .pub comment: `… root@alpha`, `… alpha`.
            let after = line[m.end()..].trim();
            // `root@alpha` names host alpha; `alice@laptop` names alice
            // (a user's key, not laptop's host key).
            if !after.is_empty() && !after.contains(['"', ';', '=', ',', ']']) {
                let c = after.split_whitespace().next().unwrap_or("");
                let c = match c.split_once('@') {
                    Some(("root", host)) => host,
                    Some((user, _)) => user,
                    None => c,
                };
                if !c.is_empty() {
                    names.push(c.to_string());
                }
            }
            // A .pub file is named for its key; any other file (a host's
            // module listing authorized keys) is not.
            if is_pub {
                names.extend(path_names.iter().cloned());
            }
            names.retain(|n| !GENERIC.contains(&n.to_ascii_lowercase().as_str()));
            names.dedup();
            out.push(Declared {
                key,
                source: format!("{path}:{}", i + 1),
                names,
            });
        }
    }
    out
}

/// Caches declarations by blob id, across the snapshots of one run.
#[derive(Default)]
pub struct DeclCache {
    map: Mutex<HashMap<DeclKey, Arc<Vec<Declared>>>>,
}

/// A file's blob id and path (names come from the path).
type DeclKey = (ObjectId, String);

/// Every key declaration in the snapshot's tracked files, except those
/// `skip` says are read elsewhere (the import graph's Nix files).
pub fn declared_keys(
    snapshot: &Snapshot,
    cache: &DeclCache,
    skip: &dyn Fn(&str) -> bool,
) -> Result<Vec<Declared>, GitError> {
    let entries = snapshot.try_entries()?;
    let paths: Vec<(String, ObjectId)> = entries
        .iter()
        .filter(|(_, e)| matches!(e.mode, FileMode::Regular | FileMode::Executable))
        .map(|(p, e)| (p.to_str_lossy().into_owned(), e.id))
        .filter(|(p, _)| candidate(p) && !skip(p))
        .collect();
    let results: Vec<Result<Arc<Vec<Declared>>, GitError>> = paths
        .par_iter()
        .map(|(p, id)| {
            let k = (*id, p.clone());
            if let Some(hit) = cache.map.lock().unwrap().get(&k) {
                return Ok(hit.clone());
            }
            let decls = match snapshot.read(BStr::new(p.as_str()))? {
                // A sops file lists its recipients: that is not a
                // declaration (it is what the declarations are checked
                // against).
                Some(b)
                    if b.len() <= MAX_SIZE
                        && memchr::memmem::find(&b, b"\0").is_none()
                        && !super::check::is_sops(&b) =>
                {
                    let text = String::from_utf8_lossy(&b);
                    if text.contains("ssh-") || text.contains("age1") {
                        declarations(p, &text)
                    } else {
                        Vec::new()
                    }
                }
                _ => Vec::new(),
            };
            let decls = Arc::new(decls);
            cache.map.lock().unwrap().insert(k, decls.clone());
            Ok(decls)
        })
        .collect();
    let mut out = Vec::new();
    for r in results {
        out.extend(r?.iter().cloned());
    }
    Ok(out)
}

/// Whether a declared name names `host`: equal, or with a role prefix
/// (`host_prime`, `server-alpha`, `machine_beta`).
pub fn names_host(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    ["host", "hosts", "server", "machine", "system", "node"]
        .iter()
        .any(|p| {
            name.strip_prefix(p)
                .and_then(|r| r.strip_prefix(['_', '-', '.']))
                == Some(host)
        })
}

/// The declared keys a name gives to `host` (distinct keys, first source).
pub fn keys_named<'a>(decls: &'a [Declared], host: &str) -> Vec<&'a Declared> {
    let mut seen = BTreeSet::new();
    decls
        .iter()
        .filter(|d| d.names.iter().any(|n| names_host(n, host)))
        .filter(|d| seen.insert(d.key.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIH7Qtf8mf+FjBoeYaBiwNrJ9tm7BJgwdLi+hjqyoGQdt";
    const X: &str = "age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs";

    fn names(path: &str, text: &str) -> Vec<(String, Vec<String>)> {
        declarations(path, text)
            .into_iter()
            .map(|d| (d.source, d.names))
            .collect()
    }

    #[test]
    fn names_from_key_file_paths() {
        assert_eq!(names_from_path("hosts/ward/secrets/host.pub"), ["ward"]);
        assert_eq!(
            names_from_path("hosts/ward/secrets/kanidm/host.pub"),
            ["kanidm", "ward-kanidm"]
        );
        assert_eq!(names_from_path("keys/alice.pub"), ["alice"]);
        assert_eq!(
            names_from_path("machines/alpha/ssh_host_ed25519_key.pub"),
            ["alpha"]
        );
        assert!(names_from_path("keys/host.pub").is_empty());
    }

    #[test]
    fn declarations_in_nix_yaml_and_recipient_files() {
        let nix = format!(
            "{{\n  alpha = \"ssh-ed25519 {K}\";\n  users.bob = [ \"ssh-ed25519 {K} bob@x\" ];\n  \"ci-runner\" = \"{X}\";\n}}\n"
        );
        assert_eq!(
            names("keys.nix", &nix),
            [
                ("keys.nix:2".to_string(), vec!["alpha".to_string()]),
                ("keys.nix:3".into(), vec!["bob".into()]),
                ("keys.nix:4".into(), vec!["ci-runner".into()]),
            ]
        );
        let yaml = format!(
            "keys:\n  - &host_prime {X}\n  - &admin\n    - &alice {X}\ncreation_rules: []\n"
        );
        assert_eq!(
            names(".sops.yaml", &yaml),
            [
                (".sops.yaml:2".to_string(), vec!["host_prime".to_string()]),
                (".sops.yaml:4".into(), vec!["alice".into()]),
            ]
        );
        let recipients =
            format!("# scan: ssh-keyscan\n\nssh-ed25519 {K} flame\nssh-ed25519 {K} root@swan\n");
        assert_eq!(
            names("misc/public-keys", &recipients),
            [
                ("misc/public-keys:3".to_string(), vec!["flame".to_string()]),
                ("misc/public-keys:4".into(), vec!["swan".into()]),
            ]
        );
        assert_eq!(
            names("hosts/ward/secrets/host.pub", &format!("ssh-ed25519 {K}\n")),
            [(
                "hosts/ward/secrets/host.pub:1".to_string(),
                vec!["ward".to_string()]
            )]
        );
        // Not keys: too short, prose.
        assert!(declarations("README.md", "use ssh-ed25519 keys or age1 recipients").is_empty());
    }
}

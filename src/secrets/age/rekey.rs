//! agenix-rekey: secrets are committed encrypted to *master identities*
//! (a YubiKey, an age key; `masterIdentities`, `extraEncryptionPubkeys`),
//! and `agenix rekey` writes one copy per host, encrypted to that host's
//! `age.rekey.hostPubkey`, into a storage directory
//! (`localStorageDir = ./secrets/rekeyed/${name}`).
//!
//! So the promise splits in two, both checkable from headers:
//! * a *source* must be readable by a master identity (else nobody can
//!   rekey it);
//! * a *rekeyed* file under `<storage>/<node>/` must be encrypted to that
//!   node's host key (else the host cannot decrypt what it is deployed);
//!   a storage directory for a node no host defines is a leftover.
//!
//! The configuration is read statically (rnix) from any Nix file of the
//! snapshot; values guard cannot read are left out, never guessed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rnix::{SyntaxKind::*, SyntaxNode};
use sha2::{Digest, Sha256};

use super::keys::bech32_decode;
use super::nixfacts::string_literal;
use crate::nix::parse::normalize;

/// What the repository's agenix-rekey configuration says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RekeyConfig {
    /// Where it was found (`file:line` of `masterIdentities` or
    /// `localStorageDir`).
    pub source: String,
    /// Files listed in `masterIdentities` (identity files with their
    /// recipient in a comment, or `.pub` files) and literal keys.
    pub master_files: Vec<String>,
    pub master_literals: Vec<String>,
    /// Files and literal keys of `extraEncryptionPubkeys`.
    pub extra_files: Vec<String>,
    pub extra_literals: Vec<String>,
    /// The storage directory of rekeyed files, without the per-host part
    /// (`secrets/rekeyed` for `…/secrets/rekeyed/${config.node.name}`).
    pub storage: Option<String>,
    /// The directory of generated secrets (sources too), likewise.
    pub generated: Option<String>,
}

impl RekeyConfig {
    /// Whether `path` is a rekeyed file; its node (the storage
    /// subdirectory) when it is.
    pub fn node_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        let dir = self.storage.as_deref()?;
        let rest = if dir.is_empty() {
            path
        } else {
            path.strip_prefix(dir)?.strip_prefix('/')?
        };
        let (node, file) = rest.split_once('/')?;
        (!file.contains('/')).then_some(node)
    }
}

/// Reads the agenix-rekey settings of one Nix file (text at repository
/// path `path`) into `cfg`. Returns whether the file had any.
pub fn read_config(src: &str, path: &str, cfg: &mut RekeyConfig) -> bool {
    if !(src.contains("masterIdentities")
        || src.contains("localStorageDir")
        || src.contains("extraEncryptionPubkeys")
        || src.contains("generatedSecretsDir"))
    {
        return false;
    }
    let root = rnix::Root::parse(src).syntax();
    let dir = path.rfind('/').map_or("", |i| &path[..i]);
    let mut found = false;
    for node in root
        .descendants()
        .filter(|n| n.kind() == NODE_ATTRPATH_VALUE)
    {
        let Some(name) = node
            .children()
            .next()
            .and_then(|ap| ap.children().last())
            .map(|n| n.text().to_string())
        else {
            continue;
        };
        let Some(value) = node.children().nth(1) else {
            continue;
        };
        let line = src[..usize::from(node.text_range().start())]
            .matches('\n')
            .count()
            + 1;
        let (files, literals) = match name.as_str() {
            "masterIdentities" => (&mut cfg.master_files, &mut cfg.master_literals),
            "extraEncryptionPubkeys" => (&mut cfg.extra_files, &mut cfg.extra_literals),
            "localStorageDir" | "generatedSecretsDir" => {
                if let Some(d) = storage_dir(&value, dir) {
                    if name == "localStorageDir" {
                        cfg.storage = Some(d);
                    } else {
                        cfg.generated = Some(d);
                    }
                    found = true;
                    if cfg.source.is_empty() {
                        cfg.source = format!("{path}:{line}");
                    }
                }
                continue;
            }
            _ => continue,
        };
        for n in value.descendants() {
            match n.kind() {
                NODE_PATH_REL => {
                    if let Some(p) = path_literal(&n, dir) {
                        files.push(p);
                    }
                }
                NODE_STRING => {
                    if let Some(s) = string_literal(&n)
                        && super::keys::looks_like_key(&s)
                    {
                        literals.push(s.trim().to_string());
                    }
                }
                _ => {}
            }
        }
        found = true;
        cfg.source = format!("{path}:{line}");
    }
    found
}

fn path_literal(node: &SyntaxNode, dir: &str) -> Option<String> {
    let mut text = String::new();
    for child in node.children_with_tokens() {
        match child {
            rnix::NodeOrToken::Token(t) => text.push_str(t.text()),
            rnix::NodeOrToken::Node(_) => return None,
        }
    }
    normalize(&format!("{dir}/{text}"))
}

/// The constant directory of `… + "/secrets/rekeyed/${name}"`,
/// `./secrets/rekeyed + "/${name}"` or `"${self}/secrets/rekeyed/${n}"`:
/// a path literal (else the repository root, for `self.outPath` and
/// `inputs.self`) joined with a string's text up to its first
/// interpolation.
fn storage_dir(value: &SyntaxNode, dir: &str) -> Option<String> {
    let text = value.text().to_string();
    let mut base: Option<String> = None;
    let mut suffix = String::new();
    for n in value.descendants() {
        match n.kind() {
            NODE_PATH_REL if base.is_none() => base = path_literal(&n, dir),
            NODE_STRING => {
                for t in n.children_with_tokens() {
                    match t {
                        rnix::NodeOrToken::Token(t) if t.kind() == TOKEN_STRING_CONTENT => {
                            suffix.push_str(t.text());
                        }
                        rnix::NodeOrToken::Token(_) => {}
                        rnix::NodeOrToken::Node(i) => {
                            // `"${self}/secrets/…"`: the flake root.
                            if base.is_none()
                                && suffix.is_empty()
                                && i.text().to_string().contains("self")
                            {
                                base = Some(String::new());
                                continue;
                            }
                            break;
                        }
                    }
                }
                break;
            }
            _ => {}
        }
    }
    let base = match base {
        Some(b) => b,
        None if text.contains("self") => String::new(),
        None => return None,
    };
    // Only the constant directories: a trailing partial name
    // (`…/rekeyed/host-${name}`) is not a directory of its own.
    let suffix = match suffix.rfind('/') {
        Some(i) => &suffix[..i],
        None => "",
    };
    normalize(&format!("{base}/{}", suffix.trim_start_matches('/')))
        .map(|d| d.trim_end_matches('/').to_string())
        .filter(|d| !d.is_empty())
}

/// The stanza tag of an `age1yubikey1…` recipient: `piv-p256 <tag>` where
/// the tag is the first four bytes of SHA-256 over the compressed P-256
/// point, base64 (age-plugin-yubikey's format).
pub fn yubikey_tag(recipient: &str) -> Option<String> {
    let (hrp, point) = bech32_decode(recipient)?;
    if hrp != "age1yubikey" || point.len() != 33 {
        return None;
    }
    Some(STANDARD_NO_PAD.encode(&Sha256::digest(&point)[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_flake_and_module_shapes() {
        let mut c = RekeyConfig::default();
        let flake = r#"{ inputs, ... }: {
  flake.secretsConfig = {
    masterIdentities = [ ../secrets/yk1-nix-rage.pub { identity = "/home/me/key.txt"; pubkey = "age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs"; } ];
    extraEncryptionPubkeys = [ ../secrets/backup.pub ];
  };
}"#;
        assert!(read_config(flake, "flake/agenix-rekey.nix", &mut c));
        assert_eq!(c.master_files, ["secrets/yk1-nix-rage.pub"]);
        assert_eq!(
            c.master_literals,
            ["age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs"]
        );
        assert_eq!(c.extra_files, ["secrets/backup.pub"]);
        let module = r#"{ config, inputs, ... }: {
  age.rekey = {
    inherit (inputs.self.secretsConfig) masterIdentities;
    generatedSecretsDir = inputs.self.outPath + "/secrets/generated/${config.node.name}";
    localStorageDir = inputs.self.outPath + "/secrets/rekeyed/${config.node.name}";
  };
}"#;
        assert!(read_config(module, "config/secrets.nix", &mut c));
        assert_eq!(c.storage.as_deref(), Some("secrets/rekeyed"));
        assert_eq!(c.generated.as_deref(), Some("secrets/generated"));
        assert_eq!(c.node_of("secrets/rekeyed/envoy/abc-x.age"), Some("envoy"));
        assert_eq!(c.node_of("secrets/generated/envoy/x.age"), None);
        assert_eq!(c.node_of("secrets/rekeyed/x.age"), None);

        let mut d = RekeyConfig::default();
        let local = r#"{ config, ... }: { age.rekey.localStorageDir = ./. + "/secrets/rekeyed/${config.networking.hostName}"; }"#;
        assert!(read_config(local, "hosts/common.nix", &mut d));
        assert_eq!(d.storage.as_deref(), Some("hosts/secrets/rekeyed"));
        assert!(!read_config("{ x = 1; }", "a.nix", &mut d));
    }

    #[test]
    fn bech32_and_the_yubikey_stanza_tag() {
        // A BIP 173 test vector.
        let (hrp, data) = bech32_decode("A12UEL5L").unwrap();
        assert_eq!((hrp.as_str(), data.len()), ("a", 0));
        assert!(bech32_decode("a12uel5m").is_none(), "bad checksum");
        // An X25519 recipient decodes to 32 bytes.
        let (hrp, data) =
            bech32_decode("age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs")
                .unwrap();
        assert_eq!((hrp.as_str(), data.len()), ("age", 32));
        assert_eq!(
            yubikey_tag("age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs"),
            None
        );
    }
}

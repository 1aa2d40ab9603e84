//! Recipient public keys as text (`ssh-ed25519 AAAA… comment`, `age1…`) and
//! the SSH key tag that identifies them in an age header (A.4): the first
//! four bytes of SHA-256 of the SSH wire-format key, base64 without padding.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

use super::header::StanzaKind;

/// The kinds of recipient key guard understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    SshEd25519,
    SshRsa,
    /// A native `age1…` key: its stanzas do not say whom they are for.
    X25519,
    /// Post-quantum, tag or plugin `age1…1…` recipients.
    OtherAge,
}

impl KeyKind {
    /// The stanza type a key of this kind decrypts.
    pub fn stanza(self) -> Option<StanzaKind> {
        match self {
            KeyKind::SshEd25519 => Some(StanzaKind::SshEd25519),
            KeyKind::SshRsa => Some(StanzaKind::SshRsa),
            KeyKind::X25519 => Some(StanzaKind::X25519),
            KeyKind::OtherAge => None,
        }
    }

    /// The name used in messages and headers.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::SshEd25519 => "ssh-ed25519",
            KeyKind::SshRsa => "ssh-rsa",
            KeyKind::X25519 => "X25519",
            KeyKind::OtherAge => "age plugin/post-quantum",
        }
    }
}

/// A parsed public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey {
    pub kind: KeyKind,
    /// The key without its comment (`ssh-ed25519 AAAA…` or `age1…`).
    pub key: String,
    /// For SSH keys: the 6-character tag of age's ssh stanzas.
    pub tag: Option<String>,
}

impl fmt::Display for PublicKey {
    /// A short form for messages: type and tag, or the start of an age key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            Some(t) => write!(f, "{} key with tag {t}", self.kind.name()),
            None => write!(f, "{}…", &self.key[..self.key.len().min(16)]),
        }
    }
}

/// Why a string is not a recipient key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a public key (expected `ssh-ed25519 AAAA…`, `ssh-rsa AAAA…` or `age1…`)")]
    Unrecognised,
    #[error("the {0} key's base64 does not decode")]
    Base64(&'static str),
    #[error("the {0} key's data does not start with its type (corrupt key)")]
    WireType(&'static str),
    #[error("the age recipient has invalid characters or length")]
    AgeRecipient,
}

/// The stanza tag of an SSH key given in wire format.
pub fn ssh_tag(wire: &[u8]) -> String {
    let digest = Sha256::digest(wire);
    STANDARD_NO_PAD.encode(&digest[..4])
}

/// Bech32 data characters (lowercase).
const BECH32: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// Parses one public key line (an OpenSSH public key with optional comment,
/// or an age recipient).
pub fn parse_public_key(text: &str) -> Result<PublicKey, KeyError> {
    let mut parts = text.split_whitespace();
    let first = parts.next().ok_or(KeyError::Unrecognised)?;
    let (kind, name) = match first {
        "ssh-ed25519" => (KeyKind::SshEd25519, "ssh-ed25519"),
        "ssh-rsa" => (KeyKind::SshRsa, "ssh-rsa"),
        s if s.starts_with("age1") => {
            let data = &s[4..];
            // X25519: 32 bytes = 52 data chars + 6 checksum chars. Other
            // recipients carry a plugin or scheme name and a second `1`.
            let valid = |d: &str| !d.is_empty() && d.chars().all(|c| BECH32.contains(c));
            if s.len() == 62 && valid(data) {
                return Ok(PublicKey {
                    kind: KeyKind::X25519,
                    key: s.to_string(),
                    tag: None,
                });
            }
            if let Some((name, rest)) = data.rsplit_once('1')
                && !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && valid(rest)
            {
                return Ok(PublicKey {
                    kind: KeyKind::OtherAge,
                    key: s.to_string(),
                    tag: None,
                });
            }
            return Err(KeyError::AgeRecipient);
        }
        _ => return Err(KeyError::Unrecognised),
    };
    let b64 = parts.next().ok_or(KeyError::Base64(name))?;
    let wire = STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .map_err(|_| KeyError::Base64(name))?;
    // The wire format starts with the length-prefixed type name.
    let ok_type = wire.len() >= 4 + name.len()
        && wire[..4] == (name.len() as u32).to_be_bytes()
        && &wire[4..4 + name.len()] == name.as_bytes();
    if !ok_type {
        return Err(KeyError::WireType(name));
    }
    if kind == KeyKind::SshEd25519 && wire.len() != 51 {
        return Err(KeyError::WireType(name));
    }
    Ok(PublicKey {
        kind,
        key: format!("{name} {b64}"),
        tag: Some(ssh_tag(&wire)),
    })
}

/// Whether a string plausibly is a recipient key (for picking keys out of
/// Nix lists without warning about every other string).
pub fn looks_like_key(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("ssh-ed25519 ") || t.starts_with("ssh-rsa ") || t.starts_with("age1")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORTEX: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7Qtf8mf+FjBoeYaBiwNrJ9tm7BJgwdLi+hjqyoGQdt root@cortex-alpha";

    #[test]
    fn ed25519_tag_matches_the_stanza_in_the_example_fleet() {
        let k = parse_public_key(CORTEX).unwrap();
        assert_eq!(k.kind, KeyKind::SshEd25519);
        assert_eq!(k.tag.as_deref(), Some("LpQKbg"));
        assert!(!k.key.contains("root@"));
        // Comments and extra whitespace do not change the key.
        let k2 =
            parse_public_key(&format!("  {}  ", CORTEX.replace(" root@cortex-alpha", ""))).unwrap();
        assert_eq!(k, k2);
    }

    #[test]
    fn age_recipients() {
        let x = "age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs";
        assert_eq!(parse_public_key(x).unwrap().kind, KeyKind::X25519);
        assert_eq!(parse_public_key(x).unwrap().tag, None);
        let y = "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t";
        assert_eq!(parse_public_key(y).unwrap().kind, KeyKind::OtherAge);
        assert_eq!(parse_public_key("age1UPPER"), Err(KeyError::AgeRecipient));
    }

    #[test]
    fn bad_keys() {
        assert_eq!(parse_public_key(""), Err(KeyError::Unrecognised));
        assert_eq!(
            parse_public_key("ecdsa-sha2-nistp256 AAAA"),
            Err(KeyError::Unrecognised)
        );
        assert!(matches!(
            parse_public_key("ssh-ed25519 !!!"),
            Err(KeyError::Base64(_))
        ));
        // An RSA blob labelled ed25519.
        let rsa = format!(
            "ssh-ed25519 {}",
            STANDARD.encode(b"\0\0\0\x07ssh-rsa\0\0\0\x01\x03")
        );
        assert!(matches!(parse_public_key(&rsa), Err(KeyError::WireType(_))));
        assert!(looks_like_key("ssh-ed25519 AAAA"));
        assert!(!looks_like_key("/run/keys/x"));
    }
}

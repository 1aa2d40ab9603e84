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

/// The age X25519 recipient (`age1…`) of an SSH ed25519 key: its Edwards
/// point converted to Montgomery form, u = (1 + y) / (1 - y) mod 2^255 - 19,
/// what `ssh-to-age` computes and what sops-nix decrypts with when it uses
/// the host's SSH key (`sops.age.sshKeyPaths`). `None` for other keys or a
/// point that is not on the curve.
pub fn ssh_to_age(key: &PublicKey) -> Option<String> {
    if key.kind != KeyKind::SshEd25519 {
        return None;
    }
    let b64 = key.key.split_whitespace().nth(1)?;
    let wire = STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .ok()?;
    // string "ssh-ed25519" (4 + 11 bytes), then string key (4 + 32 bytes).
    let point: [u8; 32] = wire.get(19..51)?.try_into().ok()?;
    let edwards = curve25519_dalek::edwards::CompressedEdwardsY(point).decompress()?;
    Some(bech32_encode("age", &edwards.to_montgomery().to_bytes()))
}

/// Bech32 (BIP 173) encoding of `data` under `hrp`, lowercase.
pub fn bech32_encode(hrp: &str, data: &[u8]) -> String {
    let charset = BECH32.as_bytes();
    let mut values = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            values.push(((acc >> bits) & 31) as u8);
        }
    }
    if bits > 0 {
        values.push(((acc << (5 - bits)) & 31) as u8);
    }
    let chk = bech32_polymod(hrp, values.iter().copied().chain([0; 6])) ^ 1;
    let mut out = format!("{hrp}1");
    for &v in &values {
        out.push(charset[v as usize] as char);
    }
    for i in 0..6 {
        out.push(charset[((chk >> (5 * (5 - i))) & 31) as usize] as char);
    }
    out
}

/// The BIP 173 checksum polymod over the expanded `hrp` and `values`.
fn bech32_polymod(hrp: &str, values: impl Iterator<Item = u8>) -> u32 {
    let mut chk: u32 = 1;
    let mut step = |v: u8| {
        let top = chk >> 25;
        chk = ((chk & 0x1ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in [
            0x3b6a_57b2u32,
            0x2650_8e6d,
            0x1ea1_19fa,
            0x3d42_33dd,
            0x2a14_62b3,
        ]
        .iter()
        .enumerate()
        {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    };
    for b in hrp.bytes() {
        step(b >> 5);
    }
    step(0);
    for b in hrp.bytes() {
        step(b & 31);
    }
    for v in values {
        step(v);
    }
    chk
}

/// Decodes a Bech32 string (checksum verified) into its human-readable
/// part and data bytes.
pub fn bech32_decode(s: &str) -> Option<(String, Vec<u8>)> {
    let s = s.to_ascii_lowercase();
    let pos = s.rfind('1')?;
    let (hrp, data) = (&s[..pos], &s[pos + 1..]);
    if hrp.is_empty() || data.len() < 6 {
        return None;
    }
    let values: Vec<u8> = data
        .bytes()
        .map(|c| {
            BECH32
                .as_bytes()
                .iter()
                .position(|&x| x == c)
                .map(|p| p as u8)
        })
        .collect::<Option<_>>()?;
    // Checksum (BIP 173): polymod over the expanded hrp and the data is 1.
    let chk = bech32_polymod(hrp, values.iter().copied());
    if chk != 1 {
        return None;
    }
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &v in &values[..values.len() - 6] {
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some((hrp.to_string(), out))
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
    fn ssh_ed25519_to_age_matches_ssh_to_age() {
        // Pairs from a public fleet repository (colemickens/nixcfg at
        // 2e6fc424, secrets/keys/<host>.ssh.pub and <host>.age.pub): the
        // age keys were written by ssh-to-age, the reference
        // implementation sops-nix documents.
        let pairs = [
            (
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJpP69tlr2HsBIEoadX2tnpPHmdrYEltPRuJI2E9UWUG",
                "age13kughael3jqxry5wkc62cutysm9h9lvswsu7zkrml98m3y6625esl5ke7u",
            ),
            (
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICFL0c9gNJWpGPyyQgWLbao6zSNMAMFDmwQQGHeOcVCU root@raisin",
                "age15pfzj764rps90cp9y23plctcpgtsyndtcf05gd2xcj8r224tng5qmj3hyg",
            ),
            (
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGlCrUqJQSML1IzeLNlxVRwpYRC8xmokJVZmZ/nlJLUj root@zeph",
                "age17jn9szrg49cxlz5hu7lsvcjtdevxjrqfjflacevypgasdqjd4elq3xnyy7",
            ),
        ];
        for (ssh, age) in pairs {
            let k = parse_public_key(ssh).unwrap();
            assert_eq!(ssh_to_age(&k).as_deref(), Some(age), "{ssh}");
        }
        let x = parse_public_key(pairs[0].1).unwrap();
        assert_eq!(ssh_to_age(&x), None);
        // Round trip of the encoding with the decoder agenix-rekey uses.
        let (hrp, data) = bech32_decode(pairs[0].1).unwrap();
        assert_eq!(bech32_encode(&hrp, &data), pairs[0].1);
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

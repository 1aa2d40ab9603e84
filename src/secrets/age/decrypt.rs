//! The optional decrypt proof (`guard secrets --identity <file>`, or the
//! key text in `GUARD_AGE_IDENTITY`): decrypt the secrets an identity must
//! be able to read, with the `age` crate, which verifies the header MAC and
//! every payload chunk. That proves the file is readable at activation
//! time, which the header alone cannot.
//!
//! No plaintext is kept: it is read into one fixed buffer that is zeroed
//! after every chunk and at the end; only its length is counted. The
//! identity text is zeroed after parsing and never shown; messages describe
//! the identity by its public key's type and tag.

use std::io::{BufReader, Read};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::{Zeroize, Zeroizing};

use super::header::{self, StanzaKind};
use super::keys::{KeyKind, PublicKey, parse_public_key};

/// Why an identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}: the identity is empty")]
    Empty(String),
    #[error("{0}: the identity is not UTF-8 text")]
    NotText(String),
    #[error(
        "{0}: passphrase-protected SSH keys are not supported (nobody can type the passphrase in CI); use an unencrypted key or an age identity"
    )]
    EncryptedSsh(String),
    #[error("{0}: unsupported SSH key type (age decrypts with ssh-ed25519 and ssh-rsa keys)")]
    UnsupportedSsh(String),
    #[error("{0}: not an SSH private key or age identity")]
    InvalidSsh(String),
    #[error("{source_name}: line {line} is not an age identity (expected AGE-SECRET-KEY-1…)")]
    InvalidAge { source_name: String, line: usize },
    #[error("{0}: no identity in it")]
    NoIdentity(String),
}

/// A loaded identity: the keys that decrypt, and their public halves.
pub struct Identity {
    identities: Vec<Box<dyn age::Identity>>,
    /// The public keys (for matching hosts and stanza tags).
    pub public: Vec<PublicKey>,
}

impl std::fmt::Debug for Identity {
    /// Only the public side: the private keys must never be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.describe())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Parses an OpenSSH private key (`ssh-ed25519`, `ssh-rsa`) or an age
    /// identity file (`AGE-SECRET-KEY-1…` lines, `#` comments). `source`
    /// names it in errors (a path, or the environment variable).
    pub fn parse(text: &[u8], source: &str) -> Result<Identity, IdentityError> {
        let Ok(text) = std::str::from_utf8(text) else {
            return Err(IdentityError::NotText(source.into()));
        };
        if text.trim().is_empty() {
            return Err(IdentityError::Empty(source.into()));
        }
        if text.contains("-----BEGIN") {
            return parse_ssh(text, source);
        }
        let mut identities: Vec<Box<dyn age::Identity>> = Vec::new();
        let mut public = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id =
                age::x25519::Identity::from_str(line).map_err(|_| IdentityError::InvalidAge {
                    source_name: source.into(),
                    line: i + 1,
                })?;
            if let Ok(k) = parse_public_key(&id.to_public().to_string()) {
                public.push(k);
            }
            identities.push(Box::new(id));
        }
        if identities.is_empty() {
            return Err(IdentityError::NoIdentity(source.into()));
        }
        Ok(Identity { identities, public })
    }

    /// "ssh-ed25519 key with tag AbCdEf" / "age1qyq…".
    pub fn describe(&self) -> String {
        self.public
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether a header has a stanza for one of this identity's SSH keys.
    pub fn matches_stanza(&self, h: &header::Header) -> bool {
        h.recipients().any(|s| {
            s.ssh_tag().is_some_and(|t| {
                self.public
                    .iter()
                    .any(|k| k.tag.as_deref() == Some(t) && k.kind.stanza() == Some(s.kind()))
            })
        })
    }

    /// Whether the identity holds a key whose stanzas do not name it.
    pub fn has_untagged(&self) -> bool {
        self.public.iter().any(|k| k.kind == KeyKind::X25519)
    }

    /// Decrypts `bytes` (binary or armored) and returns the plaintext
    /// length. The plaintext is discarded as it is read.
    pub fn prove(&self, bytes: &[u8]) -> Result<u64, ProofError> {
        let reader = age::armor::ArmoredReader::new(BufReader::new(bytes));
        let decryptor = age::Decryptor::new(reader).map_err(ProofError::from_decrypt)?;
        if decryptor.is_scrypt() {
            return Err(ProofError::Passphrase);
        }
        let mut stream = decryptor
            .decrypt(self.identities.iter().map(|i| i.as_ref()))
            .map_err(ProofError::from_decrypt)?;
        let mut buf = Zeroizing::new([0u8; 16 * 1024]);
        let mut total = 0u64;
        let result = loop {
            match stream.read(&mut buf[..]) {
                Ok(0) => break Ok(total),
                Ok(n) => {
                    total += n as u64;
                    buf[..n].zeroize();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break Err(ProofError::Payload),
            }
        };
        buf.zeroize();
        result
    }
}

fn parse_ssh(text: &str, source: &str) -> Result<Identity, IdentityError> {
    use age::ssh::Identity as Ssh;
    let id = Ssh::from_buffer(BufReader::new(text.as_bytes()), None)
        .map_err(|_| IdentityError::InvalidSsh(source.into()))?;
    match &id {
        Ssh::Unencrypted(_) => {}
        Ssh::Encrypted(_) => return Err(IdentityError::EncryptedSsh(source.into())),
        Ssh::Unsupported(_) => return Err(IdentityError::UnsupportedSsh(source.into())),
    }
    // The crate does not expose the public half; the OpenSSH format keeps it
    // in clear before the private section. (Old PEM RSA keys have no such
    // field: they still decrypt, but are matched to no host.)
    let public = openssh_public_wire(text)
        .and_then(|wire| {
            let b64 = STANDARD.encode(&wire);
            ["ssh-ed25519", "ssh-rsa"]
                .into_iter()
                .find_map(|t| parse_public_key(&format!("{t} {b64}")).ok())
        })
        .into_iter()
        .collect();
    Ok(Identity {
        identities: vec![Box::new(id)],
        public,
    })
}

/// The public key (SSH wire format) stored in an `openssh-key-v1` private
/// key: magic, cipher name, KDF name, KDF options, key count, public key.
fn openssh_public_wire(text: &str) -> Option<Vec<u8>> {
    let begin = "-----BEGIN OPENSSH PRIVATE KEY-----";
    let start = text.find(begin)? + begin.len();
    let end = text[start..].find("-----END OPENSSH PRIVATE KEY-----")? + start;
    let b64: String = text[start..end].split_whitespace().collect();
    let mut data = Zeroizing::new(STANDARD.decode(b64.as_bytes()).ok()?);
    let magic = b"openssh-key-v1\0";
    if !data.starts_with(magic) {
        return None;
    }
    let mut rest: &[u8] = &data[magic.len()..];
    let string = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        let n = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = rest.get(4..4 + n)?.to_vec();
        *rest = &rest[4 + n..];
        Some(s)
    };
    string(&mut rest)?; // cipher
    string(&mut rest)?; // kdf
    string(&mut rest)?; // kdf options
    let count = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    rest = &rest[4..];
    if count != 1 {
        return None;
    }
    let wire = string(&mut rest);
    data.zeroize();
    wire
}

/// Why a decrypt proof failed (never containing plaintext).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the identity is not a recipient of this file")]
    NotRecipient,
    #[error("the file is encrypted with a passphrase, not to a key")]
    Passphrase,
    #[error("the header does not parse")]
    Header,
    #[error("the header MAC does not verify (the header was altered or corrupted)")]
    Mac,
    #[error("the identity matches a stanza but cannot unwrap the file key (corrupt stanza)")]
    KeyUnwrap,
    #[error("the payload fails authentication (corrupt or truncated ciphertext)")]
    Payload,
    #[error("decryption failed")]
    Other,
}

impl ProofError {
    fn from_decrypt(e: age::DecryptError) -> ProofError {
        match e {
            age::DecryptError::NoMatchingKeys => ProofError::NotRecipient,
            age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
                ProofError::Header
            }
            age::DecryptError::InvalidMac => ProofError::Mac,
            age::DecryptError::KeyDecryptionFailed | age::DecryptError::DecryptionFailed => {
                ProofError::KeyUnwrap
            }
            age::DecryptError::Io(_) => ProofError::Header,
            _ => ProofError::Other,
        }
    }
}

/// Whether a header has stanzas of a kind an untagged (X25519) identity
/// might open.
pub fn has_x25519(h: &header::Header) -> bool {
    h.recipients().any(|s| s.kind() == StanzaKind::X25519)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::{ExposeSecret as _, SecretString};

    fn encrypt(recipients: &[&dyn age::Recipient], plaintext: &[u8], armor: bool) -> Vec<u8> {
        let enc = age::Encryptor::with_recipients(recipients.iter().copied()).unwrap();
        let mut out = Vec::new();
        if armor {
            let w =
                age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                    .unwrap();
            let mut s = enc.wrap_output(w).unwrap();
            std::io::Write::write_all(&mut s, plaintext).unwrap();
            s.finish().unwrap().finish().unwrap();
        } else {
            let mut s = enc.wrap_output(&mut out).unwrap();
            std::io::Write::write_all(&mut s, plaintext).unwrap();
            s.finish().unwrap();
        }
        out
    }

    #[test]
    fn x25519_identity_round_trip_binary_and_armored() {
        let key = age::x25519::Identity::generate();
        let text = key.to_string();
        let id = Identity::parse(
            format!("# created: now\n{}\n", text.expose_secret()).as_bytes(),
            "test",
        )
        .unwrap();
        assert_eq!(id.public.len(), 1);
        assert_eq!(id.public[0].kind, KeyKind::X25519);
        assert!(!id.describe().contains("AGE-SECRET-KEY"));
        let r = key.to_public();
        for armor in [false, true] {
            let file = encrypt(&[&r], b"hunter2", armor);
            let h = header::parse(&file).unwrap();
            assert_eq!(h.armored, armor);
            assert!(has_x25519(&h));
            assert_eq!(id.prove(&file), Ok(7));
        }
        // Another key is not a recipient.
        let other = age::x25519::Identity::generate().to_public();
        let file = encrypt(&[&other], b"hunter2", false);
        assert_eq!(id.prove(&file), Err(ProofError::NotRecipient));
        // A flipped payload byte fails authentication.
        let mut file = encrypt(&[&r], b"hunter2", false);
        let last = file.len() - 1;
        file[last] ^= 1;
        assert_eq!(id.prove(&file), Err(ProofError::Payload));
        // A flipped MAC byte fails the MAC.
        let mut file = encrypt(&[&r], b"hunter2", false);
        let h = header::parse(&file).unwrap();
        file[h.header_len - 3] ^= 1;
        assert!(matches!(
            id.prove(&file),
            Err(ProofError::Mac | ProofError::Header)
        ));
    }

    #[test]
    fn passphrase_files_are_not_decrypted() {
        let enc = age::Encryptor::with_user_passphrase(SecretString::from("pw".to_string()));
        let mut out = Vec::new();
        let mut s = enc.wrap_output(&mut out).unwrap();
        std::io::Write::write_all(&mut s, b"x").unwrap();
        s.finish().unwrap();
        let id = Identity::parse(
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
                .as_bytes(),
            "t",
        )
        .unwrap();
        assert_eq!(id.prove(&out), Err(ProofError::Passphrase));
    }

    #[test]
    fn bad_identities_are_named_without_content() {
        let e = Identity::parse(b"", "GUARD_AGE_IDENTITY")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("GUARD_AGE_IDENTITY") && e.contains("empty"),
            "{e}"
        );
        let e = Identity::parse(b"# c\nAGE-SECRET-KEY-1NOTVALIDXX\n", "id.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && !e.contains("NOTVALID"), "{e}");
        let e = Identity::parse(b"-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n", "k")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an SSH private key"), "{e}");
        assert!(Identity::parse(&[0xff, 0xfe], "k").is_err());
    }
}

//! A strict parser for the age v1 header (age-and-secrix.md, part A), binary
//! and ASCII-armored. Pure: bytes in, a [`Header`] or a [`HeaderError`] out.
//!
//! The `age` crate keeps its header type private and reports every problem
//! as "invalid header", so guard parses the header itself: that gives error
//! messages with a line number and a reason, the stanza arguments (the SSH
//! key tags) without a private key, and the payload size check that catches
//! a truncated file.
//!
//! Errors never contain file content: reasons are fixed texts and numbers,
//! and the one piece of the file that is echoed (an unknown format version)
//! is shown only when it is short printable ASCII.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

/// What every age file starts with, before the version.
pub const MAGIC: &[u8] = b"age-encryption.org/";
/// The only version defined.
pub const VERSION: &[u8] = b"v1";
/// First line of the ASCII armor.
pub const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// Last line of the ASCII armor.
pub const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";

/// Body lines are wrapped at this many base64 characters.
const COLUMNS: usize = 64;
/// The payload starts with a random nonce of this size.
const NONCE_LEN: usize = 16;
/// Each payload chunk carries a Poly1305 tag.
const TAG_LEN: usize = 16;
/// A full sealed payload chunk: 64 KiB of plaintext plus its tag.
const SEALED_CHUNK: usize = 64 * 1024 + TAG_LEN;

/// A parsed age v1 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The file was ASCII-armored (the rest describes the decoded bytes).
    pub armored: bool,
    /// Every stanza, grease included, in file order.
    pub stanzas: Vec<Stanza>,
    /// The header MAC (checkable only with the file key).
    pub mac: [u8; 32],
    /// Bytes of the (decoded) header, up to and including the MAC line.
    pub header_len: usize,
    /// Bytes after the header: nonce and sealed chunks.
    pub payload_len: usize,
}

impl Header {
    /// The stanzas that stand for a recipient (grease removed).
    pub fn recipients(&self) -> impl Iterator<Item = &Stanza> {
        self.stanzas
            .iter()
            .filter(|s| s.kind() != StanzaKind::Grease)
    }
}

/// One recipient stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// The stanza type (first argument), e.g. `ssh-ed25519`.
    pub tag: String,
    /// The remaining arguments.
    pub args: Vec<String>,
    /// The decoded body.
    pub body: Vec<u8>,
    /// 1-based line of the `->` line in the (decoded) header.
    pub line: usize,
    /// Written in the legacy encoding (no final short body line).
    pub legacy: bool,
}

/// The recipient types guard knows (age-and-secrix.md, A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StanzaKind {
    X25519,
    SshEd25519,
    SshRsa,
    Scrypt,
    /// Post-quantum hybrid `age1pq1…` recipients.
    MlKem768X25519,
    /// Hardware-key tag recipients (`p256tag`, `mlkem768p256tag`).
    P256Tag,
    /// Random stanzas the Rust implementation adds to keep parsers honest.
    Grease,
    /// Anything else (plugins).
    Other,
}

impl Stanza {
    /// What kind of recipient this stanza is for.
    pub fn kind(&self) -> StanzaKind {
        match self.tag.as_str() {
            "X25519" => StanzaKind::X25519,
            "ssh-ed25519" => StanzaKind::SshEd25519,
            "ssh-rsa" => StanzaKind::SshRsa,
            "scrypt" => StanzaKind::Scrypt,
            "mlkem768x25519" => StanzaKind::MlKem768X25519,
            "p256tag" | "mlkem768p256tag" => StanzaKind::P256Tag,
            t if t.ends_with("-grease") => StanzaKind::Grease,
            _ => StanzaKind::Other,
        }
    }

    /// The SSH key tag of an `ssh-ed25519` / `ssh-rsa` stanza.
    pub fn ssh_tag(&self) -> Option<&str> {
        match self.kind() {
            StanzaKind::SshEd25519 | StanzaKind::SshRsa => self.args.first().map(String::as_str),
            _ => None,
        }
    }
}

/// Why bytes are not a valid age v1 file. The `Display` text is a message
/// for the user; it never contains file content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("file is empty; expected age ciphertext")]
    Empty,
    #[error("expected an age-encrypted file but found plaintext ({bytes} bytes of text)")]
    Plaintext { bytes: usize },
    #[error(
        "expected an age-encrypted file but it has no age header ({bytes} bytes of binary data)"
    )]
    NotAge { bytes: usize },
    #[error("unsupported age format version {version}")]
    UnsupportedVersion { version: String },
    #[error("truncated header: the file ends at line {line}, before the MAC line (`--- …`)")]
    TruncatedHeader { line: usize },
    #[error("malformed age header at line {line}: bad stanza: {reason}")]
    BadStanza { line: usize, reason: &'static str },
    #[error("malformed age header at line {line}: bad base64: {reason}")]
    BadBase64 { line: usize, reason: &'static str },
    #[error("malformed age header at line {line}: missing MAC line: {reason}")]
    MissingMac { line: usize, reason: &'static str },
    #[error("malformed age header at line {line}: bad MAC line: {reason}")]
    BadMac { line: usize, reason: &'static str },
    #[error(
        "malformed age header at line {line}: a passphrase (scrypt) stanza must be the only stanza; age refuses to decrypt this file"
    )]
    MixedScrypt { line: usize },
    #[error("malformed ASCII armor at line {line}: {reason}")]
    Armor { line: usize, reason: &'static str },
    #[error("{0} (inside the ASCII armor)")]
    InArmor(Box<HeaderError>),
    #[error("no payload: the file ends right after the header")]
    NoPayload,
    #[error("ciphertext is truncated ({bytes} bytes after the header)")]
    TruncatedPayload { bytes: usize },
}

impl HeaderError {
    /// A short stable name of the problem (for fingerprints and tests).
    pub fn kind(&self) -> &'static str {
        match self {
            HeaderError::Empty => "empty",
            HeaderError::Plaintext { .. } => "plaintext",
            HeaderError::NotAge { .. } => "not-age",
            HeaderError::UnsupportedVersion { .. } => "unsupported-version",
            HeaderError::TruncatedHeader { .. } => "truncated-header",
            HeaderError::BadStanza { .. } => "bad-stanza",
            HeaderError::BadBase64 { .. } => "bad-base64",
            HeaderError::MissingMac { .. } => "missing-mac",
            HeaderError::BadMac { .. } => "bad-mac",
            HeaderError::MixedScrypt { .. } => "mixed-scrypt",
            HeaderError::Armor { .. } => "armor",
            HeaderError::InArmor(inner) => inner.kind(),
            HeaderError::NoPayload => "no-payload",
            HeaderError::TruncatedPayload { .. } => "truncated-payload",
        }
    }

    /// The header line the problem is on, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            HeaderError::TruncatedHeader { line }
            | HeaderError::BadStanza { line, .. }
            | HeaderError::BadBase64 { line, .. }
            | HeaderError::MissingMac { line, .. }
            | HeaderError::BadMac { line, .. }
            | HeaderError::MixedScrypt { line }
            | HeaderError::Armor { line, .. } => Some(*line),
            HeaderError::InArmor(inner) => inner.line(),
            _ => None,
        }
    }

    /// The file holds readable text where ciphertext belongs.
    pub fn is_plaintext(&self) -> bool {
        matches!(self, HeaderError::Plaintext { .. })
    }
}

/// Whether `bytes` look like an age file at all (binary or armored), without
/// validating it: the cheap test that separates "bad age" from "not age".
pub fn looks_like_age(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) || trim_ascii_start(bytes).starts_with(ARMOR_BEGIN.as_bytes())
}

/// Parses a whole age file (header and payload size), binary or armored.
pub fn parse(bytes: &[u8]) -> Result<Header, HeaderError> {
    if bytes.is_empty() {
        return Err(HeaderError::Empty);
    }
    if trim_ascii_start(bytes).starts_with(ARMOR_BEGIN.as_bytes()) {
        let decoded = dearmor(bytes)?;
        return match parse_binary(&decoded) {
            Ok(mut h) => {
                h.armored = true;
                Ok(h)
            }
            // The armor is fine but holds no age file.
            Err(
                HeaderError::Plaintext { .. } | HeaderError::NotAge { .. } | HeaderError::Empty,
            ) => Err(HeaderError::Armor {
                line: 2,
                reason: "the armored data is not an age file",
            }),
            Err(e) => Err(HeaderError::InArmor(Box::new(e))),
        };
    }
    parse_binary(bytes)
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Text: valid UTF-8 without NUL or other control characters than the
/// usual whitespace.
fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
        && bytes
            .iter()
            .all(|&b| b >= 0x20 || matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
}

/// Splits off the next LF-terminated line at `pos`: (line without LF,
/// position after the LF), or `None` at end of input / without an LF.
fn next_line(b: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(pos..)?;
    let n = rest.iter().position(|&c| c == b'\n')?;
    Some((&rest[..n], pos + n + 1))
}

fn is_b64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// Decodes canonical unpadded base64 (age's header encoding).
fn b64_nopad(s: &[u8]) -> Option<Vec<u8>> {
    if !s.iter().all(|&c| is_b64_char(c)) {
        return None;
    }
    STANDARD_NO_PAD.decode(s).ok()
}

/// Decodes an argument that must be `n` bytes of canonical unpadded base64.
fn b64_arg(s: &str, n: usize) -> bool {
    b64_nopad(s.as_bytes()).is_some_and(|v| v.len() == n)
}

fn parse_binary(b: &[u8]) -> Result<Header, HeaderError> {
    if b.is_empty() {
        return Err(HeaderError::Empty);
    }
    if !b.starts_with(MAGIC) {
        if MAGIC.starts_with(b) {
            return Err(HeaderError::TruncatedHeader { line: 1 });
        }
        return Err(if is_text(b) {
            HeaderError::Plaintext { bytes: b.len() }
        } else {
            HeaderError::NotAge { bytes: b.len() }
        });
    }
    // Version line.
    let Some((first, mut pos)) = next_line(b, 0) else {
        let version = &b[MAGIC.len()..];
        if VERSION.starts_with(version) || version == VERSION {
            return Err(HeaderError::TruncatedHeader { line: 1 });
        }
        return Err(HeaderError::UnsupportedVersion {
            version: show_version(version),
        });
    };
    let version = &first[MAGIC.len()..];
    if version != VERSION {
        if version.strip_suffix(b"\r") == Some(VERSION) {
            return Err(HeaderError::BadStanza {
                line: 1,
                reason: "CRLF line ending in the binary header (only LF is allowed)",
            });
        }
        return Err(HeaderError::UnsupportedVersion {
            version: show_version(version),
        });
    }

    let mut stanzas: Vec<Stanza> = Vec::new();
    let mut line_no = 1;
    // A line already read by the body loop (the legacy encoding ends a body
    // at the next stanza or MAC line).
    let mut pending: Option<(&[u8], usize)> = None;
    loop {
        let (line, after) = match pending.take() {
            Some(p) => p,
            None => {
                line_no += 1;
                next_line(b, pos).ok_or(HeaderError::TruncatedHeader { line: line_no })?
            }
        };
        if line.ends_with(b"\r") {
            return Err(HeaderError::BadStanza {
                line: line_no,
                reason: "CRLF line ending in the binary header (only LF is allowed)",
            });
        }
        if let Some(rest) = line.strip_prefix(b"---") {
            if stanzas.is_empty() {
                return Err(HeaderError::BadStanza {
                    line: line_no,
                    reason: "the header has no recipient stanza",
                });
            }
            let mac = parse_mac(rest).map_err(|reason| HeaderError::BadMac {
                line: line_no,
                reason,
            })?;
            if let Some(s) = stanzas.iter().find(|s| s.tag == "scrypt")
                && stanzas.len() > 1
            {
                return Err(HeaderError::MixedScrypt { line: s.line });
            }
            let header_len = after;
            let payload_len = b.len() - header_len;
            check_payload(payload_len)?;
            return Ok(Header {
                armored: false,
                stanzas,
                mac,
                header_len,
                payload_len,
            });
        }
        let Some(args) = line.strip_prefix(b"->") else {
            return Err(if stanzas.is_empty() {
                HeaderError::BadStanza {
                    line: line_no,
                    reason: "expected a recipient stanza (`-> …`) after the version line",
                }
            } else {
                HeaderError::MissingMac {
                    line: line_no,
                    reason: "expected another stanza (`-> …`) or the MAC line (`--- …`)",
                }
            });
        };
        let stanza_line = line_no;
        let (tag, args) = parse_args(args).map_err(|reason| HeaderError::BadStanza {
            line: stanza_line,
            reason,
        })?;
        // Body lines: full 64-column lines, then one shorter (maybe empty).
        pos = after;
        let mut body_text: Vec<u8> = Vec::new();
        let mut legacy = false;
        loop {
            line_no += 1;
            let (l, next) =
                next_line(b, pos).ok_or(HeaderError::TruncatedHeader { line: line_no })?;
            if l.starts_with(b"-> ") || l.starts_with(b"---") {
                // Legacy encoding: a body whose length is a multiple of 48
                // bytes written without the final empty line.
                legacy = true;
                pending = Some((l, next));
                break;
            }
            if l.len() > COLUMNS {
                return Err(HeaderError::BadBase64 {
                    line: line_no,
                    reason: "stanza body line longer than 64 columns",
                });
            }
            if let Some(&c) = l.iter().find(|&&c| !is_b64_char(c)) {
                return Err(HeaderError::BadBase64 {
                    line: line_no,
                    reason: if c == b'=' {
                        "padding (`=`) is not allowed in stanza bodies"
                    } else if c == b'\r' {
                        "CRLF line ending in the binary header (only LF is allowed)"
                    } else {
                        "character outside the base64 alphabet in a stanza body"
                    },
                });
            }
            body_text.extend_from_slice(l);
            pos = next;
            if l.len() < COLUMNS {
                break;
            }
        }
        let body = STANDARD_NO_PAD
            .decode(&body_text)
            .map_err(|_| HeaderError::BadBase64 {
                line: line_no - usize::from(legacy),
                reason: "non-canonical base64 (wrong length or trailing bits) in a stanza body",
            })?;
        let stanza = Stanza {
            tag,
            args,
            body,
            line: stanza_line,
            legacy,
        };
        check_known_stanza(&stanza).map_err(|reason| HeaderError::BadStanza {
            line: stanza_line,
            reason,
        })?;
        stanzas.push(stanza);
    }
}

/// An unknown version, shown only when it cannot carry secret text.
fn show_version(v: &[u8]) -> String {
    if !v.is_empty() && v.len() <= 16 && v.iter().all(|c| c.is_ascii_graphic()) {
        format!("'{}'", String::from_utf8_lossy(v))
    } else {
        "(unreadable)".into()
    }
}

/// The arguments after `->`: a type and its arguments, single-space
/// separated, each printable ASCII without spaces.
fn parse_args(rest: &[u8]) -> Result<(String, Vec<String>), &'static str> {
    let Some(rest) = rest.strip_prefix(b" ") else {
        return Err("`->` must be followed by a space and the stanza type");
    };
    let mut out = Vec::new();
    for a in rest.split(|&c| c == b' ') {
        if a.is_empty() {
            return Err("empty argument (double or trailing space)");
        }
        if !a.iter().all(|&c| (0x21..=0x7e).contains(&c)) {
            return Err("argument with a character outside printable ASCII");
        }
        // Checked above: printable ASCII is UTF-8.
        out.push(String::from_utf8_lossy(a).into_owned());
    }
    let tag = out.remove(0);
    Ok((tag, out))
}

/// Shape rules of the stanza types guard relies on (A.3): a malformed SSH
/// stanza would make recipient checks meaningless.
fn check_known_stanza(s: &Stanza) -> Result<(), &'static str> {
    match s.kind() {
        StanzaKind::X25519 => {
            if s.args.len() != 1 || !b64_arg(&s.args[0], 32) {
                return Err("X25519 stanza needs one argument: a 32-byte share");
            }
            if s.body.len() != 32 {
                return Err("X25519 stanza body must be 32 bytes");
            }
        }
        StanzaKind::SshEd25519 => {
            if s.args.len() != 2 || !b64_arg(&s.args[0], 4) || !b64_arg(&s.args[1], 32) {
                return Err(
                    "ssh-ed25519 stanza needs two arguments: a 4-byte tag and a 32-byte share",
                );
            }
            if s.body.len() != 32 {
                return Err("ssh-ed25519 stanza body must be 32 bytes");
            }
        }
        StanzaKind::SshRsa => {
            if s.args.len() != 1 || !b64_arg(&s.args[0], 4) {
                return Err("ssh-rsa stanza needs one argument: a 4-byte tag");
            }
            if s.body.is_empty() {
                return Err("ssh-rsa stanza has an empty body");
            }
        }
        StanzaKind::Scrypt => {
            let ok_factor = s.args.get(1).is_some_and(|f| {
                !f.is_empty()
                    && f.len() <= 2
                    && f.bytes().all(|c| c.is_ascii_digit())
                    && !f.starts_with('0')
            });
            if s.args.len() != 2 || !b64_arg(&s.args[0], 16) || !ok_factor {
                return Err("scrypt stanza needs two arguments: a 16-byte salt and a work factor");
            }
            if s.body.len() != 32 {
                return Err("scrypt stanza body must be 32 bytes");
            }
        }
        _ => {}
    }
    Ok(())
}

/// The part of the MAC line after `---`.
fn parse_mac(rest: &[u8]) -> Result<[u8; 32], &'static str> {
    let Some(mac) = rest.strip_prefix(b" ") else {
        return Err("`---` must be followed by a space and the MAC");
    };
    if mac.len() != 43 {
        return Err("the MAC must be 43 base64 characters (32 bytes)");
    }
    let bytes = b64_nopad(mac).ok_or("the MAC is not canonical base64")?;
    bytes
        .try_into()
        .map_err(|_| "the MAC must be 43 base64 characters (32 bytes)")
}

/// Payload size rules that need no key (A.1): a nonce, then sealed chunks
/// of which only the last may be short, and none but an only one empty.
fn check_payload(after_header: usize) -> Result<(), HeaderError> {
    if after_header == 0 {
        return Err(HeaderError::NoPayload);
    }
    let truncated = Err(HeaderError::TruncatedPayload {
        bytes: after_header,
    });
    if after_header < NONCE_LEN {
        return truncated;
    }
    let n = after_header - NONCE_LEN;
    if n == TAG_LEN {
        return Ok(()); // empty plaintext
    }
    if n < TAG_LEN {
        return truncated;
    }
    match n % SEALED_CHUNK {
        r if (1..=TAG_LEN).contains(&r) => truncated,
        _ => Ok(()),
    }
}

/// Decodes strict PEM armor (A.2) into the binary file.
fn dearmor(bytes: &[u8]) -> Result<Vec<u8>, HeaderError> {
    let armor = |line: usize, reason: &'static str| HeaderError::Armor { line, reason };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(armor(1, "the armor is not ASCII text"));
    };
    let leading = text.len() - text.trim_start().len();
    let first_line = 1 + text[..leading].matches('\n').count();
    let body = text.trim();
    let lines: Vec<&str> = body
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if lines[0] != ARMOR_BEGIN {
        return Err(armor(first_line, "the BEGIN line has extra characters"));
    }
    let last = lines.len() - 1;
    let Some(end) = lines.iter().position(|l| *l == ARMOR_END) else {
        return Err(armor(
            first_line + last,
            "no `-----END AGE ENCRYPTED FILE-----` line: the armor is truncated",
        ));
    };
    if end != last {
        return Err(armor(first_line + end + 1, "text after the END line"));
    }
    let data = &lines[1..end];
    if data.is_empty() {
        return Err(armor(first_line + 1, "no data between BEGIN and END"));
    }
    let mut b64 = String::with_capacity(data.len() * COLUMNS);
    for (i, l) in data.iter().enumerate() {
        let line = first_line + 1 + i;
        let is_last = i + 1 == data.len();
        if l.len() > COLUMNS {
            return Err(armor(line, "line longer than 64 columns"));
        }
        if !is_last && l.len() != COLUMNS {
            return Err(armor(
                line,
                "line shorter than 64 columns before the last one",
            ));
        }
        if l.is_empty() {
            return Err(armor(line, "empty line before the END line"));
        }
        if !l.bytes().all(|c| is_b64_char(c) || c == b'=') {
            return Err(armor(line, "character outside the base64 alphabet"));
        }
        b64.push_str(l);
    }
    STANDARD.decode(b64.as_bytes()).map_err(|_| {
        armor(
            first_line + data.len(),
            "invalid base64 (wrong padding or length)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARE: &str = "bpRmZvIH2QKdYJoojBt9c+6wn7+yINN6+7in8qF4L34";
    const BODY32: &str = "spjazPWWRUgVVhYV6jKQdDrR5bQg/GKxlZo2sReJr6k";
    const MAC: &str = "YlgIFkGG0EcWnK8y9+EYdJof52Wk67xiPcTac/g+mTM";

    fn header_text(stanzas: &str) -> String {
        format!("age-encryption.org/v1\n{stanzas}--- {MAC}\n")
    }

    fn file(stanzas: &str, payload: usize) -> Vec<u8> {
        let mut v = header_text(stanzas).into_bytes();
        v.extend(std::iter::repeat_n(0xA5u8, payload));
        v
    }

    fn ssh(tag: &str) -> String {
        format!("-> ssh-ed25519 {tag} {SHARE}\n{BODY32}\n")
    }

    fn armor(bytes: &[u8]) -> String {
        let b = STANDARD.encode(bytes);
        let mut s = format!("{ARMOR_BEGIN}\n");
        for chunk in b.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(chunk).unwrap());
            s.push('\n');
        }
        s.push_str(ARMOR_END);
        s.push('\n');
        s
    }

    #[test]
    fn valid_binary_file() {
        let h = parse(&file(&(ssh("LpQKbg") + &ssh("+5emsw")), 40)).unwrap();
        assert!(!h.armored);
        assert_eq!(h.stanzas.len(), 2);
        assert_eq!(h.stanzas[0].ssh_tag(), Some("LpQKbg"));
        assert_eq!(h.stanzas[1].ssh_tag(), Some("+5emsw"));
        assert_eq!(h.stanzas[0].line, 2);
        assert_eq!(h.stanzas[1].line, 4);
        assert_eq!(h.stanzas[0].body.len(), 32);
        assert_eq!(h.payload_len, 40);
    }

    #[test]
    fn valid_armored_file_with_crlf_and_surrounding_whitespace() {
        let bin = file(&ssh("LpQKbg"), 40);
        let a = armor(&bin).replace('\n', "\r\n");
        let h = parse(format!("\n  {a}\n\n").as_bytes()).unwrap();
        assert!(h.armored);
        assert_eq!(h.stanzas[0].ssh_tag(), Some("LpQKbg"));
        assert_eq!(h.payload_len, 40);
    }

    #[test]
    fn the_example_fleet_secrets_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet/secrets");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let h = parse(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(h.recipients().count() >= 1);
            n += 1;
        }
        assert!(n >= 20);
    }

    #[test]
    fn the_fuzz_seeds_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/age_header");
        let mut kinds = std::collections::BTreeSet::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let h = parse(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            kinds.extend(h.stanzas.iter().map(Stanza::kind));
        }
        // The seeds cover every stanza kind guard treats specially.
        for k in [
            StanzaKind::X25519,
            StanzaKind::SshEd25519,
            StanzaKind::SshRsa,
            StanzaKind::Scrypt,
            StanzaKind::Grease,
            StanzaKind::Other,
        ] {
            assert!(kinds.contains(&k), "{k:?}");
        }
    }

    #[test]
    fn grease_and_unknown_stanzas_are_kept_and_classified() {
        let s = format!(
            "-> S(H-grease UU>k |W\nDdfk\n-> X25519 {SHARE}\n{BODY32}\n-> piv-p256 abcdef xyz\n\n"
        );
        let h = parse(&file(&s, 32)).unwrap();
        let kinds: Vec<StanzaKind> = h.stanzas.iter().map(Stanza::kind).collect();
        assert_eq!(
            kinds,
            [StanzaKind::Grease, StanzaKind::X25519, StanzaKind::Other]
        );
        assert_eq!(h.recipients().count(), 2);
    }

    #[test]
    fn long_bodies_wrap_at_64_columns_and_end_with_a_short_line() {
        // 48 bytes = exactly 64 characters: one full line plus an empty one.
        let body = STANDARD_NO_PAD.encode([7u8; 48]);
        let s = format!("-> other-type\n{body}\n\n");
        let h = parse(&file(&s, 32)).unwrap();
        assert_eq!(h.stanzas[0].body, vec![7u8; 48]);
        assert!(!h.stanzas[0].legacy);
        // The legacy form (no final empty line) is accepted and marked.
        let s = format!("-> other-type\n{body}\n{}", ssh("LpQKbg"));
        let h = parse(&file(&s, 32)).unwrap();
        assert!(h.stanzas[0].legacy);
        assert_eq!(h.stanzas.len(), 2);
    }

    #[test]
    fn empty_and_plaintext_and_binary() {
        assert_eq!(parse(b""), Err(HeaderError::Empty));
        assert_eq!(
            parse(b"hunter2\n"),
            Err(HeaderError::Plaintext { bytes: 8 })
        );
        assert_eq!(
            parse(&[0xff, 0x00, 0x13]),
            Err(HeaderError::NotAge { bytes: 3 })
        );
        // A message never contains the content.
        let e = parse(b"password=hunter2\n").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn truncated_header() {
        let full = file(&ssh("LpQKbg"), 32);
        for cut in [5, 21, 22, 30, 60, full.len() - 33 - 10] {
            let e = parse(&full[..cut]).unwrap_err();
            assert_eq!(e.kind(), "truncated-header", "cut at {cut}: {e}");
        }
    }

    #[test]
    fn unsupported_version() {
        let e = parse(b"age-encryption.org/v2\n-> x\n\n").unwrap_err();
        assert_eq!(
            e,
            HeaderError::UnsupportedVersion {
                version: "'v2'".into()
            }
        );
        let e = parse(b"age-encryption.org/secret password here\n").unwrap_err();
        assert!(!e.to_string().contains("password"));
    }

    #[test]
    fn bad_stanzas() {
        let cases = [
            ("->ssh-ed25519 x\n\n", "space"),
            ("-> ssh-ed25519  x\n\n", "empty argument"),
            ("-> ssh-ed25519 x \n\n", "empty argument"),
            ("-> \n\n", "empty argument"),
            (
                &format!("-> ssh-ed25519 LpQKbg\n{BODY32}\n"),
                "two arguments",
            ),
            (
                &format!("-> ssh-ed25519 LpQK {SHARE}\n{BODY32}\n"),
                "4-byte tag",
            ),
            (&format!("-> X25519 {SHARE}\nAAAA\n"), "32 bytes"),
            ("-> ssh-rsa LpQKbg\n\n", "empty body"),
        ];
        for (s, want) in cases {
            let e = parse(&file(s, 32)).unwrap_err();
            assert_eq!(e.kind(), "bad-stanza", "{s:?}: {e}");
            assert!(e.to_string().contains(want), "{s:?}: {e}");
            assert_eq!(e.line(), Some(2));
        }
        // No stanza at all.
        let e = parse(&file("", 32)).unwrap_err();
        assert!(e.to_string().contains("no recipient stanza"), "{e}");
        let e = parse(b"age-encryption.org/v1\nhello\n").unwrap_err();
        assert_eq!(e.kind(), "bad-stanza");
    }

    #[test]
    fn bad_base64() {
        let pad = format!("-> X25519 {SHARE}\n{BODY32}=\n");
        let long = format!("-> X25519 {SHARE}\n{}\n\n", "A".repeat(65));
        let alphabet = format!("-> X25519 {SHARE}\n{}*\n", &BODY32[..42]);
        // Non-canonical: trailing bits set in the last character.
        let bits = format!("-> X25519 {SHARE}\n{}l\n", &BODY32[..42]);
        let len1 = "-> other\nAAAAA\n".to_string();
        for s in [pad, long, alphabet, bits, len1] {
            let e = parse(&file(&s, 32)).unwrap_err();
            assert_eq!(e.kind(), "bad-base64", "{s:?}: {e}");
            assert_eq!(e.line(), Some(3), "{s:?}: {e}");
        }
    }

    #[test]
    fn missing_or_bad_mac() {
        let mut v = format!("age-encryption.org/v1\n{}", ssh("LpQKbg")).into_bytes();
        v.extend_from_slice(&[0x01, 0xff, b'\n', 3, 4]);
        let e = parse(&v).unwrap_err();
        assert_eq!(e.kind(), "missing-mac", "{e}");
        assert_eq!(e.line(), Some(4));
        for mac in [
            "---",
            "---x",
            "--- short",
            &format!("--- {MAC}="),
            &format!("---  {MAC}"),
        ] {
            let mut v = format!("age-encryption.org/v1\n{}{mac}\n", ssh("LpQKbg")).into_bytes();
            v.extend([0u8; 32]);
            let e = parse(&v).unwrap_err();
            assert_eq!(e.kind(), "bad-mac", "{mac:?}: {e}");
        }
    }

    #[test]
    fn crlf_in_the_binary_header_is_rejected() {
        let h = header_text(&ssh("LpQKbg")).replace('\n', "\r\n");
        let mut v = h.into_bytes();
        v.extend([0u8; 32]);
        let e = parse(&v).unwrap_err();
        assert!(e.to_string().contains("CRLF"), "{e}");
    }

    #[test]
    fn scrypt_must_be_alone() {
        let salt = STANDARD_NO_PAD.encode([1u8; 16]);
        let scrypt = format!("-> scrypt {salt} 18\n{BODY32}\n");
        assert!(parse(&file(&scrypt, 32)).is_ok());
        let e = parse(&file(&(scrypt.clone() + &ssh("LpQKbg")), 32)).unwrap_err();
        assert_eq!(e, HeaderError::MixedScrypt { line: 2 });
        let bad = format!("-> scrypt {salt} 018\n{BODY32}\n");
        assert_eq!(parse(&file(&bad, 32)).unwrap_err().kind(), "bad-stanza");
    }

    #[test]
    fn payload_size_rules() {
        let s = ssh("LpQKbg");
        assert_eq!(parse(&file(&s, 0)), Err(HeaderError::NoPayload));
        for bad in [
            1,
            15,
            16,
            17,
            31,
            16 + SEALED_CHUNK + 1,
            16 + SEALED_CHUNK + 16,
        ] {
            assert_eq!(
                parse(&file(&s, bad)).unwrap_err().kind(),
                "truncated-payload",
                "{bad}"
            );
        }
        for good in [32, 33, 16 + SEALED_CHUNK, 16 + SEALED_CHUNK + 17] {
            assert!(parse(&file(&s, good)).is_ok(), "{good}");
        }
    }

    #[test]
    fn armor_errors() {
        let bin = file(&ssh("LpQKbg"), 32);
        let good = armor(&bin);
        assert!(parse(good.as_bytes()).is_ok());
        let lines: Vec<&str> = good.lines().collect();
        // Truncated: no END line.
        let cut = lines[..lines.len() - 1].join("\n");
        let e = parse(cut.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // A short line in the middle.
        let mut l = lines.clone();
        let short = &l[1][..60].to_string();
        l[1] = short;
        assert_eq!(parse(l.join("\n").as_bytes()).unwrap_err().line(), Some(2));
        // Bad character in a data line.
        let mut l = lines.clone();
        let bad = format!("*{}", &l[2][1..]);
        l[2] = &bad;
        let e = parse(l.join("\n").as_bytes()).unwrap_err();
        assert_eq!((e.kind(), e.line()), ("armor", Some(3)), "{e}");
        // Text after END.
        let e = parse(format!("{good}trailing\n").as_bytes()).unwrap_err();
        assert_eq!(e.kind(), "armor");
        // Armor around something that is not age.
        let e = parse(armor(b"just text, not age").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("not an age file"), "{e}");
        // A bad header inside the armor says so.
        let mut inner = bin.clone();
        inner.truncate(30);
        let e = parse(armor(&inner).as_bytes()).unwrap_err();
        assert_eq!(e.kind(), "truncated-header");
        assert!(e.to_string().contains("inside the ASCII armor"), "{e}");
    }

    /// Deterministic pseudo-random generator (xorshift), for the
    /// property-style tests below: no dependency, reproducible failures.
    pub(crate) struct XorShift(pub u64);
    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for len in 0..300 {
            let v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = parse(&v);
            let mut t = MAGIC.to_vec();
            t.extend(&v);
            let _ = parse(&t);
            let mut a = format!("{ARMOR_BEGIN}\n").into_bytes();
            a.extend(&v);
            let _ = parse(&a);
        }
    }

    /// Mutations of valid files (bit flips, cuts, duplicated and deleted
    /// ranges) must give an error or a header, never a panic; and a parse
    /// that succeeds must describe the bytes it was given.
    #[test]
    fn mutated_files_never_panic() {
        let seeds = [
            file(&(ssh("LpQKbg") + &ssh("+5emsw")), 40),
            armor(&file(&ssh("LpQKbg"), 33)).into_bytes(),
        ];
        let mut rng = XorShift(42);
        for seed in &seeds {
            for _ in 0..3000 {
                let mut v = seed.clone();
                for _ in 0..=rng.below(3) {
                    match rng.below(4) {
                        0 if !v.is_empty() => {
                            let i = rng.below(v.len());
                            v[i] ^= 1 << rng.below(8);
                        }
                        1 => v.truncate(rng.below(v.len() + 1)),
                        2 if !v.is_empty() => {
                            let i = rng.below(v.len());
                            let j = (i + rng.below(16)).min(v.len());
                            v.drain(i..j);
                        }
                        _ if !v.is_empty() => {
                            let i = rng.below(v.len());
                            let j = (i + rng.below(16)).min(v.len());
                            let dup = v[i..j].to_vec();
                            v.splice(i..i, dup);
                        }
                        _ => {}
                    }
                }
                if let Ok(h) = parse(&v)
                    && !h.armored
                {
                    assert_eq!(h.header_len + h.payload_len, v.len());
                }
            }
        }
    }
}

//! The Nix-aware rule: an attribute whose name says secret bound to a
//! literal string. Parsing (rnix) is what lets guard tell
//! `password = "hunter2";` from `passwordFile = config.secrix…decrypted.path;`
//! or `"$__file{${config.secrix…decrypted.path}}"`: only string literals
//! without interpolation count, and only under a name whose *last* segment
//! says secret (so `passwordFile`, `privateKeyFile`, `tokenCommand` never do).

use rnix::{NodeOrToken, SyntaxKind::*, SyntaxNode};

use super::rules::{self, NameClass};

/// What the AST pass found; offsets are bytes into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NixHit {
    pub start: usize,
    pub end: usize,
    pub kind: NixHitKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NixHitKind {
    /// A plaintext secret under a secret name.
    Secret,
    /// A WireGuard-shaped key under `privateKey`/`presharedKey`.
    WireguardKey,
    /// A crypt hash under `hashedPassword`.
    Hashed,
}

/// Every secret-named attribute bound to a literal in `src`.
#[cfg(test)]
pub(crate) fn scan(src: &str) -> Vec<NixHit> {
    scan_tree(&rnix::Root::parse(src).syntax(), src)
}

/// Byte ranges of string literal text (outside interpolations), sorted.
pub(crate) fn string_ranges(root: &SyntaxNode) -> Vec<(usize, usize)> {
    root.descendants_with_tokens()
        .filter_map(|el| match el {
            NodeOrToken::Token(t) if t.kind() == TOKEN_STRING_CONTENT => {
                let r = t.text_range();
                Some((usize::from(r.start()), usize::from(r.end())))
            }
            _ => None,
        })
        .collect()
}

/// [`scan`] over an already parsed file.
pub(crate) fn scan_tree(root: &SyntaxNode, src: &str) -> Vec<NixHit> {
    let mut out = Vec::new();
    for node in root.descendants() {
        if node.kind() != NODE_ATTRPATH_VALUE {
            continue;
        }
        let mut children = node.children();
        let (Some(path), Some(value)) = (children.next(), children.next()) else {
            continue;
        };
        if path.kind() != NODE_ATTRPATH {
            continue;
        }
        let Some(name) = last_segment(&path) else {
            continue;
        };
        // A quoted name with dots is an interface or domain name
        // (`"org.freedesktop.impl.portal.Secret" = [ "gnome-keyring" ]`).
        if name.contains('.') {
            continue;
        }
        let class = rules::classify_name(name.as_bytes());
        if class == NameClass::Other {
            continue;
        }
        let norm = rules::normalize_name(name.as_bytes());
        // A list under a plural name lists names of secrets
        // (`requestEncryptionCredentials = [ "tank/archive" ]`,
        // `comment-tokens = [ "-" ]`); only `host=token` pairs and random
        // values in it are values.
        let plural_list = value.kind() == NODE_LIST
            && ["tokens", "credentials", "secrets", "passwords", "keys"]
                .iter()
                .any(|w| norm.ends_with(w));
        let mut spans = Vec::new();
        literal_strings(&value, &mut spans, 0);
        for (start, end) in spans {
            let v = &src.as_bytes()[start..end];
            if plural_list && !v.contains(&b'=') && !rules::is_high_entropy(v) {
                continue;
            }
            if class == NameClass::Secret && is_transmission_hash(v) {
                out.push(NixHit {
                    start,
                    end,
                    kind: NixHitKind::Hashed,
                });
                continue;
            }
            match class {
                NameClass::Hashed => {
                    if is_crypt_hash(v) {
                        out.push(NixHit {
                            start,
                            end,
                            kind: NixHitKind::Hashed,
                        });
                    }
                }
                NameClass::Secret => {
                    if rules::is_placeholder_or_reference(v)
                        || rules::looks_public_or_digest(v, false)
                        || rules::value_is_not_a_credential(name.as_bytes(), v)
                    {
                        continue;
                    }
                    let kind = if rules::is_wg_key(v)
                        && (norm.ends_with("privatekey") || norm.ends_with("presharedkey"))
                    {
                        NixHitKind::WireguardKey
                    } else {
                        NixHitKind::Secret
                    };
                    out.push(NixHit { start, end, kind });
                }
                NameClass::Other => {}
            }
        }
    }
    out
}

/// `$6$salt$hash`, `$y$j9T$salt$hash`, `$2b$12$…`: not `!`, `*` or a
/// placeholder.
pub(crate) fn is_crypt_hash(v: &[u8]) -> bool {
    v.len() >= 20 && v[0] == b'$' && v.iter().filter(|&&b| b == b'$').count() >= 3
}

/// Transmission's salted SHA-1 (`{` + 40 hex + 8 salt characters), which
/// it writes back over a plaintext `rpc-password`: a hash, not the password.
pub(crate) fn is_transmission_hash(v: &[u8]) -> bool {
    v.len() == 49 && v[0] == b'{' && v[1..41].iter().all(u8::is_ascii_hexdigit)
}

/// The last attribute name of `a.b."c"`, if it is static.
fn last_segment(path: &SyntaxNode) -> Option<String> {
    let last = path.children().last()?;
    match last.kind() {
        NODE_IDENT => Some(last.text().to_string()),
        NODE_STRING => {
            let mut s = String::new();
            for el in last.children_with_tokens() {
                match el {
                    NodeOrToken::Token(t) if t.kind() == TOKEN_STRING_CONTENT => {
                        s.push_str(t.text());
                    }
                    NodeOrToken::Token(_) => {}
                    // `"${x}"`: computed name.
                    NodeOrToken::Node(_) => return None,
                }
            }
            Some(s)
        }
        _ => None,
    }
}

/// Byte spans of the string literals (without interpolation) that `value`
/// evaluates to: a string, a parenthesised string, the strings of a list,
/// or the argument of `mkForce`/`mkDefault`/`mkOverride n`.
fn literal_strings(value: &SyntaxNode, out: &mut Vec<(usize, usize)>, depth: usize) {
    if depth > 8 {
        return;
    }
    match value.kind() {
        NODE_STRING => {
            if let Some(span) = string_content(value) {
                out.push(span);
            }
        }
        NODE_PAREN => {
            if let Some(inner) = value.children().next() {
                literal_strings(&inner, out, depth + 1);
            }
        }
        NODE_LIST => {
            for el in value.children() {
                if el.kind() == NODE_STRING
                    && let Some(span) = string_content(&el)
                {
                    out.push(span);
                }
            }
        }
        NODE_APPLY => {
            let mut kids = value.children();
            let (Some(func), Some(arg)) = (kids.next(), kids.next()) else {
                return;
            };
            let f = func.text().to_string();
            if ["mkForce", "mkDefault", "mkOverride", "mkOptionDefault"]
                .iter()
                .any(|m| f.contains(m))
            {
                literal_strings(&arg, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The content of a string literal, trimmed; `None` when it interpolates
/// or is empty.
fn string_content(s: &SyntaxNode) -> Option<(usize, usize)> {
    let mut start = None;
    let mut end = 0;
    for el in s.children_with_tokens() {
        match el {
            NodeOrToken::Token(t) if t.kind() == TOKEN_STRING_CONTENT => {
                let r = t.text_range();
                start.get_or_insert(usize::from(r.start()));
                end = usize::from(r.end());
            }
            NodeOrToken::Token(_) => {}
            NodeOrToken::Node(_) => return None,
        }
    }
    let start = start?;
    // Trim whitespace (indented strings) but keep offsets into the file.
    let text = s.text().to_string();
    let node_start = usize::from(s.text_range().start());
    let content = &text.as_bytes()[start - node_start..end - node_start];
    let lead = content.len() - content.trim_ascii_start().len();
    let trail = content.len() - content.trim_ascii_end().len();
    let (a, b) = (start + lead, end - trail);
    (a < b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(String, NixHitKind)> {
        scan(src)
            .into_iter()
            .map(|h| (src[h.start..h.end].to_string(), h.kind))
            .collect()
    }

    #[test]
    fn secret_names_bound_to_literals_are_found() {
        let src = r#"{ config, ... }: {
  users.users.alice.initialPassword = "hunter2-but-longer";
  networking.wireless.networks."Home WiFi".psk = "correct horse battery";
  services.openldap.settings.attrs.olcRootPW = "ldap-r00t-pw";
  services.foo = { bindPassword = ''
    bind-secret-value
  ''; };
  services.nextcloud.config.adminpass = "nc-4dmin-pw";
  services.matrix.settings.registration_shared_secret = "m4tr1x-s3cr3t";
  nix.settings.access-tokens = [ "github.com=gho_abcdefabcdef" ];
  services.x.apiKey = lib.mkForce "k3y-v4lue-123";
  let_binding = let token = "let-token-value"; in token;
}"#;
        let found = kinds(src);
        let values: Vec<&str> = found.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(
            values,
            [
                "hunter2-but-longer",
                "correct horse battery",
                "ldap-r00t-pw",
                "bind-secret-value",
                "nc-4dmin-pw",
                "m4tr1x-s3cr3t",
                "github.com=gho_abcdefabcdef",
                "k3y-v4lue-123",
                "let-token-value",
            ]
        );
        assert!(found.iter().all(|(_, k)| *k == NixHitKind::Secret));
    }

    #[test]
    fn hard_negatives_are_not_found() {
        let src = r#"{ config, lib, name, ... }:
let s = config.secrix.services.grafana.secrets; in {
  services.restic.backups.home.passwordFile = config.secrix.system.secrets.restic.decrypted.path;
  networking.wireguard.interfaces.wg0.privateKeyFile = "/run/keys/wg";
  services.x.passwordCommand = "cat /run/keys/pw";
  services.grafana.settings.security.admin_password = "$__file{${s.admin.decrypted.path}}";
  services.y.password = "${config.secrix.system.secrets.y.decrypted.path}";
  services.z.password = "";
  services.z2.password = "CHANGEME";
  services.z3.password = "<password>";
  services.z4.token = "@token@";
  networking.wireguard.interfaces.wg0.peers = [ { publicKey = "YxeSQ2E+0edY6H6d/7d8RWBQ9HjqBySbp94Jix+uhEk="; } ];
  secrix.hostPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIWIrVTXam/PYr9bDTqLqwHtTwRuXo7cnVqvsnXSbR3w root@linda";
  src = { narHash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; };
  services.openssh.settings.PasswordAuthentication = false;
  services.openssh.settings.PermitRootLogin = "prohibit-password";
  users.users.root.hashedPassword = "!";
  services.w.secret = ./secrets/w.age;
  services.v.token = config.services.v.tokenFile;
  services.u.${name}.password = 1234;
}"#;
        assert_eq!(kinds(src), []);
    }

    #[test]
    fn wireguard_private_keys_and_hashes_get_their_own_kinds() {
        let src = r#"{
  networking.wireguard.interfaces.wg0.privateKey = "kP3xq1S9mWcT0b7Jf2hL8ZyNvE4uDsGrAoIe6Ck5pH0=";
  networking.wireguard.interfaces.wg0.peers = [ { presharedKey = "aP3xq1S9mWcT0b7Jf2hL8ZyNvE4uDsGrAoIe6Ck5pH0="; } ];
  users.users.bob.hashedPassword = "$6$rounds=4096$salt$0123456789abcdefghij";
}"#;
        let found = kinds(src);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].1, NixHitKind::WireguardKey);
        assert_eq!(found[1].1, NixHitKind::WireguardKey);
        assert_eq!(found[2].1, NixHitKind::Hashed);
    }

    #[test]
    fn broken_nix_does_not_panic() {
        let _ = scan("{ password = \"abc");
        let _ = scan("{ = ; password = ");
        // A syntax error elsewhere does not hide a well-formed binding.
        let found = kinds("{ a = ; password = \"hunter22-value\"; }");
        assert!(
            found.iter().all(|(v, _)| v == "hunter22-value"),
            "{found:?}"
        );
    }
}

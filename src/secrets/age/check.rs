//! The per-file checks: format (header parser) and recipients (header
//! stanzas against the hosts that use the file). Never decrypts, never
//! needs a private key, never puts file content in a message.
//!
//! Rule ids (severity):
//! * `age-plaintext` (error): text where ciphertext belongs.
//! * `age-malformed` (error): empty, binary non-age, bad or truncated
//!   header or payload, scrypt mixed with other stanzas, only grease.
//! * `age-missing-file` (error): a secret option points to an untracked path.
//! * `age-missing-recipient` (error): a host uses the secret but its key is
//!   not a recipient (or the file is passphrase-only).
//! * `age-stale-recipient` (warning): an SSH recipient that belongs to a
//!   host not using the secret, a removed host, a rotated key, or no known
//!   key at all.
//! * `age-unverifiable` (info): recipients guard cannot match from the
//!   header (X25519/post-quantum/plugin stanzas, passphrases, wiring use).
//! * `age-host-key-unknown` (warning): a host uses the secret but guard does
//!   not know its key.
//! * `age-unused` (info): no host references the secret.
//! * `age-legacy-encoding` (warning): a stanza in the pre-1.0 body encoding.
//! * `agenix-rules-mismatch` (warning): the SSH recipients differ from the
//!   file's rule in `secrets.nix`.
//! * `agenix-rekey-not-rekeyed` (error): a host uses a source through
//!   `rekeyFile` and no copy is rekeyed for it.
//! * `agenix-rekey-orphaned` (warning): rekeyed files of a node no host
//!   defines (one per node).
//! * `agenix-rekey-temporary-file` (warning): a committed `.tmp.*` file.
//!
//! Stale recipients and unknown host keys are reported once per key and
//! per host, naming the files.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::header::{self, Header, HeaderError, StanzaKind};
use super::keys::PublicKey;
use super::model::Model;
use crate::git::{BStr, GitError, Snapshot};
use crate::report::{Finding, RuleInfo, Severity};

/// Descriptions of this checker's rules (SARIF `tool.driver.rules`).
pub fn rule_infos() -> Vec<RuleInfo> {
    let rule = RuleInfo::new;
    vec![
        rule(
            "age-plaintext",
            Severity::Error,
            "Plaintext where age ciphertext belongs",
            "A file that must be an age-encrypted secret holds readable text: it was decrypted to edit and committed, or never encrypted.",
            "Encrypt it again (secrix: nix run .#secrix -- encrypt <file> -s <host>; agenix: agenix -e <file>) and rotate the secret if the plaintext was ever committed.",
        ),
        rule(
            "age-malformed",
            Severity::Error,
            "Not a valid age file",
            "The file is empty, binary without an age header, or its age header or payload is malformed or truncated; the host will fail to decrypt it at activation.",
            "Restore the file from git history or re-encrypt the secret.",
        ),
        rule(
            "age-missing-file",
            Severity::Error,
            "Secret file not tracked",
            "A secret option points to a path git does not track; flakes only see tracked files.",
            "git add the encrypted file, or fix the path.",
        ),
        rule(
            "age-missing-recipient",
            Severity::Error,
            "A host that uses the secret cannot decrypt it",
            "The host's key is not among the file's recipients (or the file is passphrase-only): the deploy succeeds and activation fails on the host.",
            "Rekey the secret to include the host's key.",
        ),
        rule(
            "age-stale-recipient",
            Severity::Warning,
            "A key that no longer needs access can decrypt the secret",
            "The file is encrypted to a host that does not use it, a removed host, a rotated key, or a key guard does not know.",
            "Rekey the secret without that key, or list a legitimate key in [secrets] admin_keys.",
        ),
        rule(
            "age-unverifiable",
            Severity::Info,
            "Recipients cannot be verified from the header",
            "X25519, post-quantum and plugin stanzas do not name their recipient, passphrase files have none, and secrets used from the flake wiring have no known set of hosts.",
            "Prove readability with guard secrets --identity <key>.",
        ),
        rule(
            "age-host-key-unknown",
            Severity::Warning,
            "The public key of a host using the secret is unknown",
            "guard reads secrix.hostPubKey literals (or readFile of a tracked .pub file), agenix secrets.nix bindings named after the host, and [secrets.recipients].",
            "Set secrix.hostPubKey to a literal or add the host under [secrets.recipients] in guard.toml.",
        ),
        rule(
            "age-unused",
            Severity::Info,
            "No host uses the secret",
            "No host configuration references this encrypted file.",
            "Delete it if it is obsolete.",
        ),
        rule(
            "age-legacy-encoding",
            Severity::Warning,
            "Legacy stanza encoding",
            "A stanza body is written in the pre-1.0 encoding without the final short line.",
            "Re-encrypt the file with a current age.",
        ),
        rule(
            "agenix-rules-mismatch",
            Severity::Warning,
            "Recipients differ from secrets.nix",
            "The file's SSH recipients or X25519 count differ from its rule in the agenix rules file.",
            "Run agenix --rekey.",
        ),
        rule(
            "agenix-rekey-orphaned",
            Severity::Warning,
            "Rekeyed secrets of a host that no longer exists",
            "agenix-rekey's storage directory holds files rekeyed for a node no host configuration defines and no key file names.",
            "Delete the node's directory if the host is gone.",
        ),
        rule(
            "agenix-rekey-not-rekeyed",
            Severity::Error,
            "A host's rekeyed copy of a secret is missing",
            "agenix-rekey's local storage holds no file rekeyed for the host that uses the source: the build fails.",
            "Run agenix rekey and commit its output.",
        ),
        rule(
            "agenix-rekey-temporary-file",
            Severity::Warning,
            "Committed temporary file of agenix-rekey",
            "A .tmp.* file of an interrupted agenix edit or rekey is tracked.",
            "git rm it.",
        ),
        rule(
            "age-decrypt-failed",
            Severity::Error,
            "The identity cannot decrypt the secret",
            "guard secrets --identity tried to decrypt a secret the identity must read, and failed (not a recipient, or corrupt MAC or payload).",
            "Rekey or re-encrypt the secret.",
        ),
    ]
    .into_iter()
    .chain(crate::secrets::sops::rule_infos())
    .collect()
}

/// First 128 bits of SHA-256 over the rule, path and subject, in hex.
pub use crate::report::fingerprint;

/// Whether bytes are a sops-encrypted document (age-and-secrix.md, E.2):
/// such files are recognised and left to sops.
pub fn is_sops(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let t = text.trim_start();
    if t.starts_with('{') {
        return serde_json::from_str::<serde_json::Value>(t)
            .ok()
            .and_then(|v| v.get("sops").map(serde_json::Value::is_object))
            .unwrap_or(false);
    }
    let has_enc = text.contains("ENC[AES256_GCM,");
    text.lines().any(|l| {
        l == "sops:"
            || l.starts_with("sops_version=")
            || l.starts_with("sops_mac=")
            || l.trim() == "[sops]"
    }) && (has_enc || text.contains("sops_mac") || text.contains("\n    mac: "))
}

/// Who a key tag belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// A current host's key.
    Host(String),
    /// A host that exists only in the old snapshot.
    Removed(String),
    /// A key the host had in the old snapshot and no longer has.
    Previous(String),
    /// A user/admin key (source for messages).
    Other(String),
}

/// Everything the per-file checks need.
pub struct Checker<'a> {
    pub snapshot: &'a Snapshot,
    pub model: &'a Model,
    /// The state before the change, when judging a change.
    pub old: Option<(&'a Snapshot, &'a Model)>,
    /// Recorded on every finding (CI ranges).
    pub commit: Option<String>,
}

/// Counts for the report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub files: u64,
    pub bytes: u64,
    pub sops: u64,
}

impl Checker<'_> {
    fn owners(&self) -> HashMap<(StanzaKind, String), Vec<Owner>> {
        let mut by_tag: HashMap<(StanzaKind, String), Vec<Owner>> = HashMap::new();
        let mut add = |key: &PublicKey, owner: Owner| {
            if let (Some(kind), Some(tag)) = (key.kind.stanza(), &key.tag) {
                by_tag.entry((kind, tag.clone())).or_default().push(owner);
            }
        };
        for (host, hk) in &self.model.host_keys {
            for k in &hk.keys {
                add(&k.key, Owner::Host(host.clone()));
            }
        }
        for k in &self.model.other_keys {
            add(&k.key, Owner::Other(k.source.clone()));
        }
        if let Some((_, old)) = self.old {
            for (host, hk) in &old.host_keys {
                let now = self.model.host_keys.get(host);
                for k in &hk.keys {
                    match now {
                        None => add(&k.key, Owner::Removed(host.clone())),
                        // guard cannot read the host's key now: assume it
                        // did not change rather than call it rotated.
                        Some(n) if n.keys.is_empty() => add(&k.key, Owner::Host(host.clone())),
                        Some(n) if !n.keys.iter().any(|x| x.key == k.key) => {
                            add(&k.key, Owner::Previous(host.clone()))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        by_tag
    }

    /// Checks every secret in `secrets` (sorted findings).
    pub fn check(&self, secrets: &BTreeSet<String>) -> Result<(Vec<Finding>, Counts), GitError> {
        let owners = self.owners();
        let mut out = Vec::new();
        let mut counts = Counts::default();
        let mut groups = Groups::default();
        for path in secrets {
            self.check_one(path, &owners, &mut out, &mut groups, &mut counts)?;
        }
        for (host, (problem, uses)) in &groups.unknown_hosts {
            let (path, via) = &uses[0];
            let msg = if uses.len() == 1 {
                format!(
                    "used by host {host}, but guard does not know its public key ({problem}); {via}"
                )
            } else {
                let files: Vec<(String, usize)> =
                    uses.iter().map(|(p, _)| (p.clone(), 1)).collect();
                format!(
                    "host {host} uses {} secrets ({}), but guard does not know its public key ({problem}); for {path}: {via}",
                    uses.len(),
                    list_files(&files)
                )
            };
            out.push(self.mk(
                "age-host-key-unknown",
                Severity::Warning,
                path,
                1,
                host,
                msg,
            ));
        }
        for ((kind, tag, whose), files) in &groups.stale {
            out.push(self.stale_finding(kind, tag, whose, files));
        }
        if let Some(rk) = &self.model.rekey {
            for (node, files) in &groups.orphans {
                out.push(self.orphan_finding(rk, node, files));
            }
            for p in &self.model.temporary {
                out.push(self.mk(
                    "agenix-rekey-temporary-file",
                    Severity::Warning,
                    p,
                    1,
                    "tmp",
                    "a temporary file of an interrupted agenix edit/rekey is committed; delete it (git rm) and check that the secret it shadows is current".into(),
                ));
            }
        }
        out.sort_by(|a, b| {
            (&a.path, a.line, &a.rule, &a.message).cmp(&(&b.path, b.line, &b.rule, &b.message))
        });
        Ok((out, counts))
    }

    /// A finding of this run (with the run's commit).
    fn mk(
        &self,
        rule: &str,
        severity: Severity,
        path: &str,
        line: usize,
        about: &str,
        message: String,
    ) -> Finding {
        Finding::located(
            rule,
            severity,
            path,
            line,
            about,
            message,
            self.commit.as_deref(),
        )
    }

    fn check_one(
        &self,
        path: &str,
        owners: &HashMap<(StanzaKind, String), Vec<Owner>>,
        out: &mut Vec<Finding>,
        groups: &mut Groups,
        counts: &mut Counts,
    ) -> Result<(), GitError> {
        let m = self.model;
        let users: BTreeSet<&str> = m.users_of(path);
        let Some(bytes) = self.snapshot.read(BStr::new(path))? else {
            if m.missing.contains(path) {
                let u = &m.uses.get(path).map(|u| &u[0]);
                let (line, msg) = match u {
                    Some(u) => (
                        1,
                        format!(
                            "referenced by {} (host {}) but not tracked by git; flakes only see tracked files",
                            u.describe(),
                            u.host
                        ),
                    ),
                    None => (1, "referenced by the flake but not tracked by git".into()),
                };
                out.push(self.mk(
                    "age-missing-file",
                    Severity::Error,
                    path,
                    line,
                    "missing",
                    msg,
                ));
            }
            return Ok(());
        };
        counts.files += 1;
        counts.bytes += bytes.len() as u64;
        if !header::looks_like_age(&bytes) && is_sops(&bytes) {
            counts.sops += 1;
            return Ok(());
        }
        let used_by = if users.is_empty() {
            String::new()
        } else {
            format!(
                " (used by {})",
                users.iter().copied().collect::<Vec<_>>().join(", ")
            )
        };
        let h = match header::parse(&bytes) {
            Ok(h) => h,
            Err(e) => {
                self.format_finding(path, &e, &used_by, out)?;
                return Ok(());
            }
        };
        for s in h.stanzas.iter().filter(|s| s.legacy) {
            out.push(self.mk("age-legacy-encoding",
                Severity::Warning,
                path,
                s.line,
                &format!("legacy-{}", s.line),
                "a stanza uses the legacy (pre-1.0) body encoding; re-encrypt it with a current age".into(),
            ));
        }
        if h.recipients().next().is_none() {
            out.push(self.mk(
                "age-malformed",
                Severity::Error,
                path,
                1,
                "no-recipients",
                format!("no recipient stanzas besides grease: nobody can decrypt it{used_by}"),
            ));
            return Ok(());
        }
        if let Some(rk) = &m.rekey {
            if let Some(node) = rk.config.node_of(path) {
                self.check_rekeyed(path, node, &h, owners, out, groups);
                return Ok(());
            }
            if m.is_rekey_source(path) {
                self.check_source(path, rk, &h, owners, out, groups);
                return Ok(());
            }
        }
        self.check_recipients(path, &h, owners, out, groups);
        Ok(())
    }

    fn format_finding(
        &self,
        path: &str,
        e: &HeaderError,
        used_by: &str,
        out: &mut Vec<Finding>,
    ) -> Result<(), GitError> {
        let (rule, about) = if e.is_plaintext() {
            ("age-plaintext", "plaintext".to_string())
        } else {
            ("age-malformed", e.kind().to_string())
        };
        let mut msg = format!("{e}{used_by}");
        if e.is_plaintext() {
            msg.push_str(
                "; encrypt it (secrix: nix run .#secrix -- encrypt <file> -s <host>; agenix: agenix -e <file>) and rotate it if the plaintext was ever committed",
            );
            if let Some((old, _)) = self.old
                // Only a hint: a base blob that cannot be read gives none.
                && let Some(before) = old.read(BStr::new(path)).ok().flatten()
                && header::parse(&before).is_ok()
            {
                msg.push_str(&format!(
                    "; it was age ciphertext in {} (decrypted to edit and not re-encrypted?)",
                    old.label()
                ));
            }
        }
        out.push(self.mk(
            rule,
            Severity::Error,
            path,
            e.line().unwrap_or(1),
            &about,
            msg,
        ));
        Ok(())
    }

    fn check_recipients(
        &self,
        path: &str,
        h: &Header,
        owners: &HashMap<(StanzaKind, String), Vec<Owner>>,
        out: &mut Vec<Finding>,
        groups: &mut Groups,
    ) {
        let m = self.model;
        let users = m.users_of(path);
        let maybe: BTreeSet<&str> = m
            .maybe
            .get(path)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let wiring = m.wiring.get(path);
        let recips: Vec<&header::Stanza> = h.recipients().collect();
        let ssh: BTreeSet<(StanzaKind, &str)> = recips
            .iter()
            .filter_map(|s| s.ssh_tag().map(|t| (s.kind(), t)))
            .collect();
        let unattributable: Vec<&header::Stanza> = recips
            .iter()
            .copied()
            .filter(|s| {
                matches!(
                    s.kind(),
                    StanzaKind::X25519
                        | StanzaKind::MlKem768X25519
                        | StanzaKind::P256Tag
                        | StanzaKind::Other
                )
            })
            .collect();
        let scrypt_only = recips.iter().all(|s| s.kind() == StanzaKind::Scrypt);
        let mut host_info = false;

        // 1. Every user must be a recipient.
        for host in &users {
            let use_ = m.uses[path].iter().find(|u| u.host == *host).unwrap();
            let via = format!(
                "it uses the secret through {} (chain: {})",
                use_.describe(),
                use_.chain.join(" → ")
            );
            let hk = m.host_keys.get(*host).cloned().unwrap_or_default();
            if hk.keys.is_empty() {
                groups
                    .unknown_hosts
                    .entry(host.to_string())
                    .or_insert_with(|| {
                        (
                            hk.problem.clone().unwrap_or_else(|| "no key found".into()),
                            Vec::new(),
                        )
                    })
                    .1
                    .push((path.to_string(), via));
                continue;
            }
            if scrypt_only {
                out.push(self.mk("age-missing-recipient",
                    Severity::Error,
                    path,
                    recips[0].line,
                    host,
                    format!(
                        "host {host} cannot decrypt this secret: it is encrypted with a passphrase (scrypt) only; {via}; re-encrypt it to the host's key"
                    ),
                ));
                continue;
            }
            let matched = hk
                .keys
                .iter()
                .any(|k| match (k.key.kind.stanza(), &k.key.tag) {
                    (Some(kind), Some(tag)) => ssh.contains(&(kind, tag.as_str())),
                    _ => false,
                });
            if matched {
                continue;
            }
            let age_keys: Vec<&PublicKey> = hk
                .keys
                .iter()
                .map(|k| &k.key)
                .filter(|k| k.tag.is_none())
                .collect();
            if !age_keys.is_empty() && !unattributable.is_empty() {
                host_info = true;
                out.push(self.mk("age-unverifiable",
                    Severity::Info,
                    path,
                    unattributable[0].line,
                    host,
                    format!(
                        "cannot verify that host {host} is a recipient: its key is an age key ({}), and {} stanza(s) do not identify their recipient",
                        age_keys[0],
                        describe_stanzas(&unattributable)
                    ),
                ));
                continue;
            }
            let k = &hk.keys[0];
            let key_desc = match &k.key.tag {
                Some(t) => format!(
                    "{} stanza for its key (tag {t}, key from {})",
                    k.key.kind.name(),
                    k.source
                ),
                None => format!(
                    "{} stanza for its key ({}, key from {})",
                    k.key.kind.name(),
                    k.key,
                    k.source
                ),
            };
            out.push(self.mk("age-missing-recipient",
                Severity::Error,
                path,
                1,
                host,
                format!(
                    "host {host} cannot decrypt this secret: no {key_desc}; {via}; rekey the secret to include {host}"
                ),
            ));
        }

        // 2. Every SSH recipient should belong to a user (or a user key).
        let any_host_may_use = wiring.is_some();
        // A user whose key guard does not know may own any unknown tag.
        let unknown_user_key = users
            .iter()
            .any(|h| m.host_keys.get(*h).is_none_or(|k| k.keys.is_empty()));
        for s in recips.iter().filter(|s| s.ssh_tag().is_some()) {
            let tag = s.ssh_tag().unwrap_or_default();
            let os = owners
                .get(&(s.kind(), tag.to_string()))
                .cloned()
                .unwrap_or_default();
            let is_user = |o: &Owner| match o {
                Owner::Host(h) => {
                    users.contains(h.as_str()) || maybe.contains(h.as_str()) || any_host_may_use
                }
                Owner::Other(_) => true,
                _ => false,
            };
            if os.iter().any(is_user) || (os.is_empty() && unknown_user_key) {
                continue;
            }
            let old_users: BTreeSet<&str> =
                self.old.map(|(_, o)| o.users_of(path)).unwrap_or_default();
            let whose =
                if let Some(Owner::Host(h)) = os.iter().find(|o| matches!(o, Owner::Host(_))) {
                    if old_users.contains(h.as_str()) {
                        Whose::NoLongerUses(h.clone())
                    } else {
                        Whose::DoesNotUse(h.clone())
                    }
                } else if let Some(Owner::Removed(h)) =
                    os.iter().find(|o| matches!(o, Owner::Removed(_)))
                {
                    Whose::Removed(h.clone())
                } else if let Some(Owner::Previous(h)) =
                    os.iter().find(|o| matches!(o, Owner::Previous(_)))
                {
                    Whose::Previous(h.clone())
                } else {
                    Whose::Unknown
                };
            groups
                .stale
                .entry((s.tag.clone(), tag.to_string(), whose))
                .or_default()
                .push((path.to_string(), s.line));
        }

        // 3. What cannot be verified from the header.
        if let Some(w) = wiring {
            let w = &w[0];
            let at = match &w.option {
                Some(o) => format!("{o} in {}:{}", w.file, w.line),
                None => format!("{}:{}", w.file, w.line),
            };
            out.push(self.mk("age-unverifiable",
                Severity::Info,
                path,
                1,
                "wiring",
                format!(
                    "referenced from the flake wiring ({at}): any host may use it, so guard does not check its recipients against hosts"
                ),
            ));
        } else if scrypt_only && users.is_empty() {
            out.push(self.mk(
                "age-unverifiable",
                Severity::Info,
                path,
                recips[0].line,
                "scrypt",
                "encrypted with a passphrase (scrypt): there is no recipient key to check".into(),
            ));
        } else if !host_info && !unattributable.is_empty() && ssh.is_empty() {
            out.push(self.mk("age-unverifiable",
                Severity::Info,
                path,
                unattributable[0].line,
                "stanzas",
                format!(
                    "{} stanza(s) cannot be matched to hosts from the header: they carry only an ephemeral share, not the recipient's identity",
                    describe_stanzas(&unattributable)
                ),
            ));
        } else if let Some(s) = unattributable
            .iter()
            .find(|s| s.kind() == StanzaKind::Other)
        {
            out.push(self.mk("age-unverifiable",
                Severity::Info,
                path,
                s.line,
                "plugin",
                format!(
                    "encrypted to an unrecognised recipient type '{}' (an age plugin?); guard cannot tell whom it is for",
                    printable(&s.tag)
                ),
            ));
        }

        // 4. Used by nobody.
        if users.is_empty() && maybe.is_empty() && wiring.is_none() {
            let msg = match m.agenix_rule(path) {
                Some((rules, _)) => format!(
                    "listed in {rules}, but no host configuration references it (age.secrets.<name>.file)"
                ),
                None => "no host configuration references this secret".to_string(),
            };
            out.push(self.mk("age-unused", Severity::Info, path, 1, "unused", msg));
        }

        // 5. agenix: the file's recipients agree with its rule.
        if let Some((rules, rule)) = m.agenix_rule(path)
            && !rule.incomplete
        {
            let mut want: BTreeSet<(StanzaKind, String)> = BTreeSet::new();
            let mut want_x25519 = 0usize;
            for k in &rule.keys {
                if let Ok(key) = super::keys::parse_public_key(k) {
                    match (key.kind.stanza(), key.tag) {
                        (Some(kind), Some(tag)) => {
                            want.insert((kind, tag));
                        }
                        (Some(StanzaKind::X25519), None) => want_x25519 += 1,
                        _ => {}
                    }
                }
            }
            let have: BTreeSet<(StanzaKind, String)> =
                ssh.iter().map(|(k, t)| (*k, t.to_string())).collect();
            let have_x25519 = recips
                .iter()
                .filter(|s| s.kind() == StanzaKind::X25519)
                .count();
            let missing: Vec<&str> = want.difference(&have).map(|(_, t)| t.as_str()).collect();
            let extra: Vec<&str> = have.difference(&want).map(|(_, t)| t.as_str()).collect();
            if !missing.is_empty() || !extra.is_empty() || want_x25519 != have_x25519 {
                let mut parts = Vec::new();
                if !missing.is_empty() {
                    parts.push(format!("missing ssh keys with tags {}", missing.join(", ")));
                }
                if !extra.is_empty() {
                    parts.push(format!("extra ssh keys with tags {}", extra.join(", ")));
                }
                if want_x25519 != have_x25519 {
                    parts.push(format!(
                        "{have_x25519} X25519 stanza(s) for {want_x25519} age1 key(s)"
                    ));
                }
                out.push(self.mk(
                    "agenix-rules-mismatch",
                    Severity::Warning,
                    path,
                    1,
                    "rules",
                    format!(
                        "recipients differ from its rule in {rules}:{}: {}; run agenix --rekey",
                        rule.line,
                        parts.join("; ")
                    ),
                ));
            }
        }
    }
}

/// Whose a stale recipient key is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Whose {
    /// A current host that does not use the files.
    DoesNotUse(String),
    /// A current host that used the files before the change.
    NoLongerUses(String),
    Removed(String),
    /// A key the host had before the change.
    Previous(String),
    /// No file of the repository declares it.
    Unknown,
}

/// Stale recipients grouped per key: (stanza type, tag, whose) -> the
/// files (with the stanza's line) it is a recipient of.
type Stale = BTreeMap<(String, String, Whose), Vec<(String, usize)>>;

/// Findings reported once per key or node rather than per file.
#[derive(Default)]
struct Groups {
    stale: Stale,
    /// agenix-rekey: node without a host or key -> its rekeyed files.
    orphans: BTreeMap<String, Vec<(String, usize)>>,
    /// Hosts whose key guard does not know -> (why, [(secret, how used)]).
    unknown_hosts: BTreeMap<String, (String, Vec<(String, String)>)>,
}

/// "a.age", "a.age, b.age", "a.age, b.age, c.age and 4 more".
fn list_files(files: &[(String, usize)]) -> String {
    const SHOWN: usize = 5;
    let names: Vec<&str> = files.iter().take(SHOWN).map(|(p, _)| p.as_str()).collect();
    if files.len() > SHOWN {
        format!("{} and {} more", names.join(", "), files.len() - SHOWN)
    } else {
        names.join(", ")
    }
}

impl Checker<'_> {
    /// A file under agenix-rekey's storage directory, rekeyed for `node`:
    /// it must be encrypted to the node's host key.
    fn check_rekeyed(
        &self,
        path: &str,
        node: &str,
        h: &Header,
        owners: &HashMap<(StanzaKind, String), Vec<Owner>>,
        out: &mut Vec<Finding>,
        groups: &mut Groups,
    ) {
        let m = self.model;
        let recips: Vec<&header::Stanza> = h.recipients().collect();
        let line = recips.first().map_or(1, |s| s.line);
        let mut keys: Vec<(PublicKey, String)> = m
            .host_keys
            .get(node)
            .map(|hk| {
                hk.keys
                    .iter()
                    .map(|k| (k.key.clone(), k.source.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if keys.is_empty() {
            keys = super::declared::keys_named(&m.declared, node)
                .into_iter()
                .map(|d| (d.key.clone(), format!("key named `{node}` in {}", d.source)))
                .collect();
        }
        if keys.is_empty() {
            groups
                .orphans
                .entry(node.to_string())
                .or_default()
                .push((path.to_string(), line));
            return;
        }
        let matches = |k: &PublicKey| {
            recips.iter().any(|s| match (&k.tag, s.ssh_tag()) {
                (Some(t), Some(st)) => k.kind.stanza() == Some(s.kind()) && t == st,
                (None, _) => {
                    k.kind == super::keys::KeyKind::X25519 && s.kind() == StanzaKind::X25519
                }
                _ => false,
            })
        };
        if !keys.iter().any(|(k, _)| matches(k)) {
            let (k, source) = &keys[0];
            out.push(self.mk(
                "age-missing-recipient",
                Severity::Error,
                path,
                line,
                node,
                format!(
                    "rekeyed for {node} but not encrypted to its key ({k}, from {source}): host {node} cannot decrypt what it is deployed; its host key changed since the last rekey? Run agenix rekey"
                ),
            ));
        }
        // Other SSH recipients of a host's rekeyed copy.
        for s in recips.iter().filter(|s| s.ssh_tag().is_some()) {
            let tag = s.ssh_tag().unwrap_or_default();
            if keys.iter().any(|(k, _)| k.tag.as_deref() == Some(tag)) {
                continue;
            }
            let os = owners
                .get(&(s.kind(), tag.to_string()))
                .cloned()
                .unwrap_or_default();
            let whose = match os.iter().find_map(|o| match o {
                Owner::Host(x) => Some(x.clone()),
                _ => None,
            }) {
                Some(x) => Whose::DoesNotUse(x),
                None if os.is_empty() => Whose::Unknown,
                None => continue,
            };
            groups
                .stale
                .entry((s.tag.clone(), tag.to_string(), whose))
                .or_default()
                .push((path.to_string(), s.line));
        }
    }

    /// A master-encrypted agenix-rekey source: some master identity must be
    /// able to decrypt it, or nobody can rekey it.
    fn check_source(
        &self,
        path: &str,
        rk: &super::model::Rekey,
        h: &Header,
        owners: &HashMap<(StanzaKind, String), Vec<Owner>>,
        out: &mut Vec<Finding>,
        groups: &mut Groups,
    ) {
        let m = self.model;
        let recips: Vec<&header::Stanza> = h.recipients().collect();
        let has = |tag: &str, arg: &str| {
            recips
                .iter()
                .any(|s| s.tag == tag && s.args.first().map(String::as_str) == Some(arg))
        };
        let has_x25519 = recips.iter().any(|s| s.kind() == StanzaKind::X25519);
        let mut described = Vec::new();
        let mut matched = false;
        for k in &rk.masters {
            let (stanza, tag) = match (&k.key.tag, k.key.kind) {
                (Some(t), kind) => (kind.name().to_string(), Some(t.clone())),
                (None, super::keys::KeyKind::X25519) => ("X25519".to_string(), None),
                (None, _) => match super::rekey::yubikey_tag(&k.key.key) {
                    Some(t) => ("piv-p256".to_string(), Some(t)),
                    None => continue,
                },
            };
            matched |= match &tag {
                Some(t) => has(&stanza, t),
                None => has_x25519,
            };
            described.push(match tag {
                Some(t) => format!("{stanza} tag {t} ({})", k.source),
                None => format!("an X25519 key ({})", k.source),
            });
        }
        let users = m.users_of(path);
        if !described.is_empty() && !matched {
            let who = if users.is_empty() {
                String::new()
            } else {
                format!(
                    " for {}",
                    users.iter().copied().collect::<Vec<_>>().join(", ")
                )
            };
            out.push(self.mk(
                "age-missing-recipient",
                Severity::Error,
                path,
                recips.first().map_or(1, |s| s.line),
                "master",
                format!(
                    "no master identity can decrypt this agenix-rekey source (expected a stanza for {}): agenix rekey cannot rekey it{who}; re-encrypt it with agenix edit",
                    described.join(" or ")
                ),
            ));
        }
        // SSH recipients no file of the repository declares.
        for s in recips.iter().filter(|s| s.ssh_tag().is_some()) {
            let tag = s.ssh_tag().unwrap_or_default();
            if owners.contains_key(&(s.kind(), tag.to_string())) {
                continue;
            }
            groups
                .stale
                .entry((s.tag.clone(), tag.to_string(), Whose::Unknown))
                .or_default()
                .push((path.to_string(), s.line));
        }
        // Each host that uses it through rekeyFile needs its rekeyed copy
        // (`<storage>/<host>/<hash>-<name>.age`; a guest's copy sits in
        // `<storage>/<host>-<guest>/`), else agenix-rekey fails the build.
        if rk.config.storage.is_some() {
            let mut seen = BTreeSet::new();
            for u in m.uses.get(path).into_iter().flatten() {
                let Some(name) = u
                    .option
                    .as_deref()
                    .and_then(|o| o.rsplit_once("age.secrets.").map(|(_, r)| r))
                    .and_then(|r| r.strip_suffix(".rekeyFile"))
                else {
                    continue;
                };
                if !seen.insert((u.host.as_str(), name)) {
                    continue;
                }
                let suffix = format!("-{name}.age");
                let guest = format!("{}-", u.host);
                let rekeyed = m.tracked.iter().any(|p| {
                    rk.config
                        .node_of(p)
                        .is_some_and(|n| n == u.host || n.starts_with(&guest))
                        && p.rsplit('/').next().is_some_and(|f| f.ends_with(&suffix))
                });
                if !rekeyed {
                    out.push(self.mk(
                        "agenix-rekey-not-rekeyed",
                        Severity::Error,
                        path,
                        1,
                        &format!("{}:{name}", u.host),
                        format!(
                            "host {} uses this source as age.secrets.{name} ({}; chain: {}), but {}/{}/ holds no rekeyed copy (…{suffix}): the build fails until agenix rekey is run and its output committed",
                            u.host,
                            u.describe(),
                            u.chain.join(" → "),
                            rk.config.storage.as_deref().unwrap_or(""),
                            u.host
                        ),
                    ));
                }
            }
        }
        let generated = rk
            .config
            .generated
            .as_deref()
            .is_some_and(|g| crate::nix::hosts::is_below(path, g));
        if users.is_empty()
            && !generated
            && !m.maybe.contains_key(path)
            && !m.wiring.contains_key(path)
        {
            out.push(self.mk(
                "age-unused",
                Severity::Info,
                path,
                1,
                "unused",
                "an agenix-rekey source no host configuration references (age.secrets.<name>.rekeyFile)".into(),
            ));
        }
    }

    /// One warning per agenix-rekey storage directory no host owns.
    fn orphan_finding(
        &self,
        rk: &super::model::Rekey,
        node: &str,
        files: &[(String, usize)],
    ) -> Finding {
        let storage = rk.config.storage.as_deref().unwrap_or("");
        let (path, line) = &files[0];
        self.mk(
            "agenix-rekey-orphaned",
            Severity::Warning,
            path,
            *line,
            node,
            format!(
                "{} file(s) in {storage}/{node}/ are rekeyed for node {node}, which no host configuration defines and no key file names: left behind by a removed or renamed host? Its key can still decrypt them; delete the directory if the host is gone",
                files.len()
            ),
        )
    }

    /// One warning per stale key, naming the files it can decrypt.
    fn stale_finding(
        &self,
        kind: &str,
        tag: &str,
        whose: &Whose,
        files: &[(String, usize)],
    ) -> Finding {
        let n = files.len();
        let one = n == 1;
        let key = format!("{kind} tag {tag}");
        let list = list_files(files);
        let msg = match whose {
            Whose::DoesNotUse(h) if one => format!(
                "stale recipient: host {h} can decrypt this secret but does not use it ({key}); rekey without it to revoke its access"
            ),
            Whose::DoesNotUse(h) => format!(
                "stale recipient: host {h} can decrypt {n} secrets it does not use ({key}): {list}; rekey them without it to revoke its access"
            ),
            Whose::NoLongerUses(h) if one => format!(
                "stale recipient: host {h} no longer uses this secret but can still decrypt it ({key}); rekey without it to revoke its access"
            ),
            Whose::NoLongerUses(h) => format!(
                "stale recipient: host {h} no longer uses {n} secrets but can still decrypt them ({key}): {list}; rekey them without it to revoke its access"
            ),
            Whose::Removed(h) => format!(
                "stale recipient: {} still encrypted to removed host {h} ({key}): {list}; rekey to revoke its access",
                if one { "this secret is" } else { "secrets are" }
            ),
            Whose::Previous(h) => format!(
                "stale recipient: encrypted to a previous key of host {h} ({key}, replaced in this change): {list}; rekey {}",
                if one { "it" } else { "them" }
            ),
            Whose::Unknown => format!(
                "stale recipient: encrypted to an unknown {kind} key (tag {tag}) that no file of the repository declares (no host key, .pub file, key attribute, recipients file, agenix publicKeys, .sops.yaml or guard.toml admin_keys entry); a stale or rotated key? It can decrypt {n} file(s): {list} (list legitimate keys in [secrets] admin_keys)"
            ),
        };
        let (path, line) = &files[0];
        self.mk(
            "age-stale-recipient",
            Severity::Warning,
            path,
            *line,
            tag,
            msg,
        )
    }
}

/// "2 X25519" / "1 X25519, 1 mlkem768x25519".
fn describe_stanzas(stanzas: &[&header::Stanza]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for s in stanzas {
        *counts.entry(printable(&s.tag)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stanza types are public header data, but keep them short in messages.
fn printable(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = fingerprint("age-missing-recipient", "secrets/x.age", "alpha");
        assert_eq!(
            a,
            fingerprint("age-missing-recipient", "secrets/x.age", "alpha")
        );
        assert_eq!(a.len(), 32);
        assert_ne!(
            a,
            fingerprint("age-missing-recipient", "secrets/x.age", "beta")
        );
        assert_ne!(
            a,
            fingerprint("age-missing-recipient", "secrets/xa.ge", "alpha")
        );
    }

    #[test]
    fn sops_files_are_recognised() {
        let yaml = "db: ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]\nsops:\n    age:\n    -   recipient: age1x\n    mac: ENC[AES256_GCM,data:z]\n";
        assert!(is_sops(yaml.as_bytes()));
        let json = r#"{"data": "ENC[AES256_GCM,data:a]", "sops": {"mac": "x"}}"#;
        assert!(is_sops(json.as_bytes()));
        let env = "A=ENC[AES256_GCM,data:a]\nsops_version=3.8.1\nsops_mac=ENC[AES256_GCM,data:b]\n";
        assert!(is_sops(env.as_bytes()));
        assert!(!is_sops(b"password: hunter2\n"));
        assert!(!is_sops(br#"{"sops": "plain"}"#));
        assert!(!is_sops(b"sops:\n  nothing encrypted\n"));
    }

    #[test]
    fn findings_carry_no_secret() {
        let f = Finding::located(
            "age-plaintext",
            Severity::Error,
            "s.age",
            0,
            "p",
            "m".into(),
            None,
        );
        // Nothing to redact: no placeholder either.
        assert_eq!(f.secret.as_str(), "");
        assert_eq!(f.secret.shown(" "), "");
        assert_eq!(f.line, 1);
    }
}

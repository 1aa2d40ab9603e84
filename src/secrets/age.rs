//! The age/secrix/agenix checks behind `guard secrets`: every secret a host
//! uses is real age ciphertext, encrypted to exactly the hosts that use it.
//!
//! It takes the import graph (who uses which secret, `model`) and the age
//! header (to whom a file is encrypted, `header`) together:
//!
//! * `header`: strict age v1 parser (binary and armored), pure.
//! * `keys`: recipient keys as text, the SSH stanza tag, ed25519 -> X25519.
//! * `nixfacts`: options, host keys, sops-nix key settings, read with rnix.
//! * `agenix`: `secrets.nix` rules evaluated with `crate::nix::eval`.
//! * `rekey`: agenix-rekey's configuration, YubiKey stanza tags.
//! * `declared`: every key the repository declares, with its names.
//! * `model`: hosts -> secrets they use, hosts -> keys.
//! * `check`: the findings (rule ids listed there).
//! * `decrypt`: the optional decrypt proof with an identity.
//!
//! sops-nix and clan vars files are checked by `crate::secrets::sops`
//! from the same model.
//!
//! [`check_change`] is the entry point: a change, its analyses and affected
//! set (computed once by the caller), the configuration; it returns the
//! findings plus the model the decrypt proof needs.

pub mod agenix;
pub mod check;
pub mod declared;
pub mod decrypt;
pub mod header;
pub mod keys;
pub mod model;
pub mod nixfacts;
pub mod rekey;

use std::collections::BTreeSet;

use rayon::prelude::*;

use crate::affected::Analysis;
use crate::config::Config;
use crate::git::{BStr, ChangeSet, GitError, Snapshot};
use crate::report::{Affected, Finding, Findings, Scanned, Severity, Warning};
use crate::secrets::clean::CleanBlobs;
use crate::secrets::scan::{Baseline, ScanError, Scanner};

pub use check::{Checker, Counts, fingerprint, rule_infos};
pub use decrypt::{Identity, IdentityError, ProofError};
pub use model::{FactsCache, Model, ModelError};

/// Errors of the secrets check (configuration and repository access; bad
/// secrets are findings, not errors).
#[derive(Debug, thiserror::Error)]
pub enum AgeError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Git(#[from] GitError),
}

/// The result of [`check_change`].
pub struct Outcome {
    pub findings: Findings,
    /// The new snapshot's model (for the decrypt proof).
    pub model: Model,
    /// The secrets that were checked.
    pub scope: BTreeSet<String>,
}

/// Checks the secrets a change concerns: with `old = None`, every secret
/// of the new snapshot; otherwise (the old snapshot's analysis and the
/// change's affected set, computed once by the caller) the secrets the
/// change touches, those any affected host uses (before or after the
/// change), and those a removed host used.
pub fn check_change(
    changes: &ChangeSet,
    new_analysis: &Analysis,
    old: Option<(&Analysis, &Affected)>,
    config: &Config,
) -> Result<Outcome, AgeError> {
    let facts = FactsCache::new();
    let model = Model::build(&changes.new, new_analysis, config, &facts)?;
    let secrets = model.secrets();
    let mut warnings = model.warnings.clone();
    let old_model = match old {
        None => None,
        Some((a, affected)) => match Model::build(&changes.old, a, config, &facts) {
            Ok(m) => Some((m, affected)),
            // A blob of the base missing (a partial or blobless clone): the
            // change's scope cannot be told, so every secret is checked.
            Err(ModelError::Git(GitError::MissingObject { id })) => {
                warnings.push(Warning {
                    path: None,
                    message: format!(
                        "object {id} of {} is missing (a partial or blobless clone): \
                         every secret of {} is checked instead of the change's",
                        changes.old.label(),
                        changes.new.label()
                    ),
                });
                None
            }
            Err(e) => return Err(e.into()),
        },
    };
    // sops files: every one with --all; else those the change touches,
    // those an affected host uses, all when keys or rules changed.
    let mut sops_scope: Option<BTreeSet<String>> = None;
    let (scope, old) = if let Some((old_model, affected)) = old_model {
        let keys_changed = affected.changed_paths.iter().any(|p| {
            p.ends_with(".sops.yaml")
                || p.ends_with(".pub")
                || p.ends_with("key.json")
                || p.ends_with(".nix")
        });
        if !keys_changed {
            let mut s: BTreeSet<String> = affected.changed_paths.iter().cloned().collect();
            for h in affected.hosts.iter().map(|h| h.name.as_str()) {
                for (p, uses) in &model.sops_uses {
                    if uses.iter().any(|u| u.host == h) {
                        s.insert(p.clone());
                    }
                }
            }
            sops_scope = Some(s);
        }
        let mut scope = BTreeSet::new();
        for p in &affected.changed_paths {
            if secrets.contains(p) {
                scope.insert(p.clone());
            }
            // A changed agenix rules file concerns all the files it lists.
            for m in [&model, &old_model] {
                for (path, rules) in &m.agenix {
                    if path == p || rules.inputs.binary_search(p).is_ok() {
                        scope.extend(rules.rules.iter().map(|r| r.file.clone()));
                    }
                }
            }
        }
        for h in affected.hosts.iter().map(|h| h.name.as_str()) {
            scope.extend(model.used_by(h).into_iter().map(String::from));
            scope.extend(old_model.used_by(h).into_iter().map(String::from));
        }
        for h in &affected.removed_hosts {
            scope.extend(old_model.used_by(h).into_iter().map(String::from));
        }
        // A secret the change deleted is gone, not broken (unless a host
        // still references it: then it is in `secrets` as missing).
        scope.retain(|p| secrets.contains(p));
        (scope, Some(old_model))
    } else {
        (secrets.clone(), None)
    };
    let checker = Checker {
        snapshot: &changes.new,
        model: &model,
        old: old.as_ref().map(|m| (&changes.old, m)),
        commit: changes.new.commit().map(|c| c.to_string()),
    };
    let (findings, counts) = checker.check(&scope)?;
    let in_scope = |p: &str| sops_scope.as_ref().is_none_or(|s| s.contains(p));
    let sops = crate::secrets::sops::check(
        &changes.new,
        &model,
        &in_scope,
        changes.new.commit().map(|c| c.to_string()).as_deref(),
    )?;
    let mut findings = findings;
    findings.extend(sops.findings);
    findings.sort_by(|a, b| {
        (&a.path, a.line, &a.rule, &a.message).cmp(&(&b.path, b.line, &b.rule, &b.message))
    });
    warnings.extend(sops.warnings);
    let counts = Counts {
        files: counts.files + sops.files,
        bytes: counts.bytes + sops.bytes,
        ..counts
    };
    if counts.sops > 0 {
        warnings.push(Warning {
            path: None,
            message: format!(
                "{} sops-encrypted file(s) match the secret patterns; they are left to sops",
                counts.sops
            ),
        });
    }
    Ok(Outcome {
        findings: Findings {
            findings,
            scanned: Scanned {
                files: counts.files,
                bytes: counts.bytes,
                commits: 0,
            },
            warnings,
        },
        model,
        scope,
    })
}

/// What the decrypt proof did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProofStats {
    /// Files decrypted completely (MAC and every chunk verified).
    pub decrypted: usize,
    /// Plaintext bytes read (and discarded).
    pub bytes: u64,
}

/// Decrypts, with `identity`, the secrets of `scope` it must be able to
/// read: those used by hosts whose key it is (or every secret in scope when
/// it is no host's key, e.g. an admin or CI key), plus any other file with a
/// stanza for it. Each failure is an `age-decrypt-failed` error naming the
/// secret. Files that do not parse are skipped (the format check reports
/// them).
pub fn prove(
    snapshot: &Snapshot,
    model: &Model,
    scope: &BTreeSet<String>,
    identity: &Identity,
    commit: Option<&str>,
) -> Result<(Vec<Finding>, ProofStats), GitError> {
    let hosts: BTreeSet<&str> = model
        .host_keys
        .iter()
        .filter(|(_, hk)| hk.keys.iter().any(|k| identity.public.contains(&k.key)))
        .map(|(h, _)| h.as_str())
        .collect();
    let expected: BTreeSet<&str> = if hosts.is_empty() {
        scope.iter().map(String::as_str).collect()
    } else {
        hosts.iter().flat_map(|h| model.used_by(h)).collect()
    };
    let whose = if hosts.is_empty() {
        format!("the identity ({})", identity.describe())
    } else {
        format!(
            "the identity ({}, key of {})",
            identity.describe(),
            hosts.iter().copied().collect::<Vec<_>>().join(", ")
        )
    };
    let mut findings = Vec::new();
    let mut stats = ProofStats::default();
    for path in scope {
        let Some(bytes) = snapshot.read(BStr::new(path))? else {
            continue;
        };
        let Ok(h) = header::parse(&bytes) else {
            continue;
        };
        let is_expected = expected.contains(path.as_str());
        let for_us =
            identity.matches_stanza(&h) || (identity.has_untagged() && decrypt::has_x25519(&h));
        if !is_expected && !for_us {
            continue;
        }
        if h.stanzas
            .iter()
            .any(|s| s.kind() == header::StanzaKind::Scrypt)
        {
            continue;
        }
        match identity.prove(&bytes) {
            Ok(n) => {
                stats.decrypted += 1;
                stats.bytes += n;
            }
            Err(ProofError::NotRecipient) if !is_expected => {}
            Err(e) => {
                let users = model.users_of(path);
                let consequence = if hosts.iter().any(|h| users.contains(h)) {
                    format!(
                        "; host {} will fail to decrypt it at activation",
                        hosts
                            .iter()
                            .filter(|h| users.contains(*h))
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    String::new()
                };
                findings.push(Finding::located(
                    "age-decrypt-failed",
                    Severity::Error,
                    path,
                    1,
                    &format!("{}:{}", identity.describe(), e),
                    format!("{whose} cannot decrypt this secret: {e}{consequence}"),
                    commit,
                ));
            }
        }
    }
    Ok((findings, stats))
}

/// The plaintext scanner's rules for key material that decrypts secrets
/// (one implementation, shared with `guard scan`).
pub const IDENTITY_RULES: [&str; 3] = ["age-secret-key", "age-plugin-identity", "ssh-private-key"];

/// Bump when what makes a blob clean changes beyond the rules' keywords
/// (`Scanner::content_may_match`): remembered blobs are then read again.
const CLEAN_FORMAT: &str = "identity-clean-1";

/// Errors of [`identity_leaks`].
#[derive(Debug, thiserror::Error)]
pub enum LeakError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Fonts and raster images, by extension: binary formats (their headers
/// hold NUL bytes, so the scanner would skip them after reading), not read
/// at all by the identity scan, as gitleaks' default allow-list does. On a
/// fleet with bundled fonts they are most of the bytes `--all` inflates.
fn is_font_or_image(path: &str) -> bool {
    const EXTENSIONS: &[&str] = &[
        "bmp", "eot", "gif", "ico", "jpeg", "jpg", "otf", "png", "ttf", "webp", "woff", "woff2",
    ];
    path.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty()
            && !stem.ends_with('/')
            && EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e))
    })
}

/// Identities (`AGE-SECRET-KEY-1…`, age plugin identities, SSH private
/// keys) in the files the change adds or modifies, found by the plaintext
/// scanner's rules; the baseline and allow-lists of `guard scan` apply.
/// Rules turned off with `[secrets] disable` stay off. With `git_dir`,
/// blobs found clean (binary, or no rule keyword in them) are remembered
/// under it and not read again (`--all` reads every file).
pub fn identity_leaks(
    changes: &ChangeSet,
    config: &Config,
    baseline: &Baseline,
    git_dir: Option<&std::path::Path>,
) -> Result<Vec<Finding>, LeakError> {
    let ids: Vec<&str> = IDENTITY_RULES
        .into_iter()
        .filter(|id| !config.secrets.disable.iter().any(|d| d == id))
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let scanner = Scanner::with_rules(config, &ids)?.with_baseline(baseline);
    let clean = match git_dir {
        Some(d) => CleanBlobs::persistent(
            d,
            "identity-clean",
            &format!(
                "{}-{CLEAN_FORMAT} {}",
                env!("CARGO_PKG_VERSION"),
                scanner.content_key()
            ),
        ),
        None => CleanBlobs::new(),
    };
    let commit = changes.new.commit().map(|c| c.to_string());
    let results: Vec<Result<Vec<Finding>, GitError>> = changes
        .changes
        .par_iter()
        .filter_map(|c| c.new.map(|e| (c, e)))
        .map(|(c, entry)| {
            if clean.contains(&entry.id) {
                return Ok(Vec::new());
            }
            let path = crate::git::ByteSlice::to_str_lossy(c.path.as_slice()).into_owned();
            if is_font_or_image(&path) {
                return Ok(Vec::new());
            }
            let Some(bytes) = changes.new.read(BStr::new(&path))? else {
                return Ok(Vec::new());
            };
            if !scanner.content_may_match(&bytes) {
                if let Some(id) = changes.new.id_of_read(&entry, &bytes) {
                    clean.insert(id);
                }
                return Ok(Vec::new());
            }
            Ok(scanner.scan_bytes(&path, &bytes, commit.as_deref()))
        })
        .collect();
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    out.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::is_font_or_image;

    #[test]
    fn fonts_and_images_are_known_by_their_extension() {
        assert!(is_font_or_image("assets/fonts/Inter.TTF"));
        assert!(is_font_or_image("wallpapers/a.b.png"));
        assert!(!is_font_or_image("keys/id_ed25519"));
        assert!(!is_font_or_image("secrets/png"));
        assert!(!is_font_or_image("hosts/.png"));
        assert!(!is_font_or_image("docs/logo.svg"));
        assert!(!is_font_or_image("keys/host.png.age"));
    }
}

//! sops-nix and clan vars: every host that uses a sops file can decrypt
//! it, checked from public data alone (the file's `sops` metadata, the
//! host's committed keys, `.sops.yaml`, clan's `sops/machines/<m>/key.json`).
//!
//! * A host **uses** a file through `sops.defaultSopsFile` or
//!   `sops.secrets.<n>.sopsFile` in its closure (the age model's import
//!   graph); a clan machine uses the secrets whose `machines/<m>` entry
//!   names it (`vars/per-machine/<m>/…/secret`, `vars/shared/…/secret`,
//!   `sops/secrets/<n>/secret`).
//! * A host's **age recipients**: its SSH ed25519 host key converted to
//!   X25519 (what `ssh-to-age` does; unless it sets `sops.age.keyFile`
//!   without SSH key paths), `age1…` keys the repository declares under its
//!   name (a `.sops.yaml` anchor `&host_alpha`, `alpha.age.pub`), and clan's
//!   machine key.
//! * A host none of whose recipients is in the file is
//!   `sops-missing-recipient` (error) when every recipient of the file is a
//!   key guard can attribute; when some recipient is unknown (it may be the
//!   host's key), `sops-unverifiable` (info, once per host).
//! * `.sops.yaml` creation rules that disagree with a file's recipients:
//!   `sops-rules-mismatch` (warning, once per rule): the file was not
//!   re-encrypted after the rule changed (`sops updatekeys`); likewise a
//!   clan user (`users/<u>`, `groups/<g>`) missing from a clan secret
//!   (once per user).
//! * Files a host or clan uses that are not readable sops files:
//!   `sops-malformed` (error); referenced but untracked: `sops-missing-file`.

pub mod config;
pub mod meta;

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;

use crate::git::{BStr, ByteSlice, GitError, Snapshot};
use crate::report::{Finding, RuleInfo, Severity, Warning};
use crate::secrets::age::Model;
use crate::secrets::age::declared::{keys_named, names_host};
use crate::secrets::age::keys::{KeyKind, PublicKey, parse_public_key, ssh_to_age};

use config::SopsConfig;
use meta::{SopsError, SopsMeta};

/// Descriptions of this checker's rules (SARIF `tool.driver.rules`).
pub fn rule_infos() -> Vec<RuleInfo> {
    let rule = RuleInfo::new;
    vec![
        rule(
            "sops-missing-recipient",
            Severity::Error,
            "A host that uses the sops file cannot decrypt it",
            "The host's age recipient (its SSH ed25519 host key converted to X25519, an age key named after it, or its clan machine key) is not among the file's recipients: activation fails on the host.",
            "Add the host's key to .sops.yaml and run sops updatekeys <file> (clan: clan vars fix <machine>).",
        ),
        rule(
            "sops-rules-mismatch",
            Severity::Warning,
            "sops file not re-encrypted after its creation rule changed",
            "The file's recipients differ from the .sops.yaml creation rule that covers it.",
            "Run sops updatekeys <file>.",
        ),
        rule(
            "sops-unverifiable",
            Severity::Info,
            "A host's sops recipient cannot be verified",
            "guard does not know the host's age recipient, or the file has recipients guard cannot attribute.",
            "Commit the host's SSH host public key or name its age key after it in .sops.yaml.",
        ),
        rule(
            "sops-malformed",
            Severity::Error,
            "Not a readable sops file",
            "A file a host or clan uses as sops file is plaintext, corrupt, or has no recipients.",
            "Restore it from git history or re-create it with sops.",
        ),
        rule(
            "sops-missing-file",
            Severity::Error,
            "sops file not tracked",
            "sops.defaultSopsFile or sops.secrets.<n>.sopsFile points to a path git does not track.",
            "git add the encrypted file, or fix the path.",
        ),
    ]
}

/// A file's size and metadata (`None`: not tracked).
type Parsed = Result<Option<(usize, Result<SopsMeta, SopsError>)>, GitError>;

/// What the sops check found.
#[derive(Debug, Default)]
pub struct SopsOutcome {
    pub findings: Vec<Finding>,
    pub warnings: Vec<Warning>,
    /// sops files read.
    pub files: u64,
    pub bytes: u64,
}

/// Why a file is a sops file guard checks.
#[derive(Debug, Clone, Default)]
struct Role {
    /// Hosts that use it through sops-nix options.
    referenced: bool,
    /// clan machines that own or share it (with the entry naming them).
    clan: Vec<(String, String)>,
    /// clan users granted access (`users/<u>`, or through `groups/<g>`),
    /// with the entry naming them.
    clan_users: Vec<(String, String)>,
    /// Covered by a `.sops.yaml` creation rule.
    covered: bool,
}

/// Everything tracked under `dir/machines/` (clan symlinks), by name.
fn clan_members(entries: &BTreeSet<String>, dir: &str, kind: &str) -> Vec<String> {
    let prefix = format!("{dir}/{kind}/");
    entries
        .range(prefix.clone()..)
        .take_while(|p| p.starts_with(&prefix))
        .filter_map(|p| p[prefix.len()..].split('/').next().map(String::from))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Whether `path` is a clan secret (`…/secret` in `vars/` or `sops/secrets/`).
fn clan_secret_dir(path: &str) -> Option<&str> {
    let dir = path.strip_suffix("/secret")?;
    let parts: Vec<&str> = dir.split('/').collect();
    let ok = matches!(
        parts.as_slice(),
        ["vars", "per-machine", _, _, _] | ["vars", "shared", _, _] | ["sops", "secrets", _]
    );
    ok.then_some(dir)
}

/// clan's key file (`sops/machines/<m>/key.json`, `sops/users/<u>/key.json`):
/// `{"publickey": …, "type": "age"}` or a list of those.
fn clan_keys(text: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let one = |o: &serde_json::Value| {
        o.get("publickey")
            .and_then(|k| k.as_str())
            .map(|k| k.trim().to_string())
    };
    match &v {
        serde_json::Value::Array(a) => a.iter().filter_map(one).collect(),
        o => one(o).into_iter().collect(),
    }
}

/// "age1qqqq…(host_prime)" for messages: the start of the key and its
/// declared names.
fn describe(key: &str, names: &BTreeMap<String, BTreeSet<String>>) -> String {
    let short: String = key.chars().take(12).collect();
    match names.get(key) {
        Some(n) if !n.is_empty() => format!(
            "{short}… ({})",
            n.iter().cloned().collect::<Vec<_>>().join("/")
        ),
        _ => format!("{short}…"),
    }
}

/// Checks the sops files of `snapshot`. `in_scope` says which files the
/// change concerns (all with `--all`).
pub fn check(
    snapshot: &Snapshot,
    model: &Model,
    in_scope: &dyn Fn(&str) -> bool,
    commit: Option<&str>,
) -> Result<SopsOutcome, GitError> {
    let mut out = SopsOutcome::default();
    let entries: BTreeSet<String> = snapshot
        .try_entries()?
        .keys()
        .map(|p| p.to_str_lossy().into_owned())
        .collect();
    let read_text = |p: &str| -> Result<Option<String>, GitError> {
        Ok(snapshot
            .read(BStr::new(p))?
            .and_then(|b| String::from_utf8(b).ok()))
    };

    // .sops.yaml files.
    let mut configs: Vec<SopsConfig> = Vec::new();
    for p in entries
        .iter()
        .filter(|p| p.as_str() == ".sops.yaml" || p.ends_with("/.sops.yaml"))
    {
        if let Some(text) = read_text(p)? {
            match config::parse(&text, p) {
                Ok(c) => configs.push(c),
                Err(e) => out.warnings.push(Warning {
                    path: Some(p.clone()),
                    message: format!("{e}; its creation rules are not checked"),
                }),
            }
        }
    }

    // sops uses the nearest .sops.yaml above a file: deepest first.
    configs.sort_by_key(|c| {
        std::cmp::Reverse(c.dir.matches('/').count() + usize::from(!c.dir.is_empty()))
    });

    // PGP fingerprints the .sops.yaml files declare (rules and anchors),
    // and the names anchors give them.
    let mut known_pgp: BTreeSet<String> = BTreeSet::new();
    let mut pgp_anchors: Vec<(String, String, String)> = Vec::new();
    for c in &configs {
        for r in &c.rules {
            known_pgp.extend(r.pgp.iter().cloned());
        }
        for (name, fp, line) in &c.pgp_anchors {
            known_pgp.insert(fp.clone());
            pgp_anchors.push((name.clone(), fp.clone(), format!("{}:{line}", c.path)));
        }
    }
    // A host's PGP keys: fingerprints anchored under its name.
    let pgp_of = |host: &str| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (name, fp, source) in &pgp_anchors {
            if names_host(name, host) && !out.iter().any(|(f, _)| f == fp) {
                out.push((fp.clone(), format!("anchor &{name} in {source}")));
            }
        }
        out
    };

    // The files to check, and why.
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    for p in model.sops_uses.keys() {
        roles.entry(p.clone()).or_default().referenced = true;
    }
    for p in &entries {
        if let Some(dir) = clan_secret_dir(p) {
            let r = roles.entry(p.clone()).or_default();
            for m in clan_members(&entries, dir, "machines") {
                r.clan.push((m.clone(), format!("{dir}/machines/{m}")));
            }
            for u in clan_members(&entries, dir, "users") {
                r.clan_users.push((u.clone(), format!("{dir}/users/{u}")));
            }
            for g in clan_members(&entries, dir, "groups") {
                let group = format!("sops/groups/{g}");
                for u in clan_members(&entries, &group, "users") {
                    r.clan_users
                        .push((u.clone(), format!("{dir}/groups/{g} ({group}/users/{u})")));
                }
                for m in clan_members(&entries, &group, "machines") {
                    r.clan.push((
                        m.clone(),
                        format!("{dir}/groups/{g} ({group}/machines/{m})"),
                    ));
                }
            }
        }
        let name = p.rsplit('/').next().unwrap_or(p);
        if name != ".sops.yaml"
            && configs
                .iter()
                .find(|c| c.covers(p))
                .and_then(|c| c.rule_for(p))
                .is_some_and(|r| r.path_regex.is_some())
        {
            roles.entry(p.clone()).or_default().covered = true;
        }
    }
    roles.retain(|p, _| in_scope(p));

    // Key names (for messages) and every key the repository declares, in
    // age form.
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut known: BTreeSet<String> = BTreeSet::new();
    let age_form = |k: &PublicKey| match k.kind {
        KeyKind::X25519 => Some(k.key.clone()),
        KeyKind::SshEd25519 => ssh_to_age(k),
        _ => None,
    };
    for d in &model.declared {
        if let Some(a) = age_form(&d.key) {
            names
                .entry(a.clone())
                .or_default()
                .extend(d.names.iter().cloned());
            known.insert(a);
        }
    }
    let mut clan_machine_keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut clan_user_keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &entries {
        let parts: Vec<&str> = p.split('/').collect();
        if let ["sops", kind @ ("machines" | "users"), who, "key.json"] = parts.as_slice()
            && let Some(text) = read_text(p)?
        {
            for k in clan_keys(&text) {
                names.entry(k.clone()).or_default().insert(who.to_string());
                known.insert(k.clone());
                if *kind == "machines" {
                    clan_machine_keys
                        .entry(who.to_string())
                        .or_default()
                        .push(k);
                } else {
                    clan_user_keys.entry(who.to_string()).or_default().push(k);
                }
            }
        }
    }

    // Each host's recipients, with where they come from.
    let recipients_of = |host: &str| -> Vec<(String, String)> {
        // A clan machine decrypts with its clan key (clan sets
        // sops.age.keyFile), nothing else.
        if let Some(keys) = clan_machine_keys.get(host) {
            return keys
                .iter()
                .map(|k| (k.clone(), format!("sops/machines/{host}/key.json")))
                .collect();
        }
        let mut r: Vec<(String, String)> = Vec::new();
        let ssh_ok = model.sops_uses_ssh_key(host);
        let mut add = |k: &PublicKey, source: &str| {
            let a = match k.kind {
                KeyKind::X25519 => Some((k.key.clone(), source.to_string())),
                KeyKind::SshEd25519 if ssh_ok => {
                    ssh_to_age(k).map(|a| (a, format!("ssh-to-age of {source}")))
                }
                _ => None,
            };
            if let Some(a) = a
                && !r.iter().any(|(x, _)| *x == a.0)
            {
                r.push(a);
            }
        };
        if let Some(hk) = model.host_keys.get(host) {
            for k in &hk.keys {
                add(&k.key, &k.source);
            }
        }
        for d in keys_named(&model.declared, host) {
            add(&d.key, &format!("key named `{host}` in {}", d.source));
        }
        r
    };
    for (host, hk) in &model.host_keys {
        for k in &hk.keys {
            if let Some(a) = age_form(&k.key) {
                names.entry(a.clone()).or_default().insert(host.clone());
                known.insert(a);
            }
        }
    }

    // Fleet host keys: age keys a .sops.yaml anchor calls a host's without
    // naming a host guard knows (`&host_prime`, `&host_backup`: one key
    // deployed to every host as its age key file). A host that decrypts
    // with an age key file and has no key of its own may hold any of them.
    let mut fleet_keys: Vec<(String, String, String)> = Vec::new();
    for d in &model.declared {
        let in_sops_yaml = d
            .source
            .rsplit_once(':')
            .is_some_and(|(f, _)| f == ".sops.yaml" || f.ends_with("/.sops.yaml"));
        let hostish = |n: &str| {
            ["host", "hosts", "server", "machine", "node"]
                .iter()
                .any(|p| {
                    n.strip_prefix(p)
                        .is_some_and(|r| r.starts_with(['_', '-', '.']))
                })
        };
        if in_sops_yaml
            && d.key.kind == KeyKind::X25519
            && d.names.iter().any(|n| hostish(n))
            && !d
                .names
                .iter()
                .any(|n| model.hosts.iter().any(|h| names_host(n, h)))
            && !fleet_keys.iter().any(|(k, _, _)| *k == d.key.key)
        {
            let name = d
                .names
                .iter()
                .find(|n| hostish(n))
                .cloned()
                .unwrap_or_default();
            fleet_keys.push((d.key.key.clone(), name, d.source.clone()));
        }
    }

    // Read and parse in parallel.
    let parsed: Vec<(String, Parsed)> = roles
        .par_iter()
        .map(|(p, _)| {
            let role = &roles[p];
            let only_covered = !role.referenced && role.clan.is_empty();
            let r = snapshot.read(BStr::new(p.as_str())).map(|b| {
                b.map(|b| {
                    // A file a rule merely covers is checked only when it
                    // is sops-encrypted (a rule like `.*$` covers scripts
                    // and public keys too).
                    if only_covered && !crate::secrets::age::check::is_sops(&b) {
                        (b.len(), Err(SopsError::NotSops))
                    } else {
                        (b.len(), meta::parse(&b))
                    }
                })
            });
            (p.clone(), r)
        })
        .collect();

    let mut unverifiable: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut mismatches: BTreeMap<(String, usize, String), Vec<String>> = BTreeMap::new();
    let mut user_gaps: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (path, res) in parsed {
        let role = &roles[&path];
        let Some((len, meta)) = res? else {
            if role.referenced {
                let u = &model.sops_uses[&path][0];
                out.findings.push(Finding::located(
                    "sops-missing-file",
                    Severity::Error,
                    &path,
                    1,
                    "missing",
                    format!(
                        "referenced by {} (host {}) but not tracked by git; flakes only see tracked files",
                        u.describe(),
                        u.host
                    ),
                    commit,
                ));
            }
            continue;
        };
        let meta = match meta {
            Ok(m) => m,
            // A file a rule merely covers may be any file.
            Err(SopsError::NotSops) if !role.referenced && role.clan.is_empty() => continue,
            Err(e) => {
                out.files += 1;
                out.bytes += len as u64;
                let users = users_text(model, &path, role);
                out.findings.push(Finding::located(
                    "sops-malformed",
                    Severity::Error,
                    &path,
                    1,
                    "malformed",
                    format!("{e}{users}"),
                    commit,
                ));
                continue;
            }
        };
        out.files += 1;
        out.bytes += len as u64;
        // sops 3.10+ also takes SSH keys as age recipients: compare them in
        // X25519 form.
        let mut meta = meta;
        meta.add_forms(|r| parse_public_key(r).ok().and_then(|k| ssh_to_age(&k)));
        let unknown: Vec<&String> = meta
            .age
            .iter()
            .filter(|a| a.starts_with("age1") && !known.contains(*a))
            .collect();
        let unknown_pgp = meta.pgp.iter().filter(|f| !known_pgp.contains(*f)).count();
        // Groups a key no file declares (or a KMS entry) may open.
        let open_to_unknown: Vec<bool> = meta
            .groups
            .iter()
            .map(|g| {
                g.other > 0
                    || g.age
                        .iter()
                        .any(|a| a.starts_with("age1") && !known.contains(a))
                    || g.pgp.iter().any(|f| !known_pgp.contains(f))
            })
            .collect();

        // 1. Hosts that use it.
        let mut users: Vec<(String, String)> = Vec::new();
        for u in model.sops_uses.get(&path).into_iter().flatten() {
            if !users.iter().any(|(h, _)| *h == u.host) {
                users.push((
                    u.host.clone(),
                    format!(
                        "it uses the file through {} (chain: {})",
                        u.describe(),
                        u.chain.join(" → ")
                    ),
                ));
            }
        }
        for (m, entry) in &role.clan {
            if !users.iter().any(|(h, _)| h == m) {
                users.push((
                    m.clone(),
                    format!("clan shares it with machine {m} ({entry})"),
                ));
            }
        }
        for (host, via) in &users {
            let recips = recipients_of(host);
            // A clan machine decrypts with its clan key alone.
            let pgp = if clan_machine_keys.contains_key(host) {
                Vec::new()
            } else {
                pgp_of(host)
            };
            if recips.is_empty()
                && pgp.is_empty()
                && !fleet_keys.is_empty()
                && !clan_machine_keys.contains_key(host)
                && !model.sops_uses_ssh_key(host)
            {
                // Whichever fleet host key its key file holds must open it.
                let mut lacking = Vec::new();
                let mut unlisted = false;
                let mut maybe = false;
                let rule = configs
                    .iter()
                    .find(|c| c.covers(&path))
                    .and_then(|c| c.rule_for(&path));
                for (key, name, source) in &fleet_keys {
                    match access(&meta, &[key.as_str()], &[], &open_to_unknown) {
                        Access::Yes => {}
                        Access::Maybe { .. } => maybe = true,
                        Access::No { .. } => {
                            lacking.push(format!("&{name} ({source})"));
                            unlisted |= !rule.is_some_and(|r| r.age.contains(key));
                        }
                    }
                }
                // The rule already lists it: the file was not re-encrypted.
                let fix = if unlisted {
                    format!(
                        "add the key to the file's creation rule and run sops updatekeys {path}"
                    )
                } else {
                    format!("its creation rule lists the key: run sops updatekeys {path}")
                };
                if !lacking.is_empty() {
                    out.findings.push(Finding::located(
                        "sops-missing-recipient",
                        Severity::Error,
                        &path,
                        1,
                        host,
                        format!(
                            "host {host} cannot decrypt this sops file if its age key file (sops.age.keyFile) holds the fleet host key {}: the file is not encrypted to it (its {} age recipient(s) lack it); {via}; {fix}",
                            lacking.join(" or "),
                            meta.age.len(),
                        ),
                        commit,
                    ));
                } else if maybe {
                    let why = "the file has recipients no file of the repository declares (one may be the fleet host key the host holds)".to_string();
                    unverifiable
                        .entry(host.clone())
                        .or_insert((why, Vec::new()))
                        .1
                        .push(path.clone());
                }
                continue;
            }
            let age_keys: Vec<&str> = recips.iter().map(|(a, _)| a.as_str()).collect();
            let pgp_keys: Vec<&str> = pgp.iter().map(|(f, _)| f.as_str()).collect();
            let opened = match access(&meta, &age_keys, &pgp_keys, &open_to_unknown) {
                Access::Yes => continue,
                Access::Maybe { .. } => None,
                Access::No { opened } => Some(opened),
            };
            let Some(opened) = opened.filter(|_| !recips.is_empty() || !pgp.is_empty()) else {
                let why = if recips.is_empty() && pgp.is_empty() {
                    format!(
                        "guard does not know host {host}'s age recipient (commit its SSH host public key, or name its age key after it in .sops.yaml)"
                    )
                } else if unknown.is_empty() && unknown_pgp == 0 {
                    format!(
                        "host {host}'s known recipients are not among the file's, and its KMS/Vault entries may serve the host"
                    )
                } else {
                    format!(
                        "host {host}'s known recipients are not among the file's, but {} recipient(s) of it are keys no file of the repository declares (one may be the host's)",
                        unknown.len() + unknown_pgp
                    )
                };
                let e = unverifiable
                    .entry(host.clone())
                    .or_insert((why, Vec::new()));
                e.1.push(path.clone());
                continue;
            };
            let fix = if clan_machine_keys.contains_key(host) {
                format!("re-encrypt it for the machine with clan (clan vars fix {host})")
            } else {
                format!("add the key to .sops.yaml and run sops updatekeys {path}")
            };
            // (A host without any key was unverifiable above.)
            let key = match recips.first() {
                Some((key, source)) => {
                    format!(
                        "its age recipient {} (from {source})",
                        describe(key, &names)
                    )
                }
                None => pgp
                    .iter()
                    .map(|(fp, source)| format!("its PGP key {fp} (from {source})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let what = if meta.groups.len() <= 1 {
                format!(
                    "{key} is not among the file's {} age recipient(s){}",
                    meta.age.len(),
                    if meta.pgp.is_empty() {
                        String::new()
                    } else {
                        format!(" and {} PGP key(s)", meta.pgp.len())
                    }
                )
            } else {
                let list: Vec<String> = opened.iter().map(|i| (i + 1).to_string()).collect();
                format!(
                    "{key} opens {} of its {} key groups{}, and sops needs {} (shamir_threshold)",
                    opened.len(),
                    meta.groups.len(),
                    if list.is_empty() {
                        String::new()
                    } else {
                        format!(" (group {})", list.join(", "))
                    },
                    meta.threshold
                )
            };
            out.findings.push(Finding::located(
                "sops-missing-recipient",
                Severity::Error,
                &path,
                1,
                host,
                format!("host {host} cannot decrypt this sops file: {what}; {via}; {fix}"),
                commit,
            ));
        }

        // clan users (directly or through a group) must be recipients too;
        // one warning per user.
        for (u, entry) in &role.clan_users {
            if let Some(keys) = clan_user_keys.get(u)
                && !keys.iter().any(|k| meta.age.contains(k))
            {
                let gaps = user_gaps.entry(u.clone()).or_default();
                // Named directly and through a group: one gap.
                if gaps.last().is_none_or(|(p, _)| *p != path) {
                    gaps.push((path.clone(), entry.clone()));
                }
            }
        }

        // 2. The creation rule that covers it.
        if role.clan.is_empty()
            && let Some(c) = configs.iter().find(|c| c.covers(&path))
            && let Some(rule) = c.rule_for(&path)
            && !rule.other
            && (!rule.age.is_empty() || !rule.pgp.is_empty())
        {
            let missing: Vec<String> = rule
                .age
                .difference(&meta.age)
                .map(|k| describe(k, &names))
                .chain(rule.pgp.difference(&meta.pgp).map(|f| format!("PGP {f}")))
                .collect();
            let extra: Vec<String> = meta
                .age
                .difference(&rule.age)
                .map(|k| describe(k, &names))
                .chain(meta.pgp.difference(&rule.pgp).map(|f| format!("PGP {f}")))
                .collect();
            if !missing.is_empty() || !extra.is_empty() {
                let mut parts = Vec::new();
                if !missing.is_empty() {
                    parts.push(format!("not encrypted to {}", missing.join(", ")));
                }
                if !extra.is_empty() {
                    parts.push(format!("still encrypted to {}", extra.join(", ")));
                }
                mismatches
                    .entry((c.path.clone(), rule.line, parts.join("; ")))
                    .or_default()
                    .push(path.clone());
            }
        }
    }

    for (host, (why, files)) in unverifiable {
        out.findings.push(Finding::located(
            "sops-unverifiable",
            Severity::Info,
            &files[0],
            1,
            &host,
            format!(
                "cannot verify that host {host} can decrypt {} sops file(s) it uses ({}): {why}",
                files.len(),
                list(&files)
            ),
            commit,
        ));
    }
    for (u, gaps) in user_gaps {
        let files: Vec<String> = gaps.iter().map(|(p, _)| p.clone()).collect();
        out.findings.push(Finding::located(
            "sops-rules-mismatch",
            Severity::Warning,
            &files[0],
            1,
            &format!("clan-user:{u}"),
            format!(
                "clan grants user {u} access to {} secret(s) ({}), but they are not encrypted to sops/users/{u}/key.json (e.g. {}): re-encrypt them with clan (clan vars fix)",
                files.len(),
                list(&files),
                gaps[0].1
            ),
            commit,
        ));
    }
    for ((config, line, diff), files) in mismatches {
        out.findings.push(Finding::located(
            "sops-rules-mismatch",
            Severity::Warning,
            &files[0],
            1,
            &format!("{config}:{line}:{diff}"),
            format!(
                "{} file(s) differ from the creation rule at {config}:{line} ({diff}): {}; they were not re-encrypted after the rule changed: run sops updatekeys on each",
                files.len(),
                list(&files)
            ),
            commit,
        ));
    }
    out.findings.sort_by(|a, b| {
        (&a.path, a.line, &a.rule, &a.message).cmp(&(&b.path, b.line, &b.rule, &b.message))
    });
    Ok(out)
}

/// Whether a host holding these keys can decrypt a sops file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    /// Its keys open `threshold` key groups.
    Yes,
    /// Only if keys no file declares (or KMS entries) are the host's.
    Maybe { opened: Vec<usize> },
    /// No: the groups it opens (0-based) are fewer than the threshold,
    /// even counting every group an undeclared key could open.
    No { opened: Vec<usize> },
}

/// The host's access to `meta` with its age recipients `age` and PGP
/// fingerprints `pgp`; `open_to_unknown[i]`: group `i` has a recipient no
/// file of the repository declares, or a KMS entry (it may be the host's).
fn access(meta: &SopsMeta, age: &[&str], pgp: &[&str], open_to_unknown: &[bool]) -> Access {
    let opened = meta.groups_opened(age, pgp);
    if opened.len() >= meta.threshold {
        return Access::Yes;
    }
    let maybe = open_to_unknown
        .iter()
        .enumerate()
        .filter(|(i, m)| **m && !opened.contains(i))
        .count();
    if opened.len() + maybe >= meta.threshold {
        Access::Maybe { opened }
    } else {
        Access::No { opened }
    }
}

/// "a, b, c and 4 more".
fn list(files: &[String]) -> String {
    const SHOWN: usize = 5;
    let shown: Vec<&str> = files.iter().take(SHOWN).map(String::as_str).collect();
    if files.len() > SHOWN {
        format!("{} and {} more", shown.join(", "), files.len() - SHOWN)
    } else {
        shown.join(", ")
    }
}

/// " (used by alpha, beta)" for messages.
fn users_text(model: &Model, path: &str, role: &Role) -> String {
    let mut users: BTreeSet<&str> = model
        .sops_uses
        .get(path)
        .into_iter()
        .flatten()
        .map(|u| u.host.as_str())
        .collect();
    users.extend(role.clan.iter().map(|(m, _)| m.as_str()));
    if users.is_empty() {
        String::new()
    } else {
        format!(
            " (used by {})",
            users.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(text: &str) -> SopsMeta {
        meta::parse(text.as_bytes()).unwrap()
    }

    /// A host decrypts when its keys open `threshold` key groups; groups a
    /// key no file declares could open make it unverifiable, not an error.
    #[test]
    fn access_counts_key_groups_against_the_threshold() {
        let (a, b, c) = ("age1aaa", "age1bbb", "age1ccc");
        let fp = "8A94ED58A476A13AE0D6E85E9758078DE5308308";
        // Two groups, both needed (no shamir_threshold).
        let two = meta(&format!(
            r#"{{"data": "ENC[x]", "sops": {{"key_groups": [{{"age": [{{"recipient": "{a}"}}, {{"recipient": "{b}"}}]}}, {{"age": [{{"recipient": "{c}"}}], "pgp": [{{"fp": "{fp}"}}]}}], "mac": "x"}}}}"#
        ));
        let none = [false, false];
        assert_eq!(
            access(&two, &[a], &[], &none),
            Access::No { opened: vec![0] }
        );
        assert_eq!(access(&two, &[a, c], &[], &none), Access::Yes);
        // A host's PGP key opens the second group.
        assert_eq!(access(&two, &[b], &[fp], &none), Access::Yes);
        assert_eq!(
            access(&two, &[], &[fp], &none),
            Access::No { opened: vec![1] }
        );
        // An undeclared key in the second group may be the host's.
        assert_eq!(
            access(&two, &[a], &[], &[false, true]),
            Access::Maybe { opened: vec![0] }
        );
        // ... but not when the host opens no group and two are needed.
        assert_eq!(
            access(&two, &["age1zzz"], &[], &[false, true]),
            Access::No { opened: vec![] }
        );
        // Crafted: shamir_threshold 1 of 2 (sops itself writes at least
        // 2): any one group is enough.
        let one_of_two = meta(&format!(
            "a: ENC[x]\nsops:\n    shamir_threshold: 1\n    key_groups:\n        - age:\n            - recipient: {a}\n        - pgp:\n            - fp: {fp}\n    mac: ENC[x]\n"
        ));
        assert_eq!(access(&one_of_two, &[], &[fp], &none), Access::Yes);
        assert_eq!(access(&one_of_two, &[a], &[], &none), Access::Yes);
        assert_eq!(
            access(&one_of_two, &[b], &[], &none),
            Access::No { opened: vec![] }
        );
        // A threshold above the number of groups: nobody decrypts.
        let broken = meta(&format!(
            "a: ENC[x]\nsops:\n    shamir_threshold: 3\n    key_groups:\n        - age:\n            - recipient: {a}\n        - age:\n            - recipient: {b}\n    mac: ENC[x]\n"
        ));
        assert_eq!(
            access(&broken, &[a, b], &[], &none),
            Access::No { opened: vec![0, 1] }
        );
    }

    #[test]
    fn clan_paths_and_key_files() {
        assert_eq!(
            clan_secret_dir("vars/per-machine/web01/openssh/ssh.id_ed25519/secret"),
            Some("vars/per-machine/web01/openssh/ssh.id_ed25519")
        );
        assert_eq!(
            clan_secret_dir("vars/shared/wg/key/secret"),
            Some("vars/shared/wg/key")
        );
        assert_eq!(
            clan_secret_dir("sops/secrets/b2-key-id/secret"),
            Some("sops/secrets/b2-key-id")
        );
        assert_eq!(clan_secret_dir("vars/per-machine/web01/x/value"), None);
        assert_eq!(clan_secret_dir("docs/secret"), None);
        let entries: BTreeSet<String> = [
            "vars/shared/wg/key/machines/a",
            "vars/shared/wg/key/machines/b",
            "vars/shared/wg/key/secret",
            "vars/shared/wg/key/users/joe",
            "vars/shared/wg/keyring/machines/c",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(
            clan_members(&entries, "vars/shared/wg/key", "machines"),
            ["a", "b"]
        );
        assert_eq!(
            clan_keys(r#"{"publickey": "age1x", "type": "age"}"#),
            ["age1x"]
        );
        assert_eq!(
            clan_keys(r#"[{"publickey": "age1x"}, {"publickey": "age1y"}]"#),
            ["age1x", "age1y"]
        );
        assert!(clan_keys("not json").is_empty());
    }
}

//! The public part of a sops file: its recipients, from the `sops`
//! metadata every format carries (YAML, JSON and binary-as-JSON, dotenv,
//! INI). Nothing is decrypted; values are never read or shown.

use std::collections::BTreeSet;

use regex::Regex;
use yaml_rust2::{Yaml, YamlLoader};

/// Who can decrypt a sops file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SopsMeta {
    /// age recipients (`sops.age[].recipient`, also inside key groups).
    pub age: BTreeSet<String>,
    /// PGP fingerprints, uppercase without spaces.
    pub pgp: BTreeSet<String>,
    /// Cloud KMS / Vault entries (not checked).
    pub other: usize,
    pub format: &'static str,
    /// The key groups (`key_groups`; the top-level lists are one group).
    /// The data key is split into one share per group (Shamir); any key
    /// of a group gives its share.
    pub groups: Vec<KeyGroup>,
    /// Shares needed to decrypt: `shamir_threshold`, else every group.
    pub threshold: usize,
}

/// One key group of a sops file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyGroup {
    pub age: BTreeSet<String>,
    pub pgp: BTreeSet<String>,
    /// KMS / Vault entries.
    pub other: usize,
}

impl SopsMeta {
    /// Fills the union lists and the threshold from the groups (`shamir`:
    /// the recorded `shamir_threshold`, 0 when absent).
    fn finish(mut self, shamir: usize) -> SopsMeta {
        self.groups
            .retain(|g| !g.age.is_empty() || !g.pgp.is_empty() || g.other > 0);
        for g in &self.groups {
            self.age.extend(g.age.iter().cloned());
            self.pgp.extend(g.pgp.iter().cloned());
            self.other += g.other;
        }
        // sops: a threshold of 0 (unset) means every group; one above the
        // number of groups cannot be met by anyone.
        self.threshold = if shamir == 0 {
            self.groups.len()
        } else {
            shamir
        };
        self
    }

    /// Adds `extra(recipient)` next to each age recipient, in every group
    /// (sops 3.10+ takes SSH keys as age recipients: compare them in their
    /// X25519 form).
    pub fn add_forms(&mut self, extra: impl Fn(&str) -> Option<String>) {
        for g in &mut self.groups {
            let more: Vec<String> = g.age.iter().filter_map(|r| extra(r)).collect();
            self.age.extend(more.iter().cloned());
            g.age.extend(more);
        }
    }

    /// The groups one of these keys (age recipients, PGP fingerprints)
    /// opens.
    pub fn groups_opened(&self, age: &[&str], pgp: &[&str]) -> Vec<usize> {
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                age.iter().any(|a| g.age.contains(*a)) || pgp.iter().any(|f| g.pgp.contains(*f))
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// Why a file is not a readable sops file. Messages carry positions only,
/// never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SopsError {
    #[error(
        "not a sops-encrypted file (no sops metadata with a MAC): plaintext, or a decrypted copy committed?"
    )]
    NotSops,
    #[error("not valid {format}{at}; the file is corrupt (merge conflict, truncation?)")]
    Syntax { format: &'static str, at: String },
    #[error(
        "its sops metadata has no recipients (no age, pgp or KMS entry): nobody can decrypt it"
    )]
    NoRecipients,
}

/// Normalises a PGP fingerprint.
pub fn fingerprint(fp: &str) -> String {
    fp.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Reads the metadata of a sops file.
pub fn parse(bytes: &[u8]) -> Result<SopsMeta, SopsError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SopsError::NotSops)?;
    let t = text.trim_start();
    let meta = if t.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(t).map_err(|e| SopsError::Syntax {
            format: "JSON",
            at: format!(" at line {} column {}", e.line(), e.column()),
        })?;
        let s = v.get("sops").ok_or(SopsError::NotSops)?;
        if s.get("mac").is_none() {
            return Err(SopsError::NotSops);
        }
        let mut m = SopsMeta {
            format: "JSON",
            ..SopsMeta::default()
        };
        m.groups.push(json_group(s));
        if let Some(groups) = s.get("key_groups").and_then(|g| g.as_array()) {
            m.groups.extend(groups.iter().map(json_group));
        }
        let shamir = s
            .get("shamir_threshold")
            .and_then(|t| t.as_u64())
            .unwrap_or(0);
        m.finish(usize::try_from(shamir).unwrap_or(usize::MAX))
    } else if text.lines().any(|l| l.starts_with("sops_mac=")) {
        flat(text, "dotenv")
    } else if text.lines().any(|l| l.trim() == "[sops]") {
        flat(text, "INI")
    } else {
        let docs = YamlLoader::load_from_str(text).map_err(|e| SopsError::Syntax {
            format: "YAML",
            at: format!(
                " at line {} column {}",
                e.marker().line(),
                e.marker().col() + 1
            ),
        })?;
        let doc = docs.first().ok_or(SopsError::NotSops)?;
        let s = &doc["sops"];
        if s.is_badvalue() || s["mac"].is_badvalue() {
            return Err(SopsError::NotSops);
        }
        let mut m = SopsMeta {
            format: "YAML",
            ..SopsMeta::default()
        };
        m.groups.push(yaml_group(s));
        if let Some(groups) = s["key_groups"].as_vec() {
            m.groups.extend(groups.iter().map(yaml_group));
        }
        let shamir = s["shamir_threshold"].as_i64().unwrap_or(0).max(0);
        m.finish(usize::try_from(shamir).unwrap_or(usize::MAX))
    };
    if meta.age.is_empty() && meta.pgp.is_empty() && meta.other == 0 {
        return Err(SopsError::NoRecipients);
    }
    Ok(meta)
}

const KMS: [&str; 4] = ["kms", "gcp_kms", "azure_kv", "hc_vault"];

fn json_group(s: &serde_json::Value) -> KeyGroup {
    let mut g = KeyGroup::default();
    for a in s
        .get("age")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(r) = a.get("recipient").and_then(|r| r.as_str()) {
            g.age.insert(r.trim().to_string());
        }
    }
    for p in s
        .get("pgp")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(fp) = p.get("fp").and_then(|r| r.as_str()) {
            g.pgp.insert(fingerprint(fp));
        }
    }
    for k in KMS {
        g.other += s.get(k).and_then(|v| v.as_array()).map_or(0, Vec::len);
    }
    g
}

fn yaml_group(s: &Yaml) -> KeyGroup {
    let mut g = KeyGroup::default();
    for a in s["age"].as_vec().into_iter().flatten() {
        if let Some(r) = a["recipient"].as_str() {
            g.age.insert(r.trim().to_string());
        }
    }
    for p in s["pgp"].as_vec().into_iter().flatten() {
        if let Some(fp) = p["fp"].as_str() {
            g.pgp.insert(fingerprint(fp));
        }
    }
    for k in KMS {
        g.other += s[k].as_vec().map_or(0, Vec::len);
    }
    g
}

/// dotenv and INI store the metadata flattened:
/// `sops_age__list_0__map_recipient=age1…`, `age__list_0__map_recipient = …`;
/// key groups as `key_groups__list_<g>__map_age__list_<i>__map_recipient`.
fn flat(text: &str, format: &'static str) -> SopsMeta {
    static RE: std::sync::OnceLock<(Regex, Regex)> = std::sync::OnceLock::new();
    let (entry, shamir) = RE.get_or_init(|| {
        (
            Regex::new(r"(?m)(?:key_groups__list_(\d+)__map_)?(age|pgp|kms|gcp_kms|azure_kv|hc_vault)__list_\d+__map_(recipient|fp|arn|resource_id|vault_url|vault_address)\s*=\s*(\S*)\s*$").unwrap(),
            Regex::new(r"(?m)shamir_threshold\s*=\s*(\d+)\s*$").unwrap(),
        )
    });
    let mut m = SopsMeta {
        format,
        ..SopsMeta::default()
    };
    for c in entry.captures_iter(text) {
        // Top-level lists are group 0, as in the other formats.
        let gi = c
            .get(1)
            .and_then(|g| g.as_str().parse::<usize>().ok())
            .map_or(0, |g| g.saturating_add(1));
        if gi > 64 {
            continue;
        }
        if m.groups.len() <= gi {
            m.groups.resize(gi + 1, KeyGroup::default());
        }
        let g = &mut m.groups[gi];
        match (&c[2], &c[3]) {
            ("age", "recipient") => {
                g.age.insert(c[4].to_string());
            }
            ("pgp", "fp") => {
                g.pgp.insert(fingerprint(&c[4]));
            }
            ("age" | "pgp", _) => {}
            _ => g.other += 1,
        }
    }
    let t = shamir
        .captures(text)
        .and_then(|c| c[1].parse::<usize>().ok())
        .unwrap_or(0);
    m.finish(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs";

    #[test]
    fn recipients_of_each_format() {
        let yaml = format!(
            "db: ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]\nsops:\n    age:\n        - recipient: {A}\n          enc: |\n            -----BEGIN AGE ENCRYPTED FILE-----\n            -----END AGE ENCRYPTED FILE-----\n    pgp:\n        - fp: 8a94 ed58A476A13AE0D6E85E9758078DE5308308\n    mac: ENC[AES256_GCM,data:z]\n    version: 3.8.1\n"
        );
        let m = parse(yaml.as_bytes()).unwrap();
        assert_eq!(m.age.iter().collect::<Vec<_>>(), [A]);
        assert_eq!(
            m.pgp.iter().collect::<Vec<_>>(),
            ["8A94ED58A476A13AE0D6E85E9758078DE5308308"]
        );
        let json = format!(
            r#"{{"data": "ENC[AES256_GCM,data:a]", "sops": {{"key_groups": [{{"age": [{{"recipient": "{A}", "enc": "x"}}]}}], "mac": "x"}}}}"#
        );
        assert_eq!(parse(json.as_bytes()).unwrap().age.len(), 1);
        let env = format!(
            "A=ENC[AES256_GCM,data:a]\nsops_age__list_0__map_recipient={A}\nsops_version=3.8.1\nsops_mac=ENC[AES256_GCM,data:b]\n"
        );
        let m = parse(env.as_bytes()).unwrap();
        assert_eq!((m.format, m.age.len()), ("dotenv", 1));
    }

    const B: &str = "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t";
    const FP: &str = "8A94ED58A476A13AE0D6E85E9758078DE5308308";

    /// Key groups and `shamir_threshold` as sops writes them in each
    /// format: the groups, their union, the threshold (every group when
    /// unset).
    #[test]
    fn key_groups_and_threshold_of_each_format() {
        let yaml = format!(
            "a: ENC[AES256_GCM,data:x]\nsops:\n    shamir_threshold: 2\n    key_groups:\n        - age:\n            - recipient: {A}\n              enc: x\n        - pgp:\n            - fp: {FP}\n              enc: y\n          age:\n            - recipient: {B}\n              enc: z\n        - hc_vault:\n            - vault_address: http://v\n    mac: ENC[x]\n"
        );
        let m = parse(yaml.as_bytes()).unwrap();
        assert_eq!((m.groups.len(), m.threshold, m.other), (3, 2, 1));
        assert_eq!(m.groups[1].pgp.iter().collect::<Vec<_>>(), [FP]);
        assert_eq!(m.age.len(), 2);
        assert_eq!(m.groups_opened(&[A], &[]), [0]);
        assert_eq!(m.groups_opened(&[A, B], &[]), [0, 1]);
        assert_eq!(m.groups_opened(&[], &[FP]), [1]);
        // No threshold recorded: every group is needed.
        let json = format!(
            r#"{{"data": "ENC[x]", "sops": {{"key_groups": [{{"age": [{{"recipient": "{A}"}}]}}, {{"pgp": [{{"fp": "{FP}"}}]}}], "mac": "x"}}}}"#
        );
        let m = parse(json.as_bytes()).unwrap();
        assert_eq!((m.groups.len(), m.threshold), (2, 2));
        // The flat lists are one group, threshold 1.
        let flat = format!(
            r#"{{"data": "ENC[x]", "sops": {{"age": [{{"recipient": "{A}"}}, {{"recipient": "{B}"}}], "pgp": [{{"fp": "{FP}"}}], "mac": "x"}}}}"#
        );
        let m = parse(flat.as_bytes()).unwrap();
        assert_eq!((m.groups.len(), m.threshold), (1, 1));
        assert_eq!(m.groups_opened(&[], &[FP]), [0]);
        let env = format!(
            "A=ENC[x]\nsops_key_groups__list_0__map_age__list_0__map_recipient={A}\nsops_key_groups__list_1__map_pgp__list_0__map_fp={FP}\nsops_key_groups__list_1__map_age__list_0__map_recipient={B}\nsops_shamir_threshold=1\nsops_mac=ENC[y]\n"
        );
        let m = parse(env.as_bytes()).unwrap();
        assert_eq!((m.format, m.groups.len(), m.threshold), ("dotenv", 2, 1));
        assert_eq!(m.groups_opened(&[B], &[]), [1]);
        let ini = format!(
            "[s]\na = ENC[x]\n[sops]\nage__list_0__map_recipient = {A}\npgp__list_0__map_fp = {FP}\nmac = ENC[y]\n"
        );
        let m = parse(ini.as_bytes()).unwrap();
        assert_eq!(
            (m.format, m.groups.len(), m.threshold, m.pgp.len()),
            ("INI", 1, 1, 1)
        );
        // SSH recipients gain their X25519 form in their group.
        let mut m = parse(yaml.as_bytes()).unwrap();
        m.add_forms(|r| (r == A).then(|| "age1converted".to_string()));
        assert!(m.groups[0].age.contains("age1converted") && m.age.contains("age1converted"));
    }

    /// Every truncation and a sweep of byte flips of valid files (each
    /// format) and of a .sops.yaml: an error or a result, never a panic.
    #[test]
    fn garbage_and_mutations_never_panic() {
        let yaml = format!(
            "db: ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]\nsops:\n    age:\n        - recipient: {A}\n          enc: |\n            x\n    mac: ENC[AES256_GCM,data:z]\n"
        );
        let json = format!(
            r#"{{"data": "ENC[x]", "sops": {{"age": [{{"recipient": "{A}"}}], "mac": "x"}}}}"#
        );
        let env = format!("A=ENC[x]\nsops_age__list_0__map_recipient={A}\nsops_mac=ENC[y]\n");
        let cfg = format!(
            "keys:\n  - &a {A}\ncreation_rules:\n  - path_regex: s/.*\\.yaml$\n    key_groups:\n      - age: [*a]\n"
        );
        for text in [&yaml, &json, &env, &cfg] {
            let b = text.as_bytes();
            for i in 0..=b.len() {
                let _ = parse(&b[..i]);
                let _ =
                    super::super::config::parse(&String::from_utf8_lossy(&b[..i]), ".sops.yaml");
                let _ = crate::secrets::age::declared::declarations(
                    "k.pub",
                    &String::from_utf8_lossy(&b[..i]),
                );
            }
            for i in 0..b.len() {
                for x in [0u8, b'\n', b'"', b'{', b':', b'&', b'*', 0xff] {
                    let mut m = b.to_vec();
                    m[i] = x;
                    let _ = parse(&m);
                    let t = String::from_utf8_lossy(&m);
                    let _ = super::super::config::parse(&t, "d/.sops.yaml");
                    let _ = crate::secrets::age::keys::bech32_decode(&t);
                }
            }
        }
    }

    #[test]
    fn broken_files_are_errors_without_content() {
        assert_eq!(parse(b"password: hunter2\n"), Err(SopsError::NotSops));
        let broken = "a: ENC[AES256_GCM,data:a]\nsops:\n  mac: x\n   bad: [\n";
        let e = parse(broken.as_bytes()).unwrap_err();
        assert!(
            matches!(e, SopsError::Syntax { format: "YAML", .. }),
            "{e:?}"
        );
        assert!(!e.to_string().contains("ENC"), "{e}");
        let conflict = "{\n<<<<<<< HEAD\n\"sops\": {}\n";
        assert!(matches!(
            parse(conflict.as_bytes()),
            Err(SopsError::Syntax { format: "JSON", .. })
        ));
        let empty = "a: ENC[AES256_GCM,data:a]\nsops:\n    mac: ENC[x]\n";
        assert_eq!(parse(empty.as_bytes()), Err(SopsError::NoRecipients));
        assert_eq!(parse(&[0xff, 0xfe, 0x00]), Err(SopsError::NotSops));
    }
}

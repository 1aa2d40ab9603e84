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
        json_groups(s, &mut m);
        if let Some(groups) = s.get("key_groups").and_then(|g| g.as_array()) {
            for g in groups {
                json_groups(g, &mut m);
            }
        }
        m
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
        yaml_groups(s, &mut m);
        if let Some(groups) = s["key_groups"].as_vec() {
            for g in groups {
                yaml_groups(g, &mut m);
            }
        }
        m
    };
    if meta.age.is_empty() && meta.pgp.is_empty() && meta.other == 0 {
        return Err(SopsError::NoRecipients);
    }
    Ok(meta)
}

const KMS: [&str; 4] = ["kms", "gcp_kms", "azure_kv", "hc_vault"];

fn json_groups(s: &serde_json::Value, m: &mut SopsMeta) {
    for a in s
        .get("age")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(r) = a.get("recipient").and_then(|r| r.as_str()) {
            m.age.insert(r.trim().to_string());
        }
    }
    for p in s
        .get("pgp")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(fp) = p.get("fp").and_then(|r| r.as_str()) {
            m.pgp.insert(fingerprint(fp));
        }
    }
    for k in KMS {
        m.other += s.get(k).and_then(|v| v.as_array()).map_or(0, Vec::len);
    }
}

fn yaml_groups(s: &Yaml, m: &mut SopsMeta) {
    for a in s["age"].as_vec().into_iter().flatten() {
        if let Some(r) = a["recipient"].as_str() {
            m.age.insert(r.trim().to_string());
        }
    }
    for p in s["pgp"].as_vec().into_iter().flatten() {
        if let Some(fp) = p["fp"].as_str() {
            m.pgp.insert(fingerprint(fp));
        }
    }
    for k in KMS {
        m.other += s[k].as_vec().map_or(0, Vec::len);
    }
}

/// dotenv and INI store the metadata flattened:
/// `sops_age__list_0__map_recipient=age1…`, `age__list_0__map_recipient = …`.
fn flat(text: &str, format: &'static str) -> SopsMeta {
    static RE: std::sync::OnceLock<(Regex, Regex, Regex)> = std::sync::OnceLock::new();
    let (age, pgp, kms) = RE.get_or_init(|| {
        (
            Regex::new(r"(?m)age__list_\d+__map_recipient\s*=\s*(\S+)\s*$").unwrap(),
            Regex::new(r"(?m)pgp__list_\d+__map_fp\s*=\s*(\S+)\s*$").unwrap(),
            Regex::new(r"(?m)(kms|gcp_kms|azure_kv|hc_vault)__list_\d+__map_(arn|resource_id|vault_url|vault_address)\s*=").unwrap(),
        )
    });
    SopsMeta {
        age: age.captures_iter(text).map(|c| c[1].to_string()).collect(),
        pgp: pgp
            .captures_iter(text)
            .map(|c| fingerprint(&c[1]))
            .collect(),
        other: kms.find_iter(text).count(),
        format,
    }
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

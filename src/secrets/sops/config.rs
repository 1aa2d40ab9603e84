//! `.sops.yaml`: the creation rules that say to whom sops encrypts a new
//! file (and re-encrypts on `sops updatekeys`). The first rule whose
//! `path_regex` matches a file (its path relative to the `.sops.yaml`
//! directory) applies, as in sops.

use std::collections::BTreeSet;

use regex::Regex;
use yaml_rust2::{Yaml, YamlLoader};

use super::meta::fingerprint;

/// One creation rule.
#[derive(Debug, Clone)]
pub struct CreationRule {
    /// `None`: the rule matches every file.
    pub path_regex: Option<Regex>,
    pub age: BTreeSet<String>,
    pub pgp: BTreeSet<String>,
    /// KMS / Vault entries (such rules are not compared).
    pub other: bool,
    /// 1-based line of the rule in `.sops.yaml` (best effort).
    pub line: usize,
}

/// A parsed `.sops.yaml`.
#[derive(Debug, Clone)]
pub struct SopsConfig {
    /// Repository path of the `.sops.yaml`.
    pub path: String,
    /// Its directory ("" at the root).
    pub dir: String,
    pub rules: Vec<CreationRule>,
    /// PGP fingerprints written with an anchor (`- &host_alpha 2504…`):
    /// (anchor name, fingerprint, line).
    pub pgp_anchors: Vec<(String, String, usize)>,
}

impl SopsConfig {
    /// Whether `file` is below this configuration's directory.
    pub fn covers(&self, file: &str) -> bool {
        self.dir.is_empty()
            || file
                .strip_prefix(&self.dir)
                .is_some_and(|r| r.starts_with('/'))
    }

    /// The rule sops applies to the repository path `file`, when the file
    /// is below this configuration's directory.
    pub fn rule_for(&self, file: &str) -> Option<&CreationRule> {
        let rel = if self.dir.is_empty() {
            file
        } else {
            file.strip_prefix(&self.dir)?.strip_prefix('/')?
        };
        self.rules.iter().find(|r| match &r.path_regex {
            Some(re) => re.is_match(rel),
            None => true,
        })
    }
}

/// Items of an `age:`/`pgp:` value: a list, or a comma-separated string.
fn items(v: &Yaml) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Yaml::String(s) => out.extend(
            s.split([',', '\n'])
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from),
        ),
        Yaml::Array(a) => {
            for x in a {
                out.extend(items(x));
            }
        }
        _ => {}
    }
    out
}

/// `&name <fingerprint>` anchors whose value is a PGP fingerprint (40 hex
/// digits, optionally in groups of four).
fn pgp_anchors(text: &str) -> Vec<(String, String, usize)> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r#"&([A-Za-z0-9_.-]+)\s+["']?((?:[0-9A-Fa-f]{4} {0,2}){9}[0-9A-Fa-f]{4})["']?\s*(?:#.*)?$"#)
            .unwrap()
    });
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            re.captures(l)
                .map(|c| (c[1].to_string(), fingerprint(&c[2]), i + 1))
        })
        .collect()
}

/// Parses `.sops.yaml` text at repository path `path`.
pub fn parse(text: &str, path: &str) -> Result<SopsConfig, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| {
        format!(
            "{path}: not valid YAML at line {} column {}",
            e.marker().line(),
            e.marker().col() + 1
        )
    })?;
    let dir = path.rfind('/').map_or("", |i| &path[..i]).to_string();
    let mut out = SopsConfig {
        path: path.to_string(),
        dir,
        rules: Vec::new(),
        pgp_anchors: pgp_anchors(text),
    };
    let Some(doc) = docs.first() else {
        return Ok(out);
    };
    let mut search_from = 0;
    for r in doc["creation_rules"].as_vec().into_iter().flatten() {
        let regex_text = r["path_regex"].as_str();
        let path_regex = match regex_text {
            Some(re) => Some(Regex::new(re).map_err(|e| {
                format!("{path}: creation rule path_regex {re:?} is not a valid regex: {e}")
            })?),
            None => None,
        };
        let mut age: BTreeSet<String> = items(&r["age"]).into_iter().collect();
        let mut pgp: BTreeSet<String> = items(&r["pgp"]).iter().map(|f| fingerprint(f)).collect();
        let mut other = ["kms", "gcp_kms", "azure_keyvault", "hc_vault_transit_uri"]
            .iter()
            .any(|k| !r[*k].is_badvalue() && !r[*k].is_null());
        for g in r["key_groups"].as_vec().into_iter().flatten() {
            age.extend(items(&g["age"]));
            pgp.extend(items(&g["pgp"]).iter().map(|f| fingerprint(f)));
            other |= ["kms", "gcp_kms", "azure_keyvault", "vault"]
                .iter()
                .any(|k| g[*k].as_vec().is_some_and(|v| !v.is_empty()));
        }
        // The rule's line: where its path_regex is written, in order.
        let line = match regex_text {
            Some(re) => match text[search_from..].find(re) {
                Some(i) => {
                    search_from += i + re.len();
                    text[..search_from].matches('\n').count() + 1
                }
                None => 1,
            },
            None => 1,
        };
        out.rules.push(CreationRule {
            path_regex,
            age,
            pgp,
            other,
            line,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "age1a8pk4akrdamj7nvqy3zywgtny8dxz7t5xzu7u8v9mhrayp9freqsqatyrs";
    const B: &str = "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t";

    #[test]
    fn anchors_lists_strings_and_first_match() {
        let text = format!(
            "keys:\n  - &admin {A}\n  - &host_prime {B}\ncreation_rules:\n  - path_regex: secrets/prime/[^/]+\\.yaml$\n    key_groups:\n    - age:\n      - *admin\n      - *host_prime\n  - path_regex: secrets/.*\n    age: >-\n      {A},\n      {B}\n  - pgp: 8a94 ED58A476A13AE0D6E85E9758078DE5308308\n"
        );
        let c = parse(&text, "nix/.sops.yaml").unwrap();
        assert_eq!(c.rules.len(), 3);
        let r = c.rule_for("nix/secrets/prime/a.yaml").unwrap();
        assert_eq!(r.line, 5);
        assert_eq!(r.age, [A.to_string(), B.to_string()].into());
        let r = c.rule_for("nix/secrets/other.yaml").unwrap();
        assert_eq!((r.line, r.age.len()), (10, 2));
        let r = c.rule_for("nix/README.md").unwrap();
        assert_eq!(
            r.pgp.iter().collect::<Vec<_>>(),
            ["8A94ED58A476A13AE0D6E85E9758078DE5308308"]
        );
        assert!(c.rule_for("elsewhere/x.yaml").is_none());
        assert!(c.covers("nix/secrets/a.yaml") && !c.covers("nixos/a.yaml"));
        assert!(parse("creation_rules:\n  - path_regex: '('\n", ".sops.yaml").is_err());
        let pgp = "keys:\n  - &host_alpha 2504 7914 68B1 53B8 A396  3CC9 7BA5 3D19 19C5 DFD4\n  - &admin 8A94ED58A476A13AE0D6E85E9758078DE5308308 # cole\n  - &short ABCD\n";
        assert_eq!(
            parse(pgp, ".sops.yaml").unwrap().pgp_anchors,
            [
                (
                    "host_alpha".to_string(),
                    "2504791468B153B8A3963CC97BA53D1919C5DFD4".to_string(),
                    2
                ),
                (
                    "admin".to_string(),
                    "8A94ED58A476A13AE0D6E85E9758078DE5308308".to_string(),
                    3
                )
            ]
        );
        assert!(parse("a: [\n", ".sops.yaml").unwrap_err().contains("line"));
    }
}

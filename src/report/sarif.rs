//! SARIF 2.1.0 for GitHub code scanning (docs/integration-conventions.md 3.6):
//! one run, `tool.driver.rules[]` with descriptions and help, results with
//! `ruleId`, `level`, `message.text`, one physical location with a full
//! region, and guard's own fingerprint under `partialFingerprints`
//! (`guard/v1`; `primaryLocationLineHash` is left to the upload action).

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{Value, json};

use super::{Finding, Report, RuleInfo, Rules, SOUNDNESS_MISS, Severity};

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "9.0",
        Severity::Warning => "5.0",
        Severity::Info => "2.0",
    }
}

/// Writes every finding of the report (scan and secrets sections) as one
/// SARIF run. `rules` describes the rules of the report's sections; a rule
/// a finding uses that the registry lacks (a bug) still gets a minimal
/// description, as SARIF requires one.
pub fn write_sarif(report: &Report, rules: &Rules, out: &mut dyn Write) -> io::Result<()> {
    let findings: Vec<&Finding> = report.findings().collect();
    let mut described: BTreeMap<String, RuleInfo> = BTreeMap::new();
    for r in rules.for_report(report) {
        described.entry(r.id.clone()).or_insert_with(|| r.clone());
    }
    for f in &findings {
        described.entry(f.rule.clone()).or_insert_with(|| RuleInfo {
            id: f.rule.clone(),
            title: format!("guard rule {}", f.rule),
            description: format!("Finding of guard rule {}.", f.rule),
            help: "See the finding's message for how to fix it.".into(),
            severity: f.severity,
        });
    }
    let ids: Vec<String> = described.keys().cloned().collect();
    let index: BTreeMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let rules_json: Vec<Value> = described
        .values()
        .map(|r| {
            json!({
                "id": r.id,
                "name": camel(&r.id),
                "shortDescription": { "text": truncate(&r.title, 1000) },
                "fullDescription": { "text": r.description },
                "help": { "text": r.help, "markdown": r.help },
                "defaultConfiguration": { "level": level(r.severity) },
                "properties": {
                    "tags": ["security", "secret"],
                    "precision": "high",
                    "security-severity": security_severity(r.severity),
                },
            })
        })
        .collect();
    let mut results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let (end_line, end_column) = f
                .end
                .map_or((f.line.max(1), f.column.max(1) + 1), |e| (e.line, e.column));
            let mut text = match f.secret.as_str() {
                "" => first_sentence(&f.message).to_string(),
                secret => format!("{} ({secret})", first_sentence(&f.message)),
            };
            if let Some(c) = &f.commit {
                text.push_str(&format!(" in commit {}", &c[..c.len().min(12)]));
            }
            text.push_str(". ");
            text.push_str(&f.message);
            json!({
                "ruleId": f.rule,
                "ruleIndex": index[f.rule.as_str()],
                "level": level(f.severity),
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&f.path), "uriBaseId": "%SRCROOT%" },
                        "region": {
                            "startLine": f.line.max(1),
                            "startColumn": f.column.max(1),
                            "endLine": end_line.max(f.line.max(1)),
                            "endColumn": end_column.max(1),
                        },
                    },
                }],
                "partialFingerprints": { "guard/v1": f.fingerprint },
                "properties": { "commit": f.commit },
            })
        })
        .collect();
    for m in report.soundness_misses() {
        let Some(&i) = index.get(SOUNDNESS_MISS) else {
            continue;
        };
        results.push(json!({
            "ruleId": SOUNDNESS_MISS,
            "ruleIndex": i,
            "level": "warning",
            "message": { "text": format!("{} (nix's chain: {})", m.message, m.chain.join(" -> ")) },
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": { "uri": uri(&m.path), "uriBaseId": "%SRCROOT%" },
                    "region": { "startLine": 1, "startColumn": 1, "endLine": 1, "endColumn": 2 },
                },
            }],
            "partialFingerprints": { "guard/v1": format!("{SOUNDNESS_MISS}:{}:{}", m.host, m.path) },
            "properties": { "host": m.host, "chain": m.chain },
        }));
    }
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "guard",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules_json,
                },
            },
            "columnKind": "unicodeCodePoints",
            "automationDetails": { "id": "guard/scan/" },
            "results": results,
        }],
    });
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
    writeln!(out)
}

/// `wireguard-private-key` -> `WireguardPrivateKey` (SARIF `name`).
fn camel(id: &str) -> String {
    id.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn first_sentence(m: &str) -> &str {
    m.split(". ").next().unwrap_or(m).trim_end_matches('.')
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Repository-relative path as a URI reference: `/` separators, reserved
/// characters percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Findings, Redacted};

    #[test]
    fn sarif_has_the_fields_code_scanning_requires() {
        let f = Finding {
            rule: "nix-password".into(),
            severity: Severity::Error,
            path: "machines/a b/default.nix".into(),
            line: 3,
            column: 17,
            commit: None,
            secret: Redacted::new("hunter2-but-longer-value"),
            fingerprint: "00ff".into(),
            message: "Nix attribute bound to a plaintext string. Fix: move it.".into(),
            end: Some(crate::report::RegionEnd {
                line: 3,
                column: 29,
            }),
        };
        let report = Report {
            scan: Some(Findings {
                findings: vec![f],
                ..Default::default()
            }),
            ..Default::default()
        };
        let rules = Rules {
            self_check: Vec::new(),
            scan: vec![RuleInfo {
                id: "nix-password".into(),
                title: "t".into(),
                description: "d".into(),
                help: "h".into(),
                severity: Severity::Error,
            }],
            ..Default::default()
        };
        let mut buf = Vec::new();
        write_sarif(&report, &rules, &mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["version"], "2.1.0");
        let run = &v["runs"][0];
        assert_eq!(run["tool"]["driver"]["rules"][0]["id"], "nix-password");
        assert_eq!(run["tool"]["driver"]["rules"][0]["help"]["text"], "h");
        let r = &run["results"][0];
        assert_eq!(r["ruleId"], "nix-password");
        assert_eq!(r["level"], "error");
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "machines/a%20b/default.nix");
        assert_eq!(loc["region"]["startLine"], 3);
        assert_eq!(loc["region"]["startColumn"], 17);
        assert_eq!(loc["region"]["endColumn"], 29);
        assert_eq!(r["partialFingerprints"]["guard/v1"], "00ff");
        assert!(
            r["message"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Nix attribute")
        );
        assert!(!String::from_utf8(buf).unwrap().contains("hunter2-but"));
    }

    #[test]
    fn unknown_rules_get_a_description() {
        let f = Finding {
            rule: "age-plaintext".into(),
            severity: Severity::Warning,
            path: "secrets/x.age".into(),
            line: 1,
            column: 1,
            commit: Some("abc".into()),
            secret: Redacted::new(""),
            fingerprint: "1".into(),
            message: "m".into(),
            end: None,
        };
        let report = Report {
            secrets: Some(Findings {
                findings: vec![f],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut buf = Vec::new();
        write_sarif(&report, &Rules::default(), &mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        let rule = &v["runs"][0]["tool"]["driver"]["rules"][0];
        assert_eq!(rule["id"], "age-plaintext");
        assert!(!rule["fullDescription"]["text"].as_str().unwrap().is_empty());
        assert_eq!(v["runs"][0]["results"][0]["level"], "warning");
        assert_eq!(
            v["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["endColumn"],
            2
        );
    }

    #[test]
    fn rules_come_from_the_registry_of_the_sections_present() {
        let info = |id: &str| RuleInfo {
            id: id.into(),
            title: format!("{id} title"),
            description: "d".into(),
            help: "h".into(),
            severity: Severity::Error,
        };
        let rules = Rules {
            self_check: Vec::new(),
            scan: vec![info("nix-password"), info("age-secret-key")],
            secrets: vec![info("age-plaintext"), info("age-secret-key")],
            policy: vec![info("forbidden-input")],
        };
        let report = Report {
            secrets: Some(Findings::default()),
            ..Default::default()
        };
        let mut buf = Vec::new();
        write_sarif(&report, &rules, &mut buf).unwrap();
        let v: Value = serde_json::from_slice(&buf).unwrap();
        let ids: Vec<&str> = v["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["age-plaintext", "age-secret-key"]);
        assert_eq!(
            v["runs"][0]["tool"]["driver"]["rules"][0]["shortDescription"]["text"],
            "age-plaintext title"
        );
    }
}

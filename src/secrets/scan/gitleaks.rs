//! Reading a user's gitleaks configuration (`[secrets] gitleaks_config`)
//! and `.gitleaksignore`, so that a repository migrating from gitleaks keeps
//! its own rules and accepted findings.
//!
//! What is taken over: `[[rules]]` (`id`, `description`, `regex`,
//! `secretGroup`, `entropy`, `keywords`, `path`, and each rule's
//! `allowlist`/`allowlists` `regexes`, `paths`, `stopwords`), the global
//! `[allowlist]`/`[[allowlists]]` (`regexes`, `paths`, `stopwords`), and
//! `.gitleaksignore` entries (`[commit:]path:rule:line`), which accept any
//! finding at that path and line (gitleaks' rule ids are not guard's).
//! Rules get the id `gitleaks-<id>`; guard's own rules stay on (gitleaks'
//! `[extend] useDefault` is what guard's built-in rules are). Allowlists
//! that match the whole line (`regexTarget = "line"`) are applied to the
//! secret only, and `commits` allowlists are ignored; both are reported.

use std::path::Path;

use serde::Deserialize;

/// A rule imported from gitleaks.
#[derive(Debug, Clone)]
pub(crate) struct ImportedRule {
    /// `gitleaks-<id>`.
    pub id: String,
    pub description: String,
    /// Rules with only a `path` have no regex: they flag the file itself.
    pub regex: Option<String>,
    pub secret_group: usize,
    pub entropy: Option<f64>,
    pub keywords: Vec<String>,
    pub path: Option<String>,
    pub allow_regexes: Vec<String>,
    pub allow_paths: Vec<String>,
    pub stopwords: Vec<String>,
}

/// One accepted finding of `.gitleaksignore`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct IgnoreEntry {
    pub commit: Option<String>,
    pub path: String,
    pub line: usize,
}

/// Everything taken from the gitleaks files.
#[derive(Debug, Clone, Default)]
pub(crate) struct Imported {
    pub rules: Vec<ImportedRule>,
    pub allow_regexes: Vec<String>,
    pub allow_paths: Vec<String>,
    pub stopwords: Vec<String>,
    pub ignore: Vec<IgnoreEntry>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct File {
    rules: Vec<RuleFile>,
    allowlist: Option<AllowFile>,
    allowlists: Vec<AllowFile>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RuleFile {
    id: String,
    description: String,
    regex: Option<String>,
    secret_group: usize,
    entropy: Option<f64>,
    keywords: Vec<String>,
    path: Option<String>,
    allowlist: Option<AllowFile>,
    allowlists: Vec<AllowFile>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AllowFile {
    regexes: Vec<String>,
    paths: Vec<String>,
    stopwords: Vec<String>,
    regex_target: Option<String>,
    commits: Vec<String>,
}

/// Parses a gitleaks configuration (TOML) and, if given, `.gitleaksignore`.
pub(crate) fn import(
    config_path: &Path,
    config: &str,
    ignore: Option<(&Path, &str)>,
) -> Result<Imported, String> {
    let file: File = toml::from_str(config).map_err(|e| {
        format!(
            "{}: not a gitleaks configuration: {e}",
            config_path.display()
        )
    })?;
    let mut out = Imported::default();
    for a in file.allowlist.iter().chain(&file.allowlists) {
        check_allow(config_path, "[allowlist]", a)?;
        out.allow_regexes.extend(a.regexes.iter().cloned());
        out.allow_paths.extend(a.paths.iter().cloned());
        out.stopwords
            .extend(a.stopwords.iter().map(|s| s.to_ascii_lowercase()));
    }
    for r in file.rules {
        if r.id.is_empty() {
            return Err(format!(
                "{}: a [[rules]] entry has no id",
                config_path.display()
            ));
        }
        if r.regex.is_none() && r.path.is_none() {
            return Err(format!(
                "{}: rule {:?} has neither a regex nor a path",
                config_path.display(),
                r.id
            ));
        }
        let mut rule = ImportedRule {
            id: format!("gitleaks-{}", r.id),
            description: if r.description.is_empty() {
                format!("gitleaks rule {}", r.id)
            } else {
                r.description.clone()
            },
            regex: r.regex.clone(),
            secret_group: r.secret_group,
            entropy: r.entropy,
            keywords: r.keywords.iter().map(|k| k.to_ascii_lowercase()).collect(),
            path: r.path.clone(),
            allow_regexes: Vec::new(),
            allow_paths: Vec::new(),
            stopwords: Vec::new(),
        };
        for a in r.allowlist.iter().chain(&r.allowlists) {
            check_allow(config_path, &r.id, a)?;
            rule.allow_regexes.extend(a.regexes.iter().cloned());
            rule.allow_paths.extend(a.paths.iter().cloned());
            rule.stopwords
                .extend(a.stopwords.iter().map(|s| s.to_ascii_lowercase()));
        }
        out.rules.push(rule);
    }
    if let Some((path, text)) = ignore {
        out.ignore = parse_ignore(path, text)?;
    }
    Ok(out)
}

/// Allowlist features guard does not take over are an error rather than a
/// silent difference: a user migrating must know.
fn check_allow(path: &Path, what: &str, a: &AllowFile) -> Result<(), String> {
    if a.regex_target.as_deref().is_some_and(|t| t != "secret") {
        return Err(format!(
            "{}: {what}: regexTarget = {:?} is not supported by guard (only the secret); \
             rewrite the regexes to match the secret",
            path.display(),
            a.regex_target.as_deref().unwrap_or_default()
        ));
    }
    if !a.commits.is_empty() {
        return Err(format!(
            "{}: {what}: `commits` allowlists are not supported by guard; accept those \
             findings with `guard scan --write-baseline`",
            path.display()
        ));
    }
    Ok(())
}

/// `.gitleaksignore`: one fingerprint per line, `commit:path:rule:line` or
/// `path:rule:line`; `#` comments and blank lines are skipped.
pub(crate) fn parse_ignore(path: &Path, text: &str) -> Result<Vec<IgnoreEntry>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let bad = || {
            format!(
                "{}:{}: not a gitleaks fingerprint: {l:?}",
                path.display(),
                i + 1
            )
        };
        let mut parts = l.rsplitn(3, ':');
        let (Some(line), Some(_rule), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let line: usize = line.parse().map_err(|_| bad())?;
        let (commit, file) = match rest.split_once(':') {
            Some((c, f)) if c.len() >= 7 && c.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (Some(c.to_ascii_lowercase()), f)
            }
            _ => (None, rest),
        };
        out.push(IgnoreEntry {
            commit,
            path: file.to_string(),
            line,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gitleaks_configuration_is_imported() {
        let cfg = r#"
title = "acme"
[extend]
useDefault = true

[allowlist]
paths = ['''^vendor/''']
regexes = ['''^EXAMPLE''']
stopwords = ["Dummy"]

[[rules]]
id = "acme-key"
description = "ACME internal key"
regex = '''acme_(?:key)[=: ]+([a-z0-9]{24})'''
secretGroup = 1
entropy = 3.0
keywords = ["ACME_"]
[rules.allowlist]
stopwords = ["testkey"]

[[rules]]
id = "pem-file"
path = '''\.pem$'''
"#;
        let ign = "# accepted\nabc1234def5678abc1234def5678abc1234def567:hosts/a.env:acme-key:3\nnotes/x.txt:generic-api-key:12\n";
        let got = import(
            Path::new(".gitleaks.toml"),
            cfg,
            Some((Path::new(".gitleaksignore"), ign)),
        )
        .unwrap();
        assert_eq!(got.rules.len(), 2);
        let r = &got.rules[0];
        assert_eq!(r.id, "gitleaks-acme-key");
        assert_eq!(r.secret_group, 1);
        assert_eq!(r.entropy, Some(3.0));
        assert_eq!(r.keywords, ["acme_"]);
        assert_eq!(r.stopwords, ["testkey"]);
        assert_eq!(got.rules[1].regex, None);
        assert_eq!(got.allow_paths, ["^vendor/"]);
        assert_eq!(got.stopwords, ["dummy"]);
        assert_eq!(
            got.ignore,
            [
                IgnoreEntry {
                    commit: Some("abc1234def5678abc1234def5678abc1234def567".into()),
                    path: "hosts/a.env".into(),
                    line: 3
                },
                IgnoreEntry {
                    commit: None,
                    path: "notes/x.txt".into(),
                    line: 12
                },
            ]
        );
    }

    #[test]
    fn what_guard_cannot_honour_is_an_error() {
        for bad in [
            "[[rules]]\ndescription = \"x\"\nregex = 'a'\n",
            "[[rules]]\nid = \"x\"\n",
            "[allowlist]\nregexTarget = \"line\"\nregexes = ['x']\n",
            "[allowlist]\ncommits = [\"abc\"]\n",
            "rules = 3\n",
        ] {
            assert!(import(Path::new("g.toml"), bad, None).is_err(), "{bad}");
        }
        assert!(parse_ignore(Path::new("i"), "just-a-path\n").is_err());
        assert!(parse_ignore(Path::new("i"), "a:b:notanumber\n").is_err());
    }
}

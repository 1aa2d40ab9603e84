//! Plaintext secret detection (`guard scan`): built-in and user rules, a
//! keyword prefilter, Nix-aware attribute rules, allowlists and baselines.
//!
//! # How a blob is scanned
//!
//! 1. Content sniffing: a NUL byte in the first 8 KiB means binary (skipped,
//!    counted by the callers); age ciphertext (binary or armored) is skipped
//!    because it is, by construction, not plaintext.
//! 2. One Aho-Corasick automaton holds the keywords of every rule
//!    (case-insensitive). Each line holding a keyword gets the union of the
//!    rules its keywords belong to; only those rules' regexes run, and only on
//!    that line. No allocation happens per line unless a rule matches.
//! 3. `.nix` files whose keywords hit are parsed with rnix for the
//!    `nix-password` rule (see `nix.rs`): parsing is the expensive step, so
//!    files without a secret-ish word are never parsed.
//! 4. Overlapping findings keep the most specific rule; `guard:allow`
//!    comments, `[secrets.allow]` and the baseline drop what was accepted.
//!
//! [`Scanner`] is built once and is `Send + Sync`; the mode drivers in
//! [`run`] scan many blobs from rayon's threads with it.

mod gitleaks;
mod nix;
mod providers;
pub(crate) mod rules;
pub mod run;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::bytes::{Captures, Regex, RegexBuilder};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::report::{Finding, Redacted, RuleInfo, Severity};
use rules::{Check, Kind, RuleDef};

/// Files larger than this are scanned by the line rules only (the Nix AST
/// pass is skipped, with a warning from the drivers); files on disk larger
/// than this are read in chunks of this size.
pub const HUGE_FILE: usize = 8 * 1024 * 1024;

/// Bytes looked at for a NUL when deciding whether a file is binary.
pub const SNIFF_LEN: usize = 8 * 1024;

/// Most rules (built-in + user) one scanner can hold: the per-line rule set
/// is a fixed-size bit set, so the hot loop never allocates.
const MAX_RULES: usize = 256;

/// Errors building a [`Scanner`] or loading a baseline.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A user rule's (or allow-list) regex does not compile.
    #[error("secrets: regex of {what} does not compile: {message}")]
    BadRegex { what: String, message: String },
    /// A rule id that does not exist (in `disable`, `severity`, or a
    /// `with_rules` call).
    #[error("secrets: unknown rule id {id:?} in {context}")]
    UnknownRule { id: String, context: String },
    /// A user rule reuses a built-in or another user rule's id.
    #[error("secrets.rules: rule id {id:?} is already taken")]
    DuplicateRule { id: String },
    /// A glob in `[secrets.allow] paths` is invalid.
    #[error("secrets.allow.paths: invalid glob {glob:?}: {message}")]
    BadGlob { glob: String, message: String },
    /// A severity that is not error, warning or info.
    #[error("secrets.severity.{id}: severity must be error, warning or info, not {value:?}")]
    BadSeverity { id: String, value: String },
    /// More rules than the scanner supports.
    #[error("secrets: too many rules ({count}); at most {max} are supported")]
    TooManyRules { count: usize, max: usize },
    /// `[secrets] gitleaks_config` (or `.gitleaksignore`) cannot be used.
    #[error("secrets.gitleaks_config: {message}")]
    Gitleaks { message: String },
    /// The baseline file exists but cannot be read or parsed.
    #[error("baseline {}: {message}", path.display())]
    Baseline { path: PathBuf, message: String },
}

/// What a blob's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Scanned.
    Text,
    /// A NUL byte in the first 8 KiB: skipped.
    Binary,
    /// age ciphertext (binary or armored): skipped, it is not plaintext.
    AgeCiphertext,
}

/// Sniffs a blob.
pub fn classify_content(bytes: &[u8]) -> Content {
    if bytes.starts_with(b"age-encryption.org/")
        || bytes
            .trim_ascii_start()
            .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
    {
        return Content::AgeCiphertext;
    }
    if memchr::memchr(0, &bytes[..bytes.len().min(SNIFF_LEN)]).is_some() {
        return Content::Binary;
    }
    Content::Text
}

/// What [`Scanner::scan_file`] found in one file.
#[derive(Debug, Default)]
pub struct FileScan {
    pub located: Vec<Located>,
    /// A `.nix` file guard parsed that is not valid Nix.
    pub nix_parse_failed: bool,
}

/// A finding with the end of its region (for SARIF), 1-based like the start.
#[derive(Debug, Clone)]
pub struct Located {
    pub finding: Finding,
    pub end_line: usize,
    /// The column after the last character of the secret.
    pub end_column: usize,
}

/// Fixed-size rule bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mask([u64; MAX_RULES / 64]);

impl Mask {
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn or(&mut self, o: &Mask) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a |= b;
        }
    }
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &bits)| {
            let mut b = bits;
            std::iter::from_fn(move || {
                if b == 0 {
                    return None;
                }
                let t = b.trailing_zeros() as usize;
                b &= b - 1;
                Some(w * 64 + t)
            })
        })
    }
}

/// A compiled rule.
#[derive(Debug)]
struct Rule {
    id: String,
    severity: Severity,
    /// `[secrets.severity]` names this rule: the path context (fixtures,
    /// documentation) does not lower it.
    configured: bool,
    kind: Kind,
    regex: RuleRegex,
    check: Check,
    priority: u8,
    /// Index into `Scanner::meta`.
    meta: usize,
    /// What a rule imported from gitleaks adds to its regex.
    extra: Option<Box<Extra>>,
}

/// The parts of a gitleaks rule beyond its regex and keywords.
#[derive(Debug)]
struct Extra {
    /// `secretGroup` (0: group 1 if the regex has one, else the match).
    group: usize,
    min_entropy: Option<f64>,
    /// The rule applies only to paths matching this.
    path: Option<Regex>,
    allow: Vec<Regex>,
    allow_paths: Vec<Regex>,
    stopwords: Vec<String>,
}

/// A rule's regex: user rules compile when the scanner is built (a bad one
/// is a configuration error), built-in ones on first use.
#[derive(Debug)]
enum RuleRegex {
    None,
    Ready(Regex),
    Lazy(&'static str, std::sync::OnceLock<Regex>),
}

impl RuleRegex {
    fn get(&self) -> Option<&Regex> {
        match self {
            RuleRegex::None => None,
            RuleRegex::Ready(r) => Some(r),
            RuleRegex::Lazy(pattern, cell) => Some(cell.get_or_init(|| {
                RegexBuilder::new(pattern)
                    .unicode(false)
                    .build()
                    .unwrap_or_else(|e| panic!("built-in scan pattern does not compile: {e}"))
            })),
        }
    }
}

/// Texts of one rule id.
#[derive(Debug, Clone)]
struct Meta {
    id: String,
    severity: Severity,
    title: String,
    description: String,
    fix: String,
}

/// A match before it becomes a finding: byte offsets into the blob.
#[derive(Debug, Clone, Copy)]
struct Hit {
    rule: usize,
    start: usize,
    end: usize,
}

/// The plaintext-secret scanner: built once from the configuration, then
/// used from many threads (`Send + Sync`).
pub struct Scanner {
    rules: Vec<Rule>,
    meta: Vec<Meta>,
    prefilter: Option<AhoCorasick>,
    /// The prefilter's keywords (lowercase), for [`Scanner::content_key`].
    keywords: Vec<String>,
    /// Rules each prefilter pattern belongs to.
    pattern_rules: Vec<Mask>,
    /// Rules run over the whole file (user rules without keywords).
    file_rules: Vec<usize>,
    wg_rule: Option<usize>,
    hashed_rule: Option<usize>,
    /// Pre-parse gate of the Nix rule (see `wants_nix`).
    nix_gate: Regex,
    allow_paths: globset::GlobSet,
    allow_regexes: Vec<Regex>,
    allow_fingerprints: HashSet<String>,
    baseline: HashSet<String>,
    /// gitleaks rules with only a `path`: they flag matching files.
    path_rules: Vec<usize>,
    /// gitleaks allowlist `paths` (regexes over the path).
    allow_path_regexes: Vec<Regex>,
    /// gitleaks allowlist `stopwords` (lowercase): a secret containing one
    /// is accepted.
    stopwords: Vec<String>,
    /// `.gitleaksignore`: (commit, path, line) of accepted findings.
    allow_locations: HashSet<(Option<String>, String, usize)>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field(
                "rules",
                &self.meta.iter().map(|m| &m.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `[secrets.allow] paths` as one glob set (`*` crosses `/`).
fn allow_globs(paths: &[String]) -> Result<globset::GlobSet, ScanError> {
    let mut globs = globset::GlobSetBuilder::new();
    for g in paths {
        let glob = globset::GlobBuilder::new(g)
            .literal_separator(false)
            .build()
            .map_err(|e| ScanError::BadGlob {
                glob: g.clone(),
                message: e.to_string(),
            })?;
        globs.add(glob);
    }
    globs.build().map_err(|e| ScanError::BadGlob {
        glob: paths.join(", "),
        message: e.to_string(),
    })
}

/// Compiles each regex; an error names `what` and the regex.
fn compile_all<'a>(
    regexes: impl Iterator<Item = &'a String>,
    what: &str,
) -> Result<Vec<Regex>, ScanError> {
    regexes
        .map(|r| {
            Regex::new(r).map_err(|e| ScanError::BadRegex {
                what: format!("{what} {r:?}"),
                message: one_line(&e.to_string()),
            })
        })
        .collect()
}

/// The rules of `[[secrets.rules]]`, compiled; an id already in `seen`
/// (a built-in rule, or given twice) is an error.
fn config_rules(
    sc: &crate::config::SecretsConfig,
    seen: &mut HashSet<String>,
) -> Result<Vec<UserRule>, ScanError> {
    let mut user: Vec<UserRule> = Vec::new();
    for r in &sc.rules {
        if !seen.insert(r.id.clone()) {
            return Err(ScanError::DuplicateRule { id: r.id.clone() });
        }
        let regex = RegexBuilder::new(&r.regex)
            .size_limit(1 << 22)
            .build()
            .map_err(|e| ScanError::BadRegex {
                what: format!("secrets.rules {}", r.id),
                message: one_line(&e.to_string()),
            })?;
        user.push(UserRule {
            id: r.id.clone(),
            severity: parse_severity(&r.id, &r.severity)?,
            description: if r.description.is_empty() {
                format!("user rule {}", r.id)
            } else {
                r.description.clone()
            },
            keywords: r
                .keywords
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| k.to_ascii_lowercase())
                .collect(),
            regex: Some(regex),
            extra: None,
        });
    }
    Ok(user)
}

/// The rules and allow-lists of a user's gitleaks configuration
/// (`[secrets] gitleaks_config`), compiled into `user`; returns what was
/// imported, for its global allow-lists.
fn gitleaks_rules(
    files: &crate::config::GitleaksFiles,
    seen: &mut HashSet<String>,
    user: &mut Vec<UserRule>,
) -> Result<gitleaks::Imported, ScanError> {
    let imported = gitleaks::import(
        &files.config_path,
        &files.config,
        files
            .ignore
            .as_ref()
            .map(|(p, t)| (p.as_path(), t.as_str())),
    )
    .map_err(|message| ScanError::Gitleaks { message })?;
    let re = |what: &str, r: &str| {
        RegexBuilder::new(r)
            .size_limit(1 << 22)
            .build()
            .map_err(|e| ScanError::BadRegex {
                what: format!("gitleaks {what}"),
                message: one_line(&e.to_string()),
            })
    };
    for r in &imported.rules {
        if !seen.insert(r.id.clone()) {
            return Err(ScanError::DuplicateRule { id: r.id.clone() });
        }
        let all = |v: &[String], what: &str| -> Result<Vec<Regex>, ScanError> {
            v.iter()
                .map(|x| re(&format!("{} {what}", r.id), x))
                .collect()
        };
        user.push(UserRule {
            id: r.id.clone(),
            severity: Severity::Error,
            description: r.description.clone(),
            keywords: r.keywords.clone(),
            regex: r.regex.as_deref().map(|x| re(&r.id, x)).transpose()?,
            extra: Some(Box::new(Extra {
                group: r.secret_group,
                min_entropy: r.entropy,
                path: r.path.as_deref().map(|x| re(&r.id, x)).transpose()?,
                allow: all(&r.allow_regexes, "allowlist regex")?,
                allow_paths: all(&r.allow_paths, "allowlist path")?,
                stopwords: r.stopwords.clone(),
            })),
        });
    }
    Ok(imported)
}

impl Scanner {
    /// Built-in rules (minus `[secrets] disable`) plus `[[secrets.rules]]`,
    /// with `[secrets.severity]` overrides and `[secrets.allow]` applied.
    pub fn new(config: &Config) -> Result<Scanner, ScanError> {
        Scanner::build(config, None)
    }

    /// Only the rules with these ids (built-in or user), e.g. the key
    /// material rules for `guard secrets`. Allow-lists still apply.
    pub fn with_rules(config: &Config, ids: &[&str]) -> Result<Scanner, ScanError> {
        Scanner::build(config, Some(ids))
    }

    /// Drops findings whose fingerprint is in `baseline` from now on.
    pub fn with_baseline(mut self, baseline: &Baseline) -> Scanner {
        self.baseline = baseline.fingerprints.clone();
        self
    }

    fn build(config: &Config, only: Option<&[&str]>) -> Result<Scanner, ScanError> {
        let sc = &config.secrets;
        let all_builtin = || rules::BUILTIN.iter().chain(providers::PROVIDERS);
        let mut defs: Vec<RuleDef> = all_builtin().copied().collect();
        let builtin_ids: HashSet<&str> = all_builtin().map(|d| d.id).collect();
        for id in &sc.disable {
            if !builtin_ids.contains(id.as_str()) {
                return Err(ScanError::UnknownRule {
                    id: id.clone(),
                    context: "secrets.disable".into(),
                });
            }
        }
        defs.retain(|d| !sc.disable.iter().any(|x| x == d.id));

        let mut seen: HashSet<String> = builtin_ids.iter().map(|s| s.to_string()).collect();
        let mut user = config_rules(sc, &mut seen)?;
        let imported_allow = match &sc.gitleaks {
            Some(files) => gitleaks_rules(files, &mut seen, &mut user)?,
            None => gitleaks::Imported::default(),
        };

        if let Some(ids) = only {
            let all: HashSet<&str> = defs
                .iter()
                .map(|d| d.id)
                .chain(user.iter().map(|u| u.id.as_str()))
                .collect();
            for id in ids {
                if !all.contains(id) {
                    return Err(ScanError::UnknownRule {
                        id: (*id).to_string(),
                        context: "Scanner::with_rules".into(),
                    });
                }
            }
            defs.retain(|d| ids.contains(&d.id));
            user.retain(|u| ids.contains(&u.id.as_str()));
        }

        let count = defs.len() + user.len();
        if count > MAX_RULES {
            return Err(ScanError::TooManyRules {
                count,
                max: MAX_RULES,
            });
        }

        for (id, sev) in &sc.severity {
            if !seen.contains(id) {
                return Err(ScanError::UnknownRule {
                    id: id.clone(),
                    context: "secrets.severity".into(),
                });
            }
            parse_severity(id, sev)?;
        }
        let override_of = |id: &str, default: Severity| -> Severity {
            sc.severity
                .get(id)
                .and_then(|s| parse_severity(id, s).ok())
                .unwrap_or(default)
        };

        let mut rules_out = Vec::with_capacity(count);
        let mut meta: Vec<Meta> = Vec::new();
        let mut meta_index: BTreeMap<String, usize> = BTreeMap::new();
        let mut keywords: Vec<String> = Vec::new();
        let mut keyword_ids: BTreeMap<String, usize> = BTreeMap::new();
        let mut pattern_rules: Vec<Mask> = Vec::new();
        let mut file_rules = Vec::new();
        let mut path_rules = Vec::new();
        let mut add_keyword = |kw: &str, rule: usize, pr: &mut Vec<Mask>| {
            let k = kw.to_ascii_lowercase();
            let idx = *keyword_ids.entry(k.clone()).or_insert_with(|| {
                keywords.push(k);
                pr.push(Mask::default());
                pr.len() - 1
            });
            pr[idx].set(rule);
        };

        for d in &defs {
            let severity = override_of(d.id, d.severity);
            let m = *meta_index.entry(d.id.to_string()).or_insert_with(|| {
                meta.push(Meta {
                    id: d.id.to_string(),
                    severity,
                    title: d.title.to_string(),
                    description: d.description.to_string(),
                    fix: d.fix.to_string(),
                });
                meta.len() - 1
            });
            // Built-in patterns compile on first use: most provider rules
            // never see their keyword in a one-file pre-commit run, and
            // compiling all of them up front would dominate its latency
            // (the unit tests compile every one).
            let regex = if d.pattern.is_empty() {
                RuleRegex::None
            } else {
                RuleRegex::Lazy(d.pattern, std::sync::OnceLock::new())
            };
            let i = rules_out.len();
            for kw in d.keywords {
                add_keyword(kw, i, &mut pattern_rules);
            }
            rules_out.push(Rule {
                id: d.id.to_string(),
                severity,
                configured: sc.severity.contains_key(d.id),
                kind: d.kind,
                regex,
                check: d.check,
                priority: d.priority,
                meta: m,
                extra: None,
            });
        }
        for u in user {
            let severity = override_of(&u.id, u.severity);
            meta.push(Meta {
                id: u.id.clone(),
                severity,
                title: u.description.clone(),
                description: u.description.clone(),
                fix: rules::FIX_SECRIX.to_string(),
            });
            let i = rules_out.len();
            let kind = if u.regex.is_none() {
                path_rules.push(i);
                Kind::File
            } else if u.keywords.is_empty() {
                file_rules.push(i);
                Kind::File
            } else {
                for kw in &u.keywords {
                    add_keyword(kw, i, &mut pattern_rules);
                }
                Kind::Line
            };
            rules_out.push(Rule {
                configured: sc.severity.contains_key(&u.id),
                id: u.id,
                severity,
                kind,
                regex: u.regex.map_or(RuleRegex::None, RuleRegex::Ready),
                check: Check::Plain,
                // User rules are specific by intent.
                priority: 3,
                meta: meta.len() - 1,
                extra: u.extra,
            });
        }

        let prefilter = if keywords.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&keywords)
                    .map_err(|e| ScanError::BadRegex {
                        what: "the keyword prefilter".into(),
                        message: e.to_string(),
                    })?,
            )
        };

        let allow_paths = allow_globs(&sc.allow.paths)?;
        let allow_regexes = compile_all(
            sc.allow.regexes.iter().chain(&imported_allow.allow_regexes),
            "secrets.allow.regexes",
        )?;

        let find = |id: &str| rules_out.iter().position(|r: &Rule| r.id == id);
        let nix_gate = RegexBuilder::new(NIX_GATE)
            .unicode(false)
            .build()
            .map_err(|e| ScanError::BadRegex {
                what: "the Nix gate".into(),
                message: one_line(&e.to_string()),
            })?;
        Ok(Scanner {
            nix_gate,
            wg_rule: find("wireguard-private-key"),
            hashed_rule: find("hashed-password"),
            rules: rules_out,
            meta,
            prefilter,
            keywords,
            pattern_rules,
            file_rules,
            allow_paths,
            allow_regexes,
            allow_fingerprints: sc.allow.fingerprints.iter().cloned().collect(),
            baseline: HashSet::new(),
            path_rules,
            allow_path_regexes: compile_all(
                imported_allow.allow_paths.iter(),
                "gitleaks allowlist path",
            )?,
            stopwords: imported_allow.stopwords,
            allow_locations: imported_allow
                .ignore
                .into_iter()
                .map(|e| (e.commit, e.path, e.line))
                .collect(),
        })
    }

    /// Whether a finding can come out of `bytes` at some path: the content
    /// is text and one of the rules' keywords occurs in it, or a rule reads
    /// whole files or flags paths. When false, [`Scanner::scan_bytes`] finds
    /// nothing in these bytes at any path (so a blob id may be cached as
    /// clean under [`Scanner::content_key`]).
    pub fn content_may_match(&self, bytes: &[u8]) -> bool {
        if !self.file_rules.is_empty() || !self.path_rules.is_empty() {
            return true;
        }
        classify_content(bytes) == Content::Text
            && self.prefilter.as_ref().is_some_and(|ac| ac.is_match(bytes))
    }

    /// What [`Scanner::content_may_match`] depends on: the keywords, and
    /// whether whole-file or path rules exist.
    pub fn content_key(&self) -> String {
        let mut k = self.keywords.clone();
        k.sort();
        format!(
            "{}|{}|{}",
            k.join(","),
            self.file_rules.len(),
            self.path_rules.len()
        )
    }

    /// Ids of the active rules, in rule order, without duplicates.
    pub fn rule_ids(&self) -> Vec<&str> {
        self.meta.iter().map(|m| m.id.as_str()).collect()
    }

    /// Descriptions of the active rules (for SARIF `tool.driver.rules`).
    pub fn rule_infos(&self) -> Vec<RuleInfo> {
        self.meta
            .iter()
            .map(|m| RuleInfo {
                id: m.id.clone(),
                title: m.title.clone(),
                description: m.description.clone(),
                help: format!("Fix: {}. {}", m.fix, ALLOW_HINT),
                severity: m.severity,
            })
            .collect()
    }

    /// Whether `[secrets.allow] paths` excludes this repository path.
    pub fn path_allowed(&self, path: &str) -> bool {
        self.allow_paths.is_match(path)
            || self
                .allow_path_regexes
                .iter()
                .any(|r| r.is_match(path.as_bytes()))
    }

    /// Scans one blob. `path` is the repository-relative path (it decides
    /// whether the Nix rule applies and goes into the fingerprint); `line` and
    /// `column` of the findings are 1-based positions in `bytes`. Binary
    /// files and age ciphertext give no findings. `guard:allow`,
    /// `[secrets.allow]` and an attached baseline are applied. The secret
    /// itself only ever leaves as [`Redacted`].
    pub fn scan_bytes(&self, path: &str, bytes: &[u8], commit: Option<&str>) -> Vec<Finding> {
        self.scan_located(path, bytes, commit, 0, None)
            .into_iter()
            .map(|l| l.finding)
            .collect()
    }

    /// [`Scanner::scan_bytes`] with the end of each region. `line_base` is
    /// added to every line number (chunked files); `keep_line`, when given,
    /// keeps only findings starting on lines it accepts (added lines).
    pub fn scan_located(
        &self,
        path: &str,
        bytes: &[u8],
        commit: Option<&str>,
        line_base: usize,
        keep_line: Option<&dyn Fn(usize) -> bool>,
    ) -> Vec<Located> {
        self.scan_file(path, bytes, commit, line_base, keep_line)
            .located
    }

    /// [`Scanner::scan_located`], also saying whether a `.nix` file that
    /// was parsed did not parse (its bindings were then read by the line
    /// rules, so a password in a broken file is still found).
    pub fn scan_file(
        &self,
        path: &str,
        bytes: &[u8],
        commit: Option<&str>,
        line_base: usize,
        keep_line: Option<&dyn Fn(usize) -> bool>,
    ) -> FileScan {
        if self.path_allowed(path) || classify_content(bytes) != Content::Text {
            return FileScan::default();
        }
        let mut nix_parse_failed = false;
        let hits = self.hits_noting(path, bytes, &mut nix_parse_failed);
        let located = if hits.is_empty() {
            Vec::new()
        } else {
            self.locate(path, bytes, commit, line_base, keep_line, hits)
        };
        FileScan {
            located,
            nix_parse_failed,
        }
    }

    /// Every raw match in a text blob, overlaps resolved.
    #[cfg(test)]
    fn hits(&self, path: &str, bytes: &[u8]) -> Vec<Hit> {
        self.hits_noting(path, bytes, &mut false)
    }

    /// [`Scanner::hits`]; sets `nix_parse_failed` when a `.nix` file was
    /// parsed and is not Nix (neither as a file nor as a list of bindings).
    fn hits_noting(&self, path: &str, bytes: &[u8], nix_parse_failed: &mut bool) -> Vec<Hit> {
        let lock = is_lock_file(path);
        // Lock files are generated: no attribute in them is a secret
        // assignment (the name-based rules would read package names such as
        // `minipass` and integrity hashes); tokens of a known shape and
        // credentials in URLs are still looked for.
        let is_nix = path.ends_with(".nix") && !lock;
        let mut hits = Vec::new();
        let mut nix_needed = false;
        // Matches in .nix files that count only inside a string literal:
        // (start of the name, hit).
        let mut pending: Vec<(usize, Hit)> = Vec::new();
        if let Some(ac) = &self.prefilter {
            let mut have = false;
            let (mut line_start, mut line_end) = (0usize, 0usize);
            let mut mask = Mask::default();
            for m in ac.find_overlapping_iter(bytes) {
                let s = m.start();
                if have && s < line_end {
                    mask.or(&self.pattern_rules[m.pattern().as_usize()]);
                    continue;
                }
                if have {
                    self.run_line(
                        path,
                        bytes,
                        line_start,
                        line_end,
                        &mask,
                        is_nix,
                        &mut hits,
                        &mut pending,
                    );
                    nix_needed =
                        nix_needed || self.wants_nix(&mask, is_nix, &bytes[line_start..line_end]);
                }
                // Hits come in offset order, so the line start lies between
                // the end of the previous line and this match.
                let lo = if have { line_end } else { 0 };
                line_start = memchr::memrchr(b'\n', &bytes[lo..s]).map_or(lo, |p| lo + p + 1);
                line_end =
                    memchr::memchr(b'\n', &bytes[m.end()..]).map_or(bytes.len(), |p| m.end() + p);
                mask = self.pattern_rules[m.pattern().as_usize()];
                have = true;
            }
            if have {
                self.run_line(
                    path,
                    bytes,
                    line_start,
                    line_end,
                    &mask,
                    is_nix,
                    &mut hits,
                    &mut pending,
                );
                nix_needed =
                    nix_needed || self.wants_nix(&mask, is_nix, &bytes[line_start..line_end]);
            }
        }
        for &i in &self.file_rules {
            if let Some(re) = self.rules[i].regex.get() {
                for caps in re.captures_iter(bytes) {
                    let span = match &self.rules[i].extra {
                        Some(x) => extra_span(x, path, 0, &caps),
                        None => secret_group(&caps),
                    };
                    if let Some((s, e)) = span {
                        hits.push(Hit {
                            rule: i,
                            start: s,
                            end: e,
                        });
                    }
                }
            }
        }
        if (nix_needed || !pending.is_empty())
            && bytes.len() <= HUGE_FILE
            && let Ok(src) = std::str::from_utf8(bytes)
        {
            let parse = rnix::Root::parse(src);
            let parsed = parse.syntax();
            // A file that is not a whole Nix expression (a snippet of
            // bindings, a half-edited module) still commits its secrets:
            // read it again as the body of an attribute set.
            let wrapped = (!parse.errors().is_empty()).then(|| {
                let text = format!("{{{src}\n}}");
                let p = rnix::Root::parse(&text);
                (text, p)
            });
            // Neither a whole expression nor a list of bindings: not Nix.
            let broken = wrapped
                .as_ref()
                .is_some_and(|(_, p)| !p.errors().is_empty());
            *nix_parse_failed = broken;
            if nix_needed {
                self.nix_hits(&parsed, src, &mut hits);
                if let Some((text, p)) = &wrapped {
                    let mut more = Vec::new();
                    self.nix_hits(&p.syntax(), text, &mut more);
                    // Positions shift back by the added `{`.
                    for h in more {
                        let (start, end) = (h.start - 1, h.end - 1);
                        if end <= src.len() && !hits.iter().any(|x| x.start == start) {
                            hits.push(Hit { start, end, ..h });
                        }
                    }
                }
            }
            if !pending.is_empty() {
                let strings = nix::string_ranges(&parsed);
                for (name_start, hit) in pending {
                    let inside = |p: usize| {
                        let i = strings.partition_point(|&(_, e)| e <= p);
                        strings.get(i).is_some_and(|&(s, _)| s <= p)
                    };
                    // A file that is not Nix has no structure to trust:
                    // every `name = "literal"` line counts, as in any
                    // other configuration file.
                    if broken || (inside(name_start) && inside(hit.start)) {
                        hits.push(hit);
                    }
                }
            }
        }
        for &i in &self.path_rules {
            if let Some(x) = &self.rules[i].extra
                && x.path.as_ref().is_some_and(|p| p.is_match(path.as_bytes()))
                && !x.allow_paths.iter().any(|p| p.is_match(path.as_bytes()))
            {
                // The file is the finding: its first line stands for it.
                let end = memchr::memchr(b'\n', bytes).unwrap_or(bytes.len()).max(1);
                hits.push(Hit {
                    rule: i,
                    start: 0,
                    end: end.min(bytes.len().max(1)),
                });
            }
        }
        self.bare_key_file(path, bytes, &mut hits);
        resolve_overlaps(&self.rules, hits)
    }

    /// Whether a keyword line of a `.nix` file may bind a secret-named
    /// attribute to a literal, so that the file is worth parsing: a name
    /// the suffix lists call secret, followed by `=` and a string that is
    /// not visibly a reference or placeholder (or a value that continues on
    /// the next lines, a list, a `mkForce …`). Parsing is the expensive step;
    /// `passwordFile = config…` and `secrix.…secrets.x.encrypted.file = …`
    /// never get there.
    fn wants_nix(&self, mask: &Mask, is_nix: bool, line: &[u8]) -> bool {
        if !is_nix || !mask.iter().any(|i| self.rules[i].kind == Kind::NixAst) {
            return false;
        }
        let mut at = 0;
        while at < line.len() {
            let Some(m) = self.nix_gate.find_at(line, at) else {
                return false;
            };
            at = m.end().max(m.start() + 1);
            let Some(caps) = self.nix_gate.captures_at(line, m.start()) else {
                continue;
            };
            let name = caps.name("n").map_or(&b""[..], |n| n.as_bytes());
            if rules::classify_name(name) == rules::NameClass::Other {
                continue;
            }
            let Some(v) = caps.name("v") else { continue };
            if v.as_bytes() != b"\"" {
                return true;
            }
            let rest = &line[v.end()..];
            let Some(close) = closing_quote(rest) else {
                return true;
            };
            let lit = &rest[..close];
            if memchr::memmem::find(lit, b"${").is_some()
                || rules::is_placeholder_or_reference(lit)
                || rules::looks_public_or_digest(lit, false)
            {
                continue;
            }
            return true;
        }
        false
    }

    fn nix_hits(&self, root: &rnix::SyntaxNode, src: &str, hits: &mut Vec<Hit>) {
        let Some(nix_rule) = self.rules.iter().position(|r| r.kind == Kind::NixAst) else {
            return;
        };
        for h in nix::scan_tree(root, src) {
            let rule = match h.kind {
                nix::NixHitKind::Secret => Some(nix_rule),
                nix::NixHitKind::WireguardKey => self.wg_rule.or(Some(nix_rule)),
                nix::NixHitKind::Hashed => self.hashed_rule,
            };
            if let Some(rule) = rule {
                hits.push(Hit {
                    rule,
                    start: h.start,
                    end: h.end,
                });
            }
        }
    }

    /// A file that is nothing but a WireGuard key (`wg genkey > wg.key`),
    /// unless its name says it is the public half.
    fn bare_key_file(&self, path: &str, bytes: &[u8], hits: &mut Vec<Hit>) {
        let Some(rule) = self.wg_rule else { return };
        if bytes.len() > 128 {
            return;
        }
        // The public half, by any part of its path: `wg.pub`, and clan's
        // `vars/per-machine/<m>/<generator>/publickey/value`.
        if path
            .to_ascii_lowercase()
            .split('/')
            .any(|c| c.contains("pub"))
        {
            return;
        }
        let t = bytes.trim_ascii();
        if rules::is_wg_key(t) {
            let start = t.as_ptr() as usize - bytes.as_ptr() as usize;
            hits.push(Hit {
                rule,
                start,
                end: start + t.len(),
            });
        }
    }

    /// Runs the line rules of `mask` on `bytes[start..end]`.
    #[allow(clippy::too_many_arguments)]
    fn run_line(
        &self,
        path: &str,
        bytes: &[u8],
        start: usize,
        end: usize,
        mask: &Mask,
        is_nix: bool,
        hits: &mut Vec<Hit>,
        pending: &mut Vec<(usize, Hit)>,
    ) {
        let line = &bytes[start..end];
        let lock = is_lock_file(path);
        for i in mask.iter() {
            let rule = &self.rules[i];
            if rule.kind != Kind::Line {
                continue;
            }
            if lock
                && matches!(
                    rule.check,
                    Check::SecretName | Check::HighEntropy | Check::NixSigningKey
                )
            {
                continue;
            }
            let Some(re) = rule.regex.get() else { continue };
            // The lazy DFA answers "where is a match" quickly; capture groups
            // (a slower engine) are only resolved for actual matches.
            let mut at = 0;
            while at <= line.len() {
                let Some(m) = re.find_at(line, at) else { break };
                if quick_reject(rule.check, m.as_bytes(), is_nix) {
                    at = m.end().max(m.start() + 1);
                    continue;
                }
                let mut in_string = None;
                if let Some(caps) = re.captures_at(line, m.start())
                    && let Some((s, e)) = self.validate(
                        rule,
                        path,
                        bytes,
                        start,
                        line,
                        &caps,
                        is_nix,
                        &mut in_string,
                    )
                {
                    let hit = Hit {
                        rule: i,
                        start: s,
                        end: e,
                    };
                    match in_string {
                        Some(name_start) => pending.push((name_start, hit)),
                        None => hits.push(hit),
                    }
                }
                at = m.end().max(m.start() + 1);
            }
        }
    }

    /// Decides whether a regex match on a line is a secret; returns the
    /// absolute byte span of the secret.
    #[allow(clippy::too_many_arguments)]
    fn validate(
        &self,
        rule: &Rule,
        path: &str,
        bytes: &[u8],
        line_start: usize,
        line: &[u8],
        caps: &Captures<'_>,
        is_nix: bool,
        in_nix_string: &mut Option<usize>,
    ) -> Option<(usize, usize)> {
        if let Some(x) = &rule.extra {
            let (s, e) = extra_span(x, path, 0, caps)?;
            return Some((line_start + s, line_start + e));
        }
        let (s, e) = secret_group(caps)?;
        // sops `ENC[AES256_GCM,data:…]` and armored age inside a sops JSON
        // file are ciphertext: whatever shape their base64 takes.
        if inside_envelope(line, caps.get(0).map_or(s, |m| m.start())) {
            return None;
        }
        let value = &line[s..e];
        let abs = (line_start + s, line_start + e);
        let name = caps.name("n").map(|m| m.as_bytes()).unwrap_or_default();
        let ok = match rule.check {
            Check::Plain => !rules::is_placeholder_or_reference(value),
            Check::Jwt => rules::is_jwt(value),
            Check::Token => !rules::is_placeholder(value) && rules::entropy(value) >= 3.0,
            Check::AgeKey => {
                if value.starts_with(b"AGE-SECRET-KEY-PQ-") {
                    true
                } else {
                    let key = &value[..value.len().min(74)];
                    if rules::bech32_valid(key) {
                        return Some((abs.0, abs.0 + key.len()));
                    }
                    false
                }
            }
            Check::PemBlock => return pem_block(bytes, line_start + s, line_start + e),
            Check::WgKey => rules::is_wg_key(value) && !rules::is_placeholder(value),
            Check::NixSigningKey => {
                let n = name.to_ascii_lowercase();
                let after = line.get(e).copied();
                !matches!(
                    n.as_slice(),
                    b"sha1" | b"sha256" | b"sha384" | b"sha512" | b"md5" | b"blake3"
                ) && !after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
                    && !rules::is_placeholder(value)
            }
            Check::SecretName => {
                let quoted = caps.name("s").is_some() || caps.name("s2").is_some();
                let literal = quoted || (!looks_like_code(value) && !is_plain_word(value));
                let ok = rules::classify_name(name) == rules::NameClass::Secret
                    && !name.ends_with(b"_unencrypted")
                    && !rules::is_placeholder_or_reference(value)
                    && !rules::looks_public_or_digest(value, false)
                    && !rules::value_is_not_a_credential(name, value)
                    && !name_is_inside_a_value(line, caps)
                    && !is_message(line, caps)
                    && value != name;
                if ok && is_nix {
                    // In Nix code, attribute bindings belong to the AST rule;
                    // this rule is for `KEY=value` text inside strings
                    // (EnvironmentFile contents, INI, wpa_supplicant).
                    let tight = caps.name("sp").is_none_or(|m| m.as_bytes().is_empty());
                    let env_style = name
                        .iter()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
                    if tight && (quoted || env_style) && caps_sep_is_eq(caps) && literal {
                        return Some(abs);
                    }
                    // `key = value` with spaces: only inside a string
                    // literal, which the parser decides (see `hits`).
                    if literal && let Some(n) = caps.name("n") {
                        *in_nix_string = Some(line_start + n.start());
                        return Some(abs);
                    }
                    return None;
                }
                // Scripts (`#!`) are code even without an extension.
                ok && (quoted || (is_config_like(path) && !bytes.starts_with(b"#!") && literal))
            }
            Check::HighEntropy => {
                let quoted = caps.name("s").is_some() || caps.name("s2").is_some();
                let lname = name.to_ascii_lowercase();
                let strong = [&b"secret"[..], b"token", b"passw", b"apikey", b"api_key"]
                    .iter()
                    .any(|w| memchr::memmem::find(&lname, w).is_some());
                (quoted || (!is_nix && is_config_like(path) && !bytes.starts_with(b"#!")))
                    && !rules::name_is_public_or_digest(name)
                    && !rules::is_placeholder_or_reference(value)
                    && !rules::looks_public_or_digest(value, !strong)
                    && !rules::value_is_not_a_credential(name, value)
                    && rules::is_high_entropy(value)
                    && (quoted || !looks_like_code(value))
            }
            Check::BasicAuth => {
                let lower = value.to_ascii_lowercase();
                !rules::is_placeholder_or_reference(value)
                    && !matches!(
                        lower.as_slice(),
                        b"pass" | b"password" | b"passwd" | b"secret" | b"pwd" | b"token"
                    )
                    && !name.starts_with(b"$")
                    && !value.starts_with(b"%")
            }
            Check::CryptHash => nix::is_crypt_hash(value),
            Check::NetrcFile => {
                path.rsplit('/')
                    .next()
                    .is_some_and(|n| n.to_ascii_lowercase().contains("netrc"))
                    && !rules::is_placeholder_or_reference(value)
            }
        };
        ok.then_some(abs)
    }

    /// Turns hits into findings: positions, allow comments, allow-lists,
    /// baseline.
    fn locate(
        &self,
        path: &str,
        bytes: &[u8],
        commit: Option<&str>,
        line_base: usize,
        keep_line: Option<&dyn Fn(usize) -> bool>,
        mut hits: Vec<Hit>,
    ) -> Vec<Located> {
        hits.sort_by_key(|h| h.start);
        let mut out = Vec::new();
        let mut cursor = Cursor::default();
        for h in hits {
            let (line, line_start) = cursor.advance(bytes, h.start);
            if keep_line.is_some_and(|k| !k(line + line_base)) {
                continue;
            }
            let rule = &self.rules[h.rule];
            if allowed_inline(bytes, line_start, &rule.id, &self.meta) {
                continue;
            }
            let secret = &bytes[h.start..h.end];
            if self.allow_regexes.iter().any(|r| r.is_match(secret)) {
                continue;
            }
            if !self.stopwords.is_empty() {
                let lower = secret.to_ascii_lowercase();
                if self
                    .stopwords
                    .iter()
                    .any(|w| memchr::memmem::find(&lower, w.as_bytes()).is_some())
                {
                    continue;
                }
            }
            if !self.allow_locations.is_empty() {
                let l = line + line_base;
                let at =
                    |c: Option<String>| self.allow_locations.contains(&(c, path.to_string(), l));
                if at(None) || commit.is_some_and(|c| at(Some(c.to_ascii_lowercase()))) {
                    continue;
                }
            }
            let fingerprint = fingerprint(&rule.id, path, secret);
            if self.allow_fingerprints.contains(&fingerprint)
                || self.baseline.contains(&fingerprint)
            {
                continue;
            }
            let column = chars(&bytes[line_start..h.start]) + 1;
            let (end_line, end_column) = {
                let inner = &bytes[h.start..h.end];
                let nl = memchr::memchr_iter(b'\n', inner).count();
                if nl == 0 {
                    (line, column + chars(inner))
                } else {
                    let last = memchr::memrchr(b'\n', inner).unwrap_or(0);
                    (line + nl, chars(&inner[last + 1..]) + 1)
                }
            };
            let meta = &self.meta[rule.meta];
            let value = String::from_utf8_lossy(secret);
            out.push(Located {
                finding: Finding {
                    rule: rule.id.clone(),
                    severity: context_severity(rule, path),
                    path: path.to_string(),
                    line: line + line_base,
                    column,
                    commit: commit.map(str::to_string),
                    secret: Redacted::new(&value),
                    fingerprint,
                    message: message(meta, commit),
                    end: Some(crate::report::RegionEnd {
                        line: end_line + line_base,
                        column: end_column,
                    }),
                },
                end_line: end_line + line_base,
                end_column,
            });
        }
        out
    }
}

struct UserRule {
    id: String,
    severity: Severity,
    description: String,
    keywords: Vec<String>,
    /// `None`: a gitleaks rule with only a `path` (it flags the file).
    regex: Option<Regex>,
    extra: Option<Box<Extra>>,
}

/// An attribute name (last segment) followed by `=` and the start of its
/// value, for the pre-parse gate of the Nix rule.
const NIX_GATE: &str = r#"(?P<n>[A-Za-z0-9_'"-]+)[ \t]*=[ \t]*(?P<v>"|''|\[|\(|lib\.mk|mk[A-Z]|$)"#;

/// Cheap rejection of an assignment-shaped match before its capture groups
/// are resolved (the slow part): a public or digest name, a value that is
/// visibly a reference or placeholder, an unquoted expression in Nix.
fn quick_reject(check: Check, m: &[u8], is_nix: bool) -> bool {
    if !matches!(check, Check::HighEntropy | Check::SecretName) {
        return false;
    }
    let Some(sep) = m.iter().position(|&b| b == b'=' || b == b':') else {
        return false;
    };
    if check == Check::HighEntropy && rules::name_is_public_or_digest(&m[..sep]) {
        return true;
    }
    let tail = m[sep + 1..].trim_ascii_start();
    let tail = tail
        .strip_prefix(b"=")
        .or(tail.strip_prefix(b">"))
        .unwrap_or(tail);
    let tail = tail.trim_ascii_start();
    let quoted = matches!(tail.first(), Some(b'"' | b'\''));
    if check == Check::HighEntropy && is_nix && !quoted {
        return true;
    }
    let inner = if quoted { &tail[1..] } else { tail };
    let inner = inner
        .strip_suffix(b"\"")
        .or(inner.strip_suffix(b"'"))
        .unwrap_or(inner);
    rules::is_placeholder_or_reference(inner)
}

/// Offset of the closing `"` of a Nix string whose content starts `s`.
fn closing_quote(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// How to allow a false positive; appended to every message and help text.
pub const ALLOW_HINT: &str = "False positive? Add a `guard:allow` comment on the line (or the \
line before), list it under [secrets.allow] in guard.toml, or accept it in the baseline with \
`guard scan --write-baseline`.";

fn message(meta: &Meta, commit: Option<&str>) -> String {
    let history = match commit {
        Some(c) => format!(
            " It is in commit {}: removing it does not remove it from history, so rotate it.",
            &c[..c.len().min(12)]
        ),
        None => String::new(),
    };
    format!("{}. Fix: {}.{history} {ALLOW_HINT}", meta.title, meta.fix)
}

/// Stable fingerprint of a finding: SHA-256 over the rule id, the path and
/// the secret (domain-separated), first 16 bytes in hex. A cryptographic
/// hash because fingerprints are printed in CI logs and committed in the
/// baseline: they must not help anyone recover the secret (a fast 64-bit
/// hash like FNV can be inverted for short values far more cheaply). Line
/// numbers are deliberately not part of it, so edits around a known
/// finding do not resurrect it.
pub fn fingerprint(rule: &str, path: &str, secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"guard-scan-v1\0");
    h.update(rule.as_bytes());
    h.update(b"\0");
    h.update(path.as_bytes());
    h.update(b"\0");
    h.update(secret);
    let d = h.finalize();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret capture group (`s`, `s2`, `s3`, else group 1, else the whole
/// match).
fn secret_group(caps: &Captures<'_>) -> Option<(usize, usize)> {
    let m = caps
        .name("s")
        .or_else(|| caps.name("s2"))
        .or_else(|| caps.name("s3"))
        .or_else(|| caps.get(1))
        .or_else(|| caps.get(0))?;
    (m.start() < m.end()).then_some((m.start(), m.end()))
}

/// Lock files of package managers (generated, public data).
fn is_lock_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        "package-lock.json"
            | "npm-shrinkwrap.json"
            | "yarn.lock"
            | "pnpm-lock.yaml"
            | "bun.lock"
            | "deno.lock"
            | "Cargo.lock"
            | "go.sum"
            | "flake.lock"
            | "gemset.nix"
            | "Gemfile.lock"
            | "composer.lock"
            | "poetry.lock"
            | "uv.lock"
            | "Pipfile.lock"
            | "mix.lock"
            | "pubspec.lock"
    ) || name.ends_with("-deps.nix")
}

/// Where a finding's rule severity is lowered by the file it is in, unless
/// `[secrets.severity]` sets the rule explicitly: a `jwt` in recorded HTTP
/// (`cassettes/`, `*.har`, `fixtures/`) is a replayed, usually expired
/// token; a name-based match in documentation is an example.
fn context_severity(rule: &Rule, path: &str) -> Severity {
    if rule.configured || rule.severity != Severity::Error {
        return rule.severity;
    }
    let lower = path.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    let dirs = &parts[..parts.len().saturating_sub(1)];
    let name = parts.last().copied().unwrap_or("");
    let recorded_http = name.ends_with(".har")
        || dirs
            .iter()
            .any(|d| matches!(*d, "cassettes" | "fixtures" | "__fixtures__" | "recordings"));
    if rule.id == "jwt" && recorded_http {
        return Severity::Warning;
    }
    let documentation = [".md", ".markdown", ".rst", ".adoc", ".org"]
        .iter()
        .any(|e| name.ends_with(e));
    if documentation && matches!(rule.check, Check::SecretName | Check::HighEntropy) {
        return Severity::Warning;
    }
    rule.severity
}

/// The name of a `secret-assignment` match is not a key but text inside
/// another string: it follows an opening quote that it does not close, and
/// either the "value" starts with that same quote (`hasPrefix "password="`,
/// where the quote ends the string) or the separator is a tight `:`
/// (`HISTIGNORE="pwd:ls:cd"`, a colon-separated list).
fn name_is_inside_a_value(line: &[u8], caps: &Captures<'_>) -> bool {
    let Some(n) = caps.name("n") else {
        return false;
    };
    let Some(&q) = line[..n.start()].last() else {
        return false;
    };
    if q != b'"' && q != b'\'' {
        return false;
    }
    let after = line.get(n.end()).copied();
    if after == Some(q) {
        // `"password": …`: a quoted key.
        return false;
    }
    let value_quote = if caps.name("s").is_some() {
        Some(b'"')
    } else if caps.name("s2").is_some() {
        Some(b'\'')
    } else {
        None
    };
    if value_quote == Some(q) {
        return true;
    }
    after == Some(b':') && caps.name("sp").is_none_or(|m| m.as_bytes().is_empty())
}

/// The match is inside a message printed by a command (`echo "PASS: …"`,
/// `log "token: …"`): prose, not an assignment.
fn is_message(line: &[u8], caps: &Captures<'_>) -> bool {
    let Some(n) = caps.name("n") else {
        return false;
    };
    let before = line[..n.start()].trim_ascii_end();
    let before = before
        .strip_suffix(b"\"")
        .or(before.strip_suffix(b"'"))
        .unwrap_or(before)
        .trim_ascii_end();
    let word_start = before
        .iter()
        .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.'))
        .map_or(0, |p| p + 1);
    let word = before[word_start..].to_ascii_lowercase();
    matches!(
        word.as_slice(),
        b"echo"
            | b"printf"
            | b"print"
            | b"println"
            | b"puts"
            | b"log"
            | b"info"
            | b"warn"
            | b"error"
            | b"die"
            | b"say"
            | b"fail"
            | b"msg"
            | b"notice"
            | b"debug"
            | b"logger"
            | b"builtins.trace"
            | b"lib.warn"
            | b"throw"
            | b"abort"
    )
}

/// Whether `pos` on `line` lies inside an encrypted envelope: a sops value
/// `ENC[…]` or an armored age or PGP message opened earlier on the line
/// (sops JSON stores armored age in one string with `\n` escapes).
fn inside_envelope(line: &[u8], pos: usize) -> bool {
    let before = &line[..pos.min(line.len())];
    if let Some(open) = memchr::memmem::rfind(before, b"ENC[")
        && !before[open..].contains(&b']')
    {
        return true;
    }
    for (begin, end) in [
        (
            &b"-----BEGIN AGE ENCRYPTED FILE-----"[..],
            &b"-----END AGE ENCRYPTED FILE-----"[..],
        ),
        (b"-----BEGIN PGP MESSAGE-----", b"-----END PGP MESSAGE-----"),
    ] {
        if let Some(open) = memchr::memmem::rfind(before, begin)
            && memchr::memmem::find(&before[open..], end).is_none()
        {
            return true;
        }
    }
    false
}

/// The secret span (relative to the haystack, plus `base`) of a match of a
/// gitleaks rule, if its path, entropy, allowlist and stopword conditions
/// let it through.
fn extra_span(x: &Extra, path: &str, base: usize, caps: &Captures<'_>) -> Option<(usize, usize)> {
    if x.path
        .as_ref()
        .is_some_and(|p| !p.is_match(path.as_bytes()))
        || x.allow_paths.iter().any(|p| p.is_match(path.as_bytes()))
    {
        return None;
    }
    let m = if x.group > 0 {
        caps.get(x.group)?
    } else {
        caps.get(1).or_else(|| caps.get(0))?
    };
    let v = m.as_bytes();
    if v.is_empty()
        || x.min_entropy.is_some_and(|min| rules::entropy(v) < min)
        || x.allow.iter().any(|r| r.is_match(v))
    {
        return None;
    }
    if !x.stopwords.is_empty() {
        let lower = v.to_ascii_lowercase();
        if x.stopwords
            .iter()
            .any(|w| memchr::memmem::find(&lower, w.as_bytes()).is_some())
        {
            return None;
        }
    }
    Some((base + m.start(), base + m.end()))
}

/// Whether the separator of a `secret-assignment` match is a plain `=`.
fn caps_sep_is_eq(caps: &Captures<'_>) -> bool {
    let (Some(whole), Some(n)) = (caps.get(0), caps.name("n")) else {
        return false;
    };
    let rest = &whole.as_bytes()[n.end() - whole.start()..];
    let rest = rest
        .strip_prefix(b"\"")
        .or(rest.strip_prefix(b"'"))
        .unwrap_or(rest);
    rest.trim_ascii_start().first() == Some(&b'=') && rest.trim_ascii_start().get(1) != Some(&b'>')
}

/// Files where `key: value` / `KEY=value` with a bare value is data, not
/// code (in source code `secret: Redacted` is a type annotation and
/// `token = other.token` an expression, so there only quoted values count).
fn is_config_like(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    if name.starts_with(".env") || name.ends_with(".env") || name.contains("netrc") {
        return true;
    }
    match name.rsplit_once('.') {
        // No extension: env files, credentials, `secrets/db`.
        None => true,
        Some((stem, ext)) => {
            stem.is_empty()
                || matches!(
                    ext,
                    "yaml"
                        | "yml"
                        | "env"
                        | "ini"
                        | "conf"
                        | "cfg"
                        | "cnf"
                        | "toml"
                        | "properties"
                        | "service"
                        | "netdev"
                        | "network"
                        | "txt"
                        | "list"
                        | "secret"
                        | "secrets"
                        | "credentials"
                        | "htpasswd"
                        | "json"
                )
        }
    }
}

/// A single lowercase word (`password: builders` in prose, `token: none`):
/// unquoted, that is language, not a credential.
fn is_plain_word(v: &[u8]) -> bool {
    v.iter()
        .all(|b| b.is_ascii_lowercase() || *b == b'-' || *b == b'_')
}

/// An unquoted value that is code, not a literal: a call, a dotted
/// identifier path (`config.services.x.token`, `req.headers.token`), an
/// expression.
fn looks_like_code(v: &[u8]) -> bool {
    // YAML tags, anchors and aliases (`!secret x`, `*db_pw`) are not values;
    // `secrets::age` is a Rust path.
    if matches!(v.first(), Some(b'!' | b'*' | b'&' | b':')) {
        return true;
    }
    if v.iter().any(|b| b"()[]".contains(b)) || v.ends_with(b";") {
        return true;
    }
    let parts: Vec<&[u8]> = v.split(|&b| b == b'.').collect();
    parts.len() > 1
        && parts.iter().all(|p| {
            !p.is_empty()
                && (p[0].is_ascii_alphabetic() || p[0] == b'_')
                && p.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        })
}

/// A PEM private key block starting at `start` (the header) whose header
/// ends at `hdr_end`: a base64 body must follow; the secret spans the whole
/// block so that the fingerprint depends on the key, not just the header.
fn pem_block(bytes: &[u8], start: usize, hdr_end: usize) -> Option<(usize, usize)> {
    const WINDOW: usize = 1 << 20;
    let rest = &bytes[hdr_end..bytes.len().min(hdr_end + WINDOW)];
    let end_marker = memchr::memmem::find(rest, b"-----END");
    let body = &rest[..end_marker.unwrap_or(rest.len().min(400))];
    // The longest run of base64 characters (a body line), skipping escaped
    // newlines of a one-line string ("…KEY-----\nb3Blbn…").
    let mut run = 0usize;
    let mut best = 0usize;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'\\' && body.get(i + 1) == Some(&b'n') {
            run = 0;
            i += 2;
            continue;
        }
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
        i += 1;
    }
    if best < 20 {
        return None;
    }
    let end = match end_marker {
        Some(p) => {
            let after = hdr_end + p + 8;
            let tail = &bytes[after..bytes.len().min(after + 64)];
            memchr::memmem::find(tail, b"-----").map_or(after, |q| after + q + 5)
        }
        None => hdr_end + body.len(),
    };
    Some((start, end))
}

/// Line-number cursor: hits are visited in offset order, so newlines are
/// counted once over the file.
#[derive(Default)]
struct Cursor {
    pos: usize,
    line: usize,
    line_start: usize,
}

impl Cursor {
    /// 1-based line of `offset` and the offset where that line starts.
    fn advance(&mut self, bytes: &[u8], offset: usize) -> (usize, usize) {
        if self.line == 0 {
            self.line = 1;
        }
        let seg = &bytes[self.pos..offset];
        let n = memchr::memchr_iter(b'\n', seg).count();
        if n > 0 {
            self.line += n;
            self.line_start = self.pos + memchr::memrchr(b'\n', seg).unwrap_or(0) + 1;
        }
        self.pos = offset;
        (self.line, self.line_start)
    }
}

/// Characters (not bytes) in `b`, for columns: UTF-8 continuation bytes do
/// not start a character.
fn chars(b: &[u8]) -> usize {
    b.iter().filter(|&&c| (c & 0xC0) != 0x80).count()
}

/// `guard:allow` on the line starting at `line_start` or on the line before,
/// optionally scoped to rule ids (`guard:allow nix-password,jwt`).
fn allowed_inline(bytes: &[u8], line_start: usize, rule: &str, ids: &[Meta]) -> bool {
    let line_end =
        memchr::memchr(b'\n', &bytes[line_start..]).map_or(bytes.len(), |p| line_start + p);
    if allow_comment_covers(&bytes[line_start..line_end], rule, ids) {
        return true;
    }
    if line_start == 0 {
        return false;
    }
    let prev_end = line_start - 1;
    let prev_start = memchr::memrchr(b'\n', &bytes[..prev_end]).map_or(0, |p| p + 1);
    allow_comment_covers(&bytes[prev_start..prev_end], rule, ids)
}

/// `guard:allow` alone (or followed by free text) allows every rule;
/// followed by known rule ids (`guard:allow jwt,nix-password`) only those.
fn allow_comment_covers(line: &[u8], rule: &str, ids: &[Meta]) -> bool {
    const MARK: &[u8] = b"guard:allow";
    let Some(p) = memchr::memmem::find(line, MARK) else {
        return false;
    };
    let rest = &line[p + MARK.len()..];
    let rest = rest.trim_ascii_start();
    let scope: &[u8] = {
        let n = rest
            .iter()
            .take_while(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'-' || **b == b','
            })
            .count();
        &rest[..n]
    };
    let scoped: Vec<&[u8]> = scope
        .split(|&b| b == b',')
        .filter(|s| !s.is_empty())
        .collect();
    let is_scope = !scoped.is_empty()
        && scoped
            .iter()
            .all(|s| ids.iter().any(|m| m.id.as_bytes() == *s));
    !is_scope || scoped.contains(&rule.as_bytes())
}

/// Keeps the most specific of overlapping hits.
fn resolve_overlaps(rules: &[Rule], mut hits: Vec<Hit>) -> Vec<Hit> {
    if hits.len() < 2 {
        return hits;
    }
    hits.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(rules[b.rule].priority.cmp(&rules[a.rule].priority))
            .then(b.end.cmp(&a.end))
    });
    let mut out: Vec<Hit> = Vec::with_capacity(hits.len());
    for h in hits {
        match out.last_mut() {
            Some(last) if h.start < last.end => {
                if rules[h.rule].priority > rules[last.rule].priority {
                    *last = h;
                }
            }
            _ => out.push(h),
        }
    }
    out
}

fn parse_severity(id: &str, s: &str) -> Result<Severity, ScanError> {
    match s {
        "error" => Ok(Severity::Error),
        "warning" => Ok(Severity::Warning),
        "info" => Ok(Severity::Info),
        _ => Err(ScanError::BadSeverity {
            id: id.to_string(),
            value: s.to_string(),
        }),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Accepted findings: the baseline file (`[secrets] baseline`) written by
/// `guard scan --write-baseline`. It stores fingerprints, never secrets.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    pub fingerprints: HashSet<String>,
}

/// On-disk form of the baseline.
#[derive(serde::Serialize, serde::Deserialize)]
struct BaselineFile {
    version: u32,
    #[serde(default)]
    comment: String,
    findings: Vec<BaselineEntry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum BaselineEntry {
    Full {
        fingerprint: String,
        #[serde(default)]
        rule: String,
        #[serde(default)]
        path: String,
    },
    Bare(String),
}

impl Baseline {
    /// Reads a baseline; a missing file is an empty baseline.
    pub fn load(path: &std::path::Path) -> Result<Baseline, ScanError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Baseline::default()),
            Err(e) => {
                return Err(ScanError::Baseline {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        };
        let file: BaselineFile = serde_json::from_str(&text).map_err(|e| ScanError::Baseline {
            path: path.to_path_buf(),
            message: format!("not a guard baseline ({e})"),
        })?;
        if file.version != 1 {
            return Err(ScanError::Baseline {
                path: path.to_path_buf(),
                message: format!("unsupported baseline version {}", file.version),
            });
        }
        Ok(Baseline {
            fingerprints: file
                .findings
                .into_iter()
                .map(|e| match e {
                    BaselineEntry::Full { fingerprint, .. } => fingerprint,
                    BaselineEntry::Bare(f) => f,
                })
                .collect(),
        })
    }

    /// The baseline document for `findings` (sorted, one entry per
    /// fingerprint): fingerprints, rule ids and paths, never values.
    pub fn render(findings: &[Finding]) -> String {
        let mut entries: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        for f in findings {
            entries
                .entry(f.fingerprint.as_str())
                .or_insert((f.rule.as_str(), f.path.as_str()));
        }
        let file = BaselineFile {
            version: 1,
            comment: "Accepted findings of `guard scan` (fingerprints only, no secrets). \
Regenerate with `guard scan --write-baseline`."
                .into(),
            findings: entries
                .into_iter()
                .map(|(fp, (rule, path))| BaselineEntry::Full {
                    fingerprint: fp.to_string(),
                    rule: rule.to_string(),
                    path: path.to_string(),
                })
                .collect(),
        };
        let mut s = serde_json::to_string_pretty(&file).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests;

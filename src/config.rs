//! `guard.toml`: optional, every key has a default. Unknown keys are errors
//! (a misspelt `critcal = [...]` must not silently do nothing), reported with
//! the file, line and the key's name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::report::Level;

/// The file name looked up at the repository root.
pub const FILE_NAME: &str = "guard.toml";

/// Errors loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the flake lives inside the repository.
    pub flake: FlakeConfig,
    /// Host name -> entry module (repository-relative), overriding discovery.
    pub hosts: BTreeMap<String, String>,
    /// How changed paths map to hosts.
    pub affected: AffectedConfig,
    /// Plaintext-secret scanning and age checks.
    pub secrets: SecretsConfig,
    /// nix evaluation and builds.
    pub build: BuildConfig,
    /// Fleet rules checked on every change: inputs hosts must not reach,
    /// lock hygiene. Absent: no policy checks (`[policy]`, even empty,
    /// turns the lock hygiene checks on with their defaults).
    pub policy: Option<PolicyConfig>,
    /// How `guard plan` orders a rollout.
    pub rollout: RolloutConfig,
}

/// `[policy]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// `[[policy.rules]]`: inputs some hosts must not reach.
    pub rules: Vec<InputRule>,
    /// `[policy.lock]`: flake.lock hygiene.
    pub lock: LockPolicy,
    /// `[policy.severity]`: rule id -> `error`, `warning` or `info`,
    /// overriding the rule's default (only `error` findings fail a run).
    pub severity: BTreeMap<String, String>,
}

/// `[[policy.rules]]`: the hosts it applies to must not reach the inputs,
/// except through the modules `only_via` names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRule {
    /// Host names, host-name globs (`display-*`), or `critical` (the hosts
    /// of `[build] critical`).
    pub hosts: Vec<String>,
    /// Root input names (as in flake.nix), e.g. `nixpkgs_unstable`.
    pub forbid_inputs: Vec<String>,
    /// Repository paths of the modules through which the inputs may be
    /// reached (the module that uses the input, or one that imports it on
    /// the way). Empty: not at all.
    #[serde(default)]
    pub only_via: Vec<String>,
}

/// `[policy.lock]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockPolicy {
    /// A nixpkgs input locked to a commit older than this many days (at
    /// the time of the judged commit) is reported; 0 turns it off.
    pub max_age_days: u32,
    /// Branches a nixpkgs input may follow. Default: the unstable branches
    /// and the NixOS releases still supported at the time of the judged
    /// commit (`nixos-YY.MM`, `-small`, `nixpkgs-YY.MM-darwin`).
    pub supported_branches: Option<Vec<String>>,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            max_age_days: 30,
            supported_branches: None,
        }
    }
}

/// `[rollout]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// Hosts deployed first (names or globs); `[build] critical` hosts are
    /// always deployed last, never as canaries.
    pub canary: Vec<String>,
    /// The deploy tool (`nixinate`, `colmena`, `deploy-rs`,
    /// `nixos-rebuild`); default: the one the flake is set up for.
    pub tool: Option<String>,
    /// `--target-host` of `nixos-rebuild` commands; `{host}` is the host's
    /// name.
    pub target_host: String,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            canary: Vec::new(),
            tool: None,
            target_host: "root@{host}".into(),
        }
    }
}

/// The deploy tools `guard plan` writes commands for.
pub const DEPLOY_TOOLS: &[&str] = &["nixinate", "colmena", "deploy-rs", "nixos-rebuild"];

/// Whether `host` is one of `selectors`: a name, a glob, or `critical`
/// (the hosts of `[build] critical`). Invalid globs match nothing (the
/// configuration rejects them when it is loaded).
pub fn selects(selectors: &[String], critical: &[String], host: &str) -> bool {
    selectors.iter().any(|s| {
        if s == "critical" {
            critical.iter().any(|c| c == host)
        } else if s == host {
            true
        } else {
            globset::Glob::new(s).is_ok_and(|g| g.compile_matcher().is_match(host))
        }
    })
}

/// `[flake]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlakeConfig {
    /// Directory of flake.nix relative to the repository root; default: the
    /// directory guard was started in if it holds a flake.nix, else the root.
    pub dir: Option<String>,
}

/// `[affected]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AffectedConfig {
    /// Globs of paths that affect every host (beyond what the graph finds).
    pub global: Vec<String>,
    /// Globs of paths that affect no host even if the graph says so. Use with
    /// care: this can make guard miss a host.
    pub ignore: Vec<String>,
    /// What a host whose drvPath changes only through a stamp (the
    /// revision, the source's store path) is: `"skip"` (default: listed as
    /// restamped, not evaluated or built) or `"build"` (counted as changed).
    pub stamps: Stamps,
}

/// `[affected] stamps`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stamps {
    #[default]
    Skip,
    Build,
}

/// `[secrets]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Globs of files that must be age ciphertext.
    pub patterns: Vec<String>,
    /// Baseline of accepted findings (fingerprints), repository-relative.
    pub baseline: String,
    /// Accepted findings.
    pub allow: AllowConfig,
    /// User-defined rules, added to the built-in ones.
    pub rules: Vec<RuleConfig>,
    /// Built-in rule ids to turn off.
    pub disable: Vec<String>,
    /// `[secrets.severity]`: rule id -> `error`, `warning` or `info`,
    /// overriding the rule's default (only `error` findings fail a run).
    pub severity: BTreeMap<String, String>,
    /// `[secrets.recipients]`: host name -> its public keys (OpenSSH
    /// `ssh-ed25519 …` / `ssh-rsa …` lines or `age1…`). Replaces what guard
    /// reads from the Nix files (`secrix.hostPubKey`, agenix `secrets.nix`).
    pub recipients: BTreeMap<String, Vec<String>>,
    /// Keys that may be recipients of any secret (admins, CI deploy keys):
    /// never reported as stale.
    pub admin_keys: Vec<String>,
    /// A gitleaks configuration (repository-relative, e.g. `.gitleaks.toml`)
    /// whose rules and allowlists `guard scan` adds to its own; the
    /// `.gitleaksignore` at the repository root is honoured with it.
    pub gitleaks_config: Option<String>,
    /// The files `gitleaks_config` names, read by [`Config::load`].
    #[serde(skip)]
    pub gitleaks: Option<GitleaksFiles>,
}

/// The text of a gitleaks configuration and of `.gitleaksignore`, read when
/// the configuration is loaded (parsed by the scanner).
#[derive(Debug, Clone)]
pub struct GitleaksFiles {
    pub config_path: PathBuf,
    pub config: String,
    pub ignore: Option<(PathBuf, String)>,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            patterns: vec!["*.age".into()],
            baseline: ".guard-baseline.json".into(),
            allow: AllowConfig::default(),
            rules: Vec::new(),
            disable: Vec::new(),
            severity: BTreeMap::new(),
            recipients: BTreeMap::new(),
            admin_keys: Vec::new(),
            gitleaks_config: None,
            gitleaks: None,
        }
    }
}

/// `[secrets.allow]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowConfig {
    /// Globs of paths never scanned for plaintext secrets.
    pub paths: Vec<String>,
    /// Regexes; a match on the secret value suppresses the finding.
    pub regexes: Vec<String>,
    /// Finding fingerprints to accept.
    pub fingerprints: Vec<String>,
}

/// `[[secrets.rules]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub id: String,
    pub regex: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default = "default_severity")]
    pub severity: String,
    #[serde(default)]
    pub description: String,
}

fn default_severity() -> String {
    "error".into()
}

/// `[build]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// Level of `guard build` / `guard check` / `guard ci` when --level is
    /// not given.
    pub level: Level,
    /// Level of `guard pre-commit` (keep it `none` for a fast hook).
    pub pre_commit_level: Level,
    /// Hosts evaluated or built at once (`--jobs` overrides).
    pub jobs: usize,
    /// Keep building other hosts after one fails (`--keep-going` forces it).
    pub keep_going: bool,
    /// Per-host timeout in seconds (0: none): each host's build or own
    /// evaluation; the batch evaluation of n hosts gets n times as long.
    pub timeout_secs: u64,
    /// Hosts always built at least at `vm` level (unless the level is `none`).
    pub critical: Vec<String>,
    /// Minimum level per host or group of hosts: host-name glob -> level,
    /// e.g. `"display-*" = "build"`. Levels only ever go up: the highest of
    /// the command's level, every matching entry and `critical` wins.
    pub levels: BTreeMap<String, Level>,
    /// Also run `nix flake check` (`--no-build` at level eval).
    pub flake_check: bool,
    /// Passed to nix as `--builders` unless the command line gives one.
    pub builders: Option<String>,
    /// Extra arguments for every nix invocation (before those after `--`).
    pub nix_args: Vec<String>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            level: Level::Eval,
            pre_commit_level: Level::None,
            jobs: 2,
            keep_going: false,
            timeout_secs: 0,
            critical: Vec::new(),
            levels: BTreeMap::new(),
            flake_check: false,
            builders: None,
            nix_args: Vec::new(),
        }
    }
}

impl Config {
    /// Parses configuration text; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: one_line(&e.to_string()),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Loads `explicit` if given (it must exist), else `<root>/guard.toml` if
    /// it exists, else the defaults. Returns where it came from, if a file.
    pub fn load(
        root: &Path,
        explicit: Option<&Path>,
    ) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = root.join(FILE_NAME);
                if !p.exists() {
                    return Ok((Config::default(), None));
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut config = Config::parse(&text, &path)?;
        if let Some(rel) = &config.secrets.gitleaks_config {
            let read = |p: PathBuf| {
                std::fs::read_to_string(&p)
                    .map(|t| (p.clone(), t))
                    .map_err(|source| ConfigError::Read { path: p, source })
            };
            let (config_path, text) = read(root.join(rel))?;
            let ignore_path = root.join(".gitleaksignore");
            let ignore = if ignore_path.is_file() {
                Some(read(ignore_path)?)
            } else {
                None
            };
            config.secrets.gitleaks = Some(GitleaksFiles {
                config_path,
                config: text,
                ignore,
            });
        }
        Ok((config, Some(path)))
    }

    /// Checks every key of `[secrets.recipients]` and `[secrets]
    /// admin_keys` with `parse` (the age layer's key parser: the
    /// configuration sits below it and does not know key formats).
    pub fn check_keys<E: std::fmt::Display>(
        &self,
        path: &Path,
        parse: impl Fn(&str) -> Result<(), E>,
    ) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        for (host, keys) in &self.secrets.recipients {
            for (i, k) in keys.iter().enumerate() {
                parse(k).map_err(|e| invalid(format!("secrets.recipients.{host}[{i}]: {e}")))?;
            }
        }
        for (i, k) in self.secrets.admin_keys.iter().enumerate() {
            parse(k).map_err(|e| invalid(format!("secrets.admin_keys[{i}]: {e}")))?;
        }
        Ok(())
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if self.build.jobs == 0 {
            return Err(invalid("build.jobs must be at least 1".into()));
        }
        for host in &self.build.critical {
            if !is_valid_host_name(host) {
                return Err(invalid(format!(
                    "build.critical: {host:?} is not a valid host name"
                )));
            }
        }
        for glob in self.build.levels.keys() {
            if let Err(e) = globset::Glob::new(glob) {
                return Err(invalid(format!("build.levels: invalid glob {glob:?}: {e}")));
            }
        }
        let selectors = self
            .policy
            .iter()
            .flat_map(|p| p.rules.iter().flat_map(|r| &r.hosts))
            .map(|g| ("policy.rules.hosts", g))
            .chain(self.rollout.canary.iter().map(|g| ("rollout.canary", g)));
        for (key, glob) in selectors {
            if let Err(e) = globset::Glob::new(glob) {
                return Err(invalid(format!("{key}: invalid glob {glob:?}: {e}")));
            }
        }
        if let Some(tool) = &self.rollout.tool
            && !DEPLOY_TOOLS.contains(&tool.as_str())
        {
            return Err(invalid(format!(
                "rollout.tool: {tool:?} is not one of {}",
                DEPLOY_TOOLS.join(", ")
            )));
        }
        if let Some(policy) = &self.policy {
            for (i, rule) in policy.rules.iter().enumerate() {
                if rule.hosts.is_empty() || rule.forbid_inputs.is_empty() {
                    return Err(invalid(format!(
                        "policy.rules[{i}]: needs `hosts` and `forbid_inputs` (hint: hosts = [\"critical\"], forbid_inputs = [\"nixpkgs_unstable\"])"
                    )));
                }
            }
            for (id, sev) in &policy.severity {
                if !matches!(sev.as_str(), "error" | "warning" | "info") {
                    return Err(invalid(format!(
                        "policy.severity.{id}: severity must be error, warning or info, not {sev:?}"
                    )));
                }
            }
        }
        for (host, entry) in &self.hosts {
            if !is_valid_host_name(host) {
                return Err(invalid(format!(
                    "hosts: {host:?} is not a valid host name (letters, digits, '-', '_', '.')"
                )));
            }
            if entry.starts_with('/') || entry.split('/').any(|c| c == "..") {
                return Err(invalid(format!(
                    "hosts.{host}: {entry:?} must be a path inside the repository"
                )));
            }
        }
        // The keys' syntax is checked by `check_keys`: key parsing lives
        // in secrets::age::keys, above the configuration.
        for host in self.secrets.recipients.keys() {
            if !is_valid_host_name(host) {
                return Err(invalid(format!(
                    "secrets.recipients: {host:?} is not a valid host name"
                )));
            }
        }
        for rule in &self.secrets.rules {
            if !matches!(rule.severity.as_str(), "error" | "warning" | "info") {
                return Err(invalid(format!(
                    "secrets.rules {}: severity must be error, warning or info, not {:?}",
                    rule.id, rule.severity
                )));
            }
        }
        for (id, sev) in &self.secrets.severity {
            if !matches!(sev.as_str(), "error" | "warning" | "info") {
                return Err(invalid(format!(
                    "secrets.severity.{id}: severity must be error, warning or info, not {sev:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Host names become Nix attribute names and file names: keep them to a safe
/// alphabet so no quoting is ever ambiguous.
pub fn is_valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// toml errors span several lines (with a source excerpt); the CLI contract
/// wants a one-line cause.
fn one_line(s: &str) -> String {
    let mut parts = s.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = parts.next().unwrap_or_default().to_string();
    // The last line holds the actual message ("unknown field `x`, expected ...").
    match s.lines().map(str::trim).rfind(|l| !l.is_empty()) {
        Some(last) if last != first => format!("{first} {last}"),
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("guard.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.build.level, Level::Eval);
        assert_eq!(c.build.pre_commit_level, Level::None);
        assert_eq!(c.secrets.patterns, vec!["*.age"]);
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
            [flake]
            dir = "nix"
            [hosts]
            cortex-alpha = "machines/cortex-alpha/default.nix"
            [affected]
            global = ["overlays/**"]
            [secrets]
            patterns = ["*.age", "secrets/*.enc"]
            [secrets.allow]
            fingerprints = ["abc"]
            [[secrets.rules]]
            id = "internal-token"
            regex = "itk_[a-z0-9]{32}"
            keywords = ["itk_"]
            [build]
            level = "build"
            critical = ["cortex-alpha", "terminal-zero"]
            jobs = 4
            "#,
        )
        .unwrap();
        assert_eq!(c.flake.dir.as_deref(), Some("nix"));
        assert_eq!(c.hosts.len(), 1);
        assert_eq!(c.build.level, Level::Build);
        assert_eq!(c.build.critical.len(), 2);
        assert_eq!(c.secrets.rules[0].severity, "error");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("[build]\ncritcal = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("critcal"), "{err}");
        assert!(err.contains("guard.toml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = parse("[build]\njobs = \"many\"\n").unwrap_err().to_string();
        assert!(err.contains("jobs") || err.contains("line 2"), "{err}");
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(parse("[build]\njobs = 0\n").is_err());
        assert!(parse("[hosts]\n\"a b\" = \"x.nix\"\n").is_err());
        assert!(parse("[hosts]\nx = \"../outside.nix\"\n").is_err());
        assert!(parse("[build]\nlevel = \"fast\"\n").is_err());
        assert!(parse("[secrets.severity]\njwt = \"loud\"\n").is_err());
    }

    #[test]
    fn secret_scan_settings() {
        let c = parse(
            "[secrets]\nbaseline = \"ci/baseline.json\"\ndisable = [\"jwt\"]\n\
             [secrets.severity]\nhigh-entropy-secret = \"warning\"\n\
             [secrets.allow]\npaths = [\"docs/**\"]\nregexes = [\"^test-\"]\n",
        )
        .unwrap();
        assert_eq!(c.secrets.baseline, "ci/baseline.json");
        assert_eq!(c.secrets.disable, ["jwt"]);
        assert_eq!(c.secrets.severity["high-entropy-secret"], "warning");
        assert_eq!(c.secrets.allow.paths, ["docs/**"]);
        assert!(parse("[secrets]\nseverty = {}\n").is_err());
    }

    #[test]
    fn secret_recipients_and_admin_keys() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7Qtf8mf+FjBoeYaBiwNrJ9tm7BJgwdLi+hjqyoGQdt";
        let c = parse(&format!(
            "[secrets]\nadmin_keys = [\"{key} alice\"]\n[secrets.recipients]\ncortex-alpha = [\"{key}\"]\n"
        ))
        .unwrap();
        assert_eq!(c.secrets.recipients["cortex-alpha"], [key]);
        assert_eq!(c.secrets.admin_keys.len(), 1);
        // Key syntax is the caller's parser's (here: anything but "ok" fails).
        let check = |text: &str| {
            parse(text)
                .unwrap()
                .check_keys(Path::new("guard.toml"), |k| {
                    if k == "ok" { Ok(()) } else { Err("bad key") }
                })
        };
        let err = check("[secrets.recipients]\nalpha = [\"ok\", \"ssh-ed25519 !!\"]\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "guard.toml: secrets.recipients.alpha[1]: bad key");
        assert!(check("[secrets]\nadmin_keys = [\"hello\"]\n").is_err());
        assert!(check("[secrets]\nadmin_keys = [\"ok\"]\n").is_ok());
        assert!(parse("[secrets.recipients]\n\"a b\" = []\n").is_err());
        assert!(parse("[secrets]\nadmin_key = []\n").is_err());
    }

    #[test]
    fn build_section_keys() {
        let c = parse(
            "[build]\nlevel = \"build\"\njobs = 4\nkeep_going = true\ntimeout_secs = 600\n\
             critical = [\"cortex-alpha\"]\nflake_check = true\nbuilders = \"ssh://b x86_64-linux\"\n\
             nix_args = [\"--option\", \"cores\", \"2\"]\n[build.levels]\n\"display-*\" = \"vm\"\n",
        )
        .unwrap();
        assert_eq!(c.build.jobs, 4);
        assert!(c.build.keep_going && c.build.flake_check);
        assert_eq!(c.build.levels["display-*"], Level::Vm);
        assert_eq!(c.build.builders.as_deref(), Some("ssh://b x86_64-linux"));
        assert!(parse("[build]\ncritical = [\"a b\"]\n").is_err());
        assert!(parse("[build.levels]\n\"[\" = \"vm\"\n").is_err());
        assert!(parse("[build.levels]\nx = \"fast\"\n").is_err());
    }

    #[test]
    fn policy_and_rollout_sections() {
        let c = parse(
            "[build]\ncritical = [\"cortex-alpha\"]\n\
             [[policy.rules]]\nhosts = [\"critical\", \"display-*\"]\nforbid_inputs = [\"nixpkgs_unstable\"]\n\
             only_via = [\"environments/ai.nix\"]\n\
             [policy.lock]\nmax_age_days = 60\n[policy.severity]\nforbidden-input = \"warning\"\n\
             [rollout]\ncanary = [\"monitor\"]\n",
        )
        .unwrap();
        let p = c.policy.as_ref().unwrap();
        assert_eq!(p.rules[0].forbid_inputs, ["nixpkgs_unstable"]);
        assert_eq!(p.lock.max_age_days, 60);
        assert_eq!(c.rollout.canary, ["monitor"]);
        let sel = &p.rules[0].hosts;
        assert!(selects(sel, &c.build.critical, "cortex-alpha"));
        assert!(selects(sel, &c.build.critical, "display-2"));
        assert!(!selects(sel, &c.build.critical, "linda"));
        assert!(parse("").unwrap().policy.is_none());
        assert_eq!(
            parse("[policy]\n")
                .unwrap()
                .policy
                .unwrap()
                .lock
                .max_age_days,
            30
        );
        assert!(parse("[[policy.rules]]\nhosts = [\"a\"]\nforbid = [\"x\"]\n").is_err());
        assert!(parse("[[policy.rules]]\nhosts = []\nforbid_inputs = [\"x\"]\n").is_err());
        assert!(parse("[policy.severity]\nx = \"loud\"\n").is_err());
        assert!(parse("[rollout]\ncanary = [\"[\"]\n").is_err());
        assert!(parse("[rollout]\ncanaries = []\n").is_err());
        assert!(parse("[rollout]\ntool = \"ansible\"\n").is_err());
        assert_eq!(parse("").unwrap().rollout.target_host, "root@{host}");
    }

    #[test]
    fn host_names() {
        assert!(is_valid_host_name("cortex-alpha"));
        assert!(is_valid_host_name("swarm_0.lan"));
        assert!(!is_valid_host_name("-rf"));
        assert!(!is_valid_host_name("a\"b"));
        assert!(!is_valid_host_name(""));
    }
}

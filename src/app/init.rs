//! `guard init`: look at a fleet repository as it is (tracked files on
//! disk), discover its hosts and age secrets the way every other command
//! will, and write a commented `guard.toml` at the repository root that
//! records what was found and explains each setting.
//!
//! The host list is written as comments, not as an active `[hosts]` table:
//! an active table replaces discovery, so a host added later would be
//! invisible to guard until someone edits the file. Discovery runs on every
//! command and finds new hosts by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::exit;
use crate::affected::Analysis;
use crate::config::{self, Config};
use crate::git::{Repo, SnapshotSpec};
use crate::nix::graph::ParseCache;
use crate::nix::hosts::Discovery;
use crate::report::Style;
use crate::secrets::age::model::patterns;
use crate::secrets::age::{FactsCache, Model};

/// What `guard init` found.
struct Found {
    flake_dir: String,
    discovery: Discovery,
    /// Host -> entry module.
    hosts: BTreeMap<String, String>,
    /// Age files matching the default patterns.
    tracked: BTreeSet<String>,
    /// Files hosts use as secrets (secrix/agenix references) -> the hosts.
    used: BTreeMap<String, BTreeSet<String>>,
    /// Extra patterns needed so that every used secret is checked.
    extra_patterns: Vec<String>,
    agenix: Vec<String>,
    warnings: Vec<String>,
    baseline_exists: bool,
}

/// `guard init [--force]`.
pub fn init(dir: &Path, force: bool, dry_run: bool, style: Style) -> Result<i32> {
    let repo = Repo::discover(dir)?;
    let Some(root) = repo.workdir().map(Path::to_path_buf) else {
        bail!("guard init needs a work tree; this repository is bare");
    };
    let target = root.join(config::FILE_NAME);
    if target.exists() && !force && !dry_run {
        bail!(
            "{} already exists; guard init does not overwrite it (use --force to replace it)",
            target.display()
        );
    }
    let found = discover(&repo, &root, dir)?;
    let text = render(&found);
    // What we write must load: a file guard itself rejects would be a poor start.
    Config::parse(&text, &target)
        .context("internal error: guard init produced an invalid guard.toml")?;
    if dry_run {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "# guard init --dry-run: {} host{} ({}); nothing written",
            found.hosts.len(),
            if found.hosts.len() == 1 { "" } else { "s" },
            how(&found.discovery),
        )?;
        for w in &found.warnings {
            writeln!(out, "# warning: {w}")?;
        }
        out.write_all(text.as_bytes())?;
        return Ok(exit::OK);
    }
    if found.hosts.is_empty() {
        let mut msg = format!(
            "found no NixOS hosts, so {} was not written: every check would pass with none",
            target.display()
        );
        for w in &found.warnings {
            msg.push_str(&format!("\n  {w}"));
        }
        msg.push_str(
            "\nhint: write guard.toml with a [hosts] table (<name> = \"<entry module>\"); \
             `guard init --dry-run` prints the rest of the file",
        );
        bail!(msg);
    }
    std::fs::write(&target, &text).with_context(|| format!("cannot write {}", target.display()))?;

    let mut out = std::io::stdout().lock();
    let bold = |s: &str| {
        if style.color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    writeln!(
        out,
        "wrote {}: {} host{} ({}), {} age secret file{}",
        target.display(),
        found.hosts.len(),
        if found.hosts.len() == 1 { "" } else { "s" },
        how(&found.discovery),
        found.tracked.len(),
        if found.tracked.len() == 1 { "" } else { "s" },
    )?;
    for w in &found.warnings {
        writeln!(out, "warning: {w}")?;
    }
    writeln!(out, "{}", bold("next steps:"))?;
    writeln!(
        out,
        "  guard affected --all                 check the host list and the import graph"
    )?;
    if !found.baseline_exists {
        writeln!(
            out,
            "  guard scan --write-baseline          accept the findings already committed (then commit the baseline)"
        )?;
    }
    writeln!(
        out,
        "  guard hook install                   judge every commit before it exists"
    )?;
    writeln!(
        out,
        "  add the guard action to CI           see README, \"GitHub Actions\""
    )?;
    out.flush()?;
    Ok(exit::OK)
}

fn how(d: &Discovery) -> String {
    match d {
        Discovery::Config => "from [hosts]".into(),
        Discovery::Evaluated => "by evaluating the flake's outputs statically".into(),
        Discovery::FlakeAttrs => "from nixosConfigurations in flake.nix".into(),
        Discovery::ReadDir(dir) => format!("flake.nix reads the directory {dir}/"),
        Discovery::Convention(dir) => format!("guessed from the directory {dir}/"),
        Discovery::None => "none found".into(),
    }
}

fn discover(repo: &Repo, root: &Path, start: &Path) -> Result<Found> {
    let snapshot = repo
        .snapshot(SnapshotSpec::Worktree)
        .context("cannot read the tracked files of the work tree")?;
    let flake_dir = super::find_flake_dir(root, start);
    // Defaults, not the existing file: it may be the broken one being replaced.
    let defaults = Config::default();
    let cache = ParseCache::new();
    let analysis = Analysis::of(&snapshot, &flake_dir, &defaults, &cache);
    let model = Model::build(&snapshot, &analysis, &defaults, &FactsCache::new())
        .context("cannot read the secrets the hosts use")?;
    let globs = patterns(&defaults)?;

    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, uses) in &model.uses {
        used.entry(path.clone())
            .or_default()
            .extend(uses.iter().map(|u| u.host.clone()));
    }
    // A secret the hosts use but the default patterns miss (`secrets/db.enc`)
    // gets a pattern of its own directory and extension.
    let mut extra: BTreeSet<String> = BTreeSet::new();
    for path in used.keys() {
        if globs.is_match(path) || model.missing.contains(path) {
            continue;
        }
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, path.as_str()),
        };
        let pat = match (dir, name.rsplit_once('.')) {
            (Some(d), Some((_, ext))) => format!("{d}/*.{ext}"),
            (None, Some((_, ext))) => format!("*.{ext}"),
            _ => path.clone(),
        };
        extra.insert(pat);
    }

    let mut warnings: Vec<String> = analysis
        .hosts
        .warnings
        .iter()
        .map(|w| match &w.path {
            Some(p) => format!("{p}: {}", w.message),
            None => w.message.clone(),
        })
        .collect();
    if analysis.hosts.hosts.is_empty() {
        warnings.push(format!(
            "no NixOS host found (looked at {}); list them under [hosts] in guard.toml",
            analysis.hosts.flake_nix
        ));
    }
    for m in &model.missing {
        warnings.push(format!(
            "{m}: used as a secret by a host but not tracked by git"
        ));
    }
    let baseline_exists = root.join(&defaults.secrets.baseline).exists();
    Ok(Found {
        flake_dir,
        discovery: analysis.hosts.discovery.clone(),
        hosts: analysis
            .hosts
            .hosts
            .values()
            .map(|h| (h.name.clone(), h.entry.clone()))
            .collect(),
        tracked: model.tracked.clone(),
        used,
        extra_patterns: extra.into_iter().collect(),
        agenix: model.agenix.keys().cloned().collect(),
        warnings,
        baseline_exists,
    })
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn render(f: &Found) -> String {
    let d = crate::config::BuildConfig::default();
    let level = clap::ValueEnum::to_possible_value(&d.level)
        .map(|v| v.get_name().to_string())
        .unwrap_or_else(|| "eval".into());
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "# guard.toml: configuration of guard (written by `guard init`).\n\
         # Every key is optional and shows its default unless noted; unknown keys\n\
         # are errors. `guard --help` and the README explain each command.\n"
    );

    let _ = writeln!(w, "[flake]");
    if f.flake_dir.is_empty() {
        let _ = writeln!(
            w,
            "# flake.nix is at the repository root. Set `dir` if it moves:\n# dir = \"nix\"\n"
        );
    } else {
        let _ = writeln!(
            w,
            "# Directory of flake.nix, relative to the repository root.\ndir = {}\n",
            q(&f.flake_dir)
        );
    }

    let _ = writeln!(
        w,
        "# Hosts. guard found {} ({}):",
        f.hosts.len(),
        how(&f.discovery)
    );
    let width = f.hosts.keys().map(String::len).max().unwrap_or(0);
    for (name, entry) in &f.hosts {
        let _ = writeln!(w, "#   {name:width$}  {entry}");
    }
    let _ = writeln!(
        w,
        "# Discovery runs on every command, so hosts added later are found by\n\
         # themselves. An active [hosts] table REPLACES discovery (a host missing\n\
         # from it is invisible to guard); uncomment it only to pin the list:\n\
         # [hosts]"
    );
    for (name, entry) in f.hosts.iter().take(3) {
        let _ = writeln!(w, "# {name} = {}", q(entry));
    }
    if f.hosts.is_empty() {
        let _ = writeln!(w, "# my-host = \"machines/my-host/default.nix\"");
    }
    let _ = writeln!(w);

    let _ = writeln!(
        w,
        "[affected]\n\
         # Globs of paths that affect every host, beyond what the import graph\n\
         # finds (e.g. files read by a script the flake runs):\n\
         global = []\n\
         # Globs of paths that affect no host even if the graph says so. Careful:\n\
         # this can make guard miss a host.\n\
         ignore = []\n"
    );

    let _ = writeln!(w, "[secrets]");
    let _ = writeln!(
        w,
        "# Files that must be age ciphertext, encrypted to every host using them."
    );
    if f.tracked.is_empty() && f.used.is_empty() {
        let _ = writeln!(w, "# guard found no age-encrypted secret files.");
    } else {
        let _ = writeln!(
            w,
            "# guard found {} file(s) matching *.age and {} secret(s) referenced by hosts:",
            f.tracked.len(),
            f.used.len()
        );
        let all: BTreeSet<&String> = f.tracked.iter().chain(f.used.keys()).collect();
        for (i, p) in all.iter().enumerate() {
            if i == 20 {
                let _ = writeln!(w, "#   ... and {} more", all.len() - 20);
                break;
            }
            match f.used.get(*p) {
                Some(hosts) => {
                    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                    let _ = writeln!(w, "#   {p}  (used by {})", short_list(&hosts));
                }
                None => {
                    let _ = writeln!(w, "#   {p}  (no host uses it)");
                }
            }
        }
    }
    for a in &f.agenix {
        let _ = writeln!(w, "# agenix rules: {a} (its files are checked too)");
    }
    let mut pats = vec!["*.age".to_string()];
    pats.extend(f.extra_patterns.iter().cloned());
    let _ = writeln!(
        w,
        "patterns = [{}]",
        pats.iter().map(|p| q(p)).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(
        w,
        "# Accepted findings of the plaintext-secret scan; `guard scan\n\
         # --write-baseline` writes it. Commit it.\n\
         baseline = {}\n\
         # Accept a false positive on its line with a `# guard:allow` comment, or:\n\
         # [secrets.allow]\n\
         # paths = [\"docs/**\"]\n",
        q(&Config::default().secrets.baseline)
    );

    let _ = writeln!(
        w,
        "[build]\n\
         # nix level of `guard check`, `guard ci` and `guard build`:\n\
         # none | eval (drvPath) | build (toplevel) | vm.\n\
         level = {}\n\
         # Level of the git hook. Keep it \"none\" for a hook that answers in\n\
         # milliseconds; CI evaluates and builds.\n\
         pre_commit_level = \"none\"\n\
         # Hosts evaluated or built at once.\n\
         jobs = {}\n\
         # Hosts always built at least at the vm level (unless the level is none):\n\
         # critical = [{}]",
        q(&level),
        d.jobs,
        f.hosts
            .keys()
            .take(2)
            .map(|h| q(h))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        w,
        "\n# Fleet policy, checked by check, pre-commit and ci (README, \"Fleet policy\").\n\
         # Uncomment [policy] to check flake.lock hygiene too.\n\
         # [policy]\n\
         # [[policy.rules]]\n\
         # hosts = [\"critical\"]              # names, globs, or the [build] critical hosts\n\
         # forbid_inputs = [\"nixpkgs-unstable\"]\n\
         # only_via = []                     # modules through which they are allowed\n\
         # [policy.lock]\n\
         # max_age_days = 30                 # nixpkgs locked longer ago warns; 0: off\n\
         # [policy.severity]                 # rule id -> error | warning | info\n\
         # forbidden-input = \"warning\"\n\
         \n\
         # Staged rollout: `guard plan --base origin/main` (README, \"Staged rollout\").\n\
         # [rollout]\n\
         # canary = [{}]           # deployed first; critical hosts last\n\
         # tool = \"nixos-rebuild\"           # default: nixinate, colmena or deploy-rs if the flake has it\n\
         # target_host = \"root@{{host}}\"",
        f.hosts.keys().next().map(|h| q(h)).unwrap_or_default()
    );
    s
}

fn short_list(items: &[&str]) -> String {
    if items.len() <= 4 {
        items.join(", ")
    } else {
        format!("{}, ... ({} hosts)", items[..3].join(", "), items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Level;

    fn found() -> Found {
        Found {
            flake_dir: String::new(),
            discovery: Discovery::ReadDir("machines".into()),
            hosts: [
                (
                    "alpha".to_string(),
                    "machines/alpha/default.nix".to_string(),
                ),
                ("beta".to_string(), "machines/beta/default.nix".to_string()),
            ]
            .into(),
            tracked: ["secrets/a.age".to_string()].into(),
            used: [("secrets/db.enc".to_string(), ["alpha".to_string()].into())].into(),
            extra_patterns: vec!["secrets/*.enc".into()],
            agenix: vec![],
            warnings: vec![],
            baseline_exists: false,
        }
    }

    #[test]
    fn rendered_config_parses_and_keeps_discovery() {
        let text = render(&found());
        let c = Config::parse(&text, Path::new("guard.toml")).unwrap();
        assert!(c.hosts.is_empty(), "hosts stay discovered, not pinned");
        assert_eq!(c.secrets.patterns, ["*.age", "secrets/*.enc"]);
        let d = crate::config::BuildConfig::default();
        assert_eq!(c.build.level, d.level);
        assert_eq!(c.build.jobs, d.jobs);
        assert_eq!(c.build.pre_commit_level, Level::None);
        assert!(text.contains("#   alpha  machines/alpha/default.nix"));
        assert!(text.contains("secrets/db.enc  (used by alpha)"));
    }

    #[test]
    fn the_commented_policy_and_rollout_parse_when_uncommented() {
        let text = render(&found());
        let start = text.find("# Fleet policy").unwrap();
        let mut uncommented = text[..start].to_string();
        for line in text[start..].lines() {
            let body = line.strip_prefix("# ").unwrap_or(line);
            let is_toml = body.starts_with('[')
                || body.split_once(" = ").is_some_and(|(k, _)| {
                    k.trim()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            if is_toml {
                uncommented.push_str(body);
            }
            uncommented.push('\n');
        }
        let c = Config::parse(&uncommented, Path::new("guard.toml")).unwrap();
        let p = c.policy.expect("[policy] uncommented");
        assert_eq!(p.rules[0].forbid_inputs, ["nixpkgs-unstable"]);
        assert_eq!(p.lock.max_age_days, 30);
        assert_eq!(c.rollout.canary, ["alpha"]);
        assert_eq!(c.rollout.tool.as_deref(), Some("nixos-rebuild"));
    }

    #[test]
    fn a_flake_below_the_root_is_written() {
        let mut f = found();
        f.flake_dir = "nix".into();
        let c = Config::parse(&render(&f), Path::new("guard.toml")).unwrap();
        assert_eq!(c.flake.dir.as_deref(), Some("nix"));
    }
}

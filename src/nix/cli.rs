//! The nix invocation layer: nothing else in guard spawns `nix`.
//!
//! Invocations are chosen to be valid on Debian's Nix 2.8 (flakes behind
//! `--extra-experimental-features`, no `--print-out-paths`) and on Nix 2.18+
//! and Lix: `nix eval --json`, `nix build --json --no-link`. Git's
//! repository-locating variables are stripped from every child, because a
//! hook's `GIT_INDEX_FILE` would change what nix's own `git ls-files` sees;
//! the repository is always passed explicitly in the flake URL.
//!
//! This layer says what to run and parses what comes back; every process
//! is started, limited and stopped by [`crate::process`] (process groups,
//! the registry Ctrl-C stops, timeouts, the subreaper).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::process::{self, Finished, RunError};
pub use crate::process::{
    KILL_GRACE, become_subreaper, children_running, interrupt_children, is_interrupted,
    kill_children, reap_orphans,
};

/// Errors running nix.
#[derive(Debug, thiserror::Error)]
pub enum NixError {
    #[error(
        "nix was not found {0}; install it (Debian: `apt-get install nix-bin`, or see https://nixos.org/download), point GUARD_NIX at a nix binary, or pass --level none"
    )]
    Missing(String),
    #[error("could not run nix: {0}")]
    Spawn(std::io::Error),
    #[error("nix {what} failed: {message}")]
    Failed { what: String, message: String },
    #[error("nix {what} printed unexpected output: {message}")]
    Output { what: String, message: String },
    #[error("nix {what} was stopped after {secs}s (timeout)")]
    TimedOut { what: String, secs: u64 },
    #[error("nix {what} was interrupted")]
    Interrupted { what: String },
    #[error("{message}")]
    Unsupported { message: String },
}

/// git's `local_repo_env` list (`git rev-parse --local-env-vars`): these
/// point a child git at a repository, index or object store of ours.
const GIT_LOCAL_ENV: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
];

/// The environment variable that names the nix binary guard runs (a path,
/// or a name looked up on PATH); `nix` on PATH when unset.
pub const NIX_ENV: &str = "GUARD_NIX";

/// The nix program guard runs: `$GUARD_NIX`, else `nix` on PATH.
pub fn nix_program() -> std::ffi::OsString {
    match std::env::var_os(NIX_ENV) {
        Some(p) if !p.is_empty() => p,
        _ => "nix".into(),
    }
}

/// A detected nix installation, plus the arguments added to every call.
#[derive(Debug, Clone)]
pub struct Nix {
    /// The program run (`nix`, or `$GUARD_NIX`).
    pub program: std::ffi::OsString,
    /// `nix --version` output, e.g. "nix (Nix) 2.8.0".
    pub version: String,
    /// Major and minor version, when parseable.
    pub release: Option<(u32, u32)>,
    /// Added to every invocation after the subcommand's own arguments
    /// (`--builders`, `--store`, `--option k v`, ...).
    pub extra_args: Vec<String>,
}

/// Which part of a host's configuration is evaluated or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostAttr {
    /// `config.system.build.toplevel`: what `nixos-rebuild build` builds.
    Toplevel,
    /// `config.system.build.vm`: what `nixos-rebuild build-vm` builds.
    Vm,
}

impl HostAttr {
    /// The attribute name under `config.system.build`.
    pub fn name(self) -> &'static str {
        match self {
            HostAttr::Toplevel => "toplevel",
            HostAttr::Vm => "vm",
        }
    }
}

/// A host attribute's derivation and main output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Drv {
    /// `/nix/store/...drv`.
    pub drv: String,
    /// The `out` output path.
    pub out: String,
}

/// Limits for one nix process.
pub use crate::process::Limits as RunLimits;

impl Nix {
    /// Finds nix (`$GUARD_NIX`, else `nix` on PATH) and reads its version:
    /// version-specific invocations are chosen from it, never guessed.
    pub fn detect() -> Result<Nix, NixError> {
        let program = nix_program();
        let out = match Command::new(&program).arg("--version").output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NixError::Missing(missing_where(&program)));
            }
            Err(e) => return Err(NixError::Spawn(e)),
        };
        if !out.status.success() {
            return Err(NixError::Failed {
                what: "--version".into(),
                message: last_line(&out.stderr),
            });
        }
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Nix {
            program,
            release: parse_release(&version),
            version,
            extra_args: Vec::new(),
        })
    }

    /// The same installation with `args` added to every invocation.
    pub fn with_args(mut self, args: Vec<String>) -> Nix {
        self.extra_args = args;
        self
    }

    /// A `nix` command with flakes enabled and git's variables removed.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        for var in GIT_LOCAL_ENV {
            c.env_remove(var);
        }
        c.args(["--extra-experimental-features", "nix-command flakes"]);
        c.stdin(Stdio::null());
        c
    }

    /// `nix eval --json <installable> [--apply <f>]`, parsed.
    pub fn eval_json(
        &self,
        installable: &str,
        apply: Option<&str>,
    ) -> Result<serde_json::Value, NixError> {
        self.eval_json_limited(installable, apply, RunLimits::default(), false)
    }

    fn eval_json_limited(
        &self,
        installable: &str,
        apply: Option<&str>,
        limits: RunLimits,
        show_trace: bool,
    ) -> Result<serde_json::Value, NixError> {
        self.check_flake_ref(installable)?;
        let what = format!("eval {installable}");
        let mut c = self.command();
        c.args(["eval", "--json", installable]);
        if show_trace {
            c.arg("--show-trace");
        }
        if let Some(f) = apply {
            c.args(["--apply", f]);
        }
        // The flake eval cache cannot answer `--apply` anyway, and Nix 2.8
        // reports "SQLite database ... is busy" when several evaluations of
        // one flake open it at once.
        c.args(["--option", "eval-cache", "false"]);
        c.args(&self.extra_args);
        let out = run(c, &what, limits, &mut |_| {})?;
        if !out.status.success() {
            return Err(NixError::Failed {
                what,
                message: killed_or(&out.status, || error_message(out.stderr.as_bytes())),
            });
        }
        serde_json::from_slice(&out.stdout).map_err(|e| NixError::Output {
            what,
            message: e.to_string(),
        })
    }

    /// Evaluates one host's `attr`; on failure the error names the cause
    /// (with `--show-trace`: the message, then the innermost file and line
    /// first).
    pub fn eval_host(
        &self,
        flake: &str,
        host: &str,
        attr: HostAttr,
        limits: RunLimits,
    ) -> Result<Drv, NixError> {
        let installable = format!("{flake}#{}", host_attr_path(host, attr));
        let value = self.eval_json_limited(
            &installable,
            Some("t: { drv = t.drvPath; out = t.outPath; }"),
            limits,
            true,
        )?;
        serde_json::from_value(value).map_err(|e| NixError::Output {
            what: format!("eval {installable}"),
            message: e.to_string(),
        })
    }

    /// Refuses what this nix cannot read correctly, before it runs: Nix
    /// before 2.10 does not decode escapes (`%20`) in a `git+file` path (it
    /// has decoded them since NixOS/nix#6614, in 2.10), so it takes such a
    /// repository for a remote one and would read a branch, never the work
    /// tree. A pinned revision is fetched correctly (the URL names its ref).
    fn check_flake_ref(&self, installable: &str) -> Result<(), NixError> {
        let Some(rest) = installable.strip_prefix("git+file://") else {
            return Ok(());
        };
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let (path, tail) = rest.split_at(end);
        let query = tail.split('#').next().unwrap_or("");
        let pinned = query
            .trim_start_matches('?')
            .split('&')
            .any(|kv| kv.starts_with("rev="));
        let decodes = self.release.is_none_or(|r| r >= (2, 10));
        if decodes || pinned || !path.contains('%') {
            return Ok(());
        }
        Err(NixError::Unsupported {
            message: format!(
                "{} cannot read the work tree of a repository whose path has a space or \
                 a character outside ASCII ({}): it takes the escaped path for a remote \
                 repository; use --staged or --commit (a pinned snapshot works), or Nix 2.10 \
                 or later (GUARD_NIX selects the nix binary)",
                self.version,
                percent_decode(path)
            ),
        })
    }

    /// The installable that builds every output of a store derivation:
    /// Nix before 2.15 builds the outputs of a bare `.drv` path, later
    /// versions (and Lix) need `^*` (a bare `.drv` means the file itself).
    pub fn drv_installable(&self, drv: &str) -> String {
        match self.release {
            Some(r) if r < (2, 15) => drv.to_string(),
            _ => format!("{drv}^*"),
        }
    }

    /// `nix build --json --no-link --log-format internal-json -v` of a
    /// derivation's outputs. `on_line` receives every stderr line as it
    /// arrives (the internal-json log). Returns the out path.
    pub fn build_drv(
        &self,
        drv: &str,
        limits: RunLimits,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<Option<String>, NixError> {
        let what = format!("build {drv}");
        let mut c = self.command();
        c.args(["build", "--json", "--no-link"]);
        c.args(["--log-format", "internal-json", "-v"]);
        c.arg(self.drv_installable(drv));
        c.args(&self.extra_args);
        let out = run(c, &what, limits, on_line)?;
        if !out.status.success() {
            return Err(NixError::Failed {
                what,
                message: killed_or(&out.status, || internal_json_error(&out.stderr)),
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| NixError::Output {
                what: what.clone(),
                message: e.to_string(),
            })?;
        Ok(value
            .as_array()
            .and_then(|a| a.first())
            .and_then(|b| b.get("outputs"))
            .and_then(|o| o.get("out"))
            .and_then(|o| o.as_str())
            .map(String::from))
    }

    /// One `nix build --json --no-link --log-format internal-json -v` of
    /// several derivations' outputs (`--keep-going`: build all that can be
    /// built despite a failure). `on_line` receives every stderr line as it
    /// arrives. Returns the `nix build --json` answer (only on success).
    pub fn build_drvs(
        &self,
        drvs: &[String],
        keep_going: bool,
        limits: RunLimits,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<serde_json::Value, NixError> {
        let what = format!(
            "build of {} {}",
            drvs.len(),
            if drvs.len() == 1 {
                "derivation"
            } else {
                "derivations"
            }
        );
        let mut c = self.command();
        c.args(["build", "--json", "--no-link"]);
        c.args(["--log-format", "internal-json", "-v"]);
        if keep_going {
            c.arg("--keep-going");
        }
        c.args(drvs.iter().map(|d| self.drv_installable(d)));
        c.args(&self.extra_args);
        let out = run(c, &what, limits, on_line)?;
        if !out.status.success() {
            return Err(NixError::Failed {
                what,
                message: killed_or(&out.status, || internal_json_error(&out.stderr)),
            });
        }
        serde_json::from_slice(&out.stdout).map_err(|e| NixError::Output {
            what,
            message: e.to_string(),
        })
    }

    /// Which of `paths` are valid in the store (`--store` in the extra
    /// arguments is honoured, so a remote build store is asked). Understands
    /// both JSON shapes: 2.8's array with `"valid": false` entries and the
    /// object keyed by path (null when invalid) of later versions.
    pub fn valid_paths(&self, paths: &[String]) -> Result<BTreeSet<String>, NixError> {
        if paths.is_empty() {
            return Ok(BTreeSet::new());
        }
        let value = self.path_info_json(&["--json"], paths, "path-info".to_string())?;
        Ok(parse_path_info(&value))
    }

    /// Every path in the closures of `roots` with its nar size and
    /// references (`nix path-info -r --json`, one call for all roots).
    pub fn closure_info(&self, roots: &[String]) -> Result<BTreeMap<String, PathInfo>, NixError> {
        if roots.is_empty() {
            return Ok(BTreeMap::new());
        }
        let what = format!("path-info -r of {} paths", roots.len());
        let value = self.path_info_json(&["-r", "--json"], roots, what)?;
        Ok(parse_path_infos(&value))
    }

    /// `nix path-info <flags> <paths>`'s JSON answer.
    fn path_info_json(
        &self,
        flags: &[&str],
        paths: &[String],
        what: String,
    ) -> Result<serde_json::Value, NixError> {
        let mut c = self.command();
        c.arg("path-info").args(flags);
        c.args(paths);
        c.args(&self.extra_args);
        let out = run(c, &what, RunLimits::default(), &mut |_| {})?;
        if !out.status.success() {
            return Err(NixError::Failed {
                what,
                message: killed_or(&out.status, || error_message(out.stderr.as_bytes())),
            });
        }
        serde_json::from_slice(&out.stdout).map_err(|e| NixError::Output {
            what,
            message: e.to_string(),
        })
    }

    /// `nix flake check` (`--no-build` when `build` is false), with the
    /// internal-json log streamed to `on_line`.
    pub fn flake_check(
        &self,
        flake: &str,
        build: bool,
        limits: RunLimits,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(), NixError> {
        self.check_flake_ref(flake)?;
        let what = format!("flake check {flake}");
        let mut c = self.command();
        c.args(["flake", "check", "--log-format", "internal-json", "-v"]);
        if !build {
            c.arg("--no-build");
        }
        c.arg(flake);
        c.args(&self.extra_args);
        let out = run(c, &what, limits, on_line)?;
        if !out.status.success() {
            return Err(NixError::Failed {
                what,
                message: killed_or(&out.status, || internal_json_error(&out.stderr)),
            });
        }
        Ok(())
    }
}

/// A store path's size and references, from `nix path-info --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathInfo {
    pub nar_size: u64,
    pub references: Vec<String>,
}

/// `nix path-info --json` in either shape (2.8's array, the object keyed
/// by path of later versions; invalid paths left out).
fn parse_path_infos(value: &serde_json::Value) -> BTreeMap<String, PathInfo> {
    let info = |i: &serde_json::Value| {
        Some(PathInfo {
            nar_size: i.get("narSize")?.as_u64()?,
            references: i
                .get("references")
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|x| x.as_str())
                        // 2.8 and 2.26 give full paths; bare names are
                        // made full so both shapes agree.
                        .map(|x| {
                            if x.starts_with('/') {
                                x.to_string()
                            } else {
                                format!("/nix/store/{x}")
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    };
    match value {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| Some((i.get("path")?.as_str()?.to_string(), info(i)?)))
            .collect(),
        serde_json::Value::Object(m) => m
            .iter()
            .filter_map(|(p, i)| Some((p.clone(), info(i)?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `nixosConfigurations.<host>.config.system.build.<attr>`, host quoted.
pub fn host_attr_path(host: &str, attr: HostAttr) -> String {
    format!(
        "nixosConfigurations.{}.config.system.build.{}",
        quote_attr(host),
        attr.name()
    )
}

/// A Nix string literal.
pub(crate) fn nix_string(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace("${", "\\${")
    )
}

fn parse_path_info(value: &serde_json::Value) -> BTreeSet<String> {
    let mut valid = BTreeSet::new();
    match value {
        serde_json::Value::Array(items) => {
            for i in items {
                let path = i.get("path").and_then(|p| p.as_str());
                let ok = i.get("valid").and_then(|v| v.as_bool()).unwrap_or(true);
                if let (Some(p), true) = (path, ok) {
                    valid.insert(p.to_string());
                }
            }
        }
        serde_json::Value::Object(map) => {
            for (p, info) in map {
                let ok =
                    !info.is_null() && info.get("valid").and_then(|v| v.as_bool()).unwrap_or(true);
                if ok {
                    valid.insert(p.clone());
                }
            }
        }
        _ => {}
    }
    valid
}

/// The error messages of an internal-json log (level-0 `msg` lines), ANSI
/// removed; falls back to the plain-text rule for other output.
fn internal_json_error(stderr: &str) -> String {
    let mut errors = Vec::new();
    for line in stderr.lines() {
        if let Some(json) = line.strip_prefix("@nix ")
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
            && v.get("action").and_then(|a| a.as_str()) == Some("msg")
            && v.get("level").and_then(|l| l.as_u64()) == Some(0)
        {
            let msg = v
                .get("raw_msg")
                .or_else(|| v.get("msg"))
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            errors.push(innermost_first(strip_ansi(msg).trim()));
        }
    }
    if errors.is_empty() {
        error_message(stderr.as_bytes())
    } else {
        errors.join("\n")
    }
}

/// Runs one nix process through [`crate::process`], its failures to run
/// as [`NixError`]s.
fn run(
    cmd: Command,
    what: &str,
    limits: RunLimits,
    on_line: &mut dyn FnMut(&str),
) -> Result<Finished, NixError> {
    let program = cmd.get_program().to_os_string();
    process::run(cmd, process::Stdout::Keep, limits, on_line).map_err(|e| match e {
        RunError::NotFound => NixError::Missing(missing_where(&program)),
        RunError::Spawn(e) => NixError::Spawn(e),
        RunError::TimedOut { secs } => NixError::TimedOut {
            what: what.into(),
            secs,
        },
        RunError::Interrupted => NixError::Interrupted { what: what.into() },
    })
}

/// Where nix was looked for, for [`NixError::Missing`].
pub(crate) fn missing_where(program: &std::ffi::OsStr) -> String {
    if std::env::var_os(NIX_ENV).is_some_and(|p| !p.is_empty()) {
        format!("at {NIX_ENV}={}", program.to_string_lossy())
    } else {
        "on PATH".to_string()
    }
}

/// "nix (Nix) 2.8.0" / "nix (Lix, like Nix) 2.91.1" -> (2, 8) / (2, 91).
fn parse_release(version: &str) -> Option<(u32, u32)> {
    let v = version.split_whitespace().last()?;
    let mut it = v.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.trim_end_matches(|c: char| !c.is_ascii_digit());
    Some((major, minor.parse().ok()?))
}

/// The flake URL of a directory in a git repository, optionally pinned to a
/// revision. `git+file` sees exactly the tracked files (what a flake sees).
///
/// A pinned revision also names `ref=HEAD`: without a ref, Nix before 2.10
/// fetches `refs/heads/master` from a repository whose path it does not
/// take as local (one with escaped characters), which fails on any other
/// branch, and current Nix warns "could not read HEAD ref" at a detached
/// HEAD. With a revision the ref only has to contain it; HEAD does for
/// every commit guard pins (HEAD itself, its ancestors, bisect candidates
/// between `--good` and a `--bad` that is HEAD's), and a local repository
/// is read directly by every version, whatever the ref.
pub fn flake_url(repo_root: &Path, subdir: &str, rev: Option<&str>) -> String {
    flake_url_with(repo_root, subdir, rev.map(|_| "HEAD"), rev)
}

/// Like [`flake_url`], pinned to `rev` and naming the ref that keeps it
/// alive (`?ref=refs/guard/<id>&rev=<sha>`): unambiguous on every Nix
/// version, also for a commit no branch reaches (a temporary commit of the
/// index).
pub fn flake_url_at_ref(repo_root: &Path, subdir: &str, git_ref: &str, rev: &str) -> String {
    flake_url_with(repo_root, subdir, Some(git_ref), Some(rev))
}

fn flake_url_with(
    repo_root: &Path,
    subdir: &str,
    git_ref: Option<&str>,
    rev: Option<&str>,
) -> String {
    // A flake URL's path must be absolute (`git+file://.` is an error).
    let absolute = std::path::absolute(repo_root).unwrap_or_else(|_| repo_root.to_path_buf());
    let repo_root = absolute.as_path();
    // Bytes, not a lossy string: a path that is not UTF-8 is still a path.
    let mut url = format!(
        "git+file://{}",
        percent_encode(repo_root.as_os_str().as_encoded_bytes(), PATH_KEEP)
    );
    let mut params = Vec::new();
    if !subdir.is_empty() && subdir != "." {
        params.push(format!(
            "dir={}",
            percent_encode(subdir.as_bytes(), QUERY_KEEP)
        ));
    }
    if let Some(r) = git_ref {
        params.push(format!("ref={}", percent_encode(r.as_bytes(), QUERY_KEEP)));
    }
    if let Some(rev) = rev {
        params.push(format!("rev={rev}"));
    }
    // Nix before 2.20 refuses a shallow clone ("a non-shallow repository
    // is needed") unless asked; CI checkouts are shallow by default.
    if is_shallow_clone(repo_root) {
        params.push("shallow=1".to_string());
    }
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
}

/// Whether the repository at `root` is a shallow clone: git records the cut
/// in `shallow` in its common dir (`.git`, or for a linked worktree the dir
/// its `.git` file names, then that dir's `commondir`).
fn is_shallow_clone(root: &Path) -> bool {
    let dot_git = root.join(".git");
    let git_dir = if dot_git.is_dir() {
        dot_git
    } else {
        let Some(dir) = std::fs::read_to_string(&dot_git)
            .ok()
            .and_then(|t| t.strip_prefix("gitdir:").map(|d| d.trim().to_string()))
        else {
            return false;
        };
        root.join(dir)
    };
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or(git_dir);
    common.join("shallow").is_file()
}

/// A Nix attribute path element, quoted when it is not a plain identifier.
/// Host names are validated before they get here; quoting keeps even odd
/// names (`swarm.0`) from being read as nested attributes.
pub fn quote_attr(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\''));
    if plain {
        name.to_string()
    } else {
        let escaped = name
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace("${", "\\${");
        format!("\"{escaped}\"")
    }
}

/// Besides letters and digits, what a URL path holds unescaped: RFC 3986's
/// unreserved characters and some of `pchar` (`+ , = @ : !`), so that Nix
/// before 2.10, which does not decode escapes in a `git+file` path, still
/// reads a repository such as `/home/me/c++` as a local work tree.
const PATH_KEEP: &[u8] = b"/-_.~+,=@:!";
/// What a query value holds unescaped (`&`, `=`, `+` and `#` are escaped).
const QUERY_KEEP: &[u8] = b"/-_.~";

/// Escapes every byte but ASCII letters, digits and `keep` as `%XX`.
fn percent_encode(s: &[u8], keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` escapes decoded (for messages; invalid UTF-8 shown lossily).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
        .to_string()
}

/// "nix was killed by signal N" when nix did not exit by itself (killed by
/// the OOM killer or someone else): whatever it printed last is then not
/// the reason. Otherwise the message `f` extracts from its output.
fn killed_or(status: &std::process::ExitStatus, f: impl FnOnce() -> String) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status.signal() {
        Some(sig) => {
            let name = match sig {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                _ => "",
            };
            format!("nix was killed by signal {sig}{name}")
        }
        None => f(),
    }
}

/// The last `error:` block of nix's stderr (warnings and earlier, ignored
/// errors such as a busy cache database dropped), ANSI codes removed.
pub(crate) fn error_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = strip_ansi(&text);
    let start = text
        .match_indices("error:")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || text[..i].ends_with('\n'))
        .last();
    match start {
        Some(i) => with_git_message(innermost_first(text[i..].trim()), &text[..i]),
        None => last_line(text.as_bytes()),
    }
}

/// "program 'git' failed with exit code 128" says nothing; git's own
/// `fatal:` lines, printed before nix's error, say why: they are added to
/// the first line.
fn with_git_message(message: String, before: &str) -> String {
    if !message.contains("program 'git' failed") {
        return message;
    }
    let git: Vec<&str> = before
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("fatal: "))
        .collect();
    if git.is_empty() {
        return message;
    }
    let (first, rest) = message.split_once('\n').unwrap_or((&message, ""));
    let mut out = format!("{first} (git: {})", git.join("; "));
    if !rest.is_empty() {
        out.push('\n');
        out.push_str(rest);
    }
    out
}

/// Nix 2.20 and later print a trace outermost first, under a bare `error:`
/// line, with the message itself (`error: <message>`, indented) last:
/// reordered here into 2.8's shape, the message first and then the frames
/// innermost first, so that the first line is the cause and the next ones
/// the file and line that raised it. Other text is returned unchanged.
fn innermost_first(block: &str) -> String {
    let lines: Vec<&str> = block.lines().collect();
    if lines.first().map(|l| l.trim()) != Some("error:") {
        return block.to_string();
    }
    let Some(msg) = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with("error:"))
        .filter(|&i| i > 0)
    else {
        return block.to_string();
    };
    let mut out = vec![lines[msg].trim().to_string()];
    out.extend(lines[msg + 1..].iter().map(|l| l.to_string()));
    let mut frames: Vec<Vec<&str>> = Vec::new();
    for l in &lines[1..msg] {
        if l.trim_start().starts_with('…') || frames.is_empty() {
            frames.push(Vec::new());
        }
        if let Some(f) = frames.last_mut() {
            f.push(l);
        }
    }
    for f in frames.iter_mut().rev() {
        while f.last().is_some_and(|l| l.trim().is_empty()) {
            f.pop();
        }
        if f.is_empty() {
            continue;
        }
        out.push(String::new());
        out.extend(f.iter().map(|l| l.to_string()));
    }
    out.join("\n")
}

/// Removes ANSI CSI escapes (nix colours its messages).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(parse_release("nix (Nix) 2.8.0"), Some((2, 8)));
        assert_eq!(parse_release("nix (Lix, like Nix) 2.91.1"), Some((2, 91)));
        assert_eq!(parse_release("nix (Nix) 2.24.0pre20240801"), Some((2, 24)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn urls() {
        let root = Path::new("/home/me/my fleet");
        assert_eq!(flake_url(root, ".", None), "git+file:///home/me/my%20fleet");
        assert_eq!(
            flake_url(root, "examples/fleet", Some("abc")),
            "git+file:///home/me/my%20fleet?dir=examples/fleet&ref=HEAD&rev=abc"
        );
        // `+` stays (Nix 2.8 reads it as a local path); a query value
        // escapes what the query syntax uses.
        assert_eq!(
            flake_url(Path::new("/src/c++/fleet"), "a&b+c", None),
            "git+file:///src/c++/fleet?dir=a%26b%2Bc"
        );
        assert_eq!(
            flake_url(Path::new("/src/flotte-ü"), "", None),
            "git+file:///src/flotte-%C3%BC"
        );
        assert_eq!(percent_decode("/a%20b/%C3%BC%zz"), "/a b/ü%zz");
        assert_eq!(
            flake_url_at_ref(root, "", "refs/guard/1-0", "abc"),
            "git+file:///home/me/my%20fleet?ref=refs/guard/1-0&rev=abc"
        );
    }

    #[test]
    fn relative_roots_become_absolute() {
        let url = flake_url(Path::new("."), "examples/fleet", None);
        assert!(url.starts_with("git+file:///"), "{url}");
        assert!(!url.contains("file://."), "{url}");
    }

    #[test]
    fn attribute_quoting() {
        assert_eq!(quote_attr("cortex-alpha"), "cortex-alpha");
        assert_eq!(quote_attr("swarm.0"), "\"swarm.0\"");
        assert_eq!(quote_attr("0day"), "\"0day\"");
        assert_eq!(quote_attr("a\"${x}"), "\"a\\\"\\${x}\"");
    }

    #[test]
    fn path_info_shapes_of_old_and_new_nix() {
        // 2.8: an array, invalid paths flagged.
        let old = serde_json::json!([
            {"path": "/nix/store/a", "narSize": 1},
            {"path": "/nix/store/b", "valid": false},
        ]);
        assert_eq!(
            parse_path_info(&old).into_iter().collect::<Vec<_>>(),
            vec!["/nix/store/a"]
        );
        // 2.19+: an object keyed by path, null when invalid.
        let new = serde_json::json!({"/nix/store/a": {"narSize": 1}, "/nix/store/b": null});
        assert_eq!(
            parse_path_info(&new).into_iter().collect::<Vec<_>>(),
            vec!["/nix/store/a"]
        );
    }

    #[test]
    fn path_info_shapes_with_sizes_of_old_and_new_nix() {
        let old = serde_json::json!([{"path": "/nix/store/a", "narSize": 3, "references": ["/nix/store/b"]}]);
        let new = serde_json::json!({"/nix/store/a": {"narSize": 3, "references": ["/nix/store/b"]}, "/nix/store/c": null});
        assert_eq!(parse_path_infos(&old), parse_path_infos(&new));
        assert_eq!(
            parse_path_infos(&old)["/nix/store/a"].references,
            vec!["/nix/store/b"]
        );
    }

    #[test]
    fn old_nix_refuses_an_escaped_work_tree_path_only() {
        let mut nix = Nix {
            program: "nix".into(),
            version: "nix (Nix) 2.8.0".into(),
            release: Some((2, 8)),
            extra_args: Vec::new(),
        };
        let tree = flake_url(Path::new("/home/me/my fleet"), "", None);
        let pinned = flake_url(Path::new("/home/me/my fleet"), "", Some("abc"));
        let plain = flake_url(Path::new("/home/me/c++"), "", None);
        let e = nix.check_flake_ref(&format!("{tree}#x")).unwrap_err();
        assert!(e.to_string().contains("/home/me/my fleet"), "{e}");
        assert!(e.to_string().contains("--staged"), "{e}");
        assert!(nix.check_flake_ref(&format!("{pinned}#x")).is_ok());
        assert!(nix.check_flake_ref(&plain).is_ok());
        nix.release = Some((2, 26));
        assert!(nix.check_flake_ref(&format!("{tree}#x")).is_ok());
    }

    #[test]
    fn drv_installables_follow_the_version() {
        let mut nix = Nix {
            program: "nix".into(),
            version: "nix (Nix) 2.8.0".into(),
            release: Some((2, 8)),
            extra_args: Vec::new(),
        };
        assert_eq!(nix.drv_installable("/nix/store/x.drv"), "/nix/store/x.drv");
        nix.release = Some((2, 18));
        assert_eq!(
            nix.drv_installable("/nix/store/x.drv"),
            "/nix/store/x.drv^*"
        );
        nix.release = None;
        assert_eq!(
            nix.drv_installable("/nix/store/x.drv"),
            "/nix/store/x.drv^*"
        );
    }

    #[test]
    fn internal_json_errors_are_extracted() {
        let log = "@nix {\"action\":\"start\",\"id\":1,\"level\":3,\"text\":\"building\",\"type\":105}\n\
                   @nix {\"action\":\"msg\",\"level\":0,\"msg\":\"\\u001b[31;1merror:\\u001b[0m builder failed\",\"raw_msg\":\"builder failed\"}\n";
        assert_eq!(internal_json_error(log), "builder failed");
        assert_eq!(internal_json_error("error: plain\n"), "error: plain");
    }

    #[test]
    fn new_traces_are_reordered_message_and_innermost_frame_first() {
        // Nix 2.26's `--show-trace` of a module that throws (shortened).
        let s = "error:\n       … while evaluating attribute 'drv'\n         at «string»:1:6:\n            1| t: { drv = t.drvPath; }\n\n       … while evaluating the attribute 'value.broken'\n         at /nix/store/x-source/environments/zfs.nix:5:3:\n            5|   boot.broken = throw \"zfs\";\n\n       … while calling the 'throw' builtin\n         at /nix/store/x-source/environments/zfs.nix:5:17:\n            5|   boot.broken = throw \"zfs\";\n\n       error: zfs is broken 42\n";
        let m = error_message(s.as_bytes());
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines[0], "error: zfs is broken 42", "{m}");
        assert_eq!(
            lines[2].trim(),
            "… while calling the 'throw' builtin",
            "{m}"
        );
        assert!(lines[3].contains("environments/zfs.nix:5:17"), "{m}");
        assert!(lines.last().unwrap().contains("t: { drv"), "{m}");
        // 2.8's shape and a message without a trace are left as they are.
        let old = "error: zfs is broken 42\n\n       at /a.nix:5:3:";
        assert_eq!(error_message(old.as_bytes()), old);
        assert_eq!(error_message(b"error:\n"), "error:");
    }

    #[test]
    fn git_failures_carry_gits_message() {
        let s = b"fatal: couldn't find remote ref refs/heads/master\nerror: program 'git' failed with exit code 128\n(use '--show-trace' to show detailed location information)\n";
        let m = error_message(s);
        assert_eq!(
            m.lines().next().unwrap(),
            "error: program 'git' failed with exit code 128 (git: fatal: couldn't find remote ref refs/heads/master)"
        );
    }

    #[test]
    fn errors_are_extracted() {
        let s = b"warning: Git tree is dirty\n\x1b[31;1merror:\x1b[0m attribute 'x' missing\n";
        assert_eq!(error_message(s), "error: attribute 'x' missing");
        let s = b"error: SQLite database 'x' is busy\nerror: broken module\n\n       at /a.nix:1:1: error: nested\n";
        assert_eq!(
            error_message(s),
            "error: broken module\n\n       at /a.nix:1:1: error: nested"
        );
    }
}

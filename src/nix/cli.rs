//! The nix invocation layer: nothing else in guard spawns `nix`.
//!
//! Invocations are chosen to be valid on Debian's Nix 2.8 (flakes behind
//! `--extra-experimental-features`, no `--print-out-paths`) and on Nix 2.18+
//! and Lix: `nix eval --json`, `nix build --json --no-link`. Git's
//! repository-locating variables are stripped from every child, because a
//! hook's `GIT_INDEX_FILE` would change what nix's own `git ls-files` sees;
//! the repository is always passed explicitly in the flake URL.
//!
//! Every child runs in its own process group and is registered while it
//! runs, so that Ctrl-C ([`interrupt_children`]) or a per-host timeout can
//! stop nix together with the builders it started, and so that no new nix
//! starts once guard is being interrupted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

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

/// One host's answer in a batch evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEval {
    /// Evaluated.
    Ok(Drv),
    /// Evaluation threw (the message needs a separate, per-host evaluation:
    /// `builtins.tryEval` does not return it).
    Failed,
    /// No such host in `nixosConfigurations`.
    Missing,
}

/// Limits for one nix process.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    /// Stop the process (and its builders) after this long.
    pub timeout: Option<Duration>,
}

/// What a finished nix process left.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    /// Every stderr line, in order (for error messages).
    stderr: String,
}

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

    /// Evaluates the drvPath and out path of `attr` of many hosts in one
    /// nix process. Each host is guarded with `builtins.tryEval`, so a host
    /// whose modules `throw` is reported as [`HostEval::Failed`] without
    /// hiding the others. Errors `tryEval` cannot catch (a type error, a
    /// missing attribute) fail the whole call: evaluate per host then.
    pub fn eval_hosts(
        &self,
        flake: &str,
        hosts: &[(String, HostAttr)],
        limits: RunLimits,
    ) -> Result<BTreeMap<String, HostEval>, NixError> {
        if hosts.is_empty() {
            return Ok(BTreeMap::new());
        }
        let value = self.eval_json_limited(
            &format!("{flake}#nixosConfigurations"),
            Some(&batch_apply(hosts)),
            limits,
            false,
        )?;
        parse_batch(&value, hosts).map_err(|message| NixError::Output {
            what: format!("eval {flake}#nixosConfigurations"),
            message,
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

    /// Which of `paths` are valid in the store (`--store` in the extra
    /// arguments is honoured, so a remote build store is asked). Understands
    /// both JSON shapes: 2.8's array with `"valid": false` entries and the
    /// object keyed by path (null when invalid) of later versions.
    pub fn valid_paths(&self, paths: &[String]) -> Result<BTreeSet<String>, NixError> {
        if paths.is_empty() {
            return Ok(BTreeSet::new());
        }
        let what = "path-info".to_string();
        let mut c = self.command();
        c.args(["path-info", "--json"]);
        c.args(paths);
        c.args(&self.extra_args);
        let out = run(c, &what, RunLimits::default(), &mut |_| {})?;
        if !out.status.success() {
            return Err(NixError::Failed {
                what,
                message: killed_or(&out.status, || error_message(out.stderr.as_bytes())),
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| NixError::Output {
                what,
                message: e.to_string(),
            })?;
        Ok(parse_path_info(&value))
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

/// `nixosConfigurations.<host>.config.system.build.<attr>`, host quoted.
pub fn host_attr_path(host: &str, attr: HostAttr) -> String {
    format!(
        "nixosConfigurations.{}.config.system.build.{}",
        quote_attr(host),
        attr.name()
    )
}

/// A Nix string literal.
fn nix_string(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace("${", "\\${")
    )
}

/// The `--apply` function of [`Nix::eval_hosts`]: host name -> `{drv, out}`,
/// `{error = true;}` or `{missing = true;}`. Forcing `drvPath` instantiates
/// the derivation (writes the .drv), which the build step then uses.
fn batch_apply(hosts: &[(String, HostAttr)]) -> String {
    let list: Vec<String> = hosts
        .iter()
        .map(|(h, a)| format!("{{ n = {}; a = {}; }}", nix_string(h), nix_string(a.name())))
        .collect();
    format!(
        "cs: builtins.listToAttrs (map (x: {{ name = x.n; value = \
         if !(cs ? ${{x.n}}) then {{ missing = true; }} else \
         let t = cs.${{x.n}}.config.system.build.${{x.a}} or null; \
         r = builtins.tryEval (if t == null then null else t.drvPath); \
         in if r.success && r.value != null then {{ drv = r.value; out = t.outPath; }} \
         else {{ error = true; }}; }}) [ {} ])",
        list.join(" ")
    )
}

fn parse_batch(
    value: &serde_json::Value,
    hosts: &[(String, HostAttr)],
) -> Result<BTreeMap<String, HostEval>, String> {
    let obj = value.as_object().ok_or("expected an attribute set")?;
    let mut out = BTreeMap::new();
    for (h, _) in hosts {
        let v = obj
            .get(h)
            .ok_or_else(|| format!("no result for host {h}"))?;
        let r = if v.get("missing").is_some() {
            HostEval::Missing
        } else if v.get("error").is_some() {
            HostEval::Failed
        } else {
            HostEval::Ok(serde_json::from_value(v.clone()).map_err(|e| format!("host {h}: {e}"))?)
        };
        out.insert(h.clone(), r);
    }
    Ok(out)
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

/// Children currently running, by process group, and whether guard is
/// being interrupted (then no new child starts).
struct Registry {
    interrupted: bool,
    groups: BTreeSet<i32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    interrupted: false,
    groups: BTreeSet::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves the set consistent (inserts and
    // removes are single operations), so a poisoned lock is still usable.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops every running nix child: SIGTERM to each process group (nix then
/// kills its builders and exits), and refuses to start new ones from now on.
pub fn interrupt_children() {
    let mut r = registry();
    r.interrupted = true;
    for &g in &r.groups {
        signal_group(g, libc::SIGTERM);
    }
}

/// SIGKILL to every running nix child and everything it started: the last
/// resort when nix does not react to SIGTERM.
pub fn kill_children() {
    let r = registry();
    for &g in &r.groups {
        kill_tree(g);
    }
}

/// Whether [`interrupt_children`] was called.
pub fn is_interrupted() -> bool {
    registry().interrupted
}

/// Whether any nix child is running.
pub fn children_running() -> bool {
    !registry().groups.is_empty()
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions. `pgid` is the pid
    // of a child we have not reaped yet (it leaves the registry before
    // `wait`), so the group id cannot have been reused by another process.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Signals `pgid` only while it is still registered (still ours).
fn signal_if_running(pgid: i32, sig: i32) {
    let r = registry();
    if r.groups.contains(&pgid) {
        signal_group(pgid, sig);
    }
}

/// SIGKILL to `pid`'s group and to every descendant of `pid`. nix starts
/// each builder in a session of its own, so killing nix's group alone
/// would orphan a builder that nix did not stop itself (nix can miss one
/// that was being started at the moment it was told to stop). The
/// descendants are found through /proc before nix dies; where /proc does
/// not exist only the group is killed.
fn kill_tree(pid: i32) {
    let first = descendants(pid);
    signal_group(pid, libc::SIGKILL);
    // A second look catches processes forked while the first was taken.
    let mut all = first;
    for d in descendants(pid) {
        if !all.contains(&d) {
            all.push(d);
        }
    }
    for d in all {
        // SAFETY: kill(2) has no memory-safety preconditions; `d` was a
        // descendant of our unreaped child an instant ago.
        unsafe {
            libc::kill(d, libc::SIGKILL);
        }
    }
}

/// Makes guard the "subreaper" of everything it starts (Linux): a builder
/// that nix leaves behind when it is stopped is re-parented to guard
/// instead of init, so [`reap_orphans`] can still find and stop it.
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers and only
    // changes this process's own attribute.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// After an interruption: SIGKILL every remaining child of guard (builders
/// orphaned by a nix that was stopped, re-parented here by
/// [`become_subreaper`]) and everything below it, then reap them, so
/// nothing guard started outlives it.
pub fn reap_orphans() {
    let me = std::process::id() as i32;
    for _ in 0..3 {
        let mut tree = descendants(me);
        if tree.is_empty() {
            return;
        }
        tree.sort_unstable();
        for &pid in &tree {
            // SAFETY: kill(2) has no memory-safety preconditions; these are
            // our own descendants.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        for &pid in &tree {
            // Reap our direct children (grandchildren are reaped by their
            // own parents, which were just killed, or re-parented to us).
            // SAFETY: waitpid on a pid with a null status pointer is allowed.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        for &pid in &tree {
            // SAFETY: as above.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
    }
}

/// Stops guard's children that are not nix processes it is running: the
/// builders of a nix that died, re-parented to guard.
fn reap_strays() {
    let me = std::process::id() as i32;
    let registered: Vec<i32> = registry().groups.iter().copied().collect();
    for child in children_of(me) {
        if registered.contains(&child) {
            continue;
        }
        kill_tree(child);
        // SAFETY: waitpid on our own child with a null status pointer.
        unsafe {
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
    }
}

fn children_of(pid: i32) -> Vec<i32> {
    let all = descendants(pid);
    all.into_iter()
        .filter(|&d| parent_of(d) == Some(pid))
        .collect()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every process below `root` (children, grandchildren, ...) per /proc.
fn descendants(root: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces and ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Waits until `pid` has exited without reaping it, so that the registry
/// entry can be removed while the pid is still reserved.
fn wait_exited_no_reap(pid: i32) {
    loop {
        // SAFETY: `info` is a plain C struct written by waitid; zeroed is a
        // valid initial value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Starts `cmd` in its own process group, streams its stderr lines to
/// `on_line`, enforces `limits`, and waits for it.
fn run(
    mut cmd: Command,
    what: &str,
    limits: RunLimits,
    on_line: &mut dyn FnMut(&str),
) -> Result<Finished, NixError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own group: a terminal's Ctrl-C reaches guard only, and guard
    // stops each nix with its builders through the group.
    cmd.process_group(0);
    let mut child: Child = {
        let mut r = registry();
        if r.interrupted {
            return Err(NixError::Interrupted { what: what.into() });
        }
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                NixError::Missing(missing_where(cmd.get_program()))
            } else {
                NixError::Spawn(e)
            }
        })?;
        r.groups.insert(child.id() as i32);
        child
    };
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stdout_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let timed_out = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = limits.timeout.map(|t| {
        let timed_out = timed_out.clone();
        std::thread::spawn(move || {
            if done_rx.recv_timeout(t) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            timed_out.store(true, Ordering::SeqCst);
            signal_if_running(pid, libc::SIGTERM);
            if done_rx.recv_timeout(KILL_GRACE) == Err(mpsc::RecvTimeoutError::Timeout) {
                let r = registry();
                if r.groups.contains(&pid) {
                    kill_tree(pid);
                }
            }
        })
    });
    let mut collected = String::new();
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                on_line(line);
                collected.push_str(line);
                collected.push('\n');
            }
        }
    }
    wait_exited_no_reap(pid);
    registry().groups.remove(&pid);
    let status = child.wait().map_err(NixError::Spawn)?;
    if std::os::unix::process::ExitStatusExt::signal(&status).is_some() {
        // nix was killed (OOM killer, a user's kill -9): its builders were
        // orphaned to guard (become_subreaper); stop them.
        reap_strays();
    }
    drop(done_tx);
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    let stdout = stdout_reader.join().unwrap_or_default();
    if timed_out.load(Ordering::SeqCst) {
        return Err(NixError::TimedOut {
            what: what.into(),
            secs: limits.timeout.map(|t| t.as_secs()).unwrap_or_default(),
        });
    }
    if is_interrupted() && !status.success() {
        return Err(NixError::Interrupted { what: what.into() });
    }
    Ok(Finished {
        status,
        stdout,
        stderr: collected,
    })
}

/// Where nix was looked for, for [`NixError::Missing`].
fn missing_where(program: &std::ffi::OsStr) -> String {
    if std::env::var_os(NIX_ENV).is_some_and(|p| !p.is_empty()) {
        format!("at {NIX_ENV}={}", program.to_string_lossy())
    } else {
        "on PATH".to_string()
    }
}

/// How long nix gets to stop its builders after SIGTERM before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

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
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
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
fn error_message(stderr: &[u8]) -> String {
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
    fn batch_apply_quotes_host_names_as_strings() {
        let f = batch_apply(&[
            ("web".into(), HostAttr::Toplevel),
            ("a\"${x}".into(), HostAttr::Vm),
        ]);
        assert!(f.contains(r#"{ n = "web"; a = "toplevel"; }"#), "{f}");
        assert!(f.contains(r#"{ n = "a\"\${x}"; a = "vm"; }"#), "{f}");
        assert!(f.contains("builtins.tryEval"), "{f}");
    }

    #[test]
    fn batch_results_are_parsed() {
        let hosts = vec![
            ("a".to_string(), HostAttr::Toplevel),
            ("b".to_string(), HostAttr::Toplevel),
            ("c".to_string(), HostAttr::Toplevel),
        ];
        let v = serde_json::json!({
            "a": {"drv": "/nix/store/x-a.drv", "out": "/nix/store/x-a"},
            "b": {"error": true},
            "c": {"missing": true},
        });
        let r = parse_batch(&v, &hosts).unwrap();
        assert_eq!(
            r["a"],
            HostEval::Ok(Drv {
                drv: "/nix/store/x-a.drv".into(),
                out: "/nix/store/x-a".into()
            })
        );
        assert_eq!(r["b"], HostEval::Failed);
        assert_eq!(r["c"], HostEval::Missing);
        assert!(parse_batch(&serde_json::json!({}), &hosts).is_err());
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
    fn descendants_are_found_through_proc() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "/bin/sleep 5 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = std::time::Instant::now();
        let mut found = Vec::new();
        while found.is_empty() && start.elapsed() < Duration::from_secs(5) {
            found = descendants(pid);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        kill_tree(pid);
        let status = child.wait().unwrap();
        assert!(!status.success());
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

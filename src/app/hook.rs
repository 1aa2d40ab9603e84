//! `guard hook install|uninstall|status`: guard's `pre-commit` and
//! `pre-merge-commit` shims (the POSIX sh scripts under `hooks/` in guard's
//! repository) in the directory git runs hooks from.
//!
//! A hook guard did not write is never overwritten: it is kept as
//! `<hook>.legacy`, the shim runs it first (its failure blocks the commit),
//! and `uninstall` puts it back. The only files this writes are inside the
//! hooks directory: installing a hook is the user's explicit request.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use super::exit;
use crate::cli::HookAction;
use crate::git::{ConfigScope, HooksDir, Repo};

/// The line that marks a hook file as guard's (pre-commit's installer uses
/// the same idea): anything without it is a foreign hook.
pub const MARKER: &str = "# guard-managed-hook";

/// The hooks guard installs and their shim templates. A merge without
/// conflicts runs only `pre-merge-commit`, so both are needed.
const HOOKS: [(&str, &str); 2] = [
    ("pre-commit", include_str!("../../hooks/pre-commit")),
    (
        "pre-merge-commit",
        include_str!("../../hooks/pre-merge-commit"),
    ),
];

/// The template line that records guard's path.
const BIN_LINE: &str = "GUARD_BIN=''";

/// `guard hook <action>`.
pub fn hook(dir: &Path, action: HookAction, force: bool) -> Result<i32> {
    let repo = Repo::discover(dir)?;
    let hooks = repo.hooks_dir()?;
    let mut out = std::io::stdout().lock();
    let code = match action {
        HookAction::Install => install(&hooks, force, &mut out)?,
        HookAction::Uninstall => uninstall(&hooks, &mut out)?,
        HookAction::Status => status(&hooks, &mut out)?,
    };
    out.flush()?;
    Ok(code)
}

/// What is at one hook's path.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Missing,
    /// guard's shim, byte-identical to what install would write now.
    Current,
    /// guard's shim from another version or another guard binary.
    Outdated,
    /// Someone else's hook.
    Foreign,
}

fn state(path: &Path, wanted: &str) -> Result<State> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Missing),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    };
    if meta.is_dir() {
        bail!(
            "{} is a directory, not a hook; move it away first",
            path.display()
        );
    }
    // A symlink (e.g. into a shared hooks repository) or a binary is
    // foreign whatever it points to.
    let text = if meta.file_type().is_symlink() {
        None
    } else {
        std::fs::read(path).ok()
    };
    let Some(text) = text else {
        return Ok(State::Foreign);
    };
    if !is_guard_shim(&text) {
        return Ok(State::Foreign);
    }
    let executable = meta.permissions().mode() & 0o111 != 0;
    Ok(if text == wanted.as_bytes() && executable {
        State::Current
    } else {
        State::Outdated
    })
}

/// Whether a hook file is one of guard's shims (marker in its first lines).
fn is_guard_shim(text: &[u8]) -> bool {
    String::from_utf8_lossy(&text[..text.len().min(512)])
        .lines()
        .take(5)
        .any(|l| l.starts_with(MARKER))
}

/// The shim for `template` with guard's absolute path recorded, quoted for
/// sh (a single-quoted word; `'` becomes `'\''`).
fn render(template: &str, guard: Option<&Path>) -> String {
    let Some(bin) = guard else {
        return template.to_string();
    };
    let quoted = bin.to_string_lossy().replace('\'', r"'\''");
    template.replacen(BIN_LINE, &format!("GUARD_BIN='{quoted}'"), 1)
}

/// The running guard binary, if its path can be known and survives in a
/// shell word (a non-UTF-8 path falls back to PATH lookup in the shim).
fn current_guard() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.to_str()
        .is_some_and(|s| !s.contains('\n'))
        .then_some(exe)
}

fn legacy_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".legacy");
    PathBuf::from(name)
}

fn describe_dir(hooks: &HooksDir) -> String {
    match &hooks.configured {
        None => format!("{} (git's default)", hooks.path.display()),
        Some(s) => format!(
            "{} (core.hooksPath = {:?}, {} config{})",
            hooks.path.display(),
            s.value,
            s.scope.name(),
            s.file
                .as_ref()
                .map(|f| format!(" {}", f.display()))
                .unwrap_or_default()
        ),
    }
}

fn install(hooks: &HooksDir, force: bool, out: &mut dyn Write) -> Result<i32> {
    if let Some(s) = &hooks.configured {
        if hooks.path == Path::new("/dev/null") {
            bail!(
                "core.hooksPath is /dev/null ({} config): git runs no hooks in this repository; \
                 unset it to use guard's hook",
                s.scope.name()
            );
        }
        if matches!(s.scope, ConfigScope::Global | ConfigScope::System) && !force {
            bail!(
                "core.hooksPath is set in your {} git config{} to {:?}: hooks there run for \
                 every repository that uses it. Re-run with --force to install guard's hooks \
                 there anyway, or set a repository-local hooks path first \
                 (`git config core.hooksPath .git/hooks`)",
                s.scope.name(),
                s.file
                    .as_ref()
                    .map(|f| format!(" ({})", f.display()))
                    .unwrap_or_default(),
                s.value
            );
        }
    }
    std::fs::create_dir_all(&hooks.path)
        .with_context(|| format!("cannot create the hooks directory {}", hooks.path.display()))?;
    let guard = current_guard();
    // Check every hook before touching any, so a refusal leaves nothing half done.
    let mut plan = Vec::new();
    for (name, template) in HOOKS {
        let path = hooks.path.join(name);
        let wanted = render(template, guard.as_deref());
        let st = state(&path, &wanted)?;
        let legacy = legacy_of(&path);
        if st == State::Foreign && std::fs::symlink_metadata(&legacy).is_ok() {
            bail!(
                "{} is not guard's hook, and {} already exists, so it cannot be kept aside; \
                 merge or remove one of them, then run `guard hook install` again",
                path.display(),
                legacy.display()
            );
        }
        plan.push((name, path, legacy, wanted, st));
    }
    writeln!(out, "hooks directory: {}", describe_dir(hooks))?;
    for (name, path, legacy, wanted, st) in plan {
        match st {
            State::Current => {
                writeln!(out, "{name}: already installed, up to date")?;
                continue;
            }
            State::Foreign => {
                std::fs::rename(&path, &legacy).with_context(|| {
                    format!("cannot move {} to {}", path.display(), legacy.display())
                })?;
                write_shim(&path, &wanted)?;
                writeln!(
                    out,
                    "{name}: installed; your existing hook is kept as {} and runs first \
                     (its failure blocks the commit; `guard hook uninstall` restores it)",
                    legacy.display()
                )?;
            }
            State::Outdated => {
                write_shim(&path, &wanted)?;
                writeln!(out, "{name}: updated")?;
            }
            State::Missing => {
                write_shim(&path, &wanted)?;
                writeln!(out, "{name}: installed")?;
            }
        }
    }
    match &guard {
        Some(g) => writeln!(out, "the hooks run {} (else `guard` on PATH)", g.display())?,
        None => writeln!(out, "the hooks run `guard` from PATH")?,
    }
    if !hooks.config_hooks.is_empty() {
        writeln!(
            out,
            "note: git config also defines hooks for these events: {} (they run too)",
            hooks.config_hooks.join(", ")
        )?;
    }
    Ok(exit::OK)
}

/// Writes next to the hook and renames over it, so git never runs a
/// half-written script.
fn write_shim(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".guard-tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, path)
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write the hook {}", path.display()))
}

fn uninstall(hooks: &HooksDir, out: &mut dyn Write) -> Result<i32> {
    writeln!(out, "hooks directory: {}", describe_dir(hooks))?;
    for (name, _) in HOOKS {
        let path = hooks.path.join(name);
        let legacy = legacy_of(&path);
        let has_legacy = std::fs::symlink_metadata(&legacy).is_ok();
        match state(&path, "")? {
            State::Missing if has_legacy => {
                std::fs::rename(&legacy, &path)
                    .with_context(|| format!("cannot restore {}", legacy.display()))?;
                writeln!(out, "{name}: restored your previous hook")?;
            }
            State::Missing => writeln!(out, "{name}: not installed")?,
            State::Foreign => writeln!(out, "{name}: not guard's hook, left alone")?,
            State::Current | State::Outdated => {
                if has_legacy {
                    std::fs::rename(&legacy, &path).with_context(|| {
                        format!("cannot restore {} over guard's hook", legacy.display())
                    })?;
                    writeln!(out, "{name}: removed; your previous hook is back")?;
                } else {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("cannot remove {}", path.display()))?;
                    writeln!(out, "{name}: removed")?;
                }
            }
        }
    }
    Ok(exit::OK)
}

/// Prints the state of each hook. Exit 0 when both are installed and up to
/// date, 1 otherwise (`guard hook status || guard hook install`).
fn status(hooks: &HooksDir, out: &mut dyn Write) -> Result<i32> {
    writeln!(out, "hooks directory: {}", describe_dir(hooks))?;
    if hooks.path == Path::new("/dev/null") {
        writeln!(out, "core.hooksPath is /dev/null: git runs no hooks here")?;
    }
    let guard = current_guard();
    let mut all_current = true;
    for (name, template) in HOOKS {
        let path = hooks.path.join(name);
        let wanted = render(template, guard.as_deref());
        let st = state(&path, &wanted)?;
        let legacy = legacy_of(&path);
        let chained = if std::fs::symlink_metadata(&legacy).is_ok() {
            format!("; runs your previous hook {} first", legacy.display())
        } else {
            String::new()
        };
        let line = match st {
            State::Current => format!("guard, up to date{chained}"),
            State::Outdated => {
                let bin = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| recorded_bin(&t));
                let why = match bin {
                    Some(b) if !Path::new(&b).exists() => {
                        format!("runs {b}, which no longer exists")
                    }
                    Some(b) => format!("runs {b}"),
                    None => "runs guard from PATH".into(),
                };
                format!(
                    "guard, written by another guard ({why}); `guard hook install` updates it{chained}"
                )
            }
            State::Foreign => {
                "a hook guard did not write (`guard hook install` keeps it and runs it first)"
                    .into()
            }
            State::Missing => "not installed (`guard hook install`)".into(),
        };
        all_current &= st == State::Current;
        writeln!(out, "{name}: {line}")?;
    }
    if !hooks.config_hooks.is_empty() {
        writeln!(
            out,
            "also configured in git config (hook.<name>.event, git >= 2.54): {}",
            hooks.config_hooks.join(", ")
        )?;
    }
    Ok(if all_current {
        exit::OK
    } else {
        exit::FINDINGS
    })
}

/// The guard path a shim records, if any.
fn recorded_bin(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("GUARD_BIN='"))?;
    let v = line.strip_prefix("GUARD_BIN='")?.strip_suffix('\'')?;
    (!v.is_empty()).then(|| v.replace(r"'\''", "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_marked_and_record_the_binary() {
        for (name, t) in HOOKS {
            assert!(is_guard_shim(t.as_bytes()), "{name}");
            assert!(t.contains(BIN_LINE), "{name}");
            assert!(t.starts_with("#!/bin/sh\n"));
            assert!(t.contains("exec \"$GUARD_BIN\" pre-commit"));
            assert!(!t.contains("--no-verify"));
        }
        let s = render(HOOKS[0].1, Some(Path::new("/opt/it's here/guard")));
        assert!(s.contains(r"GUARD_BIN='/opt/it'\''s here/guard'"));
        assert_eq!(recorded_bin(&s).as_deref(), Some("/opt/it's here/guard"));
        assert_eq!(recorded_bin(HOOKS[0].1), None);
    }

    #[test]
    fn foreign_scripts_are_not_mistaken_for_guard() {
        assert!(!is_guard_shim(b"#!/bin/sh\nexec pre-commit run\n"));
        assert!(!is_guard_shim(
            b"#!/bin/sh\n\n\n\n\n\n# guard-managed-hook far below\n"
        ));
    }
}

//! The nix invocation layer: nothing else in guard spawns `nix`.
//!
//! Invocations are chosen to be valid on Debian's Nix 2.8 (flakes behind
//! `--extra-experimental-features`, no `--print-out-paths`) and on Nix 2.18+
//! and Lix: `nix eval --json`, `nix build --json --no-link`. Git's
//! repository-locating variables are stripped from every child, because a
//! hook's `GIT_INDEX_FILE` would change what nix's own `git ls-files` sees;
//! the repository is always passed explicitly in the flake URL.

use std::path::Path;
use std::process::{Command, Stdio};

/// Errors running nix.
#[derive(Debug, thiserror::Error)]
pub enum NixError {
    #[error(
        "nix was not found on PATH; install it (Debian: `apt-get install nix-bin`, or see https://nixos.org/download) or pass --level none"
    )]
    Missing,
    #[error("could not run nix: {0}")]
    Spawn(std::io::Error),
    #[error("nix {what} failed: {message}")]
    Failed { what: String, message: String },
    #[error("nix {what} printed unexpected output: {message}")]
    Output { what: String, message: String },
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

/// A detected nix installation.
#[derive(Debug, Clone)]
pub struct Nix {
    /// `nix --version` output, e.g. "nix (Nix) 2.8.0".
    pub version: String,
    /// Major and minor version, when parseable.
    pub release: Option<(u32, u32)>,
}

impl Nix {
    /// Finds nix on PATH and reads its version.
    pub fn detect() -> Result<Nix, NixError> {
        let out = match Command::new("nix").arg("--version").output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(NixError::Missing),
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
            release: parse_release(&version),
            version,
        })
    }

    /// A `nix` command with flakes enabled and git's variables removed.
    pub fn command(&self) -> Command {
        let mut c = Command::new("nix");
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
        let mut c = self.command();
        c.args(["eval", "--json", installable]);
        if let Some(f) = apply {
            c.args(["--apply", f]);
        }
        let out = c.output().map_err(NixError::Spawn)?;
        if !out.status.success() {
            return Err(NixError::Failed {
                what: format!("eval {installable}"),
                message: error_message(&out.stderr),
            });
        }
        serde_json::from_slice(&out.stdout).map_err(|e| NixError::Output {
            what: format!("eval {installable}"),
            message: e.to_string(),
        })
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
pub fn flake_url(repo_root: &Path, subdir: &str, rev: Option<&str>) -> String {
    let mut url = format!(
        "git+file://{}",
        percent_encode(&repo_root.to_string_lossy())
    );
    let mut params = Vec::new();
    if !subdir.is_empty() && subdir != "." {
        params.push(format!("dir={}", percent_encode(subdir)));
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

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
        .to_string()
}

/// The `error:` part of nix's stderr (warnings dropped), ANSI codes removed.
fn error_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = strip_ansi(&text);
    match text.find("error:") {
        Some(i) => text[i..].trim().to_string(),
        None => last_line(text.as_bytes()),
    }
}

fn strip_ansi(s: &str) -> String {
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
            "git+file:///home/me/my%20fleet?dir=examples/fleet&rev=abc"
        );
    }

    #[test]
    fn attribute_quoting() {
        assert_eq!(quote_attr("cortex-alpha"), "cortex-alpha");
        assert_eq!(quote_attr("swarm.0"), "\"swarm.0\"");
        assert_eq!(quote_attr("0day"), "\"0day\"");
        assert_eq!(quote_attr("a\"${x}"), "\"a\\\"\\${x}\"");
    }

    #[test]
    fn errors_are_extracted() {
        let s = b"warning: Git tree is dirty\n\x1b[31;1merror:\x1b[0m attribute 'x' missing\n";
        assert_eq!(error_message(s), "error: attribute 'x' missing");
    }
}

//! Where git runs hooks from: the equivalent of `git rev-parse --git-path
//! hooks`, plus where that answer came from (so `guard hook install` can
//! refuse to write into a directory set by the user's global config).

use std::path::{Path, PathBuf};

use gix::bstr::ByteSlice;

use super::{GitError, Repo};

/// Which configuration file set `core.hooksPath`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigScope {
    /// The repository's own `.git/config` (or its worktree config).
    Repository,
    /// The user's global config (`~/.gitconfig`, `$XDG_CONFIG_HOME/git/config`).
    Global,
    /// The system or git-installation config.
    System,
    /// The environment or command line (`git -c`, `GIT_CONFIG_COUNT`).
    Environment,
}

impl ConfigScope {
    /// How git's documentation names the scope (`git config --show-scope`).
    pub fn name(self) -> &'static str {
        match self {
            ConfigScope::Repository => "local",
            ConfigScope::Global => "global",
            ConfigScope::System => "system",
            ConfigScope::Environment => "command",
        }
    }
}

/// Where `core.hooksPath` was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksPathSetting {
    /// The value as written.
    pub value: String,
    /// Which configuration set it.
    pub scope: ConfigScope,
    /// The configuration file, when known.
    pub file: Option<PathBuf>,
}

/// The directory git runs hooks from, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksDir {
    /// Absolute path of the directory (it may not exist yet).
    pub path: PathBuf,
    /// `Some` when `core.hooksPath` chose it, `None` for the default
    /// `<common git dir>/hooks`.
    pub configured: Option<HooksPathSetting>,
    /// Names `<n>` of config-defined hooks (`hook.<n>.event`, git 2.54+)
    /// that run for `pre-commit` or `pre-merge-commit`.
    pub config_hooks: Vec<String>,
}

impl Repo {
    /// The directory git runs hooks from, like `git rev-parse --git-path
    /// hooks`: `core.hooksPath` when set (`~` expanded; a relative value is
    /// relative to the work tree root, where git runs hooks, or the git dir
    /// of a bare repository), else `hooks/` in the common git dir, which
    /// linked worktrees share.
    pub fn hooks_dir(&self) -> Result<HooksDir, GitError> {
        let repo = self.shared.local();
        let config = repo.config_snapshot();
        let file = config.plumbing();
        // Last value wins, as in git; remember which file it came from.
        let mut setting: Option<HooksPathSetting> = None;
        if let Some(sections) = file.sections_by_name("core") {
            for s in sections {
                if s.header().subsection_name().is_some() {
                    continue;
                }
                if let Some(v) = s.value("hooksPath") {
                    let meta = s.meta();
                    setting = Some(HooksPathSetting {
                        value: v.to_str_lossy().into_owned(),
                        scope: scope_of(meta.source),
                        file: meta.path.clone(),
                    });
                }
            }
        }
        let mut config_hooks = Vec::new();
        if let Some(sections) = file.sections_by_name("hook") {
            for s in sections {
                let Some(name) = s.header().subsection_name() else {
                    continue;
                };
                if s.values("event")
                    .iter()
                    .any(|e| e == "pre-commit" || e == "pre-merge-commit")
                {
                    config_hooks.push(name.to_str_lossy().into_owned());
                }
            }
        }
        let base = self
            .workdir()
            .unwrap_or_else(|| self.git_dir())
            .to_path_buf();
        let path = match &setting {
            None => absolute(repo.common_dir()),
            Some(s) if s.value.is_empty() => {
                // git resolves an empty value to the work tree root, which
                // is never what anybody meant (prek rejects it too).
                return Err(GitError::Io {
                    context: "core.hooksPath is empty in",
                    path: s.file.clone().unwrap_or_default(),
                    source: std::io::Error::other(
                        "unset it or point it at a directory (`git config --unset core.hooksPath`)",
                    ),
                });
            }
            Some(s) => {
                let p = expand_home(&s.value);
                if p.is_absolute() { p } else { base.join(p) }
            }
        };
        let path = if setting.is_none() {
            path.join("hooks")
        } else {
            path
        };
        Ok(HooksDir {
            path,
            configured: setting,
            config_hooks,
        })
    }
}

fn scope_of(source: gix::config::Source) -> ConfigScope {
    use gix::config::Source as S;
    match source {
        S::Local | S::Worktree => ConfigScope::Repository,
        S::Git | S::User => ConfigScope::Global,
        S::System | S::GitInstallation => ConfigScope::System,
        S::Env | S::Cli | S::Api | S::EnvOverride => ConfigScope::Environment,
    }
}

/// `~/x` and `~` as git expands them in path-valued settings.
fn expand_home(value: &str) -> PathBuf {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    match (value.strip_prefix('~'), home) {
        (Some(""), Some(h)) => PathBuf::from(h),
        (Some(rest), Some(h)) if rest.starts_with('/') => {
            PathBuf::from(h).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(value),
    }
}

/// The git dir is relative when git exported `GIT_DIR=.git` to a hook;
/// anchor it so the path stays valid whatever the caller does next.
fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_expansion_follows_git() {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        if let Some(h) = home {
            assert_eq!(expand_home("~/hooks"), h.join("hooks"));
            assert_eq!(expand_home("~"), h);
        }
        assert_eq!(expand_home("~user/x"), PathBuf::from("~user/x"));
        assert_eq!(expand_home(".githooks"), PathBuf::from(".githooks"));
    }
}

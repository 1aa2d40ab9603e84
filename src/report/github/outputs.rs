//! The step outputs (`$GITHUB_OUTPUT`): the one writer of that file, for
//! every command that sets outputs (`affected`, `scan`, `ci`).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A file of the Actions runner could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {what} ({path}): {source}")]
pub struct WriteError {
    pub what: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

/// What to do with outputs when `$GITHUB_OUTPUT` is not set (outside
/// Actions).
pub enum Unset<'a> {
    /// Nothing: the outputs are a side product of the command.
    Skip,
    /// Show them (on stderr): the outputs are what the command is for, so
    /// trying it outside Actions shows what a step would get.
    Show(&'a mut dyn Write),
}

/// Appends step outputs to the `$GITHUB_OUTPUT` file `path` (as
/// `github_env::Env` read it). Single-line values use `name=value`; others
/// the `name<<DELIM` form with a delimiter that does not occur in the value
/// (as the Actions toolkit does).
pub fn write_outputs(
    path: Option<&Path>,
    outputs: &[(&str, String)],
    unset: Unset<'_>,
) -> Result<(), WriteError> {
    let mut text = String::new();
    for (name, value) in outputs {
        if value.contains('\n') || value.contains('\r') {
            let mut delim = format!("ghadelimiter_{}", super::stop_token());
            while value.contains(&delim) {
                delim.push('_');
            }
            let _ = write!(text, "{name}<<{delim}\n{value}\n{delim}\n");
        } else {
            let _ = writeln!(text, "{name}={value}");
        }
    }
    match (path, unset) {
        (Some(path), _) => append(path, &text, "$GITHUB_OUTPUT"),
        (None, Unset::Skip) => Ok(()),
        (None, Unset::Show(out)) => {
            let shown = "GITHUB_OUTPUT is not set; the outputs would be:\n".to_string() + &text;
            out.write_all(shown.as_bytes())
                .map_err(|source| WriteError {
                    what: "the outputs",
                    path: PathBuf::from("(stderr)"),
                    source,
                })
        }
    }
}

/// Appends to a file the runner gave us (it exists; create it if not, so a
/// local run with the variable pointing at a new file works too).
pub fn append(path: &Path, text: &str, what: &'static str) -> Result<(), WriteError> {
    let err = |source| WriteError {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_single_and_multi_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        std::fs::write(&p, "earlier=1\n").unwrap();
        write_outputs(
            Some(&p),
            &[("hosts", r#"["a","b"]"#.into()), ("text", "x\ny".into())],
            Unset::Skip,
        )
        .unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.starts_with("earlier=1\nhosts=[\"a\",\"b\"]\ntext<<ghadelimiter_"));
        let delim = s.lines().nth(2).unwrap().trim_start_matches("text<<");
        assert!(s.ends_with(&format!("\nx\ny\n{delim}\n")));
    }

    #[test]
    fn unset_outputs_are_shown_or_skipped() {
        let mut shown = Vec::new();
        write_outputs(None, &[("count", "2".into())], Unset::Show(&mut shown)).unwrap();
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            "GITHUB_OUTPUT is not set; the outputs would be:\ncount=2\n"
        );
        write_outputs(None, &[("count", "2".into())], Unset::Skip).unwrap();
    }
}

//! The step outputs (`$GITHUB_OUTPUT`): the one writer of that file.

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

/// Appends step outputs to the `$GITHUB_OUTPUT` file. Single-line values
/// use `name=value`; others the `name<<DELIM` form with a delimiter that
/// does not occur in the value (as the Actions toolkit does).
pub fn write_outputs(path: &Path, outputs: &[(&str, String)]) -> Result<(), WriteError> {
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
    append(path, &text, "$GITHUB_OUTPUT")
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
            &p,
            &[("hosts", r#"["a","b"]"#.into()), ("text", "x\ny".into())],
        )
        .unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.starts_with("earlier=1\nhosts=[\"a\",\"b\"]\ntext<<ghadelimiter_"));
        let delim = s.lines().nth(2).unwrap().trim_start_matches("text<<");
        assert!(s.ends_with(&format!("\nx\ny\n{delim}\n")));
    }
}

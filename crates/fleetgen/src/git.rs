//! Hermetic, deterministic invocations of the `git` CLI.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// Unix time of the initial commit; commit `k` is dated one hour later per step.
const EPOCH: u64 = 1_700_000_000;

/// A `git` command in `root` that ignores the caller's environment and
/// configuration (no inherited `GIT_*` variables, no system/global config).
fn git(root: &Path) -> Command {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .args([
            "-c",
            "core.autocrlf=false",
            "-c",
            "core.fsync=none",
            "-c",
            "gc.auto=0",
            "-c",
            "maintenance.auto=false",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .stdin(Stdio::null());
    cmd
}

/// Runs a git command and returns its trimmed stdout, failing on a non-zero exit.
fn run(mut cmd: Command, what: &str) -> io::Result<String> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("fleetgen: cannot run git {what}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "fleetgen: git {what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Fixed identity and date of the `index`-th commit (0 = initial).
fn signature(index: usize) -> String {
    format!(
        "fleetgen <fleetgen@example.invalid> {} +0000",
        EPOCH + 3600 * index as u64
    )
}

fn with_identity(cmd: &mut Command, index: usize) {
    let date = format!("{} +0000", EPOCH + 3600 * index as u64);
    cmd.env("GIT_AUTHOR_NAME", "fleetgen")
        .env("GIT_AUTHOR_EMAIL", "fleetgen@example.invalid")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_NAME", "fleetgen")
        .env("GIT_COMMITTER_EMAIL", "fleetgen@example.invalid")
        .env("GIT_COMMITTER_DATE", &date);
}

/// Runs a git command feeding `input` on stdin; returns trimmed stdout.
fn run_with_input(mut cmd: Command, input: &[u8], what: &str) -> io::Result<String> {
    use std::io::Write as _;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("fleetgen: cannot run git {what}: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Write from a thread so a chatty child cannot dead-lock us.
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    let written = writer.join().expect("stdin writer");
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "fleetgen: git {what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    written?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `git init -b main` in `root`, then the initial commit holding `files`
/// (repo-relative path, content), written as one pack by `git fast-import`
/// and checked out into the (empty) work tree. Returns the commit id.
pub fn init_with(root: &Path, files: &[(String, String)], message: &str) -> io::Result<String> {
    let mut cmd = git(root);
    cmd.args(["init", "-q", "-b", "main", "--template="]);
    run(cmd, "init")?;
    let size: usize = files.iter().map(|(p, c)| p.len() + c.len() + 40).sum();
    let mut stream = Vec::with_capacity(size + 256);
    let sig = signature(0);
    stream.extend_from_slice(
        format!(
            "commit refs/heads/main\nauthor {sig}\ncommitter {sig}\ndata {}\n{message}\n\n",
            message.len() + 1
        )
        .as_bytes(),
    );
    for (path, content) in files {
        stream.extend_from_slice(
            format!("M 100644 inline {path}\ndata {}\n", content.len()).as_bytes(),
        );
        stream.extend_from_slice(content.as_bytes());
        stream.push(b'\n');
    }
    stream.extend_from_slice(b"done\n");
    let mut cmd = git(root);
    cmd.args(["fast-import", "--quiet", "--done"]);
    run_with_input(cmd, &stream, "fast-import")?;
    let mut cmd = git(root);
    cmd.args(["reset", "-q", "--hard", "main"]);
    run(cmd, "reset")?;
    let mut head = git(root);
    head.args(["rev-parse", "HEAD"]);
    run(head, "rev-parse")
}

/// Stages `paths` (each either present in the work tree or in the index,
/// which it is then removed from) and commits the index as the `index`-th
/// commit on `main`, with fixed identity and dates. Returns the commit id.
pub fn commit_paths(
    root: &Path,
    index: usize,
    paths: &[&str],
    message: &str,
) -> io::Result<String> {
    if !paths.is_empty() {
        let mut input = Vec::new();
        for p in paths {
            input.extend_from_slice(p.as_bytes());
            input.push(0);
        }
        let mut cmd = git(root);
        cmd.args(["update-index", "--add", "--remove", "-z", "--stdin"]);
        run_with_input(cmd, &input, "update-index")?;
    }
    let mut cmd = git(root);
    cmd.arg("write-tree");
    let tree = run(cmd, "write-tree")?;
    let mut cmd = git(root);
    with_identity(&mut cmd, index);
    cmd.args(["commit-tree", &tree, "-p", "HEAD"]);
    let id = run_with_input(cmd, format!("{message}\n").as_bytes(), "commit-tree")?;
    let mut cmd = git(root);
    cmd.args(["update-ref", "refs/heads/main", &id]);
    run(cmd, "update-ref")?;
    Ok(id)
}

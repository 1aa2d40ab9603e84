//! Hostile and odd repositories: every case has one expected outcome (a
//! correct answer with exit 0/1, or a clean one-line error with exit 2),
//! never a panic and never another exit code, and guard leaves the
//! repository exactly as it found it.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{GuardOutput, RepoState, TempRepo, fleet_repo, git_cmd, guard_cmd, guard_in};

/// Asserts the outcome is one of `codes`, nothing panicked, and an error
/// (exit 2) is a single `error:` line.
#[track_caller]
pub fn sane(out: &GuardOutput, codes: &[i32]) {
    assert!(
        !out.stderr.contains("panicked") && !out.stdout.contains("panicked"),
        "guard panicked:\n{}",
        out.stderr
    );
    assert!(
        codes.contains(&out.code),
        "exit {} not in {codes:?}\nstdout:\n{}\nstderr:\n{}",
        out.code,
        out.stdout,
        out.stderr
    );
    if out.code == 2 {
        let lines: Vec<&str> = out.stderr.trim_end().lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "an error is one line on stderr:\n{}",
            out.stderr
        );
        assert!(lines[0].starts_with("error: "), "{}", out.stderr);
    }
}

/// The host names of a JSON `affected` report.
fn hosts(out: &GuardOutput) -> BTreeSet<String> {
    out.json()["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Paths of the findings of a JSON scan report.
fn finding_paths(out: &GuardOutput) -> BTreeSet<String> {
    out.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

/// A fake Nix password: the scanner's `nix-password` family fires on it.
const PASSWORD_LINE: &str = "{ services.foo.password = \"Xq7Lm2Rp9Vt4Wz8K\"; }\n";

#[test]
fn odd_path_names_are_analysed_and_reported_exactly() {
    let repo = fleet_repo();
    let odd = [
        "services/with space.nix",
        "services/new\nline.nix",
        "services/ünïcødé ✓.nix",
        "-rf.nix",
    ];
    for p in odd {
        repo.write(p, PASSWORD_LINE);
    }
    // A leading dash in an imported path: linda imports it.
    repo.write("machines/linda/-rf.nix", "{ ... }: { }\n");
    let linda = std::fs::read_to_string(repo.path().join("machines/linda/default.nix")).unwrap();
    repo.write(
        "machines/linda/default.nix",
        linda.replace("imports = [", "imports = [\n    ./-rf.nix"),
    );
    repo.commit_all("odd names");
    repo.write("machines/linda/-rf.nix", "{ ... }: { networking.x = 1; }\n");
    repo.commit_all("touch -rf.nix");
    let before = repo.state();

    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[0]);
    assert_eq!(hosts(&out), set(&["linda"]));
    let out = repo.guard(&["explain", "machines/linda/-rf.nix", "--format", "json"]);
    sane(&out, &[0]);
    assert!(
        out.stdout.contains("machines/linda/default.nix"),
        "{}",
        out.stdout
    );

    let out = repo.guard(&["scan", "--commit", "HEAD~1", "--format", "json"]);
    sane(&out, &[1]);
    let expected: BTreeSet<String> = odd.iter().map(|s| s.to_string()).collect();
    assert_eq!(finding_paths(&out), expected);
    // Human and GitHub output survive a newline in a path.
    for format in ["human", "github", "sarif"] {
        let out = repo.guard(&["scan", "--commit", "HEAD~1", "--format", format]);
        sane(&out, &[1]);
    }
    // On-disk paths that look like options, after `--`.
    let out = repo.guard(&["scan", "--format", "json", "--", "-rf.nix"]);
    sane(&out, &[1]);
    assert_eq!(finding_paths(&out), set(&["-rf.nix"]));
    let out = repo.guard(&["check", "--commit", "HEAD~1", "--level", "none"]);
    sane(&out, &[1]);
    assert_eq!(repo.state(), before);
}

#[test]
fn symlinks_outside_the_repo_and_loops_are_not_followed() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.nix"), PASSWORD_LINE).unwrap();
    let repo = fleet_repo();
    std::os::unix::fs::symlink(
        outside.path().join("secret.nix"),
        repo.path().join("services/out.nix"),
    )
    .unwrap();
    std::os::unix::fs::symlink("loop-b", repo.path().join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", repo.path().join("loop-b")).unwrap();
    std::os::unix::fs::symlink("self", repo.path().join("self")).unwrap();
    // A host imports the outside symlink.
    let linda = std::fs::read_to_string(repo.path().join("machines/linda/default.nix")).unwrap();
    repo.write(
        "machines/linda/default.nix",
        linda.replace(
            "imports = [",
            "imports = [\n    ../../services/out.nix\n    ../../loop-a",
        ),
    );
    repo.commit_all("symlinks");
    let before = repo.state();

    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[0]);
    assert!(hosts(&out).contains("linda"), "{}", out.stdout);
    // The scanner judges what git stores (the link target text), never the
    // file outside the repository.
    for args in [
        &["scan", "--commit", "HEAD", "--format", "json"][..],
        &["scan", "--all", "--format", "json"],
        &["scan", "--worktree", "--format", "json"],
    ] {
        let out = repo.guard(args);
        sane(&out, &[0]);
        assert_eq!(finding_paths(&out), BTreeSet::new(), "{args:?}");
    }
    // Scanning a directory on disk does not loop.
    let out = repo.guard(&["scan", "--format", "json", "."]);
    sane(&out, &[0, 1]);
    for args in [
        &["check", "--all", "--level", "none"][..],
        &["secrets", "--all"],
        &["graph", "--format", "json"],
    ] {
        sane(&repo.guard(args), &[0, 1]);
    }
    assert_eq!(repo.state(), before);
}

#[test]
fn a_submodule_is_a_gitlink_not_a_directory() {
    let sub = TempRepo::new();
    sub.write("inner.nix", PASSWORD_LINE);
    sub.commit_all("inner");
    let repo = fleet_repo();
    repo.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        sub.path().to_str().unwrap(),
        "vendor/sub",
    ]);
    repo.commit_all("submodule");
    let before = repo.state();
    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[0]);
    assert_eq!(hosts(&out), BTreeSet::new(), "{}", out.stdout);
    for args in [
        &["scan", "--commit", "HEAD", "--format", "json"][..],
        &["scan", "--all", "--format", "json"],
        &["scan", "--history", "--format", "json"],
    ] {
        let out = repo.guard(args);
        sane(&out, &[0]);
        assert_eq!(finding_paths(&out), BTreeSet::new(), "{args:?}");
    }
    sane(&repo.guard(&["check", "--all", "--level", "none"]), &[0]);
    assert_eq!(repo.state(), before);
}

#[test]
fn a_huge_file_and_a_binary_key_file() {
    let repo = fleet_repo();
    // 50 MB of text with a secret near the end.
    let mut big = Vec::with_capacity(50 << 20);
    while big.len() < (50 << 20) {
        big.extend_from_slice(b"just some harmless log text, nothing to see here 0123456789\n");
    }
    big.extend_from_slice(b"token = ghp_R2d2C3poBb8Yoda1Luke2Leia3Han4Solo5Chew\n");
    repo.write("data/big.log", &big);
    // A binary file (NUL bytes up front) containing an OpenSSH private key.
    let mut bin = vec![0u8, 1, 2, 3, 0, 0, 0xff];
    bin.extend_from_slice(
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    repo.write("blobs/key.bin", &bin);
    repo.commit_all("big and binary");
    let before = repo.state();

    let start = Instant::now();
    let out = repo.guard(&["scan", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[1]);
    assert!(start.elapsed() < Duration::from_secs(120));
    let v = out.json();
    // The text file is scanned to its end.
    assert!(
        finding_paths(&out).contains("data/big.log"),
        "{}",
        out.stdout
    );
    // The binary file is not scanned, and guard says so, naming it.
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("binary") && warnings.contains("blobs/key.bin"),
        "the skipped binary file must be named: {warnings}"
    );
    assert!(
        warnings.contains("data/big.log"),
        "huge-file note: {warnings}"
    );
    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[0]);
    assert_eq!(hosts(&out), BTreeSet::new());
    sane(
        &repo.guard(&["check", "--commit", "HEAD", "--level", "none"]),
        &[1],
    );
    assert_eq!(repo.state(), before);
}

#[test]
fn invalid_utf8_in_a_nix_file() {
    let repo = fleet_repo();
    let p = repo.path().join("services/prometheus.nix");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.extend_from_slice(b"# \xff\xfe\xc3\x28 broken\n");
    std::fs::write(&p, bytes).unwrap();
    repo.write(
        "lib/latin1.nix",
        b"{ password = \"caf\xe9-s3cr3t-Vq9Lz\"; }\n",
    );
    repo.commit_all("invalid utf-8");
    let before = repo.state();
    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[0]);
    assert!(hosts(&out).contains("monitor"), "{}", out.stdout);
    for args in [
        &["scan", "--commit", "HEAD"][..],
        &["explain", "services/prometheus.nix"],
        &["graph"],
        &["check", "--commit", "HEAD", "--level", "none"],
    ] {
        sane(&repo.guard(args), &[0, 1]);
    }
    assert_eq!(repo.state(), before);
}

/// A one-host flake (no nix needed for the static commands).
fn one_host_repo() -> TempRepo {
    let repo = TempRepo::new();
    repo.write(
        "flake.nix",
        "{\n  outputs = { self }: {\n    nixosConfigurations.h = import ./hosts/h.nix;\n  };\n}\n",
    );
    repo.write("guard.toml", "[hosts]\nh = \"hosts/h.nix\"\n");
    repo
}

#[test]
fn deep_and_cyclic_imports() {
    let repo = one_host_repo();
    repo.write(
        "hosts/h.nix",
        "{ imports = [ ../deep/d0.nix ../cyc/a.nix ]; }\n",
    );
    for i in 0..200 {
        repo.write(
            &format!("deep/d{i}.nix"),
            format!("{{ imports = [ ./d{}.nix ]; }}\n", i + 1),
        );
    }
    repo.write("deep/d200.nix", "{ }\n");
    repo.write("cyc/a.nix", "{ imports = [ ./b.nix ]; }\n");
    repo.write("cyc/b.nix", "{ imports = [ ./a.nix ]; }\n");
    repo.commit_all("deep");
    repo.write("deep/d200.nix", "{ x = 1; }\n");
    repo.write("cyc/b.nix", "{ imports = [ ./a.nix ]; y = 2; }\n");
    repo.commit_all("leaf");
    let before = repo.state();
    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json", "-v"]);
    sane(&out, &[0]);
    assert_eq!(hosts(&out), set(&["h"]));
    let out = repo.guard(&["explain", "deep/d200.nix"]);
    sane(&out, &[0]);
    assert!(out.stdout.contains("deep/d199.nix"), "{}", out.stdout);
    let out = repo.guard(&["explain", "cyc/a.nix"]);
    sane(&out, &[0]);
    assert!(out.stdout.contains("cyc/a.nix"), "{}", out.stdout);
    sane(&repo.guard(&["graph", "--format", "json"]), &[0]);
    sane(
        &repo.guard(&["check", "--commit", "HEAD", "--level", "none"]),
        &[0],
    );
    assert_eq!(repo.state(), before);
}

#[test]
fn an_import_outside_the_repo_is_a_warning() {
    let repo = one_host_repo();
    repo.write(
        "hosts/h.nix",
        "{ imports = [ ../../etc/x.nix /etc/y.nix ]; }\n",
    );
    repo.commit_all("outside");
    let before = repo.state();
    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[0]);
    assert_eq!(hosts(&out), set(&["h"]));
    let w = out.json()["warnings"].to_string();
    assert!(w.contains("etc/x.nix"), "outside import not reported: {w}");
    sane(
        &repo.guard(&["check", "--commit", "HEAD", "--level", "none"]),
        &[0],
    );
    assert_eq!(repo.state(), before);
}

#[test]
fn an_unparseable_flake_nix() {
    let repo = fleet_repo();
    let flake = std::fs::read_to_string(repo.path().join("flake.nix")).unwrap();
    repo.write("flake.nix", format!("{flake}\n{{ broken = ; ]]\n"));
    repo.commit_all("break flake.nix");
    let before = repo.state();
    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[0]);
    // Conservative: flake.nix is wiring, every host may be affected, and
    // the parse error is a warning naming the file.
    assert_eq!(out.json()["hosts"].as_array().unwrap().len(), 17);
    assert!(out.json()["warnings"].to_string().contains("cannot parse"));
    for args in [
        &["check", "--commit", "HEAD", "--level", "none"][..],
        &["scan", "--commit", "HEAD"],
        &["graph"],
        &["secrets", "--all"],
    ] {
        sane(&repo.guard(args), &[0, 1, 2]);
    }
    assert_eq!(repo.state(), before);
}

/// Appends `n` commits on `main` with `git fast-import`: most change a text
/// file, every `every`-th changes `services/prometheus.nix` (monitor's
/// closure); commit number `bad_at` adds the marker `# bad` there.
fn fast_history(repo: &TempRepo, n: usize, every: usize, bad_at: usize) {
    let head = repo.rev("HEAD");
    let prom = std::fs::read_to_string(repo.path().join("services/prometheus.nix")).unwrap();
    let mut s = Vec::new();
    let mut bad = false;
    for i in 1..=n {
        let msg = format!("commit {i}");
        writeln!(s, "commit refs/heads/main").unwrap();
        writeln!(
            s,
            "committer G <g@example.invalid> {} +0000",
            1_700_000_000 + i
        )
        .unwrap();
        writeln!(s, "data {}\n{msg}", msg.len()).unwrap();
        if i == 1 {
            writeln!(s, "from {head}").unwrap();
        }
        if i % every == 0 {
            if i == bad_at {
                bad = true;
            }
            let body = format!("{prom}# rev {i}{}\n", if bad { " # bad" } else { "" });
            writeln!(
                s,
                "M 100644 inline services/prometheus.nix\ndata {}\n{body}",
                body.len()
            )
            .unwrap();
        } else {
            let body = format!("note {i}\n");
            writeln!(
                s,
                "M 100644 inline notes/n.txt\ndata {}\n{body}",
                body.len()
            )
            .unwrap();
        }
    }
    let mut c = git_cmd(repo.path())
        .args(["fast-import", "--quiet", "--force"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&s).unwrap();
    assert!(c.wait().unwrap().success());
    repo.git(&["reset", "-q", "--hard", "main"]);
}

#[test]
fn ten_thousand_commits() {
    let repo = fleet_repo();
    let root = repo.rev("HEAD");
    fast_history(&repo, 10_000, 100, 7_300);
    assert_eq!(repo.git(&["rev-list", "--count", "HEAD"]).trim(), "10001");
    let before = repo.state();
    let start = Instant::now();

    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[0]);
    assert!(hosts(&out).contains("monitor"));
    let out = repo.guard(&["affected", "--base", &root, "--format", "json"]);
    sane(&out, &[0]);
    assert!(hosts(&out).contains("monitor"));

    let out = repo.guard(&["scan", "--history", "--format", "json"]);
    sane(&out, &[0]);
    assert!(
        out.json()["scanned"]["commits"].as_u64().unwrap() >= 10_000,
        "{}",
        out.stdout
    );

    // The first commit that adds `# bad`: number 7300.
    let expected = repo.rev(&format!("HEAD~{}", 10_000 - 7_300));
    let out = repo.guard(&[
        "bisect",
        "--host",
        "monitor",
        "--good",
        &root,
        "--level",
        "none",
        "--run",
        "! grep -q '# bad' services/prometheus.nix",
        "--format",
        "json",
    ]);
    sane(&out, &[0]);
    let v = out.json();
    assert_eq!(v["first_bad"], expected.as_str(), "{}", out.stderr);
    assert_eq!(v["candidates"], 100, "{}", out.stdout);
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "sanity bound: {:?}",
        start.elapsed()
    );
    assert_eq!(repo.state(), before);
}

#[test]
fn a_detached_head() {
    let repo = fleet_repo();
    repo.write("services/prometheus.nix", "{ ... }: { }\n");
    repo.commit_all("change");
    repo.git(&["checkout", "-q", "--detach", "HEAD"]);
    let before = repo.state();
    assert!(!before.head.starts_with("ref:"));
    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[0]);
    assert!(hosts(&out).contains("monitor"));
    repo.write("services/prometheus.nix", PASSWORD_LINE);
    repo.git(&["add", "services/prometheus.nix"]);
    let before = repo.state();
    let out = repo.guard(&["pre-commit"]);
    sane(&out, &[1]);
    sane(&repo.guard(&["check", "--staged", "--level", "none"]), &[1]);
    sane(&repo.guard(&["scan", "--history"]), &[0]);
    assert_eq!(repo.state(), before);
}

#[test]
fn a_bare_repository() {
    let repo = fleet_repo();
    repo.write("services/prometheus.nix", "{ ... }: { }\n");
    repo.commit_all("change");
    let bare = tempfile::tempdir().unwrap();
    let bare_path = bare.path().join("fleet.git");
    repo.git(&["clone", "-q", "--bare", ".", bare_path.to_str().unwrap()]);
    let refs_before = bare_refs(&bare_path);

    let out = guard_in(
        &bare_path,
        &["affected", "--commit", "HEAD", "--format", "json"],
    );
    sane(&out, &[0]);
    assert!(hosts(&out).contains("monitor"), "{}", out.stdout);
    let out = guard_in(
        &bare_path,
        &["check", "--all", "--level", "none", "--format", "json"],
    );
    sane(&out, &[0]);
    let out = guard_in(&bare_path, &["scan", "--history", "--format", "json"]);
    sane(&out, &[0]);
    // Commands that need a work tree or an index: a clean error that says so.
    for args in [
        &["affected", "--worktree"][..],
        &["scan", "--staged"],
        &["check", "--staged", "--level", "none"],
        &["pre-commit"],
    ] {
        let out = guard_in(&bare_path, args);
        sane(&out, &[2]);
        assert!(
            out.stderr.contains("bare") || out.stderr.contains("work tree"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert_eq!(bare_refs(&bare_path), refs_before);
}

fn bare_refs(dir: &Path) -> String {
    let out = git_cmd(dir)
        .args(["for-each-ref", "--format=%(refname) %(objectname)"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_linked_worktree() {
    let repo = fleet_repo();
    let wt_parent = tempfile::tempdir().unwrap();
    let wt = wt_parent.path().join("wt");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        "feature",
        wt.to_str().unwrap(),
    ]);
    std::fs::write(wt.join("services/prometheus.nix"), PASSWORD_LINE).unwrap();
    git_cmd(&wt)
        .args(["add", "services/prometheus.nix"])
        .status()
        .unwrap();
    let main_before = repo.state();
    let wt_before = RepoState::capture(&wt);

    let out = guard_in(&wt, &["affected", "--staged", "--format", "json"]);
    sane(&out, &[0]);
    assert!(hosts(&out).contains("monitor"), "{}", out.stdout);
    let out = guard_in(&wt, &["scan", "--staged", "--format", "json"]);
    sane(&out, &[1]);
    assert_eq!(finding_paths(&out), set(&["services/prometheus.nix"]));
    sane(&guard_in(&wt, &["pre-commit"]), &[1]);
    // The main work tree's index is not the worktree's.
    let out = repo.guard(&["scan", "--staged", "--format", "json"]);
    sane(&out, &[0]);
    assert_eq!(repo.state(), main_before);
    assert_eq!(RepoState::capture(&wt), wt_before);
}

#[test]
fn an_index_lock_held_by_another_process_does_not_block_reading() {
    let repo = fleet_repo();
    repo.write("services/prometheus.nix", PASSWORD_LINE);
    repo.git(&["add", "services/prometheus.nix"]);
    // What git does while another command writes the index.
    let lock = repo.path().join(".git/index.lock");
    std::fs::write(&lock, b"partial garbage").unwrap();
    let before = repo.state();
    let start = Instant::now();
    let out = repo.guard(&["scan", "--staged", "--format", "json"]);
    sane(&out, &[1]);
    assert_eq!(finding_paths(&out), set(&["services/prometheus.nix"]));
    let out = repo.guard(&["pre-commit"]);
    sane(&out, &[1]);
    let out = repo.guard(&["affected", "--staged", "--format", "json"]);
    sane(&out, &[0]);
    assert!(hosts(&out).contains("monitor"));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "guard waited for the lock"
    );
    // The lock is someone else's: untouched.
    assert_eq!(std::fs::read(&lock).unwrap(), b"partial garbage");
    assert_eq!(repo.state(), before);
}

#[test]
fn a_repository_owned_by_another_user_is_refused_like_git_does() {
    // SAFETY: getuid has no preconditions.
    assert_eq!(
        unsafe { libc::getuid() },
        0,
        "this test chowns a repository to nobody and needs root (the test machine runs as root)"
    );
    let repo = fleet_repo();
    repo.write("services/prometheus.nix", "{ ... }: { }\n");
    repo.commit_all("change");
    let before = repo.state();
    let chown = |owner: &str| {
        let st = Command::new("chown")
            .args(["-R", owner])
            .arg(repo.path())
            .status()
            .unwrap();
        assert!(st.success());
    };
    chown("nobody:");
    // git's rule: refused.
    let git = git_cmd(repo.path()).args(["status"]).output().unwrap();
    assert!(!git.status.success());
    for args in [
        &["affected", "--commit", "HEAD"][..],
        &["scan", "--staged"],
        &["pre-commit"],
        &["hook", "install"],
        &["init"],
    ] {
        let out = repo.guard(args);
        sane(&out, &[2]);
        assert!(
            out.stderr.contains("safe.directory") && out.stderr.contains("owned by another user"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert!(!repo.path().join(".git/hooks/pre-commit").exists());
    // ... and git's remedy works.
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cfg.path(),
        format!("[safe]\n\tdirectory = {}\n", repo.path().display()),
    )
    .unwrap();
    let out: GuardOutput = guard_cmd(repo.path())
        .env("GIT_CONFIG_GLOBAL", cfg.path())
        .args(["affected", "--commit", "HEAD", "--format", "json"])
        .output()
        .unwrap()
        .into();
    sane(&out, &[0]);
    assert!(hosts(&out).contains("monitor"), "{}", out.stdout);
    chown("root:");
    assert_eq!(repo.state(), before);
}

/// Distinct fake secrets, one per family the scanner knows.
fn planted() -> Vec<(&'static str, String)> {
    // A checksum-valid Bech32 key (the scanner checks it) of fake data.
    let data: Vec<u8> = (0..52u32).map(|i| ((i * 7 + 3) % 32) as u8).collect();
    let age = bech32_data_part("age-secret-key-", &data);
    let b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // 32 bytes of canonical base64: the last character's low bits are zero.
    let mut wg: String = (0..42)
        .map(|i| b64.as_bytes()[(i * 11 + 5) % 64] as char)
        .collect();
    wg.push('E');
    let ssh_body: String = (0..70)
        .map(|i| b64.as_bytes()[(i * 13 + 7) % 64] as char)
        .collect();
    let gh: String = (0..36)
        .map(|i| b64.as_bytes()[(i * 17 + 1) % 62] as char)
        .collect();
    vec![
        ("wireguard", format!("{wg}=")),
        ("age", format!("AGE-SECRET-KEY-1{age}")),
        ("ssh", format!("b3BlbnNzaC1rZXktdjEAAAAA{ssh_body}")),
        ("github", format!("ghp_{gh}")),
        ("password", "Tr0ub4dor-Zx9Qw7-Plm3-Kv8Ny".to_string()),
    ]
}

/// The data part (after `1`) of the Bech32 (BIP-173) encoding of `data`
/// (5-bit groups) with `hrp`, upper case.
fn bech32_data_part(hrp: &str, data: &[u8]) -> String {
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    fn polymod(values: &[u8]) -> u32 {
        const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
        let mut chk = 1u32;
        for &v in values {
            let b = chk >> 25;
            chk = ((chk & 0x1ffffff) << 5) ^ u32::from(v);
            for (i, g) in GEN.iter().enumerate() {
                if (b >> i) & 1 == 1 {
                    chk ^= g;
                }
            }
        }
        chk
    }
    let mut values: Vec<u8> = hrp.bytes().map(|b| b >> 5).collect();
    values.push(0);
    values.extend(hrp.bytes().map(|b| b & 31));
    values.extend_from_slice(data);
    values.extend_from_slice(&[0; 6]);
    let pm = polymod(&values) ^ 1;
    let mut all = data.to_vec();
    all.extend((0..6).map(|i| ((pm >> (5 * (5 - i))) & 31) as u8));
    all.iter()
        .map(|&d| (CHARSET[d as usize] as char).to_ascii_uppercase())
        .collect()
}

/// Every file below `dir` (following nothing), for the output grep.
fn files_below(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            files_below(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

#[test]
fn planted_secrets_never_appear_in_any_output() {
    let _ = crate::support::nix_cmd();
    let secrets = planted();
    let value = |k: &str| secrets.iter().find(|(n, _)| *n == k).unwrap().1.clone();
    let repo = fleet_repo();
    let base = repo.rev("HEAD");
    // linda imports a module that holds every secret and fails to evaluate
    // on the line next to them, so nix's error (with its source excerpt)
    // is in the logs and the report.
    repo.write(
        "machines/linda/leak.nix",
        format!(
            "{{ ... }}:\n{{\n  networking.wireguard.interfaces.wg0.privateKey = \"{}\";\n  services.grafana.password = \"{}\";\n  environment.variables.GH = \"{}\";\n  boom = undefinedVariableHere;\n  environment.variables.AGE = \"{}\";\n}}\n",
            value("wireguard"),
            value("password"),
            value("github"),
            value("age")
        ),
    );
    repo.write(
        "keys/id_ed25519",
        format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
            value("ssh")
        ),
    );
    let linda = std::fs::read_to_string(repo.path().join("machines/linda/default.nix")).unwrap();
    repo.write(
        "machines/linda/default.nix",
        linda.replace("imports = [", "imports = [\n    ./leak.nix"),
    );
    let head = repo.commit_all("leak");
    let before = repo.state();

    let out_dir = tempfile::tempdir().unwrap();
    let o = |n: &str| out_dir.path().join(n);
    let event = o("event.json");
    std::fs::write(
        &event,
        format!("{{\"before\":\"{base}\",\"after\":\"{head}\"}}"),
    )
    .unwrap();
    let gh_env = |c: &mut Command| {
        c.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_EVENT_NAME", "push")
            .env("GITHUB_EVENT_PATH", &event)
            .env("GITHUB_SHA", &head)
            .env("GITHUB_OUTPUT", o("github_output"))
            .env("GITHUB_STEP_SUMMARY", o("summary.md"));
    };
    let sarif = o("ci.sarif");
    let bisect_log = o("bisect.log");
    let mut runs: Vec<Vec<String>> = Vec::new();
    let sel = ["--commit", "HEAD"];
    for format in ["human", "json", "github", "sarif"] {
        for cmd in [
            &["scan"][..],
            &["scan", "--all"],
            &["scan", "--history"],
            &["secrets", "--all"],
            &["affected"],
            &["check", "--level", "eval"],
            &["build", "--level", "eval"],
        ] {
            let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            if !cmd.contains(&"--all") && !cmd.contains(&"--history") {
                a.extend(sel.iter().map(|s| s.to_string()));
            }
            a.extend(["--format".into(), format.into()]);
            runs.push(a);
        }
    }
    runs.push(
        [
            "bisect",
            "--host",
            "linda",
            "--good",
            &base,
            "--level",
            "eval",
            "--log",
            bisect_log.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    runs.push(vec!["explain".into(), "machines/linda/leak.nix".into()]);
    runs.push(vec!["graph".into(), "--format".into(), "json".into()]);
    runs.push(vec!["pre-commit".into()]);

    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut seen_codes = Vec::new();
    for a in &runs {
        let args: Vec<&str> = a.iter().map(String::as_str).collect();
        let out: GuardOutput = guard_cmd(repo.path()).args(&args).output().unwrap().into();
        // Unsupported format/command pairs are usage errors (2); anything
        // else is an answer.
        sane(&out, &[0, 1, 2]);
        seen_codes.push((a.join(" "), out.code));
        outputs.push((format!("{a:?} stdout"), out.stdout));
        outputs.push((format!("{a:?} stderr"), out.stderr));
    }
    for format in ["human", "json", "github"] {
        let mut c = guard_cmd(repo.path());
        gh_env(&mut c);
        c.args(["ci", "--level", "eval", "--format", format, "--sarif"])
            .arg(&sarif);
        let out: GuardOutput = c.output().unwrap().into();
        sane(&out, &[1]);
        outputs.push((format!("ci {format} stdout"), out.stdout));
        outputs.push((format!("ci {format} stderr"), out.stderr));
    }
    // The runs did find the secrets and did fail linda, so the outputs hold
    // what could leak.
    let scan_json = &outputs
        .iter()
        .find(|(n, _)| {
            n.starts_with("[\"scan\", \"--commit\", \"HEAD\", \"--format\", \"json\"] stdout")
        })
        .unwrap()
        .1;
    let rules: BTreeSet<String> =
        serde_json::from_str::<serde_json::Value>(scan_json).unwrap()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap().to_string())
            .collect();
    assert!(rules.len() >= 5, "each planted secret is found: {rules:?}");
    let check_json = &outputs
        .iter()
        .find(|(n, _)| n.starts_with("[\"check\", \"--level\", \"eval\", \"--commit\", \"HEAD\", \"--format\", \"json\"] stdout"))
        .unwrap()
        .1;
    assert!(check_json.contains("undefinedVariableHere"), "{check_json}");
    let mut files = Vec::new();
    files_below(out_dir.path(), &mut files);
    files_below(&repo.path().join(".git/guard"), &mut files);
    assert!(files.iter().any(|f| f.ends_with("linda.log")), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("ci.sarif")), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("summary.md")), "{files:?}");
    for f in &files {
        if f == &event {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        outputs.push((f.display().to_string(), text));
    }
    let mut leaks = Vec::new();
    for (kind, secret) in &secrets {
        let mid = secret.len() / 2;
        let slice = &secret[mid - 6..mid + 6];
        for (name, text) in &outputs {
            if text.contains(secret.as_str()) || text.contains(slice) {
                leaks.push(format!("{kind} secret in {name}"));
            }
        }
    }
    assert!(leaks.is_empty(), "leaked:\n{}", leaks.join("\n"));
    assert_eq!(repo.state(), before);
}

#[test]
fn host_names_that_are_not_safe_are_skipped_and_never_reach_nix() {
    let _ = crate::support::nix_cmd();
    let repo = fleet_repo();
    let marker = repo.path().join("pwned");
    for name in ["a\"b", "$(touch pwned)", "x;touch pwned", "-rf"] {
        repo.write(
            &format!("machines/{name}/default.nix"),
            "{ ... }: { fileSystems.\"/\".device = \"x\"; }\n",
        );
    }
    repo.commit_all("hostile host names");
    let before = repo.state();
    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    sane(&out, &[0]);
    let all: Vec<String> = out.json()["all_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 17, "{all:?}");
    let w = out.json()["warnings"].to_string();
    assert!(
        w.contains("touch pwned"),
        "the skipped host is named in a warning: {w}"
    );
    for args in [
        &["build", "--commit", "HEAD", "--level", "eval"][..],
        &["check", "--commit", "HEAD", "--level", "eval"],
        &["build", "--hosts", "$(touch pwned)", "--level", "eval"],
        &[
            "bisect", "--host", "a\"b", "--good", "HEAD~1", "--level", "eval",
        ],
    ] {
        sane(&repo.guard(args), &[0, 1, 2]);
    }
    assert!(!marker.exists(), "a host name was executed");
    assert_eq!(repo.state(), before);
}

#[test]
fn two_guard_processes_on_one_repository_do_not_collide() {
    let _ = crate::support::nix_cmd();
    let repo = fleet_repo();
    repo.write(
        "services/prometheus.nix",
        format!(
            "{}\n# concurrent {}\n",
            std::fs::read_to_string(repo.path().join("services/prometheus.nix")).unwrap(),
            std::process::id()
        ),
    );
    repo.git(&["add", "services/prometheus.nix"]);
    let before = repo.state();
    let spawn = |args: &[&str]| {
        guard_cmd(repo.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn(&["build", "--staged", "--level", "build", "--format", "json"]);
    let b = spawn(&["check", "--staged", "--level", "eval", "--format", "json"]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let loops = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = repo.guard(&["affected", "--staged", "--format", "json"]);
                sane(&out, &[0]);
                assert!(hosts(&out).contains("monitor"));
                n += 1;
            }
            n
        });
        let a: GuardOutput = a.wait_with_output().unwrap().into();
        let b: GuardOutput = b.wait_with_output().unwrap().into();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for out in [&a, &b] {
            sane(out, &[0]);
        }
        let ok = |out: &GuardOutput, v: &serde_json::Value| {
            let hosts = v["hosts"].as_array().unwrap();
            assert!(
                hosts
                    .iter()
                    .any(|h| h["name"] == "monitor" && h["status"] == "ok"),
                "{}",
                out.stdout
            );
        };
        ok(&a, &a.json());
        ok(&b, &b.json()["build"]);
        h.join().unwrap()
    });
    assert!(loops >= 1);
    assert_eq!(repo.git(&["for-each-ref", "refs/guard/"]), "");
    // The parse cache the concurrent runs wrote is whole: a run after them
    // finds every file in it.
    let out: GuardOutput = guard_cmd(repo.path())
        .env("GUARD_DEBUG_PIPELINE", "1")
        .args(["affected", "--staged"])
        .output()
        .unwrap()
        .into();
    sane(&out, &[0]);
    assert!(out.stderr.contains(" parsed=0"), "{}", out.stderr);
    assert_eq!(repo.state(), before);
}

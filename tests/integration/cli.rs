//! The command-line surface: help, exit codes, error messages, and the
//! guarantee that no command modifies the user's repository state.

use crate::support::{TempRepo, guard_cmd, guard_in};

const COMMANDS: &[&str] = &[
    "affected",
    "explain",
    "graph",
    "scan",
    "secrets",
    "build",
    "check",
    "pre-commit",
    "ci",
    "bisect",
    "hook",
    "init",
];

#[test]
fn help_lists_every_command() {
    let out = guard_in(std::env::temp_dir().as_path(), &["--help"]);
    out.assert_code(0);
    for c in COMMANDS {
        assert!(
            out.stdout.lines().any(|l| l.trim_start().starts_with(c)),
            "`guard --help` does not list {c}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn every_command_has_help_text() {
    for c in COMMANDS {
        let out = guard_in(std::env::temp_dir().as_path(), &[c, "--help"]);
        out.assert_code(0);
        assert!(out.stdout.contains("Usage: guard"), "{c}: {}", out.stdout);
        assert!(
            out.stdout.len() > 120,
            "{c} help is too thin: {}",
            out.stdout
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let repo = TempRepo::new();
    repo.guard(&["affected", "--staged", "--all"])
        .assert_code(2);
    repo.guard(&["no-such-command"]).assert_code(2);
    repo.guard(&["build", "--level", "fast"]).assert_code(2);
}

#[test]
fn outside_a_repository_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = guard_in(dir.path(), &["affected", "--all"]);
    out.assert_code(2);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    assert!(
        out.stderr.contains("not a git repository"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
}

#[test]
fn bad_config_names_the_file_and_key() {
    let repo = TempRepo::new();
    repo.write("guard.toml", "[build]\ncritcal = [\"x\"]\n");
    repo.commit_all("config");
    let out = repo.guard(&["affected", "--all"]);
    out.assert_code(2);
    assert!(out.stderr.contains("guard.toml"), "{}", out.stderr);
    assert!(out.stderr.contains("critcal"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);

    let out = repo.guard(&["--config", "missing.toml", "affected", "--all"]);
    out.assert_code(2);
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
}

#[test]
fn runs_from_a_subdirectory() {
    let repo = TempRepo::new();
    repo.write("machines/a/default.nix", "{ }\n");
    repo.commit_all("init");
    let sub = repo.path().join("machines/a");
    let out = guard_cmd(&sub)
        .args(["affected", "--all"])
        .output()
        .unwrap();
    // Whatever the command answers, it must have found the repository.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("not a git repository"), "{stderr}");
}

/// Every command, with every selector, against a repository with staged,
/// partially staged, unstaged and untracked changes: refs, HEAD, the index
/// and every work-tree file must be byte-identical afterwards.
#[test]
fn no_command_modifies_the_repository() {
    let repo = TempRepo::new();
    repo.write("flake.nix", "{ outputs = { self }: { }; }\n");
    repo.write(
        "machines/a/default.nix",
        "{ imports = [ ../../lib/x.nix ]; }\n",
    );
    repo.write("lib/x.nix", "{ }\n");
    repo.write("notes.txt", "one\n");
    let first = repo.commit_all("init");
    repo.write("lib/x.nix", "{ a = 1; }\n");
    repo.commit_all("second");
    // staged, then further edited on disk (partially staged)
    repo.write("lib/x.nix", "{ a = 2; }\n");
    repo.git(&["add", "lib/x.nix"]);
    repo.write("lib/x.nix", "{ a = 3; }\n");
    // unstaged edit, untracked file, staged new file
    repo.write("notes.txt", "two\n");
    repo.write("untracked.nix", "{ }\n");
    repo.write("new.nix", "{ }\n");
    repo.git(&["add", "new.nix"]);

    let before = repo.state();
    let selectors: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--staged"],
        vec!["--worktree"],
        vec!["--all"],
        vec!["--commit", "HEAD"],
        vec!["--base", &first],
    ];
    let mut runs = 0;
    for cmd in ["affected", "scan", "secrets", "check"] {
        for sel in &selectors {
            let mut args = vec![cmd];
            args.extend(sel.iter().copied());
            let out = repo.guard(&args);
            assert!(
                [0, 1, 2].contains(&out.code),
                "{args:?} exited {}: {}",
                out.code,
                out.stderr
            );
            assert_eq!(
                repo.state(),
                before,
                "guard {args:?} modified the repository"
            );
            runs += 1;
        }
    }
    for args in [
        vec!["explain", "lib/x.nix"],
        vec!["graph"],
        vec!["graph", "--format", "json"],
        vec!["build", "--hosts", "a", "--level", "eval"],
        vec!["pre-commit"],
        vec!["ci", "--base", first.as_str()],
        vec!["bisect", "--host", "a", "--good", first.as_str()],
        vec!["hook", "status"],
    ] {
        let out = repo.guard(&args);
        assert!([0, 1, 2].contains(&out.code), "{args:?}: {}", out.stderr);
        assert_eq!(
            repo.state(),
            before,
            "guard {args:?} modified the repository"
        );
        runs += 1;
    }
    assert!(runs > 30);
}

/// `-C` with a relative path: the repository root must still reach nix as
/// an absolute flake URL (`git+file://.` is invalid).
#[test]
fn relative_dash_c_works_with_nix() {
    let _ = crate::support::nix_cmd();
    let parent = tempfile::tempdir().unwrap();
    let repo = parent.path().join("fleet");
    crate::support::copy_tree(&crate::support::example_fleet(), &repo);
    let git = |args: &[&str]| {
        let out = crate::support::git_cmd(&repo).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "fleet",
    ]);
    let out: crate::support::GuardOutput = guard_cmd(parent.path())
        .args([
            "-C", "fleet", "build", "--hosts", "linda", "--level", "eval", "--format", "json",
        ])
        .output()
        .unwrap()
        .into();
    out.assert_code(0);
    assert_eq!(out.json()["hosts"][0]["status"], "ok", "{}", out.stdout);
}

#[test]
fn a_bad_recipient_key_in_guard_toml_is_a_configuration_error() {
    let repo = TempRepo::new();
    repo.write("flake.nix", "{ outputs = _: { }; }\n");
    repo.write(
        "guard.toml",
        "[secrets.recipients]\nalpha = [\"ssh-ed25519 !!\"]\n",
    );
    repo.commit_all("init");
    for args in [&["affected"][..], &["scan", "flake.nix"][..]] {
        let out = guard_in(repo.path(), args);
        out.assert_code(2);
        assert!(
            out.stderr
                .contains("guard.toml: secrets.recipients.alpha[0]: "),
            "{args:?}: {}",
            out.stderr
        );
    }
}

/// `--format` is checked in one place: a format a command cannot write is
/// a usage error, not another format (explain wrote human for sarif,
/// bisect wrote JSON).
#[test]
fn a_format_a_command_cannot_write_is_a_usage_error() {
    let repo = crate::support::fleet_repo();
    let head = repo.rev("HEAD");
    for args in [
        &["explain", "machines/linda/default.nix", "--format", "sarif"][..],
        &[
            "bisect", "--host", "linda", "--good", &head, "--run", "true", "--format", "sarif",
        ],
        &["affected", "--format", "sarif"],
        &["check", "--level", "none", "--format", "sarif"],
    ] {
        let out = repo.guard(args);
        out.assert_code(2);
        assert!(
            out.stderr.contains(&format!(
                "--format sarif: `guard {}` writes human, json, github",
                args[0]
            )),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?} wrote: {}", out.stdout);
    }
    // What they can write still works.
    let out = repo.guard(&["explain", "machines/linda/default.nix", "--format", "json"]);
    out.assert_code(0);
    assert!(out.json().is_array(), "{}", out.stdout);
}

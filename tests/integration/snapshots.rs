//! Snapshots of the human output of every command, the hook line, the
//! GitHub step summary and `--help`, on the shipped example fleet.
//! Temporary paths, commit and store hashes and timings are redacted.
//! Update with `INSTA_UPDATE=always cargo test --test integration snapshots`
//! and review the diff.

use std::path::Path;

use crate::support::{GuardOutput, TempRepo, fleet_repo, guard_cmd, nix_cmd};

fn redact(text: &str, repo: &TempRepo) -> String {
    text.replace(&repo.path().display().to_string(), "[repo]")
        .replace(
            &crate::support::guard_bin().display().to_string(),
            "[guard]",
        )
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\d+ ms", "[ms] ms");
    // Durations as the build table and summary write them (`111ms`,
    // `1.2s`), with the padding that right-aligns them.
    s.add_filter(r" +\d+(\.\d+)?m?s\b", " [time]");
    s.add_filter(r"/nix/store/[0-9a-z]{32}-", "/nix/store/[hash]-");
    // Commit ids, full or shortened (git and guard shorten to 7-12).
    s.add_filter(r"\b[0-9a-f]{7,40}\b", "[hex]");
    s.add_filter(r"/tmp/[^\s/]+", "[tmp]");
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s
}

/// `exit N` then the text: every snapshot says how the command ended.
fn shown(out: &GuardOutput, stream: &str, repo: &TempRepo) -> String {
    format!("exit {}\n{}", out.code, redact(stream, repo))
}

/// A deterministic fake password (never a real one): stable snapshots.
fn fake_password() -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..14)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"[(x % 56) as usize] as char
        })
        .collect()
}

#[test]
fn explain_found_not_found_and_unread() {
    let repo = fleet_repo();
    repo.write("NOTES.md", "plans\n");
    repo.commit_all("notes");
    let found = repo.guard(&["explain", "services/prometheus.nix"]);
    let missing = repo.guard(&["explain", "services/nope.nix"]);
    let unread = repo.guard(&["explain", "NOTES.md"]);
    settings().bind(|| {
        insta::assert_snapshot!("explain_found", redact(&found.stdout, &repo));
        insta::assert_snapshot!(
            "explain_not_tracked",
            format!("exit {}\n{}", missing.code, redact(&missing.stderr, &repo))
        );
        insta::assert_snapshot!(
            "explain_no_host_reads",
            format!("exit {}\n{}", unread.code, redact(&unread.stdout, &repo))
        );
    });
}

#[test]
fn hook_line_clean_and_blocked() {
    let repo = fleet_repo();
    let p = repo.path().join("services/prometheus.nix");
    let mut t = std::fs::read_to_string(&p).unwrap();
    t.push_str("# scrape every 30 s\n");
    std::fs::write(&p, &t).unwrap();
    repo.git(&["add", "services/prometheus.nix"]);
    let clean = repo.guard(&["pre-commit"]);
    repo.write(
        "machines/monitor/grafana.nix",
        format!(
            "{{ ... }}: {{\n  services.grafana.settings.security.admin_password = \"{}\";\n}}\n",
            fake_password()
        ),
    );
    repo.git(&["add", "machines/monitor/grafana.nix"]);
    let blocked = repo.guard(&["pre-commit"]);
    assert!(
        !blocked.stderr.contains(&fake_password()),
        "never the secret"
    );
    settings().bind(|| {
        insta::assert_snapshot!(
            "hook_clean",
            format!("exit {}\n{}", clean.code, redact(&clean.stderr, &repo))
        );
        insta::assert_snapshot!(
            "hook_blocked",
            format!("exit {}\n{}", blocked.code, redact(&blocked.stderr, &repo))
        );
    });
}

/// `guard --help` and every command's `--help`, at a fixed width.
#[test]
fn help_of_guard_and_every_command() {
    let dir = std::env::temp_dir();
    let help = |args: &[&str]| -> String {
        let out: GuardOutput = guard_cmd(&dir)
            .env("COLUMNS", "100")
            .args(args)
            .output()
            .unwrap()
            .into();
        out.assert_code(0);
        out.stdout
    };
    let mut text = help(&["--help"]);
    for c in [
        "affected",
        "explain",
        "doctor",
        "graph",
        "plan",
        "scan",
        "secrets",
        "build",
        "check",
        "pre-commit",
        "ci",
        "bisect",
        "hook",
        "init",
        "completions",
        "man",
    ] {
        text.push_str(&format!("\n===== guard {c} --help\n"));
        text.push_str(&help(&[c, "--help"]));
    }
    settings().bind(|| insta::assert_snapshot!("help", text));
}

/// A one-line change to a module only the prometheus hosts import.
fn tuned_prometheus(repo: &TempRepo) {
    let p = repo.path().join("services/prometheus.nix");
    let mut t = std::fs::read_to_string(&p).unwrap();
    t.push_str("# scrape every 30 s\n");
    std::fs::write(&p, &t).unwrap();
}

/// A committed plaintext password (fake) in a host's module.
fn leaked_password(repo: &TempRepo) {
    repo.write(
        "machines/monitor/grafana.nix",
        format!(
            "{{ ... }}: {{\n  services.grafana.settings.security.admin_password = \"{}\";\n}}\n",
            fake_password()
        ),
    );
}

#[test]
fn affected_scan_secrets_check_and_graph() {
    let repo = fleet_repo();
    tuned_prometheus(&repo);
    leaked_password(&repo);
    repo.commit_all("tune prometheus, leak a password");
    let affected = repo.guard(&["affected", "--commit", "HEAD"]);
    let scan = repo.guard(&["scan", "--commit", "HEAD"]);
    let check = repo.guard(&["check", "--commit", "HEAD", "--level", "none"]);
    let graph = repo.guard(&["graph", "--host", "linda"]);
    let secrets_clean = repo.guard(&["secrets", "--all"]);
    repo.write("secrets/wg-linda.age", "hunter2\n");
    let secrets_bad = repo.guard(&["secrets"]);
    for out in [&scan, &check, &secrets_bad] {
        assert!(!out.stdout.contains(&fake_password()), "never the secret");
        assert!(!out.stdout.contains("hunter2"), "never the plaintext");
    }
    settings().bind(|| {
        insta::assert_snapshot!("affected", shown(&affected, &affected.stdout, &repo));
        insta::assert_snapshot!("scan", shown(&scan, &scan.stdout, &repo));
        insta::assert_snapshot!("check_level_none", shown(&check, &check.stdout, &repo));
        insta::assert_snapshot!("graph_host_dot", shown(&graph, &graph.stdout, &repo));
        insta::assert_snapshot!(
            "secrets_all_clean",
            shown(&secrets_clean, &secrets_clean.stdout, &repo)
        );
        insta::assert_snapshot!(
            "secrets_plaintext",
            shown(&secrets_bad, &secrets_bad.stdout, &repo)
        );
    });
}

/// `guard ci` outside Actions (human text) and the step summary it writes.
#[test]
fn ci_human_and_step_summary() {
    let repo = fleet_repo();
    let base = repo.rev("HEAD");
    tuned_prometheus(&repo);
    leaked_password(&repo);
    repo.commit_all("tune prometheus, leak a password");
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    let out: GuardOutput = guard_cmd(repo.path())
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_OUTPUT")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .arg("-C")
        .arg(repo.path())
        .args([
            "ci", "--base", &base, "--level", "none", "--format", "human",
        ])
        .output()
        .unwrap()
        .into();
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(!md.contains(&fake_password()), "never the secret");
    settings().bind(|| {
        insta::assert_snapshot!("ci_human", shown(&out, &out.stdout, &repo));
        insta::assert_snapshot!("step_summary", redact(&md, &repo));
    });
}

/// `guard bisect --run` (no nix): the first commit that breaks a host.
#[test]
fn bisect_human() {
    let repo = fleet_repo();
    let good = repo.rev("HEAD");
    repo.write("machines/linda/notes.txt", "fine\n");
    repo.commit_all("notes for linda");
    repo.write("machines/linda/broken", "");
    repo.commit_all("break linda");
    tuned_prometheus(&repo);
    repo.commit_all("tune prometheus");
    let out = repo.guard(&[
        "bisect",
        "--host",
        "linda",
        "--good",
        &good,
        "--run",
        "test ! -e machines/linda/broken",
    ]);
    settings().bind(|| {
        insta::assert_snapshot!(
            "bisect",
            format!(
                "{}\n--- stderr\n{}",
                shown(&out, &out.stdout, &repo),
                redact(&out.stderr, &repo)
            )
        );
    });
}

/// `guard build` at level eval with real nix: one host affected.
#[test]
fn build_eval_human() {
    let _ = nix_cmd(); // fails loudly when nix is missing
    let repo = fleet_repo();
    let p = repo.path().join("machines/linda/default.nix");
    let mut t = std::fs::read_to_string(&p).unwrap();
    t.push_str("# a comment for linda\n");
    std::fs::write(&p, &t).unwrap();
    repo.commit_all("comment");
    let out = repo.guard(&["-q", "build", "--commit", "HEAD", "--level", "eval"]);
    settings().bind(|| {
        insta::assert_snapshot!("build_eval", shown(&out, &out.stdout, &repo));
    });
}

/// `guard init --dry-run` and `guard hook install` / `uninstall`.
#[test]
fn init_and_hook_messages() {
    let repo = fleet_repo();
    let init = repo.guard(&["init", "--dry-run"]);
    let install = repo.guard(&["hook", "install"]);
    let uninstall = repo.guard(&["hook", "uninstall"]);
    assert!(!Path::new(&repo.path().join(".git/hooks/pre-commit")).exists());
    settings().bind(|| {
        insta::assert_snapshot!("init_dry_run", shown(&init, &init.stdout, &repo));
        insta::assert_snapshot!(
            "hook_install",
            format!(
                "{}{}",
                shown(&install, &install.stdout, &repo),
                redact(&install.stderr, &repo)
            )
        );
        insta::assert_snapshot!(
            "hook_uninstall",
            format!(
                "{}{}",
                shown(&uninstall, &uninstall.stdout, &repo),
                redact(&uninstall.stderr, &repo)
            )
        );
    });
}

//! Snapshots of the human output users read every day: `explain` (found,
//! not found, nothing reads it) and the hook line (clean and blocked), on
//! the shipped example fleet. Timings and temporary paths are redacted.
//! Update with `INSTA_UPDATE=always cargo test --test integration snapshots`
//! and review the diff.

use crate::support::{TempRepo, fleet_repo};

fn redact(text: &str, repo: &TempRepo) -> String {
    text.replace(&repo.path().display().to_string(), "[repo]")
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\d+ ms", "[ms] ms");
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s
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

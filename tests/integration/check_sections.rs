//! `guard check` reports one finding per secret across its sections, and
//! its counts add up.

use std::process::Command;

use crate::support::fleet_repo;

#[test]
fn a_committed_identity_is_one_finding_not_two() {
    let repo = fleet_repo();
    let key = repo.path().join("machines/linda/key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("this test needs age-keygen (scripts/install-nix installs age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo.commit_all("commit an identity");
    let out = repo.guard(&[
        "check", "--commit", "HEAD", "--level", "none", "--format", "json",
    ]);
    out.assert_code(1);
    let j = out.json();
    let on_key: Vec<String> = ["scan", "secrets"]
        .iter()
        .flat_map(|s| j[s]["findings"].as_array().cloned().unwrap_or_default())
        .filter(|f| f["path"] == "machines/linda/key.txt")
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(on_key, ["age-secret-key"], "{}", out.stdout);
    assert_eq!(
        j["scan"]["scanned"]["files"], 1,
        "the scan read the one changed file"
    );
    let human = repo.guard(&["check", "--commit", "HEAD", "--level", "none"]);
    assert!(
        human.stdout.contains("1 finding in 1 file"),
        "counts add up: {}",
        human.stdout
    );
    // The key never shows.
    let text = std::fs::read_to_string(&key).unwrap();
    let secret = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    assert!(!human.stdout.contains(&secret[20..40]) && !out.stdout.contains(&secret[20..40]));
}

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

/// A WireGuard private key line, made fresh (never a real one).
fn wg_line(iface: &str) -> String {
    use std::io::Read;
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut raw)
        .unwrap();
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&raw)?;
            c.wait_with_output()
        })
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap();
    format!("  networking.wireguard.interfaces.{iface}.privateKey = \"{key}\";\n")
}

#[test]
fn the_hook_judges_the_lines_a_commit_adds() {
    let repo = fleet_repo();
    repo.write(
        "machines/linda/wg.nix",
        format!("{{ ... }}: {{\n{}}}\n", wg_line("wg0")),
    );
    repo.commit_all("an old finding");
    // A one-line change elsewhere in the file: the old finding is not news.
    let mut text = std::fs::read_to_string(repo.path().join("machines/linda/wg.nix")).unwrap();
    text.push_str("# tuned MTU later\n");
    repo.write("machines/linda/wg.nix", &text);
    repo.git(&["add", "machines/linda/wg.nix"]);
    let out = repo.guard(&["pre-commit"]);
    out.assert_code(0);
    assert!(
        out.stderr
            .contains("1 older finding in the touched files not judged"),
        "{}",
        out.stderr
    );
    repo.guard(&["pre-commit", "--full-files"]).assert_code(1);

    // A line the commit adds is judged.
    text.push_str(&format!("/* {} */\n", wg_line("wg1").trim()));
    repo.write("machines/linda/wg.nix", &text);
    repo.git(&["add", "machines/linda/wg.nix"]);
    let out = repo.guard(&["pre-commit"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("commit blocked by 1 finding"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_fix_names_the_scheme_the_repository_uses() {
    let repo = crate::support::TempRepo::new();
    repo.write(
        "flake.nix",
        r#"{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs";
  inputs.sops-nix.url = "github:Mic92/sops-nix";
  outputs = { nixpkgs, sops-nix, ... }: {
    nixosConfigurations.db = nixpkgs.lib.nixosSystem { modules = [ ./db.nix ]; };
  };
}"#,
    );
    let secret = format!(
        "{:x}{:x}",
        std::process::id() as u64 * 7919,
        0x5eed_u64 * 104_729
    );
    repo.write(
        "db.nix",
        format!("{{ ... }}: {{\n  services.app.password = \"Zq{secret}x!\";\n}}\n"),
    );
    repo.commit_all("a plaintext password in a sops-nix fleet");
    let out = repo.guard(&[
        "check", "--commit", "HEAD", "--level", "none", "--format", "json",
    ]);
    out.assert_code(1);
    let messages: Vec<String> = out.json()["scan"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert!(!messages.is_empty(), "{}", out.stdout);
    for m in &messages {
        assert!(m.contains("config.sops.secrets.<name>.path"), "{m}");
        assert!(!m.contains("secrix"), "{m}");
    }
    let scan = repo.guard(&["scan", "--all"]);
    assert!(scan.stdout.contains("sops-nix"), "{}", scan.stdout);
    assert!(!scan.stdout.contains("secrix"), "{}", scan.stdout);
}

//! `guard secrets`: age/secrix/agenix checks with real keys made at test
//! time (`ssh-keygen`, Go `age`/`age-keygen`), on small generated fleets and
//! on copies of the example fleet. Every test also checks that guard left
//! the repository as it found it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::support::{GuardOutput, TempRepo, fleet_repo, guard_cmd};

/// A key pair made with ssh-keygen (no passphrase), in its own temp dir.
struct SshKey {
    _dir: tempfile::TempDir,
    private: PathBuf,
    public: String,
}

fn ssh_key(name: &str) -> SshKey {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("root@{name}"))
        .arg("-f")
        .arg(&private)
        .output()
        .expect("ssh-keygen must be installed (scripts/install-nix)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(private.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();
    SshKey {
        _dir: dir,
        private,
        public,
    }
}

/// An X25519 identity made with age-keygen: (identity file text, recipient).
fn age_key() -> (String, String) {
    let out = Command::new("age-keygen")
        .output()
        .expect("age-keygen must be installed (scripts/install-nix)");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    (text, recipient)
}

/// Encrypts with the Go `age` CLI (what secrix and agenix run).
fn encrypt(recipients: &[&str], plaintext: &[u8], armor: bool) -> Vec<u8> {
    let mut c = Command::new("age");
    c.arg("-e");
    if armor {
        c.arg("-a");
    }
    for r in recipients {
        c.arg("-r").arg(r);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("age must be installed (scripts/install-nix)");
    child.stdin.take().unwrap().write_all(plaintext).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn findings(out: &GuardOutput) -> Vec<serde_json::Value> {
    out.json()["findings"].as_array().unwrap().clone()
}

/// (rule, path) of every finding.
fn rules(out: &GuardOutput) -> Vec<(String, String)> {
    findings(out)
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn find<'a>(fs: &'a [serde_json::Value], rule: &str, path: &str) -> &'a serde_json::Value {
    fs.iter()
        .find(|f| f["rule"] == rule && f["path"] == path)
        .unwrap_or_else(|| panic!("no {rule} finding for {path} in {fs:#?}"))
}

/// Runs guard and checks it modified nothing.
fn guard(repo: &TempRepo, args: &[&str]) -> GuardOutput {
    let before = repo.state();
    let out = repo.guard(args);
    assert_eq!(
        before,
        repo.state(),
        "guard {args:?} modified the repository"
    );
    out
}

/// A small secrix fleet: hosts alpha, beta, gamma (readDir of machines/),
/// `environments/shared.nix` (imported by alpha and beta) using
/// `secrets/shared.age`, and one `secrets/wg-<host>.age` per host.
struct Fleet {
    repo: TempRepo,
    alpha: SshKey,
    beta: SshKey,
    gamma: SshKey,
    /// An admin's age key, a recipient of every secret.
    admin: (String, String),
}

const FLAKE: &str = r#"{
  inputs = { };
  outputs = { self }: {
    nixosConfigurations = builtins.mapAttrs
      (name: entry: import ./lib/eval.nix { inherit name; modules = [ entry ]; })
      (import ./machines);
  };
}
"#;

const MACHINES: &str = r#"let
  entries = builtins.readDir ./.;
  names = builtins.filter (n: entries.${n} == "directory") (builtins.attrNames entries);
in
builtins.listToAttrs (map (n: { name = n; value = ./. + "/${n}"; }) names)
"#;

fn host_module(name: &str, key: &str, imports: &[&str]) -> String {
    let imports: String = imports.iter().map(|i| format!("    {i}\n")).collect();
    format!(
        r#"{{ config, lib, ... }}:
{{
  imports = [
{imports}  ];
  secrix.hostPubKey = "{key}";
  secrix.system.secrets.wg-{name}.encrypted.file = ../../secrets/wg-{name}.age;
}}
"#
    )
}

const SHARED: &str = r#"{ config, ... }:
{
  services.db.passwordFile = config.secrix.services.db.secrets.db-pw.decrypted.path;
  secrix.services.db.secrets.db-pw.encrypted.file = ../secrets/shared.age;
}
"#;

impl Fleet {
    fn new() -> Fleet {
        let repo = TempRepo::new();
        let (alpha, beta, gamma) = (ssh_key("alpha"), ssh_key("beta"), ssh_key("gamma"));
        let admin = age_key();
        repo.write("flake.nix", FLAKE);
        repo.write(
            "lib/eval.nix",
            std::fs::read(crate::support::example_fleet().join("lib/eval.nix")).unwrap(),
        );
        repo.write("machines/default.nix", MACHINES);
        repo.write("environments/shared.nix", SHARED);
        let hosts = [("alpha", &alpha), ("beta", &beta), ("gamma", &gamma)];
        for (name, key) in hosts {
            let imports: &[&str] = if name == "gamma" {
                &[]
            } else {
                &["../../environments/shared.nix"]
            };
            repo.write(
                &format!("machines/{name}/default.nix"),
                host_module(name, &key.public, imports),
            );
            repo.write(
                &format!("secrets/wg-{name}.age"),
                encrypt(&[&key.public, &admin.1], b"wg-private-key", false),
            );
        }
        repo.write(
            "secrets/shared.age",
            encrypt(
                &[&alpha.public, &beta.public, &admin.1],
                b"db-password",
                true,
            ),
        );
        repo.write(
            "guard.toml",
            format!("[secrets]\nadmin_keys = [\"{}\"]\n", admin.1),
        );
        repo.commit_all("fleet");
        Fleet {
            repo,
            alpha,
            beta,
            gamma,
            admin,
        }
    }
}

#[test]
fn valid_binary_and_armored_secrets_pass() {
    let f = Fleet::new();
    let out = guard(&f.repo, &["secrets", "--all", "--format", "json"]);
    out.assert_code(0);
    assert_eq!(rules(&out), Vec::<(String, String)>::new());
    assert_eq!(out.json()["scanned"]["files"], 4);
    // Human output too; and nothing changed means nothing to check.
    let out = guard(&f.repo, &["secrets"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("0 findings in 0 files"),
        "{}",
        out.stdout
    );
}

#[test]
fn plaintext_under_an_age_name_fails_without_showing_it() {
    let f = Fleet::new();
    f.repo.write(
        "secrets/wg-alpha.age",
        "PrivateKey = kP3xq1S9mWcT0b7Jf2hL8Zy\n",
    );
    let out = guard(&f.repo, &["secrets", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let p = find(&fs, "age-plaintext", "secrets/wg-alpha.age");
    assert_eq!(p["severity"], "error");
    let msg = p["message"].as_str().unwrap();
    assert!(msg.contains("plaintext") && msg.contains("alpha"), "{msg}");
    assert!(msg.contains("was age ciphertext in HEAD"), "{msg}");
    assert!(!out.stdout.contains("kP3xq1S9"), "{}", out.stdout);
    let human = guard(&f.repo, &["secrets"]);
    human.assert_code(1);
    assert!(!human.stdout.contains("kP3xq1S9"));
    assert!(
        human
            .stdout
            .contains("secrets/wg-alpha.age:1:1: error[age-plaintext]")
    );
    // GitHub annotations and SARIF carry the same finding, never the value.
    let gh = guard(&f.repo, &["secrets", "--format", "github"]);
    gh.assert_code(1);
    assert!(
        gh.stdout.contains(
            "::error file=secrets/wg-alpha.age,line=1,col=1,title=guard%3A age-plaintext::"
        ),
        "{}",
        gh.stdout
    );
    let sarif = guard(&f.repo, &["secrets", "--format", "sarif"]);
    sarif.assert_code(1);
    let run = &sarif.json()["runs"][0];
    assert_eq!(run["results"][0]["ruleId"], "age-plaintext");
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"age-missing-recipient") && rules.contains(&"age-secret-key"));
    assert!(!gh.stdout.contains("kP3xq1S9") && !sarif.stdout.contains("kP3xq1S9"));
}

#[test]
fn truncated_and_corrupted_headers_fail_naming_the_problem() {
    let f = Fleet::new();
    let good = std::fs::read(f.repo.path().join("secrets/wg-beta.age")).unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mac_at = text(&good).find("\n---").unwrap() + 1;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "file is empty"),
        ("truncated header", good[..40].to_vec(), "truncated header"),
        ("no MAC line", good[..mac_at].to_vec(), "truncated header"),
        (
            "bad stanza",
            text(&good).replacen("-> ", "=> ", 1).into_bytes(),
            "bad stanza",
        ),
        (
            "bad base64",
            {
                let mut b = good.clone();
                let line2 = text(&b).find('\n').unwrap() + 1;
                let body = line2 + text(&b)[line2..].find('\n').unwrap() + 1;
                b[body] = b'*';
                b
            },
            "bad base64",
        ),
        ("no payload", good[..good.len() - 40].to_vec(), "truncated"),
        (
            "unknown version",
            text(&good).replacen("/v1", "/v9", 1).into_bytes(),
            "unsupported age format version 'v9'",
        ),
    ];
    for (name, bytes, want) in cases {
        f.repo.write("secrets/wg-beta.age", &bytes);
        let out = guard(&f.repo, &["secrets", "--format", "json"]);
        out.assert_code(1);
        let fs = findings(&out);
        let m = find(&fs, "age-malformed", "secrets/wg-beta.age");
        let msg = m["message"].as_str().unwrap();
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(msg.contains("used by beta"), "{name}: {msg}");
    }
    // Binary junk is not plaintext, but still not age.
    f.repo
        .write("secrets/wg-beta.age", [0u8, 159, 146, 150, 1, 2, 3]);
    let out = guard(&f.repo, &["secrets", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let m = find(&fs, "age-malformed", "secrets/wg-beta.age");
    assert!(m["message"].as_str().unwrap().contains("no age header"));
}

#[test]
fn host_added_to_an_environment_is_not_a_recipient() {
    let f = Fleet::new();
    // gamma joins the shared environment: shared.age was never rekeyed.
    f.repo.write(
        "machines/gamma/default.nix",
        host_module("gamma", &f.gamma.public, &["../../environments/shared.nix"]),
    );
    // Staged: what is being committed.
    f.repo.git(&["add", "-A"]);
    let out = guard(&f.repo, &["secrets", "--staged", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let m = find(&fs, "age-missing-recipient", "secrets/shared.age");
    let msg = m["message"].as_str().unwrap();
    assert!(msg.contains("host gamma cannot decrypt"), "{msg}");
    assert!(
        msg.contains("secrix.services.db.secrets.db-pw.encrypted.file"),
        "{msg}"
    );
    assert!(
        msg.contains("machines/gamma/default.nix → environments/shared.nix"),
        "{msg}"
    );
    assert_eq!(fs.len(), 1, "{fs:#?}");
    // The same as a commit, in CI.
    f.repo.commit_all("gamma uses the db");
    let out = guard(
        &f.repo,
        &["secrets", "--commit", "HEAD", "--format", "json"],
    );
    out.assert_code(1);
    assert_eq!(
        rules(&out),
        [("age-missing-recipient".into(), "secrets/shared.age".into())]
    );
    // Rekeying for gamma fixes it.
    f.repo.write(
        "secrets/shared.age",
        encrypt(
            &[&f.alpha.public, &f.beta.public, &f.gamma.public, &f.admin.1],
            b"db-password",
            true,
        ),
    );
    let out = guard(&f.repo, &["secrets", "--format", "json"]);
    out.assert_code(0);
    assert!(findings(&out).is_empty(), "{}", out.stdout);
}

#[test]
fn removed_host_still_a_recipient_warns() {
    let f = Fleet::new();
    f.repo.git(&["rm", "-q", "-r", "machines/beta"]);
    f.repo.commit_all("retire beta");
    let out = guard(
        &f.repo,
        &["secrets", "--commit", "HEAD", "--format", "json"],
    );
    out.assert_code(0); // warnings do not fail
    let fs = findings(&out);
    let stale = find(&fs, "age-stale-recipient", "secrets/shared.age");
    assert_eq!(stale["severity"], "warning");
    let msg = stale["message"].as_str().unwrap();
    assert!(msg.contains("removed host beta"), "{msg}");
    let unused = find(&fs, "age-unused", "secrets/wg-beta.age");
    assert_eq!(unused["severity"], "info");
    // Later, with --all, beta's key is just an unknown key.
    let out = guard(&f.repo, &["secrets", "--all", "--format", "json"]);
    out.assert_code(0);
    let fs = findings(&out);
    let msg = find(&fs, "age-stale-recipient", "secrets/shared.age")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("unknown ssh-ed25519 key"), "{msg}");
}

#[test]
fn host_that_stops_using_a_secret_is_stale() {
    let f = Fleet::new();
    f.repo.write(
        "machines/beta/default.nix",
        host_module("beta", &f.beta.public, &[]),
    );
    let out = guard(&f.repo, &["secrets", "--format", "json"]);
    out.assert_code(0);
    let fs = findings(&out);
    let msg = find(&fs, "age-stale-recipient", "secrets/shared.age")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("host beta no longer uses this secret"),
        "{msg}"
    );
}

#[test]
fn rotated_host_key_is_missing_and_the_old_key_is_stale() {
    let f = Fleet::new();
    let new_key = ssh_key("alpha2");
    f.repo.write(
        "machines/alpha/default.nix",
        host_module("alpha", &new_key.public, &["../../environments/shared.nix"]),
    );
    let out = guard(&f.repo, &["secrets", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    for s in ["secrets/shared.age", "secrets/wg-alpha.age"] {
        find(&fs, "age-missing-recipient", s);
    }
    // One warning for the old key, naming every file it can still decrypt.
    let stale: Vec<&serde_json::Value> = fs
        .iter()
        .filter(|f| f["rule"] == "age-stale-recipient")
        .collect();
    assert_eq!(stale.len(), 1, "{stale:#?}");
    let msg = stale[0]["message"].as_str().unwrap();
    assert!(msg.contains("previous key of host alpha"), "{msg}");
    assert!(
        msg.contains("secrets/shared.age, secrets/wg-alpha.age"),
        "{msg}"
    );
}

#[test]
fn decrypt_proof_with_the_right_and_a_wrong_identity() {
    let f = Fleet::new();
    let key = f.alpha.private.to_str().unwrap();
    // alpha's host key reads what alpha uses.
    let out = guard(&f.repo, &["secrets", "--all", "--identity", key]);
    out.assert_code(0);
    assert!(
        out.stderr.contains("2 secret(s) decrypted"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("wg-private-key") && !out.stderr.contains("db-password"));
    assert!(!out.stderr.contains("PRIVATE KEY"));

    // A key that is nobody's: it must read everything in scope, and cannot.
    let stranger = ssh_key("stranger");
    let out = guard(
        &f.repo,
        &[
            "secrets",
            "--all",
            "--format",
            "json",
            "--identity",
            stranger.private.to_str().unwrap(),
        ],
    );
    out.assert_code(1);
    let fs = findings(&out);
    assert_eq!(fs.len(), 4, "{fs:#?}");
    let m = find(&fs, "age-decrypt-failed", "secrets/wg-gamma.age");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("not a recipient of this file"),
        "{m}"
    );

    // The admin's age identity from the environment (as CI passes it).
    let run_env = |identity: &str, args: &[&str]| -> GuardOutput {
        let before = f.repo.state();
        let mut c = guard_cmd(f.repo.path());
        c.arg("-C").arg(f.repo.path()).args(args);
        c.env("GUARD_AGE_IDENTITY", identity);
        let out: GuardOutput = c.output().unwrap().into();
        assert_eq!(before, f.repo.state());
        out
    };
    let out = run_env(&f.admin.0, &["secrets", "--all"]);
    out.assert_code(0);
    assert!(
        out.stderr.contains("4 secret(s) decrypted"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("AGE-SECRET-KEY") && !out.stdout.contains("AGE-SECRET-KEY"));
    let (other, _) = age_key();
    let out = run_env(&other, &["secrets", "--all", "--format", "json"]);
    out.assert_code(1);
    assert_eq!(findings(&out).len(), 4);

    // A corrupted payload: the header is fine, decryption is not.
    let p = f.repo.path().join("secrets/wg-alpha.age");
    let mut b = std::fs::read(&p).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0x01;
    std::fs::write(&p, b).unwrap();
    let out = guard(&f.repo, &["secrets", "--identity", key, "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let m = find(&fs, "age-decrypt-failed", "secrets/wg-alpha.age");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("payload fails authentication")
    );
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("host alpha will fail")
    );

    // A bad identity is a usage error.
    let out = run_env("not a key", &["secrets"]);
    out.assert_code(2);
    assert!(out.stderr.contains("$GUARD_AGE_IDENTITY"), "{}", out.stderr);
    assert!(!out.stderr.contains("not a key"), "{}", out.stderr);
}

#[test]
fn x25519_recipients_are_unverifiable_not_wrong() {
    let f = Fleet::new();
    // gamma decrypts with an age identity: guard.toml names its key.
    let (_, gamma_age) = age_key();
    f.repo.write(
        "guard.toml",
        format!(
            "[secrets]\nadmin_keys = [\"{}\"]\n[secrets.recipients]\ngamma = [\"{gamma_age}\"]\n",
            f.admin.1
        ),
    );
    f.repo
        .write("secrets/wg-gamma.age", encrypt(&[&gamma_age], b"k", false));
    // A secret nobody uses, X25519 only.
    f.repo
        .write("secrets/old.age", encrypt(&[&f.admin.1], b"x", true));
    f.repo.commit_all("age keys");
    let out = guard(&f.repo, &["secrets", "--all", "--format", "json"]);
    out.assert_code(0);
    let fs = findings(&out);
    let m = find(&fs, "age-unverifiable", "secrets/wg-gamma.age");
    assert_eq!(m["severity"], "info");
    assert!(m["message"].as_str().unwrap().contains("host gamma"));
    let m = find(&fs, "age-unverifiable", "secrets/old.age");
    assert!(m["message"].as_str().unwrap().contains("X25519"));
    find(&fs, "age-unused", "secrets/old.age");
}

#[test]
fn identities_in_the_change_are_errors() {
    let f = Fleet::new();
    let (identity, _) = age_key();
    f.repo.write("keys/admin.txt", &identity);
    let k = ssh_key("leak");
    f.repo.write(
        "machines/alpha/ssh_host_ed25519_key",
        std::fs::read(&k.private).unwrap(),
    );
    f.repo.git(&["add", "-A"]);
    let out = guard(&f.repo, &["secrets", "--staged", "--format", "json"]);
    out.assert_code(1);
    let got = rules(&out);
    assert!(
        got.contains(&("age-secret-key".into(), "keys/admin.txt".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&(
            "ssh-private-key".into(),
            "machines/alpha/ssh_host_ed25519_key".into()
        )),
        "{got:?}"
    );
    assert!(!out.stdout.contains(identity.lines().last().unwrap()));
}

/// `--all` remembers blobs found clean under the git dir: a second run
/// reads none of them again, yet an identity committed later (a new blob)
/// or written into a file known clean is found, in the work tree too.
#[test]
fn identity_scan_remembers_clean_blobs_and_still_finds_new_identities() {
    let f = Fleet::new();
    f.repo.write("keys/notes.txt", "no key here\n");
    f.repo.commit_all("notes");
    let cache = f.repo.path().join(".git/guard/cache/identity-clean");
    for _ in 0..2 {
        let out = guard(&f.repo, &["secrets", "--all", "--format", "json"]);
        assert!(!rules(&out).iter().any(|(r, _)| r == "age-secret-key"));
    }
    let notes = f.repo.git(&["rev-parse", "HEAD:keys/notes.txt"]);
    let cached = std::fs::read_to_string(&cache).unwrap();
    assert!(cached.lines().any(|l| l == notes.trim()), "{cached}");
    let (identity, _) = age_key();
    f.repo.write("keys/notes.txt", &identity);
    let out = guard(&f.repo, &["secrets", "--worktree", "--format", "json"]);
    assert!(
        rules(&out).contains(&("age-secret-key".into(), "keys/notes.txt".into())),
        "{}",
        out.stdout
    );
    f.repo.commit_all("a key in the notes");
    for _ in 0..2 {
        let out = guard(&f.repo, &["secrets", "--all", "--format", "json"]);
        out.assert_code(1);
        assert!(
            rules(&out).contains(&("age-secret-key".into(), "keys/notes.txt".into())),
            "{}",
            out.stdout
        );
        assert!(!out.stdout.contains(identity.lines().last().unwrap()));
    }
}

#[test]
fn agenix_rules_give_host_keys_and_must_match_the_files() {
    let repo = TempRepo::new();
    let (alpha, beta, user) = (ssh_key("alpha"), ssh_key("beta"), ssh_key("alice"));
    repo.write("flake.nix", FLAKE);
    repo.write("machines/default.nix", MACHINES);
    for h in ["alpha", "beta"] {
        repo.write(
            &format!("machines/{h}/default.nix"),
            format!(
                "{{ ... }}: {{\n  age.secrets.db = {{ file = ../../secrets/db.age; owner = \"db\"; }};\n  age.secrets.\"wg-{h}\".file = ../../secrets/wg-{h}.age;\n}}\n"
            ),
        );
    }
    repo.write(
        "secrets/secrets.nix",
        format!(
            "let\n  alice = \"{}\";\n  systems = {{ alpha = \"{}\"; beta = \"{}\"; }};\nin\n{{\n  \"db.age\".publicKeys = [ alice ] ++ builtins.attrValues systems;\n  \"wg-alpha.age\".publicKeys = [ alice systems.alpha ];\n  \"wg-beta.age\" = {{ publicKeys = [ alice systems.beta ]; armor = true; }};\n}}\n",
            user.public, alpha.public, beta.public
        ),
    );
    repo.write(
        "secrets/db.age",
        encrypt(&[&user.public, &alpha.public, &beta.public], b"pw", false),
    );
    repo.write(
        "secrets/wg-alpha.age",
        encrypt(&[&user.public, &alpha.public], b"k", false),
    );
    repo.write(
        "secrets/wg-beta.age",
        encrypt(&[&user.public, &beta.public], b"k", true),
    );
    repo.commit_all("agenix fleet");
    let out = guard(&repo, &["secrets", "--all", "--format", "json"]);
    out.assert_code(0);
    assert!(findings(&out).is_empty(), "{}", out.stdout);
    assert_eq!(out.json()["scanned"]["files"], 3);

    // db.age re-encrypted without beta: beta (keyed by its secrets.nix
    // binding) cannot read it, and the file disagrees with its rule.
    repo.write(
        "secrets/db.age",
        encrypt(&[&user.public, &alpha.public], b"pw", false),
    );
    let out = guard(&repo, &["secrets", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let m = find(&fs, "age-missing-recipient", "secrets/db.age");
    let msg = m["message"].as_str().unwrap();
    assert!(
        msg.contains("host beta") && msg.contains("age.secrets.db.file"),
        "{msg}"
    );
    assert!(
        msg.contains("binding `beta` in secrets/secrets.nix"),
        "{msg}"
    );
    let m = find(&fs, "agenix-rules-mismatch", "secrets/db.age");
    assert!(m["message"].as_str().unwrap().contains("agenix --rekey"));
}

#[test]
fn sops_files_are_left_alone() {
    let f = Fleet::new();
    f.repo.write(
        "guard.toml",
        format!(
            "[secrets]\npatterns = [\"*.age\", \"secrets/*\"]\nadmin_keys = [\"{}\"]\n",
            f.admin.1
        ),
    );
    f.repo.write(
        "secrets/app.yaml",
        "password: ENC[AES256_GCM,data:abc=,iv:x,tag:y,type:str]\nsops:\n    mac: ENC[AES256_GCM,data:z]\n    version: 3.8.1\n",
    );
    f.repo.write("secrets/README.md", "How to rekey.\n");
    f.repo
        .write("secrets/notes.txt", "the root password is hunter2\n");
    f.repo.commit_all("sops and notes");
    let out = guard(&f.repo, &["secrets", "--all", "--format", "json"]);
    out.assert_code(1);
    assert_eq!(
        rules(&out),
        [("age-plaintext".into(), "secrets/notes.txt".into())]
    );
    assert!(out.stdout.contains("sops-encrypted"), "{}", out.stdout);
}

// ---------------------------------------------------------------------------
// The example fleet.

fn fleet_json(repo: &TempRepo, args: &[&str]) -> GuardOutput {
    let mut a = vec!["secrets", "--format", "json"];
    a.extend_from_slice(args);
    guard(repo, &a)
}

#[test]
fn example_fleet_secrets_all_pass() {
    let repo = fleet_repo();
    let out = fleet_json(&repo, &["--all"]);
    out.assert_code(0);
    assert!(findings(&out).is_empty(), "{}", out.stdout);
    assert_eq!(out.json()["scanned"]["files"], 26);
    assert!(out.json()["warnings"].as_array().unwrap().is_empty());
}

#[test]
fn example_fleet_breaks_each_rule() {
    let repo = fleet_repo();
    let reset = || {
        repo.git(&["reset", "-q", "--hard", "HEAD"]);
        repo.git(&["clean", "-q", "-fd"]);
    };
    let read = |p: &str| std::fs::read(repo.path().join(p)).unwrap();

    // age-plaintext
    repo.write("secrets/wg-linda.age", "hunter2\n");
    let out = fleet_json(&repo, &[]);
    out.assert_code(1);
    assert_eq!(
        rules(&out),
        [("age-plaintext".into(), "secrets/wg-linda.age".into())]
    );
    reset();

    // age-malformed: a truncated armored file
    let w = read("secrets/wifi-psk.age");
    repo.write("secrets/wifi-psk.age", &w[..w.len() / 2]);
    let out = fleet_json(&repo, &[]);
    out.assert_code(1);
    let fs = findings(&out);
    let msg = find(&fs, "age-malformed", "secrets/wifi-psk.age")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("armor") && msg.contains("display-0"), "{msg}");
    reset();

    // age-missing-recipient: linda becomes a display
    let linda = String::from_utf8(read("machines/linda/default.nix")).unwrap();
    repo.write(
        "machines/linda/default.nix",
        linda.replace(
            "../../environments/workstation.nix",
            "../../environments/workstation.nix\n    ../../environments/display.nix",
        ),
    );
    let out = fleet_json(&repo, &[]);
    out.assert_code(1);
    let fs = findings(&out);
    assert_eq!(fs.len(), 1, "{fs:#?}");
    let msg = find(&fs, "age-missing-recipient", "secrets/wifi-psk.age")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("host linda"), "{msg}");
    reset();

    // age-stale-recipient: display-2 is retired
    repo.git(&["rm", "-q", "-r", "machines/display-2"]);
    repo.commit_all("retire display-2");
    let out = fleet_json(&repo, &["--commit", "HEAD"]);
    out.assert_code(0);
    let fs = findings(&out);
    // One warning for display-2's key, naming the files it can decrypt.
    let msg = find(&fs, "age-stale-recipient", "secrets/wg-display-2.age")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("removed host display-2"), "{msg}");
    assert!(msg.contains("secrets/wifi-psk.age"), "{msg}");
    find(&fs, "age-unused", "secrets/wg-display-2.age");
    repo.git(&["reset", "-q", "--hard", "HEAD~1"]);

    // age-host-key-unknown: a key guard cannot read statically
    let monitor = String::from_utf8(read("machines/monitor/default.nix")).unwrap();
    let start = monitor.find("secrix.hostPubKey = \"").unwrap();
    let end = start + monitor[start..].find(";\n").unwrap();
    let mut m = monitor.clone();
    m.replace_range(
        start..end,
        "secrix.hostPubKey = \"ssh-ed25519 ${config.networking.hostName}\"",
    );
    repo.write("machines/monitor/default.nix", m);
    let out = fleet_json(&repo, &[]);
    out.assert_code(0);
    let fs = findings(&out);
    // One warning for the host, naming every secret it uses.
    let w = find(&fs, "age-host-key-unknown", "secrets/grafana-admin.age");
    let msg = w["message"].as_str().unwrap();
    assert!(
        msg.contains("is computed") && msg.contains("secrets/wg-monitor.age"),
        "{msg}"
    );
    reset();

    // age-unverifiable: linda also decrypts with an age key (guard.toml),
    // and wg-linda.age is encrypted to that key only.
    let (_, linda_age) = age_key();
    let linda_ssh = linda
        .lines()
        .find_map(|l| l.trim().strip_prefix("secrix.hostPubKey = \""))
        .and_then(|l| l.strip_suffix("\";"))
        .unwrap()
        .to_string();
    repo.write(
        "guard.toml",
        format!("[secrets.recipients]\nlinda = [\"{linda_ssh}\", \"{linda_age}\"]\n"),
    );
    repo.write("secrets/wg-linda.age", encrypt(&[&linda_age], b"k", false));
    let out = fleet_json(&repo, &[]);
    out.assert_code(0);
    let fs = findings(&out);
    assert_eq!(fs.len(), 1, "{fs:#?}");
    let m = find(&fs, "age-unverifiable", "secrets/wg-linda.age");
    assert!(m["message"].as_str().unwrap().contains("host linda"));
    // With only the age key, restic-password.age (ssh only) is unreadable.
    repo.write(
        "guard.toml",
        format!("[secrets.recipients]\nlinda = [\"{linda_age}\"]\n"),
    );
    let out = fleet_json(&repo, &[]);
    out.assert_code(1);
    find(
        &findings(&out),
        "age-missing-recipient",
        "secrets/restic-password.age",
    );
    reset();

    // age-missing-file: a reference to an untracked secret
    repo.write(
        "machines/linda/default.nix",
        linda.replace(
            "../../secrets/wg-linda.age",
            "../../secrets/wg-linda-new.age",
        ),
    );
    let out = fleet_json(&repo, &[]);
    out.assert_code(1);
    let fs = findings(&out);
    find(&fs, "age-missing-file", "secrets/wg-linda-new.age");
    find(&fs, "age-unused", "secrets/wg-linda.age");
    reset();
    assert!(repo.git(&["status", "--porcelain"]).is_empty());
}

#[test]
fn fleet_secrets_are_checked_from_the_index_not_the_disk() {
    let repo = fleet_repo();
    // The broken file is on disk only; the index holds the good one.
    repo.write("secrets/wg-linda.age", "hunter2\n");
    let out = fleet_json(&repo, &["--staged"]);
    out.assert_code(0);
    // Staged, it fails.
    repo.git(&["add", "secrets/wg-linda.age"]);
    let out = fleet_json(&repo, &["--staged"]);
    out.assert_code(1);
}

#[test]
fn secrets_in_host_directories_belong_to_their_host() {
    let f = Fleet::new();
    // alpha keeps a secret in its own directory, also encrypted to beta.
    let m = host_module("alpha", &f.alpha.public, &["../../environments/shared.nix"]).replace(
        "}\n",
        "  secrix.system.secrets.ssh.encrypted.file = ./ssh.age;\n}\n",
    );
    f.repo.write("machines/alpha/default.nix", m);
    f.repo.write(
        "machines/alpha/ssh.age",
        encrypt(&[&f.alpha.public, &f.beta.public], b"k", false),
    );
    f.repo.commit_all("alpha ssh secret");
    let out = guard(
        &f.repo,
        &["secrets", "--commit", "HEAD", "--format", "json"],
    );
    out.assert_code(0);
    let fs = findings(&out);
    let msg = find(&fs, "age-stale-recipient", "machines/alpha/ssh.age")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("host beta can decrypt this secret but does not use it"),
        "{msg}"
    );
}

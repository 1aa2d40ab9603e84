//! `guard secrets` on sops-nix: real SSH host keys (ssh-keygen), real age
//! keys (age-keygen), files encrypted by the real `sops` (installed by
//! scripts/install-nix), in a small generated fleet. Every run also checks
//! that guard left the repository as it found it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use sha2::{Digest, Sha512};

use crate::support::{GuardOutput, TempRepo};

/// The sops binary: on PATH, or where scripts/install-nix puts it.
fn sops_bin() -> PathBuf {
    let private = Path::new("/opt/guard-sops/bin/sops");
    if let Some(p) = std::env::var_os("GUARD_SOPS") {
        return PathBuf::from(p);
    }
    if private.is_file() {
        return private.to_path_buf();
    }
    let found = Command::new("sh")
        .args(["-c", "command -v sops"])
        .output()
        .expect("sh");
    assert!(
        found.status.success(),
        "sops must be installed (scripts/install-nix puts it in /opt/guard-sops); tests never skip"
    );
    PathBuf::from(String::from_utf8(found.stdout).unwrap().trim())
}

/// Runs the real sops in `dir` (no age identity from the environment) and
/// returns what it wrote to stdout.
fn sops_in(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(sops_bin())
        .current_dir(dir)
        .env_remove("SOPS_AGE_KEY_FILE")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sops {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `sops encrypt` of a dummy YAML document to `recipients` (age1… or
/// ssh-ed25519), run outside any repository so no .sops.yaml applies.
fn sops_encrypt(recipients: &[&str], plaintext: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain.yaml"), plaintext).unwrap();
    let to = recipients.join(",");
    sops_in(
        dir.path(),
        &[
            "encrypt",
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
            "--age",
            &to,
            "plain.yaml",
        ],
    )
}

/// An ed25519 key made with ssh-keygen: (private key path, public line).
fn ssh_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let private = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("root@{name}"))
        .arg("-f")
        .arg(&private)
        .output()
        .expect("ssh-keygen must be installed (scripts/install-nix)");
    assert!(out.status.success());
    let public = std::fs::read_to_string(private.with_extension("pub")).unwrap();
    (private, public.trim().to_string())
}

/// An X25519 identity from age-keygen: (identity file text, recipient).
fn age_key() -> (String, String) {
    let out = Command::new("age-keygen").output().expect("age-keygen");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    (text, recipient)
}

/// The X25519 identity of an unencrypted OpenSSH ed25519 private key, as
/// ssh-to-age -private-key derives it: the clamped first half of
/// SHA-512(seed), Bech32 with the `AGE-SECRET-KEY-` prefix.
fn age_identity_of_ssh_private_key(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut rest = blob.strip_prefix(b"openssh-key-v1\0").unwrap();
    let take = |rest: &mut &[u8]| -> Vec<u8> {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let v = rest[4..4 + n].to_vec();
        *rest = &rest[4 + n..];
        v
    };
    assert_eq!(take(&mut rest), b"none", "unencrypted key");
    take(&mut rest); // kdf name
    take(&mut rest); // kdf options
    rest = &rest[4..]; // number of keys
    take(&mut rest); // public key
    let mut private = &take(&mut rest)[8..]; // after the two check words
    assert_eq!(take(&mut private), b"ssh-ed25519");
    take(&mut private); // public point
    let secret = take(&mut private); // seed ‖ public
    let digest = Sha512::digest(&secret[..32]);
    let mut scalar: [u8; 32] = digest[..32].try_into().unwrap();
    scalar[0] &= 248;
    scalar[31] &= 127;
    scalar[31] |= 64;
    guard::secrets::age::keys::bech32_encode("age-secret-key-", &scalar).to_uppercase()
}

#[test]
fn ssh_host_key_converts_to_the_age_recipient_age_itself_derives() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["alpha", "beta", "gamma"] {
        let (private, public) = ssh_key(dir.path(), name);
        let key = guard::secrets::age::keys::parse_public_key(&public).unwrap();
        let ours = guard::secrets::age::keys::ssh_to_age(&key).unwrap();
        // age-keygen -y computes the recipient of the identity the private
        // key converts to: an independent path to the same point.
        let identity = age_identity_of_ssh_private_key(&private);
        let mut child = Command::new("age-keygen")
            .arg("-y")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(identity.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            ours,
            "{name}"
        );
    }
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

fn findings(out: &GuardOutput) -> Vec<serde_json::Value> {
    out.json()["findings"].as_array().unwrap().clone()
}

fn find<'a>(fs: &'a [serde_json::Value], rule: &str, path: &str) -> &'a serde_json::Value {
    fs.iter()
        .find(|f| f["rule"] == rule && f["path"] == path)
        .unwrap_or_else(|| panic!("no {rule} finding for {path} in {fs:#?}"))
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

const SHARED: &str = r#"{ config, ... }:
{
  sops.secrets.db = { sopsFile = ../secrets/shared.yaml; };
  services.db.passwordFile = config.sops.secrets.db.path;
}
"#;

/// A sops-nix fleet: alpha and beta decrypt with their SSH host keys
/// (committed next to their modules), each has its own default sops file
/// and both use `secrets/shared.yaml` through `modules/shared.nix`. An
/// admin age key is a recipient of everything; `.sops.yaml` names them.
struct SopsFleet {
    repo: TempRepo,
    _keys: tempfile::TempDir,
    admin: String,
    alpha: String,
    beta: String,
}

fn host(name: &str) -> String {
    format!(
        r#"{{ ... }}:
{{
  imports = [ ../../modules/shared.nix ];
  sops.defaultSopsFile = ../../secrets/{name}.yaml;
  sops.secrets.wifi = {{ }};
}}
"#
    )
}

impl SopsFleet {
    fn new() -> SopsFleet {
        let repo = TempRepo::new();
        let keys = tempfile::tempdir().unwrap();
        let admin = age_key().1;
        let mut recipients = Vec::new();
        repo.write("flake.nix", FLAKE);
        repo.write(
            "lib/eval.nix",
            std::fs::read(crate::support::example_fleet().join("lib/eval.nix")).unwrap(),
        );
        repo.write("machines/default.nix", MACHINES);
        repo.write("modules/shared.nix", SHARED);
        for name in ["alpha", "beta"] {
            let (_, public) = ssh_key(keys.path(), name);
            let key = guard::secrets::age::keys::parse_public_key(&public).unwrap();
            let age = guard::secrets::age::keys::ssh_to_age(&key).unwrap();
            repo.write(&format!("machines/{name}/default.nix"), host(name));
            repo.write(
                &format!("machines/{name}/ssh_host_ed25519_key.pub"),
                format!("{public}\n"),
            );
            repo.write(
                &format!("secrets/{name}.yaml"),
                sops_encrypt(&[&admin, &age], "wifi: dummy-psk\n"),
            );
            recipients.push(age);
        }
        let (alpha, beta) = (recipients[0].clone(), recipients[1].clone());
        repo.write(
            "secrets/shared.yaml",
            sops_encrypt(&[&admin, &alpha, &beta], "db: dummy-password\n"),
        );
        repo.write(
            ".sops.yaml",
            format!(
                "keys:\n  - &admin {admin}\n  - &host_alpha {alpha}\n  - &host_beta {beta}\ncreation_rules:\n  - path_regex: secrets/alpha\\.yaml$\n    key_groups:\n      - age: [*admin, *host_alpha]\n  - path_regex: secrets/beta\\.yaml$\n    key_groups:\n      - age: [*admin, *host_beta]\n  - path_regex: secrets/[^/]+\\.yaml$\n    key_groups:\n      - age:\n          - *admin\n          - *host_alpha\n          - *host_beta\n"
            ),
        );
        repo.commit_all("sops fleet");
        SopsFleet {
            repo,
            _keys: keys,
            admin,
            alpha,
            beta,
        }
    }
}

#[test]
fn sops_nix_fleet_passes_then_each_break_is_caught() {
    let f = SopsFleet::new();
    let out = guard(&f.repo, &["secrets", "--all", "--format", "json"]);
    out.assert_code(0);
    assert!(findings(&out).is_empty(), "{}", out.stdout);
    assert_eq!(out.json()["scanned"]["files"], 3, "{}", out.stdout);

    // shared.yaml re-encrypted without beta (dummy plaintext, real sops).
    f.repo.write(
        "secrets/shared.yaml",
        sops_encrypt(&[&f.admin, &f.alpha], "db: another-dummy\n"),
    );
    f.repo.commit_all("rotate the db password, forget beta");
    for args in [
        &["secrets", "--all", "--format", "json"][..],
        &["secrets", "--commit", "HEAD", "--format", "json"][..],
    ] {
        let out = guard(&f.repo, args);
        out.assert_code(1);
        let fs = findings(&out);
        let missing: Vec<_> = fs
            .iter()
            .filter(|x| x["rule"] == "sops-missing-recipient")
            .collect();
        assert_eq!(missing.len(), 1, "{args:?}: {fs:#?}");
        let msg = find(&fs, "sops-missing-recipient", "secrets/shared.yaml")["message"]
            .as_str()
            .unwrap();
        assert!(msg.contains("host beta cannot decrypt"), "{msg}");
        assert!(
            msg.contains("sops.secrets.db.sopsFile in modules/shared.nix:3"),
            "{msg}"
        );
        assert!(
            msg.contains("machines/beta/default.nix → modules/shared.nix"),
            "{msg}"
        );
        assert!(msg.contains("ssh-to-age of"), "{msg}");
        // The creation rule still lists beta: sops updatekeys.
        let w = find(&fs, "sops-rules-mismatch", "secrets/shared.yaml");
        assert_eq!(w["severity"], "warning");
        let msg = w["message"].as_str().unwrap();
        assert!(
            msg.contains(".sops.yaml:12")
                && msg.contains("host_beta")
                && msg.contains("updatekeys"),
            "{msg}"
        );
        assert!(!out.stdout.contains("dummy"), "{}", out.stdout);
    }

    // beta decrypts with an age key file of its own that no file declares:
    // guard cannot tell, so it says so once, as info (no error, no noise).
    f.repo.write(
        "machines/beta/default.nix",
        host("beta").replace(
            "sops.secrets.wifi = { };",
            "sops.secrets.wifi = { };\n  sops.age.keyFile = \"/var/lib/sops-nix/key.txt\";\n  sops.age.sshKeyPaths = [ ];",
        ),
    );
    let beta_own = age_key().1;
    f.repo.write(
        "secrets/shared.yaml",
        sops_encrypt(&[&f.admin, &f.alpha, &beta_own], "db: dummy\n"),
    );
    f.repo.write(
        "secrets/beta.yaml",
        sops_encrypt(&[&f.admin, &beta_own], "wifi: dummy\n"),
    );
    f.repo.commit_all("beta decrypts with an age key file");
    let out = guard(&f.repo, &["secrets", "--all", "--format", "json"]);
    out.assert_code(0);
    let fs = findings(&out);
    let info = find(&fs, "sops-unverifiable", "secrets/beta.yaml");
    assert_eq!(info["severity"], "info");
    assert!(
        info["message"].as_str().unwrap().contains("host beta"),
        "{info:#?}"
    );
    assert!(
        !fs.iter().any(|x| x["rule"] == "sops-missing-recipient"),
        "{fs:#?}"
    );
    f.repo.git(&["reset", "-q", "--hard", "HEAD~1"]);

    // Corrupt and plaintext files: clear errors, never content, no panic.
    let good = std::fs::read(f.repo.path().join("secrets/alpha.yaml")).unwrap();
    for (bytes, expect) in [
        (good[..good.len() / 2].to_vec(), ""),
        (
            b"wifi: hunter2-plain\n".to_vec(),
            "not a sops-encrypted file",
        ),
        ([b"<<<<<<< HEAD\n".as_slice(), &good].concat(), ""),
    ] {
        f.repo.write("secrets/alpha.yaml", &bytes);
        let out = guard(&f.repo, &["secrets", "--worktree", "--format", "json"]);
        out.assert_code(1);
        let fs = findings(&out);
        let msg = find(&fs, "sops-malformed", "secrets/alpha.yaml")["message"]
            .as_str()
            .unwrap();
        assert!(
            msg.contains(expect) && msg.contains("used by alpha"),
            "{msg}"
        );
        assert!(!out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"));
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    let _ = &f.beta;
}

/// `sops encrypt` of a dummy YAML document under the creation rules of
/// `config` (a .sops.yaml beside the file, as users run it).
fn sops_encrypt_with_config(config: &str, plaintext: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".sops.yaml"), config).unwrap();
    std::fs::write(dir.path().join("plain.yaml"), plaintext).unwrap();
    sops_in(dir.path(), &["encrypt", "plain.yaml"])
}

/// Key groups split the data key (Shamir): sops needs a share from every
/// group, or from `shamir_threshold` of them, so a host whose key is a
/// recipient may still be unable to decrypt alone.
#[test]
fn sops_key_groups_are_counted_against_the_threshold() {
    let f = SopsFleet::new();
    let (admin, alpha, beta) = (&f.admin, &f.alpha, &f.beta);
    let write = |config: String, msg: &str| {
        f.repo.write(
            "secrets/shared.yaml",
            sops_encrypt_with_config(&config, "db: dummy-password\n"),
        );
        f.repo.commit_all(msg);
        guard(&f.repo, &["secrets", "--all", "--format", "json"])
    };
    // One creation rule for every file: `shamir_threshold` (if any) and
    // the key groups, each a list of age recipients.
    let rule = |threshold: Option<u32>, groups: &[&[&String]]| -> String {
        let mut r = "creation_rules:\n  - path_regex: .*\\.yaml$\n".to_string();
        if let Some(t) = threshold {
            r.push_str(&format!("    shamir_threshold: {t}\n"));
        }
        r.push_str("    key_groups:\n");
        for g in groups {
            let keys: Vec<&str> = g.iter().map(|k| k.as_str()).collect();
            r.push_str(&format!("      - age: [{}]\n", keys.join(", ")));
        }
        r
    };
    let missing = |out: &GuardOutput| -> Vec<String> {
        findings(out)
            .iter()
            .filter(|x| x["rule"] == "sops-missing-recipient")
            .map(|x| x["message"].as_str().unwrap().to_string())
            .collect()
    };
    // The admin in one group, the hosts in another, no threshold: both
    // groups are needed, and each host opens one.
    let out = write(
        rule(None, &[&[admin], &[alpha, beta]]),
        "shared.yaml: admin and hosts in two key groups",
    );
    out.assert_code(1);
    let m = missing(&out);
    assert_eq!(m.len(), 2, "{}", out.stdout);
    for (msg, host) in m.iter().zip(["alpha", "beta"]) {
        assert!(
            msg.contains(&format!("host {host} cannot decrypt"))
                && msg.contains("opens 1 of its 2 key groups (group 2)")
                && msg.contains("sops needs 2 (shamir_threshold)")
                && msg.contains(&format!("machines/{host}/default.nix → modules/shared.nix")),
            "{msg}"
        );
    }
    // The union of the groups is the rule's: no rules mismatch.
    let fs = findings(&out);
    assert!(
        !fs.iter().any(|x| x["rule"] == "sops-rules-mismatch"),
        "{fs:#?}"
    );
    assert!(!out.stdout.contains("dummy"), "{}", out.stdout);

    // Two shares of three: alpha opens groups 1 and 2, beta only 2.
    let out = write(
        rule(Some(2), &[&[admin, alpha], &[alpha, beta], &[admin]]),
        "shared.yaml: 2 of 3 groups",
    );
    out.assert_code(1);
    let m = missing(&out);
    assert_eq!(m.len(), 1, "{}", out.stdout);
    assert!(
        m[0].contains("host beta cannot decrypt")
            && m[0].contains("opens 1 of its 3 key groups (group 2), and sops needs 2"),
        "{}",
        m[0]
    );

    // Two of three, each host in two groups: both decrypt.
    let out = write(
        rule(Some(2), &[&[admin, alpha], &[alpha, beta], &[admin, beta]]),
        "shared.yaml: each host in two of three groups",
    );
    out.assert_code(0);
    assert!(findings(&out).is_empty(), "{}", out.stdout);
}

/// A sops file as sops writes it (YAML), with the given age recipients and
/// PGP fingerprints and placeholder ciphertext: guard reads only the
/// metadata, so no key (and no gpg) is needed to judge it.
fn sops_yaml_metadata(age: &[&str], pgp: &[&str]) -> String {
    let mut s = String::from("wifi: ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:str]\nsops:\n");
    s.push_str("    age:\n");
    for a in age {
        s.push_str(&format!("        - recipient: {a}\n          enc: |\n            -----BEGIN AGE ENCRYPTED FILE-----\n            -----END AGE ENCRYPTED FILE-----\n"));
    }
    s.push_str("    pgp:\n");
    for f in pgp {
        s.push_str(&format!("        - fp: {f}\n          enc: |\n            -----BEGIN PGP MESSAGE-----\n            -----END PGP MESSAGE-----\n"));
    }
    s.push_str("    mac: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\n    version: 3.9.4\n");
    s
}

/// A host whose PGP key `.sops.yaml` anchors under its name (and that has
/// no age key: an age key file, no SSH key paths) decrypts a file encrypted
/// to that fingerprint; a file encrypted to another declared PGP key is a
/// missing recipient naming the anchor; to an undeclared one, unverifiable.
#[test]
fn sops_pgp_host_key_from_a_sops_yaml_anchor() {
    let f = SopsFleet::new();
    let beta_fp = "2504791468B153B8A3963CC97BA53D1919C5DFD4";
    let cole_fp = "8A94ED58A476A13AE0D6E85E9758078DE5308308";
    f.repo.write(
        "machines/beta/default.nix",
        host("beta").replace(
            "sops.secrets.wifi = { };",
            "sops.secrets.wifi = { };\n  sops.age.keyFile = \"/var/lib/sops-nix/key.txt\";\n  sops.age.sshKeyPaths = [ ];",
        ),
    );
    f.repo.write(
        ".sops.yaml",
        format!(
            "keys:\n  - &admin {}\n  - &host_beta 2504 7914 68B1 53B8 A396  3CC9 7BA5 3D19 19C5 DFD4\n  - &cole {cole_fp}\ncreation_rules:\n  - path_regex: secrets/beta\\.yaml$\n    key_groups:\n      - age: [*admin]\n        pgp: [*host_beta]\n",
            f.admin
        ),
    );
    let judge = |pgp: &str| {
        f.repo
            .write("secrets/beta.yaml", sops_yaml_metadata(&[&f.admin], &[pgp]));
        f.repo.commit_all("beta.yaml");
        let out = guard(&f.repo, &["secrets", "--all", "--format", "json"]);
        findings(&out)
            .into_iter()
            .filter(|x| x["path"] == "secrets/beta.yaml")
            .map(|x| {
                (
                    x["rule"].as_str().unwrap().to_string(),
                    x["message"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(judge(beta_fp), []);
    let got = judge(cole_fp);
    let missing: Vec<&String> = got
        .iter()
        .filter(|(r, _)| r == "sops-missing-recipient")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(missing.len(), 1, "{got:#?}");
    assert!(
        missing[0].contains("host beta cannot decrypt")
            && missing[0].contains(&format!(
                "its PGP key {beta_fp} (from anchor &host_beta in .sops.yaml:3)"
            ))
            && missing[0].contains("1 age recipient(s) and 1 PGP key(s)"),
        "{}",
        missing[0]
    );
    // The rule still names beta's key: not re-encrypted after it changed.
    assert!(
        got.iter()
            .any(|(r, m)| r == "sops-rules-mismatch" && m.contains(&format!("PGP {beta_fp}"))),
        "{got:#?}"
    );
    let got = judge("0123456789ABCDEF0123456789ABCDEF01234567");
    assert!(
        got.iter()
            .any(|(r, m)| r == "sops-unverifiable" && m.contains("host beta")),
        "{got:#?}"
    );
    assert!(
        !got.iter().any(|(r, _)| r == "sops-missing-recipient"),
        "{got:#?}"
    );
}

//! `guard secrets --all` on the real fleets of `../shared/fleets` that use
//! agenix, agenix-rekey, sops-nix or clan vars, pinned by commit: no
//! error, and every warning listed here with why it is true. Then one real
//! file per scheme is re-encrypted (dummy plaintext, real `age`/`sops`,
//! the file's own public recipients less one host's) in a scratch clone,
//! and guard must name that host.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::real_fleets::{fleet, fleet_head, scratch_clone};
use crate::support::{GuardOutput, TempRepo, guard_in};

/// (fleet, pinned commit, the warnings at that commit: (rule, path)).
type Pin = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const PINNED: &[Pin] = &[
    (
        "oddlama+nix-config",
        "d406dd8d472c95f4e085b6c3e585aa62db47a1d7",
        &[
            // secrets/rekeyed/<node>/ for three nodes no host defines and
            // no host.pub names (no hosts/zackbiene, no
            // hosts/sire/secrets/actual, no hosts/ward/secrets/netbird):
            // leftovers agenix-rekey does not delete.
            (
                "agenix-rekey-orphaned",
                "secrets/rekeyed/sire-actual/269c5081394861c88bef1d54d93aec1b-wireguard-proxy-home-psks-sire-actual+ward.age",
            ),
            (
                "agenix-rekey-orphaned",
                "secrets/rekeyed/ward-netbird/02c5031aff3eedbf089ac3fd3e9d8fca-coturn-secret.age",
            ),
            (
                "agenix-rekey-orphaned",
                "secrets/rekeyed/zackbiene/31a04c4d82c35307e01835f3d41e6066-hass-influxdb-token.age",
            ),
            // The plaintext scanner's advisory for the YubiKey identity stub
            // committed as the master identity (AGE-PLUGIN-YUBIKEY-…): true
            // as a prompt to check it holds no key material (it does not).
            ("age-plugin-identity", "secrets/yk1-nix-rage.pub"),
        ],
    ),
    (
        "srid+nixos-config",
        "66ed7369c139252b10850edaa64d989843102825",
        // naiveintent uses three agenix secrets through home-manager
        // modules; its host key is committed nowhere (secrets.nix lists
        // users, pureintent and kolu-bot only): one grouped warning.
        &[(
            "age-host-key-unknown",
            "secrets/juspay-anthropic-api-key.age",
        )],
    ),
    (
        "nmasur+dotfiles",
        "a979036462f9a1b0f4bff105d4992bab38fe673c",
        &[],
    ),
    (
        "dustinlyons+nixos-config",
        "24dddbd9a86c22b3d85420c41ac82c2ad0020faa",
        &[],
    ),
    (
        "TUM-DSE+doctor-cluster-config",
        "63ccb9eea37a3834ffd705dee8fe73b78eb1f75b",
        // Two files not re-encrypted after .sops.yaml (generated from
        // pubkeys.json) changed: they lack keys the rule lists and
        // keep keys no file declares any more.
        &[
            ("sops-rules-mismatch", "docs/hosts/craig.sops"),
            ("sops-rules-mismatch", "hosts/adric.cfg.sops"),
        ],
    ),
    (
        "colemickens+nixcfg",
        "2e6fc42415717c237afecb0033afc90a93734153",
        &[],
    ),
    (
        "wimpysworld+nix-config",
        "931f27996f189a7ec56f6bb01ede3b51157cb2b1",
        &[],
    ),
    (
        "clan-lol+clan-infra",
        "4dea42ac1dd2276caba7e3b0576a326e94ddb617",
        &[],
    ),
    (
        "badele+nix-homelab",
        "d747820e42b0e5749247acfb2bf0b27f1fe8028f",
        &[],
    ),
    (
        "EmergentMind+nix-config",
        "9f488753bc067f103c8583f56bdff617fdcdc1dc",
        &[],
    ),
    (
        "ryan4yin+nix-config",
        "9ee947dc0ac4bcb594889f5cde2dc65d1b995488",
        &[],
    ),
];

/// Fleets that use agenix or sops-nix with every encrypted file in a
/// private flake input (no file of theirs to re-encrypt): (fleet, the
/// input's URL as flake.nix writes it).
const PRIVATE_SECRETS: &[(&str, &str)] = &[
    (
        "dustinlyons+nixos-config",
        "git+ssh://git@github.com/dustinlyons/nix-secrets.git",
    ),
    (
        "EmergentMind+nix-config",
        "git+ssh://git@gitlab.com/emergentmind/nix-secrets.git",
    ),
    (
        "ryan4yin+nix-config",
        "git+ssh://git@github.com/ryan4yin/nix-secrets.git",
    ),
];

/// Those fleets hold no encrypted file (so no re-encryption test applies):
/// guard reads none and says nothing.
#[test]
fn fleets_with_secrets_in_a_private_input_hold_no_encrypted_file() {
    for (name, url) in PRIVATE_SECRETS {
        let dir = fleet(name);
        let flake = std::fs::read_to_string(dir.join("flake.nix")).unwrap();
        assert!(flake.contains(url), "{name}: {url}");
        let out = guard_in(&dir, &["secrets", "--all", "--format", "json"]);
        out.assert_code(0);
        assert_eq!(out.json()["scanned"]["files"], 0, "{name}: {}", out.stdout);
        assert!(findings(&out).is_empty(), "{name}: {}", out.stdout);
    }
}

fn findings(out: &GuardOutput) -> Vec<serde_json::Value> {
    out.json()["findings"].as_array().unwrap().clone()
}

/// The one finding of `rule` among `fs`, and its message.
fn only<'a>(fs: &'a [serde_json::Value], rule: &str) -> (&'a serde_json::Value, &'a str) {
    let m = with_rule(fs, rule);
    assert_eq!(m.len(), 1, "{rule}: {fs:#?}");
    (m[0], m[0]["message"].as_str().unwrap())
}

fn with_rule<'a>(fs: &'a [serde_json::Value], rule: &str) -> Vec<&'a serde_json::Value> {
    fs.iter().filter(|f| f["rule"] == rule).collect()
}

#[test]
fn real_fleets_at_pinned_commits_have_no_false_error_and_only_justified_warnings() {
    for (name, commit, expected) in PINNED {
        assert_eq!(&fleet_head(name), commit, "{name} moved: re-pin");
        let dir = fleet(name);
        let out = guard_in(&dir, &["secrets", "--all", "--format", "json"]);
        out.assert_code(0);
        let fs = findings(&out);
        let mut warnings: Vec<(String, String)> = fs
            .iter()
            .filter(|f| f["severity"] == "warning")
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_string(),
                    f["path"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        warnings.sort();
        let mut want: Vec<(String, String)> = expected
            .iter()
            .map(|(r, p)| (r.to_string(), p.to_string()))
            .collect();
        want.sort();
        assert_eq!(warnings, want, "{name}: {}", out.stdout);
        assert!(
            !fs.iter().any(|f| f["rule"] == "age-stale-recipient"),
            "{name}: every recipient key is declared in the repository"
        );
    }
    // What the checks covered (files read), so a silent skip fails.
    let scanned = |name: &str| {
        guard_in(&fleet(name), &["secrets", "--all", "--format", "json"]).json()["scanned"]["files"]
            .as_u64()
            .unwrap()
    };
    let covered: BTreeMap<&str, u64> = [
        "oddlama+nix-config",
        "clan-lol+clan-infra",
        "wimpysworld+nix-config",
        "TUM-DSE+doctor-cluster-config",
    ]
    .into_iter()
    .map(|n| (n, scanned(n)))
    .collect();
    assert!(covered["oddlama+nix-config"] >= 500, "{covered:?}");
    assert!(covered["clan-lol+clan-infra"] >= 150, "{covered:?}");
    assert!(covered["wimpysworld+nix-config"] >= 40, "{covered:?}");
    assert!(
        covered["TUM-DSE+doctor-cluster-config"] >= 40,
        "{covered:?}"
    );
}

/// Go `age` encryption of a dummy plaintext.
fn age_encrypt(recipients: &[&str]) -> Vec<u8> {
    let mut c = Command::new("age");
    c.arg("-e");
    for r in recipients {
        c.arg("-r").arg(r);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("age must be installed (scripts/install-nix)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"dummy-plaintext")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn ssh_public_key(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(p.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn read(repo: &TempRepo, p: &str) -> String {
    std::fs::read_to_string(repo.path().join(p)).unwrap()
}

/// The age/ssh recipients in a sops file's metadata (YAML or JSON).
fn sops_recipients(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    if text.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        for a in v["sops"]["age"].as_array().into_iter().flatten() {
            out.push(a["recipient"].as_str().unwrap().to_string());
        }
    } else {
        for l in text.lines() {
            if let Some(r) = l
                .trim()
                .trim_start_matches("- ")
                .trim()
                .strip_prefix("recipient: ")
            {
                out.push(r.trim().to_string());
            }
        }
    }
    out
}

/// Re-encrypts `path` with the real sops to its own recipients less
/// `drop` (and less plugin recipients, which need the plugin binary).
fn sops_reencrypt_without(repo: &TempRepo, path: &str, drop: &str, json: bool) {
    let recipients: Vec<String> = sops_recipients(&read(repo, path))
        .into_iter()
        .filter(|r| r != drop && !r.starts_with("age1yubikey") && !r.contains("1tag1"))
        .collect();
    assert!(
        !recipients.is_empty() && recipients.len() < sops_recipients(&read(repo, path)).len(),
        "{path}: {drop} is a recipient"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain"), "dummy: plaintext\n").unwrap();
    let sops = if Path::new("/opt/guard-sops/bin/sops").is_file() {
        "/opt/guard-sops/bin/sops".to_string()
    } else {
        "sops".to_string()
    };
    let (input, output) = if json {
        ("binary", "json")
    } else {
        ("yaml", "yaml")
    };
    let out = Command::new(&sops)
        .current_dir(dir.path())
        .args([
            "encrypt",
            "--input-type",
            input,
            "--output-type",
            output,
            "--age",
        ])
        .arg(recipients.join(","))
        .arg("plain")
        .output()
        .expect("sops must be installed (scripts/install-nix)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo.write(path, out.stdout);
}

#[test]
fn agenix_rekey_rekeyed_file_and_source_mutations_are_caught() {
    let repo = scratch_clone("oddlama+nix-config");
    let keys = tempfile::tempdir().unwrap();
    let stranger = ssh_public_key(keys.path(), "stranger");
    // A file rekeyed for envoy, now encrypted to another key.
    let rekeyed =
        "secrets/rekeyed/envoy/0406c2cbb656ce16644a2a5705c1304d-telegraf-influxdb-token.age";
    repo.write(rekeyed, age_encrypt(&[&stranger]));
    // A master-encrypted source envoy uses, now readable by no master
    // identity (neither the YubiKey of secrets/yk1-nix-rage.pub nor the
    // backup key).
    let source = "hosts/envoy/secrets/acme-cloudflare-dns-token.age";
    repo.write(source, age_encrypt(&[&stranger]));
    // envoy's rekeyed copy of another source deleted (agenix rekey not
    // run), and a temporary file of an interrupted edit committed.
    repo.git(&[
        "rm",
        "-q",
        "secrets/rekeyed/envoy/c583a37b083c678b72ad79a9b31633a2-acme-cloudflare-zone-token.age",
    ]);
    repo.write(
        "hosts/envoy/secrets/.tmp.acme-cloudflare-zone-token.age",
        "x",
    );
    repo.commit_all("re-encrypt two files, drop a rekeyed one");
    for args in [
        &["secrets", "--all", "--format", "json"][..],
        &["secrets", "--commit", "HEAD", "--format", "json"][..],
    ] {
        let out = repo.guard(args);
        out.assert_code(1);
        let fs = findings(&out);
        let missing = with_rule(&fs, "age-missing-recipient");
        assert_eq!(missing.len(), 2, "{args:?} {fs:#?}");
        let m = missing.iter().find(|f| f["path"] == rekeyed).unwrap();
        let msg = m["message"].as_str().unwrap();
        assert!(
            msg.contains("rekeyed for envoy") && msg.contains("hosts/envoy/secrets/host.pub"),
            "{msg}"
        );
        let m = missing.iter().find(|f| f["path"] == source).unwrap();
        let msg = m["message"].as_str().unwrap();
        assert!(
            msg.contains("no master identity")
                && msg.contains("piv-p256 tag xqSe8Q")
                && msg.contains("secrets/yk1-nix-rage.pub")
                && msg.contains("for envoy"),
            "{msg}"
        );
        let (m, msg) = only(&fs, "agenix-rekey-not-rekeyed");
        assert!(
            m["path"] == "hosts/envoy/secrets/acme-cloudflare-zone-token.age"
                && msg.contains(
                    "host envoy uses this source as age.secrets.acme-cloudflare-zone-token"
                )
                && msg.contains("chain: hosts/envoy/acme.nix")
                && msg.contains("secrets/rekeyed/envoy/"),
            "{msg}"
        );
        let t = with_rule(&fs, "agenix-rekey-temporary-file");
        assert_eq!(t.len(), 1, "{fs:#?}");
        assert_eq!(
            t[0]["path"],
            "hosts/envoy/secrets/.tmp.acme-cloudflare-zone-token.age"
        );
        // The stranger's key: one grouped warning for both files.
        let stale = with_rule(&fs, "age-stale-recipient");
        assert_eq!(stale.len(), 1, "{stale:#?}");
        let msg = stale[0]["message"].as_str().unwrap();
        assert!(msg.contains("2 file(s)"), "{msg}");
    }
}

#[test]
fn agenix_file_reencrypted_without_its_host_names_host_and_chain() {
    let repo = scratch_clone("srid+nixos-config");
    // secrets.nix: users = [ (import ../config.nix).me.sshKey "…zest" ];
    // systems = [ pureintent ]. Re-encrypt one file to the users only.
    let rules = read(&repo, "secrets/secrets.nix");
    let zest = rules
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix('"')
                .filter(|l| l.contains("srid@zest"))
        })
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let config = read(&repo, "config.nix");
    let me = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("sshKey = \""))
        .unwrap()
        .trim_end_matches("\";")
        .to_string();
    // beszel-agent-key.age is what pureintent uses (`self +
    // /secrets/beszel-agent-key.age` in modules/nixos/linux/beszel.nix,
    // which pureintent's entry imports); hedgedoc.env.age is listed in the
    // rules but no host imports modules/nixos/linux/hedgedoc.nix.
    repo.write("secrets/beszel-agent-key.age", age_encrypt(&[&me, &zest]));
    repo.write("secrets/hedgedoc.env.age", age_encrypt(&[&me, &zest]));
    repo.commit_all("beszel, hedgedoc: re-encrypted without pureintent");
    let out = repo.guard(&["secrets", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let (m, msg) = only(&fs, "age-missing-recipient");
    assert!(
        m["path"] == "secrets/beszel-agent-key.age"
            && msg.contains("host pureintent cannot decrypt")
            && msg.contains("binding `pureintent` in secrets/secrets.nix")
            && msg.contains("modules/nixos/linux/beszel.nix")
            && msg.contains(
                "chain: configurations/nixos/pureintent/default.nix → modules/nixos/linux/beszel.nix"
            ),
        "{msg}"
    );
    // Both files also differ from their rule; the unused one only that.
    let m = with_rule(&fs, "agenix-rules-mismatch");
    assert_eq!(m.len(), 2, "{fs:#?}");
    for f in m {
        let msg = f["message"].as_str().unwrap();
        assert!(
            msg.contains("secrets/secrets.nix") && msg.contains("missing ssh keys with tags"),
            "{msg}"
        );
    }
    // Both users' keys are read from the rules (one through an import):
    // nothing about them is stale or unknown.
    assert!(with_rule(&fs, "age-stale-recipient").is_empty(), "{fs:#?}");
    // A change to the imported key file puts every rule's file in scope.
    repo.write("config.nix", config.replace(&me, &zest));
    let out = repo.guard(&["secrets", "--worktree", "--format", "json"]);
    let fs = findings(&out);
    assert!(
        with_rule(&fs, "agenix-rules-mismatch").len() >= 10,
        "{}",
        out.stdout
    );
}

/// nmasur/dotfiles: hosts are `import`ed from hosts/<system>/<name>/ by a
/// directory listing in lib/ (so every host's evaluation can reach every
/// host's file), and secrets are decrypted with the host's SSH key by its
/// own module (`secrets.<n>.source`, `age -d -i /etc/ssh/ssh_host_ed25519_key`).
/// A secret a host's own file references is that host's: re-encrypted
/// without flame's key (misc/public-keys names it), it is caught.
#[test]
fn nmasur_host_file_secret_reencrypted_without_its_host_is_caught() {
    let dir = fleet("nmasur+dotfiles");
    let out = guard_in(&dir, &["secrets", "--all", "--format", "json"]);
    let fs = findings(&out);
    // Each host's cloudflared credentials are checked against that host,
    // not "any host may use it".
    for host in ["flame", "swan", "tempest"] {
        assert!(
            !fs.iter().any(|f| f["path"]
                .as_str()
                .unwrap()
                .contains(&format!("cloudflared-{host}"))),
            "{fs:#?}"
        );
    }
    let repo = scratch_clone("nmasur+dotfiles");
    let keys = read(&repo, "misc/public-keys");
    let personal = keys
        .lines()
        .find(|l| l.ends_with(" personal"))
        .unwrap()
        .trim_end_matches(" personal")
        .to_string();
    let file = "hosts/aarch64-linux/flame/cloudflared-flame.age";
    repo.write(file, age_encrypt(&[&personal]));
    repo.commit_all("cloudflared credentials re-encrypted without flame");
    for args in [
        &["secrets", "--commit", "HEAD", "--format", "json"][..],
        &["secrets", "--all", "--format", "json"][..],
    ] {
        let out = repo.guard(args);
        out.assert_code(1);
        let fs = findings(&out);
        let (m, msg) = only(&fs, "age-missing-recipient");
        assert!(
            m["path"] == file
                && msg.contains("host flame cannot decrypt")
                && msg.contains("key named `flame` in misc/public-keys")
                && msg.contains(
                    "nmasur.presets.services.cloudflared.tunnel.credentialsFile in hosts/aarch64-linux/flame/default.nix"
                )
                && msg.contains("chain: hosts/aarch64-linux/flame/default.nix"),
            "{msg}"
        );
    }
}

#[test]
fn sops_and_clan_files_reencrypted_without_their_host_are_caught() {
    // clan vars: web01's SSH host key secret, without web01's clan key.
    let repo = scratch_clone("clan-lol+clan-infra");
    let file = "vars/per-machine/web01/openssh/ssh.id_ed25519/secret";
    let key: serde_json::Value =
        serde_json::from_str(&read(&repo, "sops/machines/web01/key.json")).unwrap();
    sops_reencrypt_without(&repo, file, key["publickey"].as_str().unwrap(), true);
    let out = repo.guard(&["secrets", "--worktree", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let (m, msg) = only(&fs, "sops-missing-recipient");
    assert!(
        m["path"] == file
            && msg.contains("host web01 cannot decrypt")
            && msg.contains("sops/machines/web01/key.json")
            && msg.contains(&format!(
                "{}/machines/web01",
                file.trim_end_matches("/secret")
            ))
            && msg.contains("clan vars fix web01"),
        "{msg}"
    );

    // A user clan grants access (users/dave) missing from another secret.
    let repo = scratch_clone("clan-lol+clan-infra");
    let file = "vars/per-machine/build-x86-01/initrd-ssh/id_ed25519/secret";
    let dave: serde_json::Value =
        serde_json::from_str(&read(&repo, "sops/users/dave/key.json")).unwrap();
    let dave = dave["publickey"]
        .as_str()
        .or(dave[0]["publickey"].as_str())
        .unwrap()
        .to_string();
    sops_reencrypt_without(&repo, file, &dave, true);
    let out = repo.guard(&["secrets", "--worktree", "--format", "json"]);
    out.assert_code(0);
    let fs = findings(&out);
    let w: Vec<_> = with_rule(&fs, "sops-rules-mismatch")
        .into_iter()
        .filter(|f| f["message"].as_str().unwrap().contains("user dave"))
        .collect();
    assert_eq!(w.len(), 1, "{fs:#?}");
    let msg = w[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("access to 1 secret(s)") && msg.contains("sops/users/dave/key.json"),
        "{msg}"
    );

    // sops-nix: astrid's k3s token file, without astrid's age key
    // (pubkeys.json names it; .sops.yaml is generated from it).
    let repo = scratch_clone("TUM-DSE+doctor-cluster-config");
    let file = "modules/k3s/secrets.yml";
    let keys: serde_json::Value = serde_json::from_str(&read(&repo, "pubkeys.json")).unwrap();
    let astrid = keys["machines"]["astrid"]
        .as_str()
        .or(keys["hosts"]["astrid"].as_str())
        .expect("astrid's key in pubkeys.json");
    sops_reencrypt_without(&repo, file, astrid, false);
    repo.commit_all("k3s token re-encrypted without astrid");
    let out = repo.guard(&["secrets", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let (_, msg) = only(&fs, "sops-missing-recipient");
    assert!(
        msg.contains("host astrid cannot decrypt")
            && msg.contains("pubkeys.json")
            && msg.contains("sops.secrets.")
            && msg.contains("chain: hosts/astrid.nix"),
        "{msg}"
    );
    // And the creation rule still lists astrid.
    let w = with_rule(&fs, "sops-rules-mismatch");
    assert!(
        w.iter()
            .any(|f| f["path"] == file && f["message"].as_str().unwrap().contains("astrid")),
        "{w:#?}"
    );

    // sops-nix with keys committed as <host>.age.pub (colemickens), and
    // clan vars on another clan fleet (badele): one file each.
    let repo = scratch_clone("colemickens+nixcfg");
    let file = "secrets/encrypted/nix-access-tokens";
    let raisin = read(&repo, "secrets/keys/raisin.age.pub")
        .trim()
        .to_string();
    sops_reencrypt_without(&repo, file, &raisin, true);
    let out = repo.guard(&["secrets", "--worktree", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let (_, msg) = only(&fs, "sops-missing-recipient");
    assert!(
        msg.contains("host raisin cannot decrypt")
            && msg.contains("sops.secrets.nix-access-tokens.sopsFile in mixins/nix.nix")
            && msg.contains("chain: hosts/raisin/"),
        "{msg}"
    );
    let repo = scratch_clone("badele+nix-homelab");
    let file = "vars/per-machine/airlock/openssh/ssh.id_ed25519/secret";
    let key: serde_json::Value =
        serde_json::from_str(&read(&repo, "sops/machines/airlock/key.json")).unwrap();
    let key = key["publickey"]
        .as_str()
        .or(key[0]["publickey"].as_str())
        .unwrap()
        .to_string();
    sops_reencrypt_without(&repo, file, &key, true);
    let out = repo.guard(&["secrets", "--worktree", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let m = with_rule(&fs, "sops-missing-recipient");
    assert_eq!(m.len(), 1, "{fs:#?}");
    assert!(
        m[0]["message"]
            .as_str()
            .unwrap()
            .contains("host airlock cannot decrypt"),
        "{m:#?}"
    );

    // Only a creation rule covers it (no host is known to use it):
    // wimpysworld's act.yaml without host_prime.
    let repo = scratch_clone("wimpysworld+nix-config");
    let sops_yaml = read(&repo, ".sops.yaml");
    let prime = sops_yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("- &host_prime "))
        .unwrap()
        .trim()
        .to_string();
    sops_reencrypt_without(&repo, "secrets/act.yaml", &prime, false);
    let out = repo.guard(&["secrets", "--worktree", "--format", "json"]);
    out.assert_code(0);
    let fs = findings(&out);
    let w = with_rule(&fs, "sops-rules-mismatch");
    assert_eq!(w.len(), 1, "{fs:#?}");
    let msg = w[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("host_prime")
            && msg.contains("secrets/act.yaml")
            && msg.contains("updatekeys"),
        "{msg}"
    );

    // A file every NixOS host uses (sops.defaultSopsFile in nixos/default.nix,
    // which the flake's mkNixos helper gives every host) without the fleet
    // host key the hosts' age key files hold (.sops.yaml's &host_prime):
    // every host is named, with the chain through the helper.
    let repo = scratch_clone("wimpysworld+nix-config");
    sops_reencrypt_without(&repo, "secrets/secrets.yaml", &prime, false);
    let out = repo.guard(&["secrets", "--worktree", "--format", "json"]);
    out.assert_code(1);
    let fs = findings(&out);
    let m = with_rule(&fs, "sops-missing-recipient");
    assert!(m.len() >= 10, "every NixOS host uses it: {fs:#?}");
    assert!(
        m.iter().all(|f| f["path"] == "secrets/secrets.yaml"),
        "{m:#?}"
    );
    let msg = m
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .find(|msg| msg.starts_with("host bane "))
        .unwrap_or_else(|| panic!("bane uses it: {m:#?}"));
    assert!(
        msg.contains("&host_prime (.sops.yaml:")
            && msg.contains("sops.defaultSopsFile in nixos/default.nix")
            && msg.contains(
                "chain: flake.nix → lib/default.nix → lib/flake-builders.nix → nixos/default.nix"
            )
            && msg.contains(
                "its creation rule lists the key: run sops updatekeys secrets/secrets.yaml"
            ),
        "{msg}"
    );
    // The rule still lists it: also a rules warning, not an error.
    assert_eq!(with_rule(&fs, "sops-rules-mismatch").len(), 1, "{fs:#?}");
}

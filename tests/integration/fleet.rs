//! The shipped example fleet (`examples/fleet`) against real nix: it lists
//! the 17 hosts, builds, changes exactly the hosts that read an edited file,
//! and its age secrets are encrypted to exactly the hosts that use them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use crate::support::{TempRepo, example_fleet, fleet_repo, nix_cmd, nix_eval_json};

const HOSTS: [&str; 17] = [
    "alpha-one",
    "alpha-two",
    "cortex-alpha",
    "display-0",
    "display-1",
    "display-2",
    "linda",
    "local-nas",
    "monitor",
    "obs-box",
    "remote-builder",
    "remote-worker",
    "storage-array",
    "swarm-0",
    "swarm-1",
    "swarm-2",
    "terminal-zero",
];

const BUILDERS: [&str; 5] = [
    "remote-builder",
    "remote-worker",
    "swarm-0",
    "swarm-1",
    "swarm-2",
];
const DISPLAYS: [&str; 3] = ["display-0", "display-1", "display-2"];
const ZFS: [&str; 3] = ["cortex-alpha", "local-nas", "storage-array"];

fn set(hosts: &[&str]) -> BTreeSet<String> {
    hosts.iter().map(|h| h.to_string()).collect()
}

fn all_but(excluded: &[&str]) -> BTreeSet<String> {
    HOSTS
        .iter()
        .filter(|h| !excluded.contains(h))
        .map(|h| h.to_string())
        .collect()
}

fn flake_ref(repo: &TempRepo) -> String {
    format!("git+file://{}", repo.path().display())
}

/// `nixosConfigurations` mapped through `apply`, in one nix call.
fn eval_hosts(repo: &TempRepo, apply: &str) -> BTreeMap<String, serde_json::Value> {
    let v = nix_eval_json(
        &format!("{}#nixosConfigurations", flake_ref(repo)),
        Some(apply),
    );
    serde_json::from_value(v).unwrap()
}

/// Host -> toplevel drvPath of the committed revision.
fn drv_paths(repo: &TempRepo) -> BTreeMap<String, String> {
    eval_hosts(
        repo,
        "cs: builtins.mapAttrs (_: c: c.config.system.build.toplevel.drvPath) cs",
    )
    .into_iter()
    .map(|(h, v)| (h, v.as_str().unwrap().to_string()))
    .collect()
}

fn append(repo: &TempRepo, rel: &str, text: &str) {
    let mut content = std::fs::read_to_string(repo.path().join(rel)).unwrap();
    content.push_str(text);
    repo.write(rel, content);
}

fn replace(repo: &TempRepo, rel: &str, from: &str, to: &str) {
    let content = std::fs::read_to_string(repo.path().join(rel)).unwrap();
    assert!(content.contains(from), "{rel} does not contain {from:?}");
    repo.write(rel, content.replacen(from, to, 1));
}

#[test]
fn nix_lists_exactly_the_17_hosts() {
    let repo = fleet_repo();
    let names = nix_eval_json(
        &format!("{}#nixosConfigurations", flake_ref(&repo)),
        Some("builtins.attrNames"),
    );
    let names: Vec<String> = serde_json::from_value(names).unwrap();
    assert_eq!(names, HOSTS.map(String::from).to_vec());

    // The host list comes from the directories under machines/.
    let mut dirs: Vec<String> = std::fs::read_dir(example_fleet().join("machines"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    assert_eq!(dirs, names);
}

#[test]
fn builds_a_toplevel_and_its_vm_and_honours_system_build_fail() {
    let repo = fleet_repo();
    let attr = |h: &str, what: &str| {
        format!(
            "{}#nixosConfigurations.{h}.config.system.build.{what}",
            flake_ref(&repo)
        )
    };
    let out = nix_cmd()
        .args(["build", "--json", "--no-link"])
        .arg(attr("linda", "toplevel"))
        .arg(attr("linda", "vm"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(built.len(), 2);
    let toplevel = built[0]["outputs"]["out"].as_str().unwrap();
    let vm = built[1]["outputs"]["out"].as_str().unwrap();
    assert!(toplevel.ends_with("-nixos-system-linda"), "{toplevel}");
    let system = std::fs::read_to_string(toplevel).unwrap();
    assert!(system.starts_with("host linda\n"), "{system}");
    assert!(system.contains("\"hostName\":\"linda\""), "{system}");
    // mkDefault in environments/common.nix loses against the host's value.
    assert!(
        system.contains("\"timeZone\":\"Europe/Berlin\""),
        "{system}"
    );
    assert!(!system.contains("not-a-real-secret"));
    let vm_text = std::fs::read_to_string(vm).unwrap();
    assert_eq!(vm_text, format!("vm of {toplevel}\n"));

    // `system.build.fail = true;` makes a host's build (not its evaluation) fail.
    replace(
        &repo,
        "machines/swarm-2/default.nix",
        "  nix.settings.max-jobs = 32;",
        "  nix.settings.max-jobs = 32;\n  system.build.fail = true;",
    );
    repo.commit_all("break swarm-2");
    let out = nix_cmd()
        .args(["build", "--no-link"])
        .arg(attr("swarm-2", "toplevel"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("system.build.fail is set for swarm-2"),
        "{stderr}"
    );
}

#[test]
fn edits_change_exactly_the_hosts_that_read_the_file() {
    let repo = fleet_repo();
    type Edit = fn(&TempRepo);
    let cases: Vec<(&str, Edit, BTreeSet<String>)> = vec![
        (
            "services/prometheus.nix",
            |r| append(r, "services/prometheus.nix", "# a comment\n"),
            BUILDERS
                .iter()
                .copied()
                .chain(["monitor"])
                .map(String::from)
                .collect(),
        ),
        (
            "lib/enable-wg.nix",
            |r| append(r, "lib/enable-wg.nix", "# a comment\n"),
            all_but(&[]),
        ),
        (
            "environments/builder.nix",
            |r| replace(r, "environments/builder.nix", "cores = 0;", "cores = 2;"),
            set(&BUILDERS),
        ),
        (
            "environments/display.nix",
            |r| append(r, "environments/display.nix", "# a comment\n"),
            set(&DISPLAYS),
        ),
        (
            "environments/zfs.nix (imports hardware/zfs.nix)",
            |r| append(r, "environments/zfs.nix", "# a comment\n"),
            set(&ZFS),
        ),
        (
            "hardware/x86.nix",
            |r| append(r, "hardware/x86.nix", "# a comment\n"),
            all_but(&DISPLAYS),
        ),
        (
            "environments/monitoring-client.nix",
            |r| append(r, "environments/monitoring-client.nix", "# a comment\n"),
            set(&[
                "cortex-alpha",
                "local-nas",
                "storage-array",
                "terminal-zero",
            ]),
        ),
        (
            "machines/obs-box/default.nix",
            |r| append(r, "machines/obs-box/default.nix", "# a comment\n"),
            set(&["obs-box"]),
        ),
        (
            "lib/wg-peers.json: an address (readFile + fromJSON)",
            |r| {
                replace(
                    r,
                    "lib/wg-peers.json",
                    "\"10.88.127.63\"",
                    "\"10.88.127.64\"",
                )
            },
            all_but(&[]),
        ),
        (
            // Every host reads the file, but a host's own endpoint is not
            // part of its own config: terminal-zero reads it and still
            // evaluates to the same derivation.
            "lib/wg-peers.json: terminal-zero's endpoint",
            |r| {
                replace(
                    r,
                    "lib/wg-peers.json",
                    "gw.fleet.example.org:51820",
                    "gw.fleet.example.org:51821",
                )
            },
            all_but(&["terminal-zero"]),
        ),
        (
            "environments/kiosk.conf (etc source path)",
            |r| append(r, "environments/kiosk.conf", "zoom = 1.5\n"),
            set(&DISPLAYS),
        ),
        (
            "machines/cortex-alpha/nginx.conf (configFile path)",
            |r| append(r, "machines/cortex-alpha/nginx.conf", "# a comment\n"),
            set(&["cortex-alpha"]),
        ),
        (
            "environments/router.nft (readFile)",
            |r| append(r, "environments/router.nft", "# a comment\n"),
            set(&["terminal-zero"]),
        ),
        (
            "services/alert-rules.yml (ruleFiles path)",
            |r| append(r, "services/alert-rules.yml", "# a comment\n"),
            set(&["monitor"]),
        ),
        (
            "secrets/nas-replication.age (rekeyed)",
            |r| {
                let other = std::fs::read(r.path().join("secrets/wg-linda.age")).unwrap();
                r.write("secrets/nas-replication.age", other);
            },
            set(&["local-nas", "storage-array"]),
        ),
        (
            "environments/ai.nix (linda's overlay from the second nixpkgs)",
            |r| append(r, "environments/ai.nix", "# a comment\n"),
            set(&["linda"]),
        ),
        (
            "README.md",
            |r| append(r, "README.md", "More text.\n"),
            BTreeSet::new(),
        ),
    ];

    let mut before = drv_paths(&repo);
    assert_eq!(before.len(), 17);
    for (what, edit, expected) in cases {
        edit(&repo);
        repo.commit_all(what);
        let after = drv_paths(&repo);
        let changed: BTreeSet<String> = HOSTS
            .iter()
            .filter(|h| before[**h] != after[**h])
            .map(|h| h.to_string())
            .collect();
        let unchanged: BTreeSet<String> = set(&HOSTS).difference(&changed).cloned().collect();
        assert_eq!(
            changed, expected,
            "editing {what}: changed hosts differ (unchanged: {unchanged:?})"
        );
        before = after;
    }
}

/// A file of a `path:./x` input inside the repository is that input's
/// source: changing it can change the hosts that use the input although
/// flake.lock does not change. Nix 2.26 reads such an input from the same
/// tree (linda changes); Nix 2.8 keeps the content the lock's narHash
/// names while it is in the store (nothing changes until a relock).
/// guard lists linda either way: sound for both.
#[test]
fn a_change_inside_a_path_input_affects_the_hosts_that_use_it() {
    let repo = fleet_repo();
    let before = drv_paths(&repo);
    replace(
        &repo,
        "inputs/nixpkgs-unstable/flake.nix",
        "version = \"0.13.0\"",
        "version = \"0.14.0\"",
    );
    repo.commit_all("ollama 0.14");
    let after = drv_paths(&repo);
    let changed: BTreeSet<String> = HOSTS
        .iter()
        .filter(|h| before[**h] != after[**h])
        .map(|h| h.to_string())
        .collect();
    assert!(
        changed.is_subset(&set(&["linda"])),
        "nix changed {changed:?}"
    );
    let version = crate::support::nix_version();
    let minor: u32 = version
        .rsplit(' ')
        .next()
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the nix version {version:?}"));
    if minor >= 26 {
        assert_eq!(
            changed,
            set(&["linda"]),
            "{version} reads the input from the tree"
        );
    }
    let out = repo.guard(&["affected", "--commit", "HEAD", "--format", "json"]);
    out.assert_code(0);
    let v = out.json();
    let hosts: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["linda"], "{}", out.stdout);
    let chain = v["hosts"][0]["reasons"][0]["chain"].to_string();
    assert!(
        chain.contains("inputs/nixpkgs-unstable/flake.nix (input nixpkgs_unstable)"),
        "{chain}"
    );
}

/// Standard base64 (with padding) decoding; panics on invalid input.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// Standard base64 without padding.
fn base64_encode_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..chunk.len() + 1 {
            out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// age's recipient tag of an OpenSSH public key line: the first 4 bytes of
/// SHA-256 of the wire-format key, base64 without padding (sha256sum does
/// the hashing).
fn ssh_tag(pubkey_line: &str) -> String {
    let wire = base64_decode(pubkey_line.split(' ').nth(1).unwrap());
    let mut child = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) on PATH");
    child.stdin.take().unwrap().write_all(&wire).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    let bytes: Vec<u8> = (0..4)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    base64_encode_nopad(&bytes)
}

/// The age header lines (up to the MAC line) of a binary or armored file.
fn age_header(path: &Path) -> (bool, Vec<String>) {
    let raw = std::fs::read(path).unwrap();
    let armor = b"-----BEGIN AGE ENCRYPTED FILE-----\n";
    let (armored, binary) = if raw.starts_with(armor) {
        let text = String::from_utf8(raw).unwrap();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        assert!(
            text.trim_end()
                .ends_with("-----END AGE ENCRYPTED FILE-----")
        );
        (true, base64_decode(&body))
    } else {
        (false, raw)
    };
    assert!(
        binary.starts_with(b"age-encryption.org/v1\n"),
        "{} is not an age v1 file",
        path.display()
    );
    let mac = binary
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("MAC line");
    let header = String::from_utf8(binary[..mac].to_vec()).unwrap();
    (armored, header.lines().map(String::from).collect())
}

#[test]
fn age_secrets_are_encrypted_to_exactly_the_hosts_that_use_them() {
    let repo = fleet_repo();
    let hosts = eval_hosts(
        &repo,
        "cs: builtins.mapAttrs (_: c: let s = c.config.secrix; \
         secrets = builtins.attrValues (s.system.secrets or { }) \
         ++ builtins.concatMap (v: builtins.attrValues (v.secrets or { })) \
         (builtins.attrValues (s.services or { })); \
         in { key = s.hostPubKey; files = map (x: baseNameOf x.encrypted.file) secrets; }) cs",
    );
    assert_eq!(hosts.len(), 17);

    // secret file -> hosts whose evaluated config references it
    let mut users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for (host, v) in &hosts {
        let key = v["key"].as_str().unwrap();
        assert!(key.starts_with("ssh-ed25519 AAAA"), "{host}: {key}");
        assert!(key.ends_with(&format!(" root@{host}")), "{host}: {key}");
        keys.insert(host.clone(), key.to_string());
        for f in v["files"].as_array().unwrap() {
            users
                .entry(f.as_str().unwrap().to_string())
                .or_default()
                .insert(host.clone());
        }
    }

    // Spot checks that document the fleet.
    assert_eq!(users["wg-linda.age"], set(&["linda"]));
    assert_eq!(users["ldap-bind.age"], set(&["cortex-alpha"]));
    assert_eq!(users["wifi-psk.age"], set(&DISPLAYS));
    assert_eq!(
        users["prometheus-basic-auth.age"],
        BUILDERS
            .iter()
            .copied()
            .chain(["monitor"])
            .map(String::from)
            .collect()
    );
    for h in HOSTS {
        assert_eq!(users[&format!("wg-{h}.age")], set(&[h]));
    }

    let secrets_dir = example_fleet().join("secrets");
    let mut on_disk: Vec<String> = std::fs::read_dir(&secrets_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    assert_eq!(
        on_disk,
        users.keys().cloned().collect::<Vec<_>>(),
        "every file under secrets/ is used and every used secret exists"
    );

    let mut armored_files = Vec::new();
    for (file, readers) in &users {
        let (armored, header) = age_header(&secrets_dir.join(file));
        if armored {
            armored_files.push(file.clone());
        }
        let stanzas: Vec<&String> = header.iter().filter(|l| l.starts_with("-> ")).collect();
        assert!(
            stanzas.iter().all(|s| s.starts_with("-> ssh-ed25519 ")),
            "{file}: {stanzas:?}"
        );
        assert_eq!(stanzas.len(), readers.len(), "{file}: {stanzas:?}");
        let tags: BTreeSet<String> = stanzas
            .iter()
            .map(|s| s.split(' ').nth(2).unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = readers.iter().map(|h| ssh_tag(&keys[h])).collect();
        assert_eq!(tags, expected, "{file}: recipients differ from {readers:?}");
    }
    assert_eq!(armored_files, vec!["wifi-psk.age".to_string()]);
}

#[test]
fn example_holds_no_private_key_material() {
    fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), files);
            } else {
                files.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(&example_fleet(), &mut files);
    assert!(files.len() > 40);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for needle in ["PRIVATE KEY", "AGE-SECRET-KEY-", "not-a-real-secret"] {
            assert!(!text.contains(needle), "{} contains {needle}", f.display());
        }
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            !name.starts_with("ssh_host_") || name.ends_with(".pub"),
            "{}",
            f.display()
        );
    }
}

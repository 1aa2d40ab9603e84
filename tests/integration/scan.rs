//! `guard scan` against real git repositories: which bytes each mode judges
//! (index blobs, added lines of a range, every blob of history, files on
//! disk), allow comments, allow-lists and baselines, output formats, and the
//! guarantees that no secret is ever printed and no state is modified.
//!
//! Secret-shaped fixtures are assembled at run time so that this file
//! holds no complete secret-shaped literal.

use crate::support::{TempRepo, fleet_repo, guard_in};

/// A plaintext password in Nix (the `nix-password` rule).
const PW: &str = "Tr0ub4dor-and-3-more";

fn nix_pw(value: &str) -> String {
    format!("{{\n  services.app.password = \"{value}\";\n}}\n")
}

/// A WireGuard private key (same shape as a public key).
fn wg_key() -> String {
    ["kP3xq1S9mWcT0b7Jf2hL8Zy", "NvE4uDsGrAoIe6Ck5pH0="].concat()
}

/// A GitHub token.
fn gh_token() -> String {
    ["gh", "p_", "16C7e42F292c6912E7710c838347Ae178B4a"].concat()
}

fn rules(out: &crate::support::GuardOutput) -> Vec<String> {
    out.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect()
}

fn repo_with_base() -> (TempRepo, String) {
    let repo = TempRepo::new();
    repo.write("hosts/a.nix", "{ services.app.enable = true; }\n");
    let c0 = repo.commit_all("base");
    (repo, c0)
}

#[test]
fn staged_scans_the_index_not_the_work_tree() {
    let (repo, _) = repo_with_base();
    // Only in the work tree: not what would be committed.
    repo.write("hosts/a.nix", nix_pw(PW));
    let before = repo.state();
    let out = repo.guard(&["scan", "--staged", "--format", "json"]);
    out.assert_code(0);
    assert_eq!(rules(&out), Vec::<String>::new());
    // The default (--worktree) does see it.
    let out = repo.guard(&["scan", "--format", "json"]);
    out.assert_code(1);
    assert_eq!(rules(&out), ["nix-password"]);
    assert_eq!(repo.state(), before);

    // Staged, then removed from the work tree: still being committed.
    repo.git(&["add", "hosts/a.nix"]);
    repo.write("hosts/a.nix", "{ services.app.enable = true; }\n");
    let before = repo.state();
    let out = repo.guard(&["scan", "--staged", "--format", "json"]);
    out.assert_code(1);
    let f = &out.json()["findings"][0];
    assert_eq!(f["rule"], "nix-password");
    assert_eq!(f["path"], "hosts/a.nix");
    assert_eq!(
        (f["line"].as_u64(), f["column"].as_u64()),
        (Some(2), Some(28))
    );
    assert!(f["commit"].is_null());
    assert_eq!(repo.state(), before);
}

#[test]
fn partially_staged_files_report_lines_of_the_staged_blob() {
    let (repo, _) = repo_with_base();
    repo.write("hosts/b.nix", format!("# header\n{}", nix_pw(PW)));
    repo.git(&["add", "hosts/b.nix"]);
    // Unstaged edits shift lines on disk; the report follows the blob.
    repo.write(
        "hosts/b.nix",
        format!("# one\n# two\n# three\n{}", nix_pw("other-value-xyz")),
    );
    let out = repo.guard(&["scan", "--staged", "--format", "json"]);
    out.assert_code(1);
    let v = out.json();
    assert_eq!(v["findings"].as_array().unwrap().len(), 1);
    assert_eq!(v["findings"][0]["line"], 3);
}

#[test]
fn ranges_and_history_see_secrets_that_were_added_and_removed() {
    let (repo, c0) = repo_with_base();
    repo.write("hosts/a.nix", nix_pw(PW));
    let c1 = repo.commit_all("add secret");
    repo.write("hosts/a.nix", "{ services.app.enable = true; }\n");
    let c2 = repo.commit_all("remove secret");
    repo.write("docs/readme.md", "nothing here\n");
    repo.commit_all("docs");
    let before = repo.state();

    // HEAD is clean...
    repo.guard(&["scan", "--all"]).assert_code(0);
    // ...but the range contains the leak, attributed to its commit.
    let out = repo.guard(&["scan", "--base", &c0, "--format", "json"]);
    out.assert_code(1);
    let v = out.json();
    assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["findings"][0]["commit"], c1.as_str());
    assert_eq!(v["findings"][0]["line"], 2);
    assert_eq!(v["scanned"]["commits"], 3);

    let out = repo.guard(&["scan", "--commit", &c1, "--format", "json"]);
    out.assert_code(1);
    assert_eq!(rules(&out), ["nix-password"]);
    repo.guard(&["scan", "--commit", &c2]).assert_code(0);

    let out = repo.guard(&["scan", "--history", "--format", "json"]);
    out.assert_code(1);
    let v = out.json();
    assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["findings"][0]["commit"], c1.as_str());
    assert_eq!(v["scanned"]["commits"], 4);
    // --since excludes what is reachable from the given commit.
    repo.guard(&["scan", "--history", "--since", &c1])
        .assert_code(0);
    assert_eq!(repo.state(), before);
}

#[test]
fn ranges_report_only_added_lines() {
    let (repo, _) = repo_with_base();
    repo.write("hosts/a.nix", nix_pw(PW));
    let c1 = repo.commit_all("old secret");
    // A later commit edits the same file without touching the secret line.
    repo.write(
        "hosts/a.nix",
        format!("# comment\n{}", nix_pw(PW)).replace("}\n", "  services.app.port = 80;\n}\n"),
    );
    repo.commit_all("edit around it");
    let out = repo.guard(&["scan", "--base", &c1, "--format", "json"]);
    out.assert_code(0);
    assert_eq!(rules(&out), Vec::<String>::new());
    // The whole-blob modes still see it.
    repo.guard(&["scan", "--all"]).assert_code(1);
}

#[test]
fn history_scans_side_branches_and_each_secret_once() {
    let (repo, _) = repo_with_base();
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.write("side.env", format!("GITHUB_TOKEN={}\n", gh_token()));
    repo.commit_all("side secret");
    repo.write("side.env", "GITHUB_TOKEN=\n");
    repo.commit_all("side clean");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("hosts/a.nix", nix_pw(PW));
    repo.commit_all("main secret");
    repo.write("hosts/a.nix", format!("# touch\n{}", nix_pw(PW)));
    repo.commit_all("main touch");
    repo.git(&["merge", "-q", "--no-ff", "-m", "merge", "side"]);
    let out = repo.guard(&["scan", "--history", "--format", "json"]);
    out.assert_code(1);
    let mut r = rules(&out);
    r.sort();
    assert_eq!(r, ["github-token", "nix-password"], "{}", out.stdout);
}

#[test]
fn guard_allow_comment() {
    let repo = TempRepo::new();
    repo.write(
        "hosts/a.nix",
        format!(
            "{{\n  services.app.password = \"{PW}\"; # guard:allow test fixture\n  # guard:allow\n  services.b.password = \"{PW}-2\";\n}}\n"
        ),
    );
    repo.commit_all("allowed");
    let out = repo.guard(&["scan", "--all", "--format", "json"]);
    out.assert_code(0);
    assert_eq!(rules(&out), Vec::<String>::new());
}

#[test]
fn allow_list_in_guard_toml() {
    let repo = TempRepo::new();
    repo.write("test/fixtures/a.nix", nix_pw(PW));
    repo.write("hosts/b.nix", nix_pw("not-a-real-one-123"));
    repo.write(
        "guard.toml",
        "[secrets.allow]\npaths = [\"test/**\"]\nregexes = [\"^not-a-real-one\"]\n",
    );
    repo.commit_all("fixtures");
    repo.guard(&["scan", "--all"]).assert_code(0);
    // A broken allow-list regex is a configuration error, exit 2, one line.
    repo.write("guard.toml", "[secrets.allow]\nregexes = [\"(\"]\n");
    let out = repo.guard(&["scan", "--all"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("secrets.allow.regexes"),
        "{}",
        out.stderr
    );
}

#[test]
fn baseline_round_trip() {
    let repo = TempRepo::new();
    repo.write("hosts/a.nix", nix_pw(PW));
    repo.write("ci/deploy.env", format!("GITHUB_TOKEN={}\n", gh_token()));
    repo.commit_all("old leaks");
    repo.guard(&["scan", "--all"]).assert_code(1);

    let before = repo.state();
    let out = repo.guard(&["scan", "--write-baseline"]);
    out.assert_code(0);
    assert!(
        out.stderr.contains(".guard-baseline.json"),
        "{}",
        out.stderr
    );
    let after = repo.state();
    // The only change: the baseline file.
    let mut changed: Vec<_> = after
        .files
        .keys()
        .filter(|k| before.files.get(*k) != after.files.get(*k))
        .collect();
    changed.sort();
    assert_eq!(changed, [std::path::Path::new(".guard-baseline.json")]);
    assert_eq!(
        (&after.refs, &after.head, &after.index),
        (&before.refs, &before.head, &before.index)
    );
    let text = std::fs::read_to_string(repo.path().join(".guard-baseline.json")).unwrap();
    assert!(!text.contains(PW) && !text.contains(&gh_token()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), 2);

    // Accepted: clean, in every mode.
    repo.guard(&["scan", "--all"]).assert_code(0);
    repo.guard(&["scan", "--history"]).assert_code(0);
    // Moving the secret within the file keeps it accepted.
    repo.write("hosts/a.nix", format!("# moved\n\n{}", nix_pw(PW)));
    repo.guard(&["scan"]).assert_code(0);
    // A new leak is not.
    repo.write("hosts/b.nix", nix_pw("a-brand-new-leak-9"));
    repo.git(&["add", "hosts/b.nix"]);
    let out = repo.guard(&["scan", "--staged", "--format", "json"]);
    out.assert_code(1);
    let v = out.json();
    assert_eq!(v["findings"].as_array().unwrap().len(), 1);
    assert_eq!(v["findings"][0]["path"], "hosts/b.nix");

    // A configured path elsewhere is honoured; one outside the repo is refused.
    repo.write("guard.toml", "[secrets]\nbaseline = \"../outside.json\"\n");
    repo.guard(&["scan", "--write-baseline"]).assert_code(2);
    assert!(!repo.path().join("../outside.json").exists());
}

#[test]
fn binary_files_are_skipped_with_a_notice_and_bad_utf8_is_scanned() {
    let repo = TempRepo::new();
    let mut bin = b"\x00\x01binary\n".to_vec();
    bin.extend(format!("PrivateKey = {}\n", wg_key()).as_bytes());
    repo.write("blobs/key.bin", &bin);
    let mut bad = vec![0xff, 0xfe, b'\n'];
    bad.extend(format!("PrivateKey = {}\n", wg_key()).as_bytes());
    repo.write("wg/weird.conf", &bad);
    repo.commit_all("odd files");
    let out = repo.guard(&["scan", "--all", "--format", "json"]);
    out.assert_code(1);
    let v = out.json();
    assert_eq!(v["findings"].as_array().unwrap().len(), 1);
    assert_eq!(v["findings"][0]["path"], "wg/weird.conf");
    assert_eq!(v["findings"][0]["line"], 2);
    assert_eq!(v["scanned"]["files"], 2);
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("blobs/key.bin") && warnings.contains("binary"),
        "{warnings}"
    );
    let human = repo.guard(&["scan", "--all"]);
    assert!(
        human.stdout.contains("skipped 1 binary file"),
        "{}",
        human.stdout
    );
}

#[test]
fn paths_mode_scans_files_on_disk() {
    let repo = TempRepo::new();
    repo.write(".gitignore", "ignored/\n");
    repo.write("conf/.env", format!("GITHUB_TOKEN={}\n", gh_token()));
    repo.write("ignored/x.env", format!("GITHUB_TOKEN={}\n", gh_token()));
    repo.write("conf/ok.nix", "{ }\n");
    repo.commit_all("ignore");
    let out = repo.guard(&["scan", "conf", "--format", "json"]);
    out.assert_code(1);
    let v = out.json();
    assert_eq!(v["findings"][0]["path"], "conf/.env");
    assert_eq!(v["findings"].as_array().unwrap().len(), 1);
    assert_eq!(v["scanned"]["files"], 2);
    // The whole tree: .gitignore'd files are skipped, hidden ones are not.
    let out = repo.guard(&["scan", ".", "--format", "json"]);
    let v = out.json();
    let paths: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(paths.iter().all(|p| !p.contains("ignored")), "{paths:?}");
    // A named file is scanned even when ignored.
    repo.guard(&["scan", "ignored/x.env"]).assert_code(1);
    let out = repo.guard(&["scan", "no/such/file"]);
    out.assert_code(2);
    assert!(out.stderr.contains("no/such/file"), "{}", out.stderr);
}

#[test]
fn example_fleet_scans_clean() {
    let repo = fleet_repo();
    let before = repo.state();
    let out = repo.guard(&["scan", "--all", "--format", "json"]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["findings"], serde_json::json!([]), "{v}");
    assert!(v["scanned"]["files"].as_u64().unwrap() > 50);
    repo.guard(&["scan", "--history"]).assert_code(0);
    repo.guard(&["scan", "."]).assert_code(0);
    assert_eq!(repo.state(), before);
}

#[test]
fn planted_secrets_in_the_fleet_are_found() {
    let repo = fleet_repo();
    // A host module that leaks the way real fleets do.
    repo.write(
        "machines/linda/extra.nix",
        format!(
            "{{ config, ... }}: {{\n  networking.wireless.networks.\"Home\".psk = \"correct horse battery\";\n  networking.wireguard.interfaces.wg-mesh.privateKey = \"{}\";\n  users.users.linda.hashedPassword = \"$6$saltsalt$0123456789abcdefghijABCDEFGHIJ\";\n}}\n",
            wg_key()
        ),
    );
    repo.write("secrets/wg-linda.key", format!("{}\n", wg_key()));
    repo.git(&["add", "-A"]);
    let out = repo.guard(&["scan", "--staged", "--format", "json"]);
    out.assert_code(1);
    let v = out.json();
    let got: Vec<(String, String, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("machines/linda/extra.nix".into(), "nix-password".into(), 2),
            (
                "machines/linda/extra.nix".into(),
                "wireguard-private-key".into(),
                3
            ),
            (
                "machines/linda/extra.nix".into(),
                "hashed-password".into(),
                4
            ),
            (
                "secrets/wg-linda.key".into(),
                "wireguard-private-key".into(),
                1
            ),
        ],
        "{v}"
    );
    let sev: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["severity"].as_str().unwrap())
        .collect();
    assert_eq!(sev, ["error", "error", "warning", "error"]);
}

#[test]
fn no_format_ever_prints_a_secret() {
    let repo = TempRepo::new();
    let secrets = [PW.to_string(), wg_key(), gh_token()];
    repo.write("hosts/a.nix", nix_pw(PW));
    repo.write(
        "wg0.conf",
        format!("[Interface]\nPrivateKey = {}\n", secrets[1]),
    );
    repo.write("ci.env", format!("GITHUB_TOKEN={}\n", secrets[2]));
    repo.commit_all("leaks");
    let head = repo.rev("HEAD");
    let modes: Vec<Vec<&str>> = vec![
        vec!["--all"],
        vec!["--commit", &head],
        vec!["--history"],
        vec!["."],
    ];
    for fmt in ["human", "json", "github", "sarif"] {
        for mode in &modes {
            let mut args = vec!["scan", "--format", fmt];
            args.extend(mode.iter().copied());
            for verbose in [false, true] {
                let mut a = args.clone();
                if verbose {
                    a.insert(0, "-v");
                }
                let out = repo.guard(&a);
                out.assert_code(1);
                for s in &secrets {
                    // Not even a recognisable middle part.
                    let probe = &s[4..s.len() - 2];
                    assert!(
                        !out.stdout.contains(probe) && !out.stderr.contains(probe),
                        "{a:?} printed a secret:\n{}\n{}",
                        out.stdout,
                        out.stderr
                    );
                }
                assert!(out.stdout.contains("(redacted)"), "{a:?}: {}", out.stdout);
            }
        }
    }
}

#[test]
fn output_formats() {
    let repo = TempRepo::new();
    repo.write("hosts/a.nix", nix_pw(PW));
    repo.commit_all("leak");

    let human = repo.guard(&["scan", "--all"]);
    human.assert_code(1);
    assert!(
        human
            .stdout
            .contains("hosts/a.nix:2:28: error[nix-password] Tr0u…(redacted)"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("decrypted.path") && human.stdout.contains("guard:allow"));

    let json = repo.guard(&["scan", "--all", "--format", "json"]).json();
    let f = &json["findings"][0];
    for k in [
        "rule",
        "severity",
        "path",
        "line",
        "column",
        "commit",
        "secret",
        "fingerprint",
        "message",
    ] {
        assert!(f.get(k).is_some(), "missing {k}: {f}");
    }
    assert!(json["scanned"]["bytes"].as_u64().unwrap() > 0);

    let gh = repo.guard(&["scan", "--all", "--format", "github"]);
    gh.assert_code(1);
    let first = gh.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("::error file=hosts/a.nix,line=2,col=28,title=guard%3A nix-password::"),
        "{first}"
    );
    assert!(gh.stdout.contains("::stop-commands::"));

    let sarif = repo.guard(&["scan", "--all", "--format", "sarif"]);
    sarif.assert_code(1);
    let v = sarif.json();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["id"] == "nix-password"
        && r["shortDescription"]["text"].is_string()
        && r["fullDescription"]["text"].is_string()
        && r["help"]["text"].is_string()));
    let r = &run["results"][0];
    assert_eq!(r["ruleId"], "nix-password");
    let region = &r["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"], 2);
    assert_eq!(region["startColumn"], 28);
    assert_eq!(region["endLine"], 2);
    assert_eq!(region["endColumn"], 28 + PW.chars().count() as u64);
    assert_eq!(
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "hosts/a.nix"
    );
    assert!(r["partialFingerprints"]["guard/v1"].is_string());
}

#[test]
fn config_errors_exit_2() {
    let repo = TempRepo::new();
    repo.write(
        "guard.toml",
        "[[secrets.rules]]\nid = \"mine\"\nregex = \"(unclosed\"\n",
    );
    repo.commit_all("bad config");
    let out = repo.guard(&["scan", "--all"]);
    out.assert_code(2);
    assert!(out.stderr.contains("mine"), "{}", out.stderr);
    repo.write("guard.toml", "[secrets]\ndisable = [\"no-such-rule\"]\n");
    let out = repo.guard(&["scan", "--all"]);
    out.assert_code(2);
    assert!(out.stderr.contains("no-such-rule"), "{}", out.stderr);
}

#[test]
fn user_rules_from_guard_toml() {
    let repo = TempRepo::new();
    repo.write(
        "guard.toml",
        "[[secrets.rules]]\nid = \"internal-token\"\nregex = \"itk_[a-z0-9]{16}\"\nkeywords = [\"itk_\"]\n",
    );
    repo.write("app.conf", "key itk_0123456789abcdef\n");
    repo.commit_all("user rule");
    let out = repo.guard(&["scan", "--all", "--format", "json"]);
    out.assert_code(1);
    assert_eq!(rules(&out), ["internal-token"]);
}

#[test]
fn empty_repository_and_outside_paths() {
    let repo = TempRepo::new();
    repo.guard(&["scan"]).assert_code(0);
    repo.guard(&["scan", "--staged"]).assert_code(0);
    let out = repo.guard(&["scan", "--history"]);
    out.assert_code(2);
    assert!(out.stderr.contains("no commits"), "{}", out.stderr);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.env"), format!("TOKEN={}\n", gh_token())).unwrap();
    let out = guard_in(repo.path(), &["scan", dir.path().to_str().unwrap()]);
    out.assert_code(1);
}

#[test]
fn huge_files_are_scanned_in_chunks_with_a_notice() {
    let repo = TempRepo::new();
    // 9 MiB of filler lines, then a key: past the 8 MiB chunk boundary.
    let filler = "x = 1 # filler line of a large generated file\n";
    let n = 9 * 1024 * 1024 / filler.len() + 1;
    let mut big = filler.repeat(n);
    big.push_str(&format!("PrivateKey = {}\n", wg_key()));
    repo.write("data/big.conf", &big);
    repo.commit_all("big");
    for args in [
        vec!["scan", "data", "--format", "json"],
        vec!["scan", "--all", "--format", "json"],
    ] {
        let out = repo.guard(&args);
        out.assert_code(1);
        let v = out.json();
        assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{args:?}");
        assert_eq!(v["findings"][0]["line"], n as u64 + 1, "{args:?}");
        let w = v["warnings"].to_string();
        assert!(
            w.contains("data/big.conf") && w.contains("MiB"),
            "{args:?}: {w}"
        );
    }
}

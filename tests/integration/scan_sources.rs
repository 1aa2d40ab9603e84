//! Where `guard scan` reads from when the source is not a tidy full clone:
//! a plain directory outside any repository, a repository with blobs
//! missing (a damaged store, a blobless clone of a real fleet), and a
//! `.nix` file that does not parse.

use std::path::Path;

use crate::real_fleets::fleet;
use crate::support::{TempRepo, git_cmd, guard_cmd};

/// A plaintext password assembled at run time.
fn pw() -> String {
    ["Zq7", "-plain", "-dir-pw"].concat()
}

fn run(dir: &Path, args: &[&str]) -> crate::support::GuardOutput {
    let mut c = guard_cmd(dir);
    // Never let git fetch a missing object from a promisor remote.
    c.env("GIT_NO_LAZY_FETCH", "1").args(args);
    c.output().unwrap().into()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_plain_directory_outside_any_repository_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The test only means something if no repository holds the directory.
    let probe = git_cmd(root)
        .args(["rev-parse", "--git-dir"])
        .output()
        .unwrap();
    assert!(
        !probe.status.success(),
        "{} is inside a git repository",
        root.display()
    );
    std::fs::write(root.join(".gitignore"), "ignored.env\n").unwrap();
    std::fs::write(root.join(".env"), format!("DB_PASSWORD={}\n", pw())).unwrap();
    std::fs::write(root.join("ignored.env"), format!("DB_PASSWORD={}\n", pw())).unwrap();
    std::fs::create_dir(root.join("hosts")).unwrap();
    std::fs::write(
        root.join("hosts/a.nix"),
        format!("{{ services.app.password = \"{}\"; }}\n", pw()),
    )
    .unwrap();

    let out = run(root, &["scan", ".", "--format", "json"]);
    out.assert_code(1);
    assert!(!out.stdout.contains(&pw()) && !out.stderr.contains(&pw()));
    let json = out.json();
    let found = path_rules(&json);
    // Hidden files are scanned, ignored ones are not.
    assert_eq!(
        found,
        [
            (".env".to_string(), "secret-assignment".to_string()),
            ("hosts/a.nix".to_string(), "nix-password".to_string()),
        ]
    );
    // A guard.toml in the directory applies.
    std::fs::write(
        root.join("guard.toml"),
        "[secrets.allow]\npaths = [\"hosts/**\"]\n",
    )
    .unwrap();
    let out = run(root, &["scan", "hosts"]);
    out.assert_code(0);
    // Modes that need history say so instead of failing obscurely.
    let out = run(root, &["scan", "--history"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("not a git repository"),
        "{}",
        out.stderr
    );
}

/// The loose object file of `id` in `repo`.
fn loose_object(repo: &Path, id: &str) -> std::path::PathBuf {
    repo.join(".git/objects").join(&id[..2]).join(&id[2..])
}

#[test]
fn a_missing_blob_is_a_warning_naming_path_and_commit() {
    let repo = TempRepo::new();
    repo.write("hosts/a.nix", "{ services.app.enable = true; }\n");
    repo.commit_all("base");
    repo.write("big/image.txt", format!("password = {}\n", pw()));
    let lost = repo.commit_all("add a file whose blob will go missing");
    let blob = repo.git(&["rev-parse", &format!("{lost}:big/image.txt")]);
    let blob = blob.trim().to_string();
    repo.remove("big/image.txt");
    repo.write(".env", format!("API_TOKEN={}\n", pw()));
    let last = repo.commit_all("drop it, add a scanned secret");
    std::fs::remove_file(loose_object(repo.path(), &blob)).unwrap();

    for args in [
        &["scan", "--history", "--format", "json"][..],
        &["scan", "--base", "HEAD~2", "--format", "json"],
        &["scan", "--commit", &lost, "--format", "json"],
    ] {
        let out = run(repo.path(), args);
        // Exit code of what was scanned: the `.env` secret (a finding) in
        // history and range modes, nothing in the lost commit alone.
        let expect = if args.contains(&"--commit") { 0 } else { 1 };
        out.assert_code(expect);
        let json = out.json();
        let warnings = json["warnings"].as_array().unwrap();
        let w = warnings
            .iter()
            .find(|w| w["path"] == "big/image.txt")
            .unwrap_or_else(|| panic!("{args:?}: no warning names the path: {warnings:?}"));
        let msg = w["message"].as_str().unwrap();
        assert!(
            msg.contains(&lost[..12]),
            "{args:?}: commit not named: {msg}"
        );
        assert!(msg.contains(&blob), "{args:?}: object not named: {msg}");
        // Said once, not repeated.
        assert_eq!(msg.matches("missing").count(), 1, "{msg}");
        if expect == 1 {
            let f = &json["findings"][0];
            assert_eq!(f["path"], ".env");
            assert_eq!(f["commit"].as_str().unwrap(), last);
        }
    }
}

/// A real fleet made blobless the way a partial clone is: the object store
/// keeps commits, trees, HEAD's files and small blobs (`blob:limit=2k`),
/// marked as promisor packs of a remote that cannot be reached. (A `git
/// clone --filter` of a shallow mirror fetches each checked-out blob
/// separately, minutes; rewriting the store is the same end state.)
#[test]
fn a_blobless_clone_of_a_real_fleet_scans_its_history() {
    let src = fleet("ryan4yin+nix-config");
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--no-local",
            src.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    let pack_dir = work.join(".git/objects/pack");
    let old_packs: Vec<std::path::PathBuf> = std::fs::read_dir(&pack_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut keep = git(
        &work,
        &["rev-list", "--objects", "--all", "--filter=blob:limit=2k"],
    );
    keep.push('\n');
    keep.push_str(&git(
        &work,
        &["ls-tree", "-r", "--format=%(objectname)", "HEAD"],
    ));
    keep.push('\n');
    let mut pack = git_cmd(&work)
        .args(["pack-objects", "-q"])
        .arg(pack_dir.join("pack"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    pack.stdin
        .take()
        .unwrap()
        .write_all(keep.as_bytes())
        .unwrap();
    let name = String::from_utf8(pack.wait_with_output().unwrap().stdout).unwrap();
    std::fs::write(pack_dir.join(format!("pack-{}.promisor", name.trim())), "").unwrap();
    for p in old_packs {
        std::fs::remove_file(p).unwrap();
    }
    git(
        &work,
        &["config", "remote.origin.url", "/nonexistent/promisor"],
    );
    git(&work, &["config", "remote.origin.promisor", "true"]);
    git(&work, &["config", "extensions.partialClone", "origin"]);
    let absent = {
        let out = git_cmd(&work)
            .env("GIT_NO_LAZY_FETCH", "1")
            .args(["rev-list", "--objects", "--all", "--missing=print"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with('?'))
            .count()
    };
    assert!(
        absent > 0,
        "every blob is still there: the test proves nothing"
    );

    for args in [
        &["scan", "--history", "--format", "json"][..],
        &["scan", "--base", "HEAD~30", "--format", "json"],
    ] {
        let out = run(&work, args);
        assert!(
            out.code == 0 || out.code == 1,
            "{args:?}: exit {}: {}",
            out.code,
            out.stderr
        );
        let json = out.json();
        assert!(json["scanned"]["commits"].as_u64().unwrap() > 1);
        let named = json["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| {
                w["path"].is_string()
                    && w["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("not scanned in commit "))
            })
            .count();
        assert!(
            named > 0,
            "{args:?}: no warning names a missing blob: {}",
            json["warnings"]
        );
    }
    // The age check of a range whose base misses blobs completes: it checks
    // every secret instead of the change's and says why.
    for args in [
        &["secrets", "--base", "HEAD~30", "--format", "json"][..],
        &[
            "check", "--base", "HEAD~30", "--level", "none", "--format", "json",
        ],
    ] {
        let out = run(&work, args);
        assert!(
            out.code == 0 || out.code == 1,
            "{args:?}: exit {}: {}",
            out.code,
            out.stderr
        );
        assert!(
            out.json()
                .to_string()
                .contains("is missing (a partial or blobless clone)"),
            "{args:?}: no warning says why: {}",
            out.stdout
        );
    }
    // HEAD's files are all present: `--all` reads every one of them.
    let out = run(&work, &["scan", "--all", "--format", "json"]);
    assert!(out.code == 0 || out.code == 1, "{}", out.stderr);
    assert_eq!(
        out.json()["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["message"].as_str().unwrap().contains("missing"))
            .count(),
        0
    );
}

#[test]
fn nix_that_does_not_parse_is_scanned_and_reported_by_the_hook_path() {
    let repo = TempRepo::new();
    repo.write("hosts/a.nix", "{ services.app.enable = true; }\n");
    // The hook refuses a repository without hosts: name the one host.
    repo.write("guard.toml", "[hosts]\na = \"hosts/a.nix\"\n");
    repo.commit_all("base");
    repo.write(
        "hosts/broken.nix",
        format!(
            "{{ a = 1; }} users.users.root.initialPassword = \"{}\";\n",
            pw()
        ),
    );
    repo.git(&["add", "hosts/broken.nix"]);
    let out = run(repo.path(), &["scan", "--staged"]);
    out.assert_code(1);
    assert!(out.stdout.contains("hosts/broken.nix:1:"), "{}", out.stdout);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("hosts/broken.nix") && all.contains("does not parse as Nix"),
        "{all}"
    );
    assert!(!all.contains(&pw()));
    // The pre-commit hook's verdict says it too.
    let out = run(repo.path(), &["pre-commit"]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("hosts/broken.nix: does not parse as Nix"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&pw()) && !out.stdout.contains(&pw()));
}

/// A repository migrating from gitleaks keeps its rules, allowlists and
/// accepted findings.
#[test]
fn a_gitleaks_configuration_and_ignore_file_are_honoured() {
    let repo = TempRepo::new();
    let key = ["acme_key=", "k7q2x9m4p8w1z6v3b5n0c8r2"].concat();
    let stop = ["acme_key=", "testkeyabcabcabcabcabcab"].concat();
    repo.write("app/one.env", format!("{key}\n"));
    repo.write("app/two.env", format!("{stop}\n"));
    repo.write("vendor/lib.env", format!("{key}\n"));
    repo.write("certs/site.pem", "not really a certificate\n");
    // A finding of guard's own rules, accepted in .gitleaksignore.
    repo.write("hosts/old.env", format!("\nDB_PASSWORD={}\n", pw()));
    repo.write(
        ".gitleaks.toml",
        r#"title = "acme"
[extend]
useDefault = true
[allowlist]
paths = ['''^vendor/''']

[[rules]]
id = "acme-key"
description = "ACME internal key"
regex = '''acme_key=([a-z0-9]{24})'''
secretGroup = 1
entropy = 2.0
keywords = ["acme_key"]
[rules.allowlist]
stopwords = ["testkey"]

[[rules]]
id = "pem-file"
description = "certificate file"
path = '''\.pem$'''
"#,
    );
    repo.write(".gitleaksignore", "hosts/old.env:generic-api-key:2\n");
    repo.write(
        "guard.toml",
        "[secrets]\ngitleaks_config = \".gitleaks.toml\"\n",
    );
    repo.commit_all("migrate from gitleaks");

    let out = run(repo.path(), &["scan", "--all", "--format", "json"]);
    out.assert_code(1);
    let json = out.json();
    let found = path_rules(&json);
    assert_eq!(
        found,
        [
            ("app/one.env".to_string(), "gitleaks-acme-key".to_string()),
            (
                "certs/site.pem".to_string(),
                "gitleaks-pem-file".to_string()
            ),
        ]
    );
    assert!(!out.stdout.contains("k7q2x9m4p8w1z6v3b5n0c8r2"));
    // Without the gitleaks files guard's own rule finds the accepted one.
    repo.write("guard.toml", "");
    let out = run(repo.path(), &["scan", "--all", "--format", "json"]);
    let rules: Vec<String> = out.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}:{}",
                f["path"].as_str().unwrap(),
                f["rule"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        rules.contains(&"hosts/old.env:secret-assignment".to_string()),
        "{rules:?}"
    );
    // A configured file that is missing is an error naming it.
    repo.write("guard.toml", "[secrets]\ngitleaks_config = \"nope.toml\"\n");
    let out = run(repo.path(), &["scan", "--all"]);
    out.assert_code(2);
    assert!(out.stderr.contains("nope.toml"), "{}", out.stderr);
}

/// (path, rule) of every finding in a scan's JSON, sorted.
fn path_rules(json: &serde_json::Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

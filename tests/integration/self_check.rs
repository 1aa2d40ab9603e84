//! The soundness self-check with real nix: guard asks nix for each host's
//! module graph (`nixosConfigurations.<h>.graph`) and compares it with its
//! static answer. A module a host really imports but that the static
//! answer leaves out (here: listed under `[affected] ignore`, the user's
//! mistake the check exists to catch) is a soundness miss with nix's chain,
//! and the host is built; real fleets, evaluated against the ground-truth
//! oracle's stub inputs (../shared/fleets/truth), have no miss.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::real_fleets;
use crate::support::{TempRepo, fleet_repo, git_cmd, guard_in, nix_cmd, nix_eval_json};

/// nix's own answer: every host whose module graph holds the repository
/// file `rel` (graph files are store paths of the flake's source).
fn hosts_importing(repo: &Path, rel: &str) -> BTreeSet<String> {
    let files = nix_eval_json(
        &format!("git+file://{}#nixosConfigurations", repo.display()),
        Some(
            "cs: builtins.mapAttrs (_: c: let f = g: builtins.concatMap \
             (m: [ (toString m.file) ] ++ f m.imports) g; in f c.graph) cs",
        ),
    );
    let suffix = format!("-source/{rel}");
    files
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, fs)| {
            fs.as_array()
                .unwrap()
                .iter()
                .any(|f| f.as_str().unwrap().ends_with(&suffix))
        })
        .map(|(h, _)| h.clone())
        .collect()
}

/// `guard [--config <config>] affected --commit HEAD --self-check --format
/// json` in `dir`, which must succeed.
fn affected_json(dir: &Path, config: Option<&Path>) -> Value {
    let mut args: Vec<&str> = Vec::new();
    if let Some(c) = config {
        args.extend(["--config", c.to_str().unwrap()]);
    }
    args.extend([
        "affected",
        "--commit",
        "HEAD",
        "--self-check",
        "--format",
        "json",
    ]);
    let out = guard_in(dir, &args);
    out.assert_code(0);
    out.json()
}

/// `guard check --commit HEAD --level <level> --format json <extra>` in
/// `dir`, which must succeed.
fn check_json(dir: &Path, level: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "check", "--commit", "HEAD", "--level", level, "--format", "json",
    ];
    args.extend(extra);
    let out = guard_in(dir, &args);
    out.assert_code(0);
    out.json()
}

fn self_check(affected: &Value) -> &Value {
    let c = &affected["self_check"];
    assert!(c.is_object(), "no self_check in {affected:#}");
    c
}

/// host -> the miss of `path` for it.
fn misses_of<'a>(check: &'a Value, path: &str) -> BTreeMap<String, &'a Value> {
    check["misses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["path"] == path)
        .map(|m| (m["host"].as_str().unwrap().to_string(), m))
        .collect()
}

fn build_status(report: &Value) -> BTreeMap<String, String> {
    report["build"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const ZFS: &str = "environments/zfs.nix";

#[test]
fn an_ignored_module_is_a_soundness_miss_with_nix_chain_and_its_hosts_are_built() {
    let repo = fleet_repo();
    repo.write("guard.toml", format!("[affected]\nignore = [\"{ZFS}\"]\n"));
    repo.commit_all("ignore the zfs module");
    let importing = hosts_importing(repo.path(), ZFS);
    assert!(
        !importing.is_empty(),
        "no host of the example imports {ZFS}"
    );
    let text = std::fs::read_to_string(repo.path().join(ZFS)).unwrap();
    // A unique comment: the hosts' outputs are not in the store yet.
    let unique = format!("{:?}", std::time::SystemTime::now());
    repo.write(ZFS, format!("{text}# self-check {unique}\n"));
    repo.commit_all("touch the ignored module");

    let report = check_json(repo.path(), "build", &[]);
    let check = self_check(&report["affected"]);
    assert!(check["skipped"].is_null(), "{check:#}");
    assert_eq!(check["hosts_checked"], 17, "{check:#}");
    let misses = misses_of(check, ZFS);
    assert_eq!(
        misses.keys().cloned().collect::<BTreeSet<_>>(),
        importing,
        "{check:#}"
    );
    for (host, m) in &misses {
        assert_eq!(m["changed"], true);
        let chain: Vec<&str> = m["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            chain.first().copied(),
            Some(format!("machines/{host}/default.nix").as_str())
        );
        assert_eq!(chain.last().copied(), Some(ZFS));
        let msg = m["message"].as_str().unwrap();
        assert!(
            msg.contains("[affected] ignore") && msg.contains(host.as_str()),
            "{msg}"
        );
    }
    // Only the ignored module is missed: every other file nix imports is
    // in the static answer.
    assert_eq!(
        check["misses"].as_array().unwrap().len(),
        importing.len(),
        "{check:#}"
    );
    let affected: BTreeSet<String> = report["affected"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        affected, importing,
        "the missed hosts are the changed hosts"
    );
    let built = build_status(&report);
    for h in &importing {
        assert_eq!(built.get(h).map(String::as_str), Some("ok"), "{report:#}");
    }

    // The same content: the graphs come from the cache, except those that
    // hold a changed file (the key is guard's static view, which is what
    // may have missed it), which nix is asked again.
    let a = affected_json(repo.path(), None);
    let c = self_check(&a);
    assert_eq!(c["from_cache"], 17 - importing.len(), "{c:#}");
    assert_eq!(misses_of(c, ZFS).len(), importing.len());

    // Opted out: the static answer alone, which ignores the change.
    let r = check_json(repo.path(), "eval", &["--no-self-check"]);
    assert!(r["affected"].get("self_check").is_none(), "{r:#}");
    assert!(build_status(&r).is_empty(), "{r:#}");

    // CI: an annotation on the file, SARIF with the rule and its result.
    let sarif = repo.path().join("guard.sarif");
    let ci = guard_in(
        repo.path(),
        &[
            "ci",
            "--base",
            "HEAD~1",
            "--head",
            "HEAD",
            "--level",
            "eval",
            "--format",
            "github",
            "--sarif",
            sarif.to_str().unwrap(),
        ],
    );
    ci.assert_code(0);
    assert!(
        ci.stdout.contains(&format!(
            "::warning file={ZFS},line=1,title=guard%3A soundness-miss"
        )),
        "{}",
        ci.stdout
    );
    let s: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let run = &s["runs"][0];
    assert!(
        run["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "soundness-miss"),
        "{run:#}"
    );
    let results: Vec<&Value> = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ruleId"] == "soundness-miss")
        .collect();
    assert_eq!(results.len(), importing.len(), "{run:#}");
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        ZFS
    );
    // Human: the warning and nix's chain.
    let human = guard_in(
        repo.path(),
        &["affected", "--commit", "HEAD", "--self-check"],
    );
    human.assert_code(0);
    let host = importing.iter().next().unwrap();
    assert!(
        human.stdout.contains(&format!(
            "warning: {ZFS}: (changed: host added) [soundness-miss]"
        )) && human
            .stdout
            .contains(&format!("machines/{host}/default.nix → {ZFS}")),
        "{}",
        human.stdout
    );
}

#[test]
fn the_example_fleet_has_no_miss_and_a_flake_without_graph_is_skipped_once() {
    let repo = fleet_repo();
    let out = guard_in(
        repo.path(),
        &["affected", "--all", "--self-check", "--format", "json"],
    );
    out.assert_code(0);
    let a = out.json();
    let c = self_check(&a);
    assert_eq!(c["hosts_checked"], 17, "{c:#}");
    assert_eq!(c["misses"], serde_json::json!([]), "{c:#}");
    assert!(c["nix_files"].as_u64().unwrap() >= 17, "{c:#}");
    assert!(c["static_files"].as_u64().unwrap() >= 17, "{c:#}");

    // An evaluator without `graph` (an older nixpkgs): said once, skipped,
    // and the run goes on.
    let eval = repo.path().join("lib/eval.nix");
    let text = std::fs::read_to_string(&eval).unwrap();
    assert!(text.contains("inherit config graph;"));
    repo.write(
        "lib/eval.nix",
        text.replace("inherit config graph;", "inherit config;"),
    );
    repo.commit_all("no graph");
    let r = check_json(repo.path(), "eval", &[]);
    let c = self_check(&r["affected"]);
    let why = c["skipped"].as_str().unwrap_or_default();
    assert!(
        why.contains("no module graph") && why.contains("17 hosts were not checked"),
        "{c:#}"
    );
    assert_eq!(c["misses"], serde_json::json!([]));
    let built = build_status(&r);
    assert_eq!(built.len(), 17, "{r:#}");
    assert!(built.values().all(|s| s == "ok"), "{r:#}");
}

#[test]
fn generated_fleet_ignored_module_is_missed_for_exactly_its_hosts_which_are_built() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    let spec = fleetgen::Spec {
        hosts: 12,
        modules: 24,
        files: 80,
        commits: 0,
        seed: 21,
    };
    let mut fleet = fleetgen::generate(&root, &spec).unwrap();
    // A module some hosts read and others do not.
    let module = fleet
        .modules()
        .into_iter()
        .find(|m| {
            let n = fleet.hosts_reading(&[m.as_str()]).len();
            n > 0 && n < fleet.hosts.len()
        })
        .expect("a module read by some hosts");
    let readers = fleet.hosts_reading(&[module.as_str()]);
    fleet.set_module_value(&module).unwrap();
    fleet.commit("change the module").unwrap();
    let config = dir.path().join("guard.toml");
    std::fs::write(&config, format!("[affected]\nignore = [\"{module}\"]\n")).unwrap();

    let out = guard_in(
        &root,
        &[
            "--config",
            config.to_str().unwrap(),
            "ci",
            "--base",
            "HEAD~1",
            "--head",
            "HEAD",
            "--level",
            "eval",
            "--format",
            "json",
        ],
    );
    out.assert_code(0);
    let r = out.json();
    let c = self_check(&r["affected"]);
    assert_eq!(c["hosts_checked"], fleet.hosts.len(), "{c:#}");
    let misses = misses_of(c, &module);
    assert_eq!(
        misses.keys().cloned().collect::<BTreeSet<_>>(),
        readers,
        "{c:#}"
    );
    assert_eq!(
        c["misses"].as_array().unwrap().len(),
        readers.len(),
        "{c:#}"
    );
    for (h, m) in &misses {
        let chain = m["chain"].as_array().unwrap();
        assert_eq!(chain.last().unwrap(), &Value::from(module.clone()));
        assert!(
            chain[0]
                .as_str()
                .unwrap()
                .starts_with(&format!("machines/{h}/")),
            "{m:#}"
        );
    }
    let built = build_status(&r);
    assert_eq!(
        built.keys().cloned().collect::<BTreeSet<_>>(),
        readers,
        "{r:#}"
    );
    assert!(built.values().all(|s| s == "ok"), "{r:#}");
}

/// `nix-community+nixpkgs.lib` from the shared tarball, extracted once
/// into the fleets cache (its `lib/` is the stub nixpkgs' lib).
fn nixpkgs_lib() -> PathBuf {
    let cache = real_fleets::cache_dir();
    let dir = cache.join("nix-community+nixpkgs.lib");
    if dir.join("lib/default.nix").is_file() {
        return dir;
    }
    let tmp = real_fleets::extract_in_cache(
        &real_fleets::fleets_dir().join("nix-community+nixpkgs.lib.tar.gz"),
    );
    match std::fs::rename(tmp.path().join("nix-community+nixpkgs.lib"), &dir) {
        Ok(()) => {}
        Err(_) if dir.join("lib/default.nix").is_file() => {}
        Err(e) => panic!("cannot place {}: {e}", dir.display()),
    }
    dir
}

/// The oracle's stub inputs for `src` (a work tree), made by a copy of the
/// shared `truth/mkstubs.sh` with its known bugs fixed: its greps abort
/// under `set -e` when nothing matches, and its module names lack
/// `home-manager`.
fn make_stubs(src: &Path, out: &Path) {
    let truth = real_fleets::fleets_dir().join("truth");
    let scripts = out.with_extension("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    for f in ["stub-nixpkgs.nix", "stub-pkgs.nix", "stub-generic.nix"] {
        std::fs::copy(truth.join(f), scripts.join(f)).unwrap();
    }
    let script = std::fs::read_to_string(truth.join("mkstubs.sh")).unwrap();
    let names = "names=$(grep -rhoE";
    let paths = "grep -rhoE '(modulesPath";
    for needle in [names, paths, "2>/dev/null \\\n", "for n in $names default;"] {
        assert!(
            script.contains(needle),
            "truth/mkstubs.sh changed: {needle:?} not found"
        );
    }
    let fixed = script
        .replacen(names, "names=$({ grep -rhoE", 1)
        .replacen(paths, "{ grep -rhoE '(modulesPath", 1)
        .replace("2>/dev/null \\\n", "2>/dev/null || true; } \\\n")
        .replace(
            "for n in $names default;",
            "for n in $names default home-manager;",
        );
    let mk = scripts.join("mkstubs.sh");
    std::fs::write(&mk, fixed).unwrap();
    let o = std::process::Command::new("bash")
        .arg(&mk)
        .arg(src)
        .arg(out)
        .env("NIXPKGS_LIB_DIR", nixpkgs_lib())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mkstubs.sh failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A repository holding the fleet's pinned commit (its tree, as the oracle
/// archives it: the mirrors are shallow, which nix refuses), then one
/// commit that locks every input to the oracle's stubs: `nixpkgs*` to the
/// stub nixpkgs (real lib, `nixosSystem` = `evalModules` returning
/// `graph`), every other input to the generic stub. Each input keeps its
/// `original` from the fleet's own lock, so nix takes the lock as is.
fn stubbed_fleet(name: &str, work: &Path) -> TempRepo {
    let src = real_fleets::fleet(name);
    let repo = TempRepo::new();
    let archive = git_cmd(&src).args(["archive", "HEAD"]).output().unwrap();
    assert!(archive.status.success(), "git archive of {name} failed");
    let mut tar = std::process::Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(repo.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    tar.stdin
        .take()
        .unwrap()
        .write_all(&archive.stdout)
        .unwrap();
    assert!(tar.wait().unwrap().success());
    repo.commit_all(&format!("{name} at its pinned commit"));
    let stubs = work.join("stubs");
    make_stubs(repo.path(), &stubs);

    let flake = repo.path().join("flake.nix");
    let names = nix_cmd()
        .args(["eval", "--impure", "--json", "--expr"])
        .arg(format!(
            "builtins.attrNames ((import {}).inputs or {{ }})",
            flake.display()
        ))
        .output()
        .unwrap();
    assert!(
        names.status.success(),
        "{}",
        String::from_utf8_lossy(&names.stderr)
    );
    let inputs: Vec<String> = serde_json::from_slice(&names.stdout).unwrap();
    let original: Value =
        serde_json::from_slice(&std::fs::read(repo.path().join("flake.lock")).unwrap()).unwrap();
    std::fs::remove_file(repo.path().join("flake.lock")).unwrap();
    let mut lock = nix_cmd();
    lock.current_dir(repo.path()).args(["flake", "lock"]);
    for i in &inputs {
        let stub = if i.starts_with("nixpkgs")
            || i.ends_with("-nixpkgs")
            || i == "stable"
            || i == "unstable"
        {
            "nixpkgs"
        } else {
            "generic"
        };
        lock.arg("--override-input")
            .arg(i)
            .arg(format!("path:{}", stubs.join(stub).display()));
    }
    let o = lock.output().unwrap();
    assert!(
        o.status.success(),
        "nix flake lock: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let path = repo.path().join("flake.lock");
    let mut locked: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let root_of = |l: &Value| l["nodes"][l["root"].as_str().unwrap_or("root")]["inputs"].clone();
    let (new_inputs, old_inputs) = (root_of(&locked), root_of(&original));
    for (input, node) in new_inputs.as_object().unwrap() {
        if let (Some(node), Some(old)) = (node.as_str(), old_inputs[input].as_str()) {
            locked["nodes"][node]["original"] = original["nodes"][old]["original"].clone();
        }
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&locked).unwrap()).unwrap();
    repo.commit_all("lock the inputs to the oracle's stubs");
    repo
}

/// One repository file of some host's module graph (not its entry), by
/// nix's own evaluation: (host, file).
fn an_imported_file(repo: &Path, hosts: &[String]) -> (String, String) {
    for h in hosts {
        let v = nix_cmd()
            .args(["eval", "--json"])
            .arg(format!(
                "git+file://{}#nixosConfigurations.\"{h}\".graph",
                repo.display()
            ))
            .args([
                "--apply",
                "g: let f = g: builtins.concatMap (m: [ (toString m.file) ] ++ f m.imports) g; in f g",
            ])
            .output()
            .unwrap();
        if !v.status.success() {
            continue;
        }
        let files: Vec<String> = serde_json::from_slice(&v.stdout).unwrap();
        // Files of the stub nixpkgs (`modulesPath/...`) are not the
        // repository's.
        if let Some(f) = files
            .iter()
            .skip(1)
            .filter_map(|f| f.split_once("-source/").map(|(_, r)| r.to_string()))
            .find(|r| {
                r.ends_with(".nix") && !r.starts_with("modulesPath/") && repo.join(r).is_file()
            })
        {
            return (h.clone(), f);
        }
    }
    panic!(
        "no host of {} has a repository module in its graph",
        repo.display()
    );
}

fn oracle_fleet_has_no_miss(name: &str) {
    let work = tempfile::tempdir().unwrap();
    let repo = stubbed_fleet(name, work.path());
    let a = affected_json(repo.path(), None);
    let c = self_check(&a);
    let hosts: Vec<String> = a["all_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    assert!(c["hosts_checked"].as_u64().unwrap() >= 1, "{name}: {c:#}");
    assert!(c["nix_files"].as_u64().unwrap() > 0, "{name}: {c:#}");
    assert_eq!(c["misses"], serde_json::json!([]), "{name}: {c:#}");
    eprintln!(
        "{name}: {} of {} hosts checked, {} graph files, no miss{}",
        c["hosts_checked"],
        hosts.len(),
        c["nix_files"],
        c["skipped"]
            .as_str()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );

    // The same fleet with one of its imported modules ignored: the check
    // can fail, and does, with that host and file.
    let (host, file) = an_imported_file(repo.path(), &hosts);
    let config = work.path().join("guard.toml");
    std::fs::write(&config, format!("[affected]\nignore = [\"{file}\"]\n")).unwrap();
    let a = affected_json(repo.path(), Some(&config));
    let c = self_check(&a);
    let misses = misses_of(c, &file);
    assert!(
        misses.contains_key(&host),
        "{name}: {file} ignored, no miss for {host}: {c:#}"
    );
    // Hosts with a content key (no read outside the repository) are not
    // asked again.
    assert!(c["from_cache"].as_u64().unwrap() >= 1, "{name}: {c:#}");
}

#[test]
fn oracle_emergentmind_has_no_miss_at_its_pinned_commit() {
    oracle_fleet_has_no_miss("EmergentMind+nix-config");
}

#[test]
fn oracle_mitchellh_has_no_miss_at_its_pinned_commit() {
    oracle_fleet_has_no_miss("mitchellh+nixos-config");
}

//! Build at scale, against real nix: bounded evaluation workers replaced
//! past their memory limit, the evaluation cache keyed by content, one
//! `nix build` per batch, and each built host's closure difference.

use crate::support::{GuardOutput, TempRepo, fleet_repo, nix_cmd};

use super::{add_definition, statuses, touch_module, unique};

/// Every host of the example fleet.
fn all_hosts(repo: &TempRepo) -> Vec<String> {
    let mut h: Vec<String> = std::fs::read_dir(repo.path().join("machines"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    h.sort();
    h
}

/// Makes every host's evaluation allocate (and keep, while its worker
/// lives) `n` list elements: ~25 MB per host at 400,000.
fn weigh_hosts(repo: &TempRepo, n: u32) {
    add_definition(
        repo,
        "environments/common.nix",
        &format!(
            "environment.etc.\"eval-weight\".text = toString (builtins.foldl' (a: b: a + b) (builtins.stringLength name) (builtins.genList (i: i) {n}));"
        ),
    );
}

fn eval_all(repo: &TempRepo, hosts: &[String], extra: &[&str]) -> GuardOutput {
    let list = hosts.join(",");
    let mut args = vec![
        "build", "--hosts", &list, "--level", "eval", "--format", "json",
    ];
    args.extend_from_slice(extra);
    repo.guard(&args)
}

fn drv_paths(out: &GuardOutput) -> Vec<(String, String)> {
    let v = out.json();
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["drv_path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_worker_past_its_memory_limit_is_replaced_and_the_run_completes() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    weigh_hosts(&repo, 400_000);
    touch_module(&repo, "environments/common.nix");
    repo.commit_all("weighted hosts");
    let hosts = all_hosts(&repo);

    // Unbounded: one worker evaluates all 17 hosts, its memory growing.
    let free = eval_all(
        &repo,
        &hosts,
        &["--eval-workers", "1", "--eval-max-memory", "100000"],
    );
    free.assert_code(0);
    let fv = free.json();
    assert_eq!(fv["eval"]["started"], 1, "{fv}");
    assert_eq!(fv["eval"]["replaced"], 0, "{fv}");
    let grown = fv["eval"]["peak_worker_memory"].as_u64().unwrap();

    // A limit below what one worker reaches over all hosts (but above what
    // one host needs): workers are replaced, every host still evaluates, to
    // the same drvPaths.
    let limit_mib = (grown / (1 << 20)) * 2 / 3;
    let limit = limit_mib.to_string();
    let bounded = eval_all(
        &repo,
        &hosts,
        &["--eval-workers", "1", "--eval-max-memory", &limit],
    );
    bounded.assert_code(0);
    let bv = bounded.json();
    let replaced = bv["eval"]["replaced"].as_u64().unwrap();
    assert!(replaced >= 1, "no worker was replaced: {bv}");
    assert_eq!(
        bv["eval"]["started"].as_u64().unwrap(),
        replaced + 1,
        "{bv}"
    );
    assert!(
        bv["eval"]["peak_worker_memory"].as_u64().unwrap() < grown,
        "{bv}"
    );
    let st = statuses(&bounded);
    assert!(st.values().all(|(s, _)| s == "ok"), "{st:?}");
    assert_eq!(drv_paths(&bounded), drv_paths(&free));
    assert!(
        bv["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["message"]
                .as_str()
                .unwrap()
                .contains("replaced past --eval-max-memory")),
        "{bv}"
    );
}

#[test]
fn a_host_alone_over_the_limit_is_reported_as_such() {
    let _ = nix_cmd();
    let repo = fleet_repo();
    // linda alone allocates a lot; the others stay small.
    add_definition(
        &repo,
        "machines/linda/default.nix",
        &format!(
            "environment.etc.\"eval-weight\".text = toString (builtins.length (builtins.genList (i: \"{}-${{toString i}}\") 3000000));",
            unique()
        ),
    );
    repo.commit_all("linda is heavy");
    let hosts = vec!["linda".to_string(), "monitor".to_string()];
    let out = eval_all(
        &repo,
        &hosts,
        &["--eval-workers", "1", "--eval-max-memory", "120"],
    );
    out.assert_code(1);
    let st = statuses(&out);
    assert_eq!(st["monitor"].0, "ok", "{st:?}");
    assert_eq!(st["linda"].0, "failed", "{st:?}");
    assert!(
        st["linda"]
            .1
            .contains("alone needs more memory than --eval-max-memory 120 MiB"),
        "{st:?}"
    );
}

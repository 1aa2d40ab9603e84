//! One run computes each stage of the pipeline once: `GUARD_DEBUG_PIPELINE`
//! makes guard print how many import graphs and affected sets it built.

use crate::support::{GuardOutput, fleet_repo, guard_cmd};

fn counted(dir: &std::path::Path, args: &[&str]) -> (GuardOutput, String) {
    let out: GuardOutput = guard_cmd(dir)
        .env("GUARD_DEBUG_PIPELINE", "1")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
        .into();
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("guard: debug: "))
        .unwrap_or_else(|| panic!("no debug line in:\n{}", out.stderr))
        .to_string();
    (out, line)
}

/// The stage counters of a debug line, without the parse count.
fn stages(counts: &str) -> &str {
    counts.split(" parsed=").next().unwrap_or_default()
}

/// The counter `name` of a debug line.
fn count(counts: &str, name: &str) -> usize {
    counts
        .split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} count in {counts:?}"))
}

/// The number of files parsed, from a debug line.
fn parsed(counts: &str) -> usize {
    count(counts, "parsed")
}

#[test]
fn one_check_builds_each_graph_and_the_affected_set_once() {
    let repo = fleet_repo();
    repo.write("machines/linda/extra.nix", "{ }\n");
    repo.commit_all("a change to one host");
    // A change: the graph of each side once (the old one serves both the
    // affected set and the age model), the affected set once.
    let (out, counts) = counted(
        repo.path(),
        &["check", "--commit", "HEAD", "--level", "none"],
    );
    out.assert_code(0);
    assert_eq!(stages(&counts), "graphs=2 affected=1", "{}", out.stderr);
    // Everything: no old side at all.
    let (out, counts) = counted(repo.path(), &["check", "--all", "--level", "none"]);
    out.assert_code(0);
    assert_eq!(stages(&counts), "graphs=1 affected=1", "{}", out.stderr);
    // `guard secrets` shares the affected set with the age stage.
    let (out, counts) = counted(repo.path(), &["secrets", "--commit", "HEAD"]);
    out.assert_code(0);
    assert_eq!(stages(&counts), "graphs=2 affected=1", "{}", out.stderr);
    // `guard affected` needs the old side's hosts only, not its graph.
    let (out, counts) = counted(repo.path(), &["affected", "--commit", "HEAD"]);
    out.assert_code(0);
    assert_eq!(stages(&counts), "graphs=1 affected=1", "{}", out.stderr);
}

#[test]
fn a_second_run_parses_nothing_the_cache_holds_every_file() {
    let repo = fleet_repo();
    let (out, first) = counted(repo.path(), &["affected", "--all"]);
    out.assert_code(0);
    assert!(parsed(&first) > 10, "the example has more files: {first}");
    let (out, again) = counted(repo.path(), &["affected", "--all"]);
    out.assert_code(0);
    assert_eq!(parsed(&again), 0, "{again}");
    // A file that changed is parsed again, and only that one.
    repo.write("machines/linda/extra.nix", "{ }\n");
    repo.commit_all("a change");
    let (out, after) = counted(repo.path(), &["affected", "--commit", "HEAD"]);
    out.assert_code(0);
    assert!(parsed(&after) <= 2, "{after}");
    // A corrupt cache is ignored and rewritten whole.
    let cache = repo.path().join(".git/guard/cache/nix-refs.bin");
    std::fs::write(&cache, b"\xff\xff\xff\xff").unwrap();
    let (out, cold) = counted(repo.path(), &["affected", "--all"]);
    out.assert_code(0);
    // (every file again: the first run's, and the one added since)
    assert_eq!(parsed(&cold), parsed(&first) + 1, "{cold}");
    let (_, warm) = counted(repo.path(), &["affected", "--all"]);
    assert_eq!(parsed(&warm), 0, "{warm}");
}

#[test]
fn the_host_evaluation_is_reused_until_what_it_read_changes() {
    let repo = fleet_repo();
    let evaluated = |args: &[&str]| {
        let (out, counts) = counted(repo.path(), args);
        out.assert_code(0);
        (out, count(&counts, "evaluated"))
    };
    let (_, n) = evaluated(&["affected", "--all"]);
    assert_eq!(n, 1, "a first run evaluates the flake");
    let (_, n) = evaluated(&["affected", "--all"]);
    assert_eq!(n, 0, "nothing the evaluation read changed");
    // A file inside a host's directory: the host list's reads (the
    // machines/ listing) are the same.
    repo.write("machines/linda/extra.nix", "{ }\n");
    repo.commit_all("a host's file");
    let (_, n) = evaluated(&["affected", "--commit", "HEAD"]);
    assert_eq!(n, 0);
    // A new host directory changes the listing: evaluated again, and the
    // answer is the new one (not the remembered list).
    repo.write(
        "machines/newbox/default.nix",
        "{ ... }: { networking.hostName = \"newbox\"; }\n",
    );
    repo.commit_all("a new host");
    let (out, n) = evaluated(&["affected", "--commit", "HEAD", "--format", "json"]);
    assert_eq!(n, 1, "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let all = json["all_hosts"].to_string();
    assert!(all.contains("\"newbox\""), "{all}");
    // The same tree again, now from the disk: both sides remembered.
    let (out, n) = evaluated(&["affected", "--commit", "HEAD", "--format", "json"]);
    assert_eq!(n, 0, "{}", out.stderr);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap(),
        json
    );
    // A corrupt memo is ignored, never trusted.
    std::fs::write(
        repo.path().join(".git/guard/cache/host-eval.bin"),
        b"\x01\x02garbage",
    )
    .unwrap();
    let (_, n) = evaluated(&["affected", "--all"]);
    assert_eq!(n, 1);
}

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
    assert_eq!(counts, "graphs=2 affected=1", "{}", out.stderr);
    // Everything: no old side at all.
    let (out, counts) = counted(repo.path(), &["check", "--all", "--level", "none"]);
    out.assert_code(0);
    assert_eq!(counts, "graphs=1 affected=1", "{}", out.stderr);
    // `guard secrets` shares the affected set with the age stage.
    let (out, counts) = counted(repo.path(), &["secrets", "--commit", "HEAD"]);
    out.assert_code(0);
    assert_eq!(counts, "graphs=2 affected=1", "{}", out.stderr);
    // `guard affected` needs the old side's hosts only, not its graph.
    let (out, counts) = counted(repo.path(), &["affected", "--commit", "HEAD"]);
    out.assert_code(0);
    assert_eq!(counts, "graphs=1 affected=1", "{}", out.stderr);
}

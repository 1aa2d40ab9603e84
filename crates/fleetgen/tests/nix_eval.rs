//! Real nix evaluates a small generated fleet offline. A missing `nix`
//! fails this test (it is never skipped).

use std::process::Command;

const NIX_CONFIG: &str = "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false\nbuild-users-group =\nwarn-dirty = false";

fn nix_eval(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("nix")
        .arg("eval")
        .args(args)
        .current_dir(dir)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .expect("nix must be installed to run fleetgen's tests (scripts/install-nix)");
    assert!(
        out.status.success(),
        "nix eval {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn nix_evaluates_generated_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fleetgen::Spec {
        hosts: 8,
        modules: 16,
        files: 60,
        commits: 10,
        seed: 11,
    };
    let fleet = fleetgen::generate(dir.path(), &spec).unwrap();
    let names = nix_eval(
        dir.path(),
        &[
            "--json",
            ".#nixosConfigurations",
            "--apply",
            "builtins.attrNames",
        ],
    );
    let expected = format!(
        "[{}]",
        fleet
            .hosts
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(names, expected);

    // Every host's toplevel instantiates (modules, data and conf files are
    // all readable and the merged definitions do not conflict).
    let drvs = nix_eval(
        dir.path(),
        &[
            "--json",
            ".#nixosConfigurations",
            "--apply",
            "cs: builtins.mapAttrs (n: c: c.config.system.build.toplevel.drvPath) cs",
        ],
    );
    for h in &fleet.hosts {
        assert!(
            drvs.contains(&format!("\"{h}\":\"/nix/store/")),
            "{h}: {drvs}"
        );
    }
}

//! guard's own flake.nix (packages, apps, overlay), evaluated by real nix
//! against a stub nixpkgs: nixpkgs cannot be fetched here, so the stub's
//! `rustPlatform.buildRustPackage` returns its arguments (as a derivation-
//! shaped set) and the test checks what guard hands it.

use std::path::Path;
use std::process::Command;

use crate::support::{copy_tree, git_cmd, nix_cmd};

/// The stub: `legacyPackages.<system>` with `callPackage`, `lib.licenses`,
/// `git` and a `rustPlatform.buildRustPackage` that returns its arguments.
const STUB: &str = r#"{
  outputs = { self }:
    let
      pkgsFor = system:
        let pkgs = {
          inherit system;
          lib.licenses = { mit = { spdxId = "MIT"; }; asl20 = { spdxId = "Apache-2.0"; }; };
          git = { type = "derivation"; name = "git-stub"; outPath = "/nix/store/00000000000000000000000000000000-git-stub"; };
          rustPlatform.buildRustPackage = args: args // {
            type = "derivation";
            name = "${args.pname}-${args.version}";
            outPath = "/nix/store/00000000000000000000000000000000-${args.pname}";
            stubArgs = args;
          };
          callPackage = f: overrides:
            let fn = if builtins.isFunction f then f else import f;
            in fn (builtins.intersectAttrs (builtins.functionArgs fn) pkgs // overrides);
        }; in pkgs;
    in {
      legacyPackages = builtins.listToAttrs (map (s: { name = s; value = pkgsFor s; })
        [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ]);
    };
}
"#;

fn git(dir: &Path, args: &[&str]) {
    let out = git_cmd(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn commit_all(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "x",
        ],
    );
}

/// A git repository holding guard's flake and the sources it reads, plus
/// files its source filter must leave out (tracked, so nix sees them).
fn guard_flake_copy(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["flake.nix", "Cargo.toml", "Cargo.lock", "README.md"] {
        std::fs::copy(root.join(f), dir.join(f)).unwrap();
    }
    for d in ["nix", "src", "hooks", "crates/fleetgen/src"] {
        copy_tree(&root.join(d), &dir.join(d));
    }
    std::fs::copy(
        root.join("crates/fleetgen/Cargo.toml"),
        dir.join("crates/fleetgen/Cargo.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("examples/fleet/lib")).unwrap();
    std::fs::copy(
        root.join("examples/fleet/lib/eval.nix"),
        dir.join("examples/fleet/lib/eval.nix"),
    )
    .unwrap();
    std::fs::write(dir.join("examples/fleet/flake.nix"), "{ }\n").unwrap();
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(dir.join("tests/t.rs"), "// test\n").unwrap();
    std::fs::create_dir_all(dir.join("crates/fleetgen/target")).unwrap();
    std::fs::write(dir.join("crates/fleetgen/target/junk"), "x\n").unwrap();
    // No .gitignore here: target/ is tracked, as a careless repository
    // would have it, and the filter still leaves it out.
    commit_all(dir);
}

fn run_json(mut c: Command) -> serde_json::Value {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

#[test]
fn guards_flake_has_package_app_and_overlay_built_from_cargo_lock() {
    let _ = nix_cmd();
    let tmp = tempfile::tempdir().unwrap();
    let stub = tmp.path().join("stub-nixpkgs");
    std::fs::create_dir_all(&stub).unwrap();
    std::fs::write(stub.join("flake.nix"), STUB).unwrap();
    commit_all(&stub);
    let flake = tmp.path().join("guard");
    std::fs::create_dir_all(&flake).unwrap();
    guard_flake_copy(&flake);
    let stub_url = format!("git+file://{}", stub.display());
    let flake_url = format!("git+file://{}", flake.display());
    let with_stub = |c: &mut Command| {
        c.args(["--override-input", "nixpkgs", &stub_url])
            .arg("--no-write-lock-file");
    };

    // `nix flake show`: offline (no substituters, nixpkgs overridden).
    let mut c = nix_cmd();
    c.args(["flake", "show", "--json", &flake_url]);
    with_stub(&mut c);
    let show = run_json(c);
    let pkg = &show["packages"]["x86_64-linux"]["default"];
    assert_eq!(pkg["type"], "derivation", "{show}");
    assert_eq!(pkg["name"], "guard-0.1.0", "{show}");
    assert_eq!(
        show["apps"]["x86_64-linux"]["default"]["type"], "app",
        "{show}"
    );
    assert!(show["overlays"]["default"].is_object(), "{show}");

    // What buildRustPackage is given.
    let mut c = nix_cmd();
    c.args([
        "eval",
        "--json",
        &format!("{flake_url}#packages.x86_64-linux.default.stubArgs"),
        "--apply",
        r#"a: {
          lock = builtins.readFile a.cargoLock.lockFile;
          lockName = baseNameOf a.cargoLock.lockFile;
          fetchesByHash = a ? cargoHash || a ? cargoSha256 || a ? cargoVendorDir;
          top = builtins.attrNames (builtins.readDir a.src);
          examples = builtins.attrNames (builtins.readDir (a.src + "/examples/fleet"));
          fleetgen = builtins.attrNames (builtins.readDir (a.src + "/crates/fleetgen"));
          hasHooks = builtins.pathExists (a.src + "/hooks/pre-commit");
          mainProgram = a.meta.mainProgram;
          buildFlags = a.cargoBuildFlags;
        }"#,
    ]);
    with_stub(&mut c);
    let args = run_json(c);
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    assert_eq!(
        args["lock"],
        lock.as_str(),
        "cargoLock.lockFile is Cargo.lock"
    );
    assert_eq!(args["lockName"], "Cargo.lock");
    assert_eq!(args["fetchesByHash"], false, "{args}");
    assert_eq!(
        args["top"],
        serde_json::json!([
            "Cargo.lock",
            "Cargo.toml",
            "crates",
            "examples",
            "hooks",
            "src"
        ]),
        "the source filter keeps what cargo reads only"
    );
    assert_eq!(args["examples"], serde_json::json!(["lib"]));
    assert_eq!(args["fleetgen"], serde_json::json!(["Cargo.toml", "src"]));
    assert_eq!(args["hasHooks"], true);
    assert_eq!(args["mainProgram"], "guard");
    assert_eq!(args["buildFlags"], serde_json::json!(["--bin", "guard"]));

    // The overlay adds `guard` to a package set (a minimal one: callPackage
    // and what nix/package.nix asks for), and the app runs its binary.
    let mut c = nix_cmd();
    c.args([
        "eval",
        "--json",
        &format!("{flake_url}#overlays.default"),
        "--apply",
        r#"overlay: let
             prev = {
               lib.licenses = { mit = "MIT"; asl20 = "Apache-2.0"; };
               git = "git";
               rustPlatform.buildRustPackage = a: { name = "${a.pname}-${a.version}"; };
               callPackage = f: o: let fn = import f; in
                 fn (builtins.intersectAttrs (builtins.functionArgs fn) final // o);
             };
             final = prev // overlay final prev;
           in final.guard.name"#,
    ]);
    with_stub(&mut c);
    assert_eq!(run_json(c), "guard-0.1.0");
    let mut c = nix_cmd();
    c.args([
        "eval",
        "--json",
        &format!("{flake_url}#apps.x86_64-linux.default.program"),
    ]);
    with_stub(&mut c);
    let app = run_json(c);
    assert!(app.as_str().unwrap().ends_with("-guard/bin/guard"), "{app}");
}

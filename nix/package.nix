# guard, built with nixpkgs' Rust tooling from Cargo.lock: the crates are
# fetched as fixed-output derivations from the lock's checksums, and the
# build itself runs offline (cargo --offline against the vendored crates).
{ lib, rustPlatform, git }:

let
  root = ./..;
  # Only what cargo reads: a change to the docs, tests, examples or CI does
  # not rebuild guard. fleetgen (a workspace member and dev-dependency)
  # includes the example fleet's evaluator.
  trees = [ "src" "hooks" "crates" ];
  files = [ "Cargo.toml" "Cargo.lock" "examples/fleet/lib/eval.nix" ];
  relative = path: builtins.substring
    (builtins.stringLength (toString root) + 1)
    (builtins.stringLength (toString path))
    (toString path);
  startsWith = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
  wanted = path: type:
    let rel = relative path; in
    builtins.match "(.*/)?target(/.*)?" rel == null
    && (builtins.elem rel files
      || builtins.any (t: rel == t || startsWith (t + "/") rel) trees
      # the directories above a kept file
      || (type == "directory" && builtins.any (f: startsWith (rel + "/") f) files));
in
rustPlatform.buildRustPackage {
  pname = "guard";
  version = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).package.version;

  src = builtins.path {
    path = root;
    name = "guard-source";
    filter = wanted;
  };

  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [ "--bin" "guard" ];
  # The unit tests; the integration tests need real nix, age and fleets.
  cargoTestFlags = [ "--lib" ];
  nativeCheckInputs = [ git ];

  # guard runs the user's own nix (or $GUARD_NIX), never one of its own:
  # the nix that talks to the user's daemon and store.
  meta = {
    description = "Git-native CI runner and pre-commit guard for NixOS fleet repositories";
    license = with lib.licenses; [ mit asl20 ];
    mainProgram = "guard";
  };
}

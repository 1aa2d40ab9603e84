{
  description = "guard: git-native CI runner and pre-commit guard for NixOS fleet repositories";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      # nixpkgs.lib.genAttrs, with builtins only (the flake's structure is
      # tested against a stub nixpkgs that has no lib functions).
      forAllSystems = f: builtins.listToAttrs (map
        (system: { name = system; value = f system nixpkgs.legacyPackages.${system}; })
        systems);
    in
    {
      packages = forAllSystems (system: pkgs: {
        guard = pkgs.callPackage ./nix/package.nix { };
        default = self.packages.${system}.guard;
      });

      apps = forAllSystems (system: pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${system}.guard}/bin/guard";
        };
      });

      # `pkgs.guard` for a NixOS configuration or a dev shell.
      overlays.default = final: prev: {
        guard = final.callPackage ./nix/package.nix { };
      };
    };
}

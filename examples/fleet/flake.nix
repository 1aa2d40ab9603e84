{
  description = "Example NixOS fleet for guard: 17 hosts, secrix secrets, WireGuard mesh";

  # lib/eval.nix stands in for nixpkgs' module system so the fleet evaluates
  # and builds offline. A real fleet would have nixpkgs, secrix, ... here and
  # call nixpkgs.lib.nixosSystem instead. The one input is a second nixpkgs
  # (nixos-unstable) for environments/ai.nix, also a stand-in: a `path:`
  # input inside the repository, so nothing is downloaded.
  inputs = {
    nixpkgs_unstable.url = "path:./inputs/nixpkgs-unstable";
  };

  outputs = inputs@{ self, ... }:
    let
      # host name -> entry module (machines/<host>), from readDir.
      hosts = import ./machines;

      mkHost = name: entry:
        import ./lib/eval.nix {
          inherit name;
          modules = [ entry ];
          specialArgs = { inherit self inputs; };
        };

      # nixinate-style deploy apps (`nix run .#apps.nixinate.<host>`), as
      # the fleets this example stands for have; here they only print.
      deployApp = name: _: {
        type = "app";
        program = "${derivation {
          name = "deploy-${name}";
          system = "x86_64-linux";
          builder = "/bin/sh";
          args = [ "-c" "echo 'echo deploying ${name}' > $out" ];
        }}";
      };
    in
    {
      nixosConfigurations = builtins.mapAttrs mkHost hosts;
      apps.nixinate = builtins.mapAttrs deployApp hosts;
    };
}

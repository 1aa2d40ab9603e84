{
  description = "Example NixOS fleet for guard: 17 hosts, secrix secrets, WireGuard mesh";

  # No inputs on purpose: lib/eval.nix stands in for nixpkgs' module system so
  # the fleet evaluates and builds offline. A real fleet would have nixpkgs,
  # secrix, ... here and call nixpkgs.lib.nixosSystem instead.
  inputs = { };

  outputs = { self }:
    let
      # host name -> entry module (machines/<host>), from readDir.
      hosts = import ./machines;

      mkHost = name: entry:
        import ./lib/eval.nix {
          inherit name;
          modules = [ entry ];
          specialArgs = { inherit self; };
        };
    in
    {
      nixosConfigurations = builtins.mapAttrs mkHost hosts;
    };
}

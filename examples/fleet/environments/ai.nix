# Local AI tools, from nixpkgs-unstable through an overlay: the one place
# the fleet reaches its second nixpkgs (a guard policy can keep it off
# critical hosts).
{ inputs, pkgs, ... }:
{
  nixpkgs.overlays = [
    (final: prev: {
      unstable = inputs.nixpkgs_unstable.legacyPackages.${prev.system};
    })
  ];
  environment.systemPackages = [ "ollama-${pkgs.unstable.ollama.version}" ];
}

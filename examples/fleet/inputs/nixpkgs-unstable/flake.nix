# A stand-in for a second nixpkgs (nixos-unstable), so the example fleet
# keeps evaluating offline: a real fleet would have
#   inputs.nixpkgs_unstable.url = "github:NixOS/nixpkgs/nixos-unstable";
# It is a `path:` input inside the repository, locked by its narHash.
{
  outputs = { self }: {
    legacyPackages.x86_64-linux = {
      ollama = { pname = "ollama"; version = "0.13.0"; };
    };
  };
}

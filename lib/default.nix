# The Nix library behind the flake's `lib` output: the server, validated bundles, images, their
# Kubernetes manifests, apps and checks, for this repository's models/ and for flakes that keep
# their models elsewhere.
# Every function that builds something takes `pkgs` first: native pkgs build native outputs,
# `pkgs.pkgsCross.aarch64-multiplatform` cross-built ones.
{
  crane,
  fenix,
  advisory-db,
}:
let
  toolchain = import ./toolchain.nix { inherit fenix; };
  server = import ./server.nix { inherit crane toolchain advisory-db; };
  bundle = import ./bundle.nix;
  image = import ./image.nix;
  manifests = import ./manifests.nix;
  discover = import ./discover.nix;
  predictor = import ./predictor.nix {
    inherit (server) mkServer;
    inherit (bundle) mkBundle;
    inherit (image) mkImage;
    inherit (manifests) mkManifests;
  };
in
{
  inherit (toolchain) mkToolchain;
  inherit (server) mkServer mkCraneLib cargoChecks;
  inherit (bundle) mkBundle readBundle;
  inherit (image) mkImage;
  inherit (manifests) mkManifests;
  inherit (discover) discoverBundles;
  inherit (predictor) mkPredictor mkPredictors;
}

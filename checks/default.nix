# `nix flake check` for one system: crane's checks of the workspace, per bundle its smoke check,
# its image contents check (lib/smoke.nix, lib/image-contents.nix), the validated bundle and its
# manifests, and the NixOS VM test of the modules on the example host (nixos.nix).
{
  pkgs,
  predictorLib,
  predictors,
  exampleHost,
}:
predictorLib.cargoChecks pkgs
// {
  predictor-nixos = import ./nixos.nix { inherit pkgs exampleHost; };
}
// pkgs.lib.concatMapAttrs (name: predictor: {
  "predictor-${name}-smoke" = predictor.checks.smoke;
  "predictor-${name}-image" = predictor.checks.image;
  # The validated bundle: `predictor check` at build time.
  "predictor-${name}-bundle" = predictor.bundle;
  # Its manifests: `predictor manifests` at build time.
  "predictor-${name}-manifests" = predictor.manifests;
}) predictors

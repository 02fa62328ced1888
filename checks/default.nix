# `nix flake check` for one system: crane's checks of the workspace, and per bundle its smoke
# check and its image contents check (see smoke.nix, image-contents.nix).
{
  pkgs,
  predictorLib,
  predictors,
}:
predictorLib.cargoChecks pkgs
// pkgs.lib.concatMapAttrs (name: predictor: {
  "predictor-${name}-smoke" = predictor.checks.smoke;
  "predictor-${name}-image" = predictor.checks.image;
  # The validated bundle: `predictor check` at build time.
  "predictor-${name}-bundle" = predictor.bundle;
}) predictors

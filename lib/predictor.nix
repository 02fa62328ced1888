# mkPredictor: one bundle folder to everything a predictor is (validated bundle, image, Kubernetes
# manifests, app, checks); mkPredictors: the same for every bundle under a models directory.
{
  mkServer,
  mkBundle,
  mkImage,
  mkManifests,
}:
let
  smoke = import ./smoke.nix;
  imageContents = import ./image-contents.nix;

  mkPredictor =
    pkgs:
    {
      path,
      server ? mkServer pkgs,
      imageArgs ? { },
      manifestsArgs ? [ ],
    }:
    let
      inherit (pkgs) lib;
      native = pkgs.stdenv.buildPlatform.system == pkgs.stdenv.hostPlatform.system;
      # `predictor check` runs at build time, so it needs a server for the build machine; bundles
      # are data, the same for every platform.
      buildPkgs = if native then pkgs else pkgs.buildPackages;
      buildServer = if native then server else mkServer buildPkgs;
      bundle = mkBundle buildPkgs {
        inherit path;
        server = buildServer;
      };
      image = mkImage pkgs ({ inherit bundle server; } // imageArgs);
      # Data, written by the build machine's server, like the bundle.
      manifests = mkManifests buildPkgs {
        inherit bundle image;
        server = buildServer;
        args = manifestsArgs;
      };
      runner = buildPkgs.writeShellApplication {
        name = "predictor-${bundle.info.name}";
        runtimeInputs = [ buildServer ];
        text = ''exec predictor serve ${bundle} "$@"'';
      };
    in
    {
      inherit (bundle.info) name version;
      inherit bundle image manifests server;
      # `nix run .#predictor-<name> -- --port 9000`: serves the bundle on 127.0.0.1.
      app = {
        type = "app";
        program = lib.getExe runner;
        meta.description = "Serve the predictor bundle ${bundle.info.name} ${bundle.info.version} locally";
      };
      # Checks run the binaries, so they exist for native package sets only.
      checks = lib.optionalAttrs native {
        smoke = smoke buildPkgs {
          inherit bundle;
          server = buildServer;
        };
        image = imageContents buildPkgs { inherit image server; };
      };
    };
in
{
  /**
    Everything one bundle folder gives: `{ name, version, bundle, image, manifests, server, app,
    checks }`. `bundle` is checked by `predictor check` at build time; `image` is the OCI image for
    `pkgs`' host platform (cross-built for `pkgsCross.*`); `manifests` its Kubernetes and KServe
    manifests (lib.mkManifests); `app` is a flake app that serves the bundle locally;
    `checks.smoke` serves the bundle and compares its sample over HTTP, `checks.image`
    runs the image's entrypoint on the bundle inside the image (both for native `pkgs` only).

    # Arguments
    - `pkgs`: a nixpkgs package set, native or from `pkgsCross`.
    - `path`: the bundle folder (predictor.toml and the model file).
    - `server` (optional): the `predictor` package for `pkgs` (default: lib.mkServer pkgs).
    - `imageArgs` (optional): extra arguments of lib.mkImage (`name`, `tag`, `extraConfig`).
    - `manifestsArgs` (optional): extra arguments of `predictor manifests` (lib.mkManifests' `args`).
  */
  inherit mkPredictor;

  /**
    mkPredictor for every bundle folder under `models`, by bundle name (see lib.discoverBundles).
    The server is built once and shared.

    # Arguments
    - `pkgs`: a nixpkgs package set, native or from `pkgsCross`.
    - `bundles`: `{ <name> = <path>; }`, e.g. `lib.discoverBundles pkgs.lib ./models`.
  */
  mkPredictors =
    pkgs: bundles:
    let
      server = mkServer pkgs;
    in
    builtins.mapAttrs (_: path: mkPredictor pkgs { inherit path server; }) bundles;
}

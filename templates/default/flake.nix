{
  description = "Model bundles served by predictor: one folder under models/ per predictor";

  inputs = {
    # Where the predictor template lives; change it to your fork or mirror.
    predictor.url = "github:example/predictor";
    nixpkgs.follows = "predictor/nixpkgs";
  };

  outputs =
    { predictor, nixpkgs, ... }:
    let
      inherit (nixpkgs) lib;
      eachSystem = lib.genAttrs [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # Every folder under models/ with a predictor.toml, by name.
      bundles = predictor.lib.discoverBundles lib ./models;
      predictorsFor =
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
          server = predictor.lib.mkServer pkgs;
        in
        lib.mapAttrs (_: path: predictor.lib.mkPredictor pkgs { inherit path server; }) bundles;
      byName = suffix: f: lib.mapAttrs' (name: p: lib.nameValuePair "predictor-${name}${suffix}" (f p));
    in
    {
      # nix build .#predictor-<name>: the OCI image (docker load < result);
      # .#predictor-<name>-manifests: its Kubernetes and KServe manifests
      packages = eachSystem (
        system:
        let
          predictors = predictorsFor system;
        in
        byName "" (p: p.image) predictors // byName "-manifests" (p: p.manifests) predictors
      );
      # nix run .#predictor-<name>: serve it on 127.0.0.1:8080
      apps = eachSystem (system: byName "" (p: p.app) (predictorsFor system));
      # nix flake check: per bundle, `predictor check`, a smoke test over HTTP, the image's contents,
      # the manifests
      checks = eachSystem (
        system:
        lib.concatMapAttrs (name: p: {
          "predictor-${name}-bundle" = p.bundle;
          "predictor-${name}-smoke" = p.checks.smoke;
          "predictor-${name}-image" = p.checks.image;
          "predictor-${name}-manifests" = p.manifests;
        }) (predictorsFor system)
      );
    };
}

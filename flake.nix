{
  description = "predictor: one shared ONNX inference server, one minimal OCI image per model bundle";

  inputs = {
    # flake.lock pins the nixos-unstable revision that the pinned fenix's own lock pins.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    crane.url = "github:ipetkov/crane";
    # Pinned at a revision whose bundled stable manifest is Rust 1.95.0, as rust-toolchain.toml.
    fenix = {
      url = "github:nix-community/fenix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    # RustSec's advisories for the predictor-audit check; `nix flake update advisory-db` refreshes
    # them (a new advisory against Cargo.lock then fails the check, as it should).
    advisory-db = {
      url = "github:rustsec/advisory-db";
      flake = false;
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      crane,
      fenix,
      advisory-db,
    }:
    let
      inherit (nixpkgs) lib;
      eachSystem = lib.genAttrs [
        "x86_64-linux"
        "aarch64-linux"
      ];
      pkgsFor = system: nixpkgs.legacyPackages.${system};
      # Every folder under models/ with a predictor.toml: a new folder is new outputs.
      bundles = self.lib.discoverBundles lib ./models;
      predictorsFor = pkgs: self.lib.mkPredictors pkgs bundles;
      byName = suffix: f: lib.mapAttrs' (name: p: lib.nameValuePair "predictor-${name}${suffix}" (f p));
    in
    {
      lib = import ./lib { inherit crane fenix advisory-db; };

      overlays.default = final: _prev: { predictor = self.lib.mkServer final; };

      packages = eachSystem (
        system:
        let
          pkgs = pkgsFor system;
          native = predictorsFor pkgs;
          # aarch64 images cross-built on x86_64 (native ones are packages.aarch64-linux.*).
          cross = lib.optionalAttrs (system == "x86_64-linux") (
            byName "-aarch64" (p: p.image) (predictorsFor pkgs.pkgsCross.aarch64-multiplatform)
          );
        in
        {
          server = self.lib.mkServer pkgs;
          default = self.packages.${system}.server;
        }
        // byName "" (p: p.image) native
        // byName "-bundle" (p: p.bundle) native
        // byName "-manifests" (p: p.manifests) native
        // cross
      );

      apps = eachSystem (system: byName "" (p: p.app) (predictorsFor (pkgsFor system)));

      checks = eachSystem (
        system:
        import ./checks {
          pkgs = pkgsFor system;
          predictorLib = self.lib;
          predictors = predictorsFor (pkgsFor system);
          exampleHost = import ./modules/example.nix self;
        }
      );

      nixosModules = import ./modules { inherit self; };

      # modules/example.nix on a placeholder host (a container, so that it needs no hardware).
      nixosConfigurations.example = lib.nixosSystem {
        modules = [
          (import ./modules/example.nix self)
          {
            nixpkgs.hostPlatform = "x86_64-linux";
            boot.isContainer = true;
            system.stateVersion = lib.trivial.release;
          }
        ];
      };

      devShells = eachSystem (
        system:
        let
          pkgs = pkgsFor system;
        in
        {
          default = pkgs.mkShell {
            packages = [
              (self.lib.mkToolchain pkgs)
              pkgs.onnxruntime
              pkgs.nixfmt
              pkgs.deadnix
              # scripts/test and scripts/venv make the Python clients' virtual environments.
              pkgs.python3
            ];
            # Overrides the .cache/ path of .cargo/config.toml: nixpkgs' ONNX Runtime.
            PREDICTOR_ONNXRUNTIME = "${lib.getLib pkgs.onnxruntime}/lib/libonnxruntime.so";
          };
        }
      );

      # `nix fmt` formats the tree (nixfmt alone formats only the files it is given). Taken through
      # callPackage, which is the same package: the offline checker's stub nixpkgs has no
      # `nixfmt-tree` attribute but stubs any callPackage argument.
      formatter = eachSystem (system: (pkgsFor system).callPackage ({ nixfmt-tree }: nixfmt-tree) { });

      templates.default = {
        path = ./templates/default;
        description = "A repository of model bundles served by predictor (lib.mkPredictor)";
        welcomeText = ''
          # A repository of predictor model bundles

          Before the first `nix flake lock`: in `flake.nix`, set `inputs.predictor.url` to where
          the predictor template lives; `github:example/predictor` is a placeholder (so is the
          one in `models/README.md`). Then add one folder per model under `models/` (see
          `models/README.md`) and run `nix flake check`.
        '';
      };
    };
}

# The `predictor` server built with crane from the Cargo workspace, and crane's checks of it.
{
  crane,
  toolchain,
  advisory-db,
}:
let
  # The files of the sources, relative to the repository, in source-files.json: read here and by
  # scripts/rehearse-sandbox, which runs these checks' commands on exactly these files.
  sourceFiles = builtins.fromJSON (builtins.readFile ./source-files.json);
  repositoryFiles = map (file: ../. + "/${file}");
  # The build only sees the workspace manifests and server/ (sources, protos, tests): editing a
  # model, a README or a Nix file does not rebuild the server.
  workspaceFiles = repositoryFiles sourceFiles.workspace;
  sourceWith =
    lib: extraFiles:
    lib.fileset.toSource {
      root = ../.;
      fileset = lib.fileset.unions (workspaceFiles ++ extraFiles);
    };
  cargoSource = lib: sourceWith lib [ ];
  # The integration tests also read every bundle under models/, and replay the fuzz targets'
  # corpora (server/tests/fuzz_corpora.rs).
  testSource = lib: sourceWith lib (repositoryFiles sourceFiles.tests);
  # The bundles' files that git does not hold (their fetch.toml), put where a checkout keeps them
  # after scripts/fetch-models, before the tests run. Not in `src`: crane reads its source while
  # evaluating, which a derivation there would make an import from derivation.
  copyFetchedFiles =
    pkgs:
    pkgs.lib.concatMapStrings (fetch: ''
      cp ${fetch.file} models/${fetch.folder}/${fetch.path}
    '') ((import ./bundle.nix).fetchedFiles pkgs ../models);

  /**
    crane's library for `pkgs`, with the fenix toolchain pinned by rust-toolchain.toml. For a
    `pkgsCross` set crane cross-compiles (it sets the target and the linker from `pkgs`).

    # Arguments
    - `pkgs`: a nixpkgs package set, native or from `pkgsCross`.
  */
  mkCraneLib = pkgs: (crane.mkLib pkgs).overrideToolchain toolchain.mkToolchain;

  commonArgs = pkgs: {
    pname = "predictor";
    inherit ((pkgs.lib.importTOML ../server/Cargo.toml).package) version;
    src = cargoSource pkgs.lib;
    strictDeps = true;
  };

  # The library `ort` loads at run time (load-dynamic): nixpkgs' ONNX Runtime.
  onnxruntimeLibrary = pkgs: "${pkgs.lib.getLib pkgs.onnxruntime}/lib/libonnxruntime.so";

  # callPackage-able, so that nixpkgs splices build and host dependencies when cross compiling
  # (crane's examples/cross-rust-overlay).
  serverExpression =
    craneLib: args:
    {
      lib,
      onnxruntime,
      makeBinaryWrapper,
    }:
    craneLib.buildPackage (
      args
      // {
        cargoArtifacts = craneLib.buildDepsOnly args;
        # The tests need the models; they run in checks (cargoChecks), not here.
        doCheck = false;
        nativeBuildInputs = [ makeBinaryWrapper ];
        # A binary wrapper (no shell in images): the default library path, which
        # --onnxruntime or PREDICTOR_ONNXRUNTIME still override.
        postInstall = ''
          wrapProgram $out/bin/predictor \
            --set-default PREDICTOR_ONNXRUNTIME ${lib.getLib onnxruntime}/lib/libonnxruntime.so
        '';
        passthru = { inherit onnxruntime; };
        meta = {
          description = "One shared server for ONNX models described by predictor.toml bundles";
          license = with lib.licenses; [
            mit
            asl20
          ];
          mainProgram = "predictor";
          platforms = lib.platforms.linux;
        };
      }
    );
in
{
  inherit mkCraneLib;

  /**
    The `predictor` server for `pkgs`' host platform, wrapped so that it finds nixpkgs' ONNX
    Runtime by default. Natively built for native `pkgs`, cross-built for `pkgsCross.*`.

    # Arguments
    - `pkgs`: a nixpkgs package set, native or from `pkgsCross`.
  */
  mkServer =
    pkgs:
    let
      inherit (pkgs.stdenv) buildPlatform hostPlatform;
      # nixpkgs' onnxruntime defaults to `pythonSupport ? true`, and then its postBuild runs
      # `${python3Packages.python.interpreter} ../setup.py bdist_wheel` (nixpkgs
      # pkgs/by-name/on/onnxruntime/package.nix): the host's python, which a cross build machine
      # cannot run. The server only loads the C library. Native builds keep the default, which is
      # the one the binary cache holds.
      crossOnnxruntime = pkgs.lib.optionalAttrs (buildPlatform.system != hostPlatform.system) {
        onnxruntime = pkgs.onnxruntime.override { pythonSupport = false; };
      };
    in
    pkgs.callPackage (serverExpression (mkCraneLib pkgs) (commonArgs pkgs)) crossOnnxruntime;

  /**
    crane's checks of the workspace, named `predictor-<tool>`: clippy with warnings denied, rustfmt,
    cargo-deny (deny.toml), cargo-audit (the advisory-db of flake.lock), rustdoc, every unit and
    integration test against nixpkgs' ONNX Runtime and the bundles under models/, and the
    OpenTelemetry export's test with the `otlp` feature, and the fuzz corpora's replay with the
    `fuzzing` feature (as `scripts/test` runs them).

    # Arguments
    - `pkgs`: a native nixpkgs package set (checks run where they are built).
  */
  cargoChecks =
    pkgs:
    let
      craneLib = mkCraneLib pkgs;
      args = commonArgs pkgs;
      cargoArtifacts = craneLib.buildDepsOnly args;
      # A check's result is its success: not a copy of target/ (crane's default,
      # mkCargoDerivation's `doInstallCargoArtifacts = args.doInstallCargoArtifacts or true`).
      doInstallCargoArtifacts = false;
      testArgs = args // {
        inherit cargoArtifacts doInstallCargoArtifacts;
        src = testSource pkgs.lib;
        preCheck = copyFetchedFiles pkgs;
        # An exported variable wins over .cargo/config.toml's [env] (not part of this source).
        PREDICTOR_ONNXRUNTIME = onnxruntimeLibrary pkgs;
        # The tests run the server under taskset (thread defaults) and send it signals (kill).
        nativeBuildInputs = [
          pkgs.util-linux
          pkgs.procps
        ];
      };
    in
    {
      predictor-clippy = craneLib.cargoClippy (
        args
        // {
          inherit cargoArtifacts doInstallCargoArtifacts;
          cargoClippyExtraArgs = "--all-targets -- --deny warnings";
        }
      );
      predictor-fmt = craneLib.cargoFmt { inherit (args) pname version src; };
      # Licenses, bans and sources of the dependency graph, by deny.toml (crane's cargoDeny runs
      # `cargo deny check bans licenses sources`: no advisory database needed).
      predictor-deny = craneLib.cargoDeny {
        inherit (args) pname version;
        src = sourceWith pkgs.lib [ ../deny.toml ];
      };
      # Cargo.lock against RustSec's advisories, as locked in flake.lock.
      predictor-audit = craneLib.cargoAudit {
        inherit (args) pname version src;
        inherit advisory-db;
      };
      predictor-doc = craneLib.cargoDoc (
        args
        // {
          inherit cargoArtifacts;
          # Broken intra-doc links fail the check, as warnings fail clippy.
          RUSTDOCFLAGS = "--deny warnings";
        }
      );
      predictor-tests = craneLib.cargoTest (testArgs // { cargoTestExtraArgs = "--all-targets"; });
      # The optional feature builds, and its spans reach a collector.
      predictor-otlp = craneLib.cargoTest (
        testArgs
        // {
          cargoExtraArgs = "--locked --features otlp";
          cargoTestExtraArgs = "--test otlp";
        }
      );
      # The fuzz corpora replayed through the decoders (the `fuzzing` feature keeps their entry
      # points out of the shipped binary).
      predictor-fuzz-corpora = craneLib.cargoTest (
        testArgs
        // {
          cargoExtraArgs = "--locked --features fuzzing";
          cargoTestExtraArgs = "--test fuzz_corpora";
        }
      );
    };
}

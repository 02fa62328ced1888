# Model bundles: a folder with predictor.toml and its model, read and validated in Nix, then
# checked by `predictor check` at build time, so that a broken bundle never becomes an image.
let
  # What Nix itself must know of a bundle (names, files, labels); the server checks the rest.
  readBundle =
    lib: path:
    let
      where = toString path;
      file = path + "/predictor.toml";
      config =
        if !(builtins.pathExists path) then
          throw "predictor: bundle ${where} does not exist"
        else if !(builtins.pathExists file) then
          throw "predictor: bundle ${where} has no predictor.toml (create one with `predictor init ${where}/model.onnx`)"
        else
          lib.importTOML file;
      field =
        name:
        config.${name} or (throw "predictor: ${where}/predictor.toml: the field `${name}` is missing");
      name = field "name";
      model = field "model";
      # A text bundle's tokenizer is part of it too.
      tokenizer = config.text.tokenizer or null;
    in
    assert lib.assertMsg (
      builtins.match "[a-z0-9][a-z0-9._-]*" name != null
    ) "predictor: ${where}/predictor.toml: name \"${name}\" must match [a-z0-9][a-z0-9._-]*";
    assert lib.assertMsg (builtins.pathExists (
      path + "/${model}"
    )) "predictor: ${where}/predictor.toml: model \"${model}\" is not in the bundle folder";
    assert lib.assertMsg (
      tokenizer == null || builtins.pathExists (path + "/${tokenizer}")
    ) "predictor: ${where}/predictor.toml: text.tokenizer \"${tokenizer}\" is not in the bundle folder";
    {
      inherit path name model;
      version = field "version";
      description = config.description or "";
      modelFile = path + "/${model}";
      # The bundle's files the server reads besides predictor.toml: the model, and a text bundle's
      # tokenizer.
      dataFiles = [ (path + "/${model}") ] ++ lib.optional (tokenizer != null) (path + "/${tokenizer}");
      # As in the image's labels: a change of the model is a change of the image.
      modelSha256 = builtins.hashFile "sha256" (path + "/${model}");
    };
in
{
  /**
    Reads a bundle folder's predictor.toml in Nix: `{ path, name, version, description, model,
    modelFile, dataFiles, modelSha256 }`. Throws a message naming the folder and the field when
    predictor.toml, its name, version or model, the model file or a text bundle's tokenizer is
    missing, or the name is not URL-safe.

    # Arguments
    - `lib`: nixpkgs' lib.
    - `path`: the bundle folder.
  */
  inherit readBundle;

  /**
    The validated bundle (`.info` is lib.readBundle's answer): predictor.toml and its data files (the model, a text bundle's tokenizer; nothing else of the folder) in the
    store, checked by `predictor check` at build time (the graph matches predictor.toml, the sample
    gives its expected output). Bundles are data: build them with the native package set, also for
    cross-built images.

    # Arguments
    - `pkgs`: a package set whose `server` runs on the build machine.
    - `path`: the bundle folder.
    - `server`: the `predictor` package that checks it (lib.mkServer pkgs).
  */
  mkBundle =
    pkgs:
    { path, server }:
    let
      info = readBundle pkgs.lib path;
    in
    pkgs.runCommand "predictor-bundle-${info.name}-${info.version}"
      {
        src = pkgs.lib.fileset.toSource {
          root = path;
          fileset = pkgs.lib.fileset.unions ([ (path + "/predictor.toml") ] ++ info.dataFiles);
        };
        nativeBuildInputs = [ server ];
        # Not merged into the derivation's attributes: `name` and `version` would replace its own.
        passthru = { inherit info; };
        meta.description = "predictor bundle ${info.name} ${info.version}, checked against its graph and sample";
      }
      ''
        cp -r --no-preserve=mode "$src" "$out"
        predictor check "$out"
      '';
}

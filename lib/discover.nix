# Discovery of bundle folders: every folder under a models directory that holds a predictor.toml.
{
  /**
    The bundle folders under `dir`, by name: `{ <folder name> = <path>; }` for every subfolder with
    a predictor.toml. A new folder is a new bundle, with no edit of flake.nix. Throws when a
    folder's name differs from the `name` in its predictor.toml (outputs, images and URLs use it),
    when a folder has no predictor.toml (a half-added model should not vanish silently), or when
    the name has a `.`: the server accepts it, but `nix build .#predictor-a.b` is the attribute
    path predictor-a → b, so the bundle's outputs could not be named on the command line.

    # Arguments
    - `lib`: nixpkgs' lib.
    - `dir`: the models directory (e.g. ./models).
  */
  discoverBundles =
    lib: dir:
    let
      folders = lib.filterAttrs (_: type: type == "directory") (builtins.readDir dir);
      bundle =
        folder: _:
        let
          path = dir + "/${folder}";
          file = path + "/predictor.toml";
          shown = "${baseNameOf (toString dir)}/${folder}"; # e.g. models/iris-svc, not a store path
          inherit ((lib.importTOML file)) name;
        in
        if lib.hasInfix "." folder then
          throw "predictor: ${shown}: a bundle discovered as flake outputs cannot have a '.' in its name (`nix build .#predictor-${folder}` would read it as an attribute path); rename the folder and the name in its predictor.toml, e.g. to ${lib.replaceStrings [ "." ] [ "-" ] folder}"
        else if !(builtins.pathExists file) then
          throw "predictor: ${shown} has no predictor.toml; create one with `predictor init ${shown}/model.onnx`, or move the folder out of ${baseNameOf (toString dir)}/"
        else if name != folder then
          throw "predictor: ${shown}/predictor.toml is named \"${name}\" but its folder is \"${folder}\"; rename one so they agree"
        else
          path;
    in
    lib.mapAttrs bundle folders;
}

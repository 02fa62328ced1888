# The OCI image of one bundle as the flake evaluates it (lib/image.nix): the input of
# scripts/rehearse-image. scripts/render-rehearsals evaluates this for one image of
# packages.x86_64-linux and writes rehearsal/image/image.json.
#
# What dockerTools.buildLayeredImage was given (its `stream` keeps lib/image.nix's passthru): the
# image config, the commands that fill the last (customisation) layer, the creation time; and what
# each store path the image holds is: the server package (its `bin/predictor` is the binary
# wrapper), ONNX Runtime's library that the wrapper names, and the bundle that extraCommands copies.
{ image }:
let
  inherit (image) stream;
  inherit (stream) bundle server;
in
{
  name = image.imageName;
  tag = image.imageTag;
  inherit (stream) config extraCommands created;
  server = {
    path = toString server;
    # As lib.getLib: the `lib` output where the package has one.
    onnxruntime = "${server.onnxruntime.lib or server.onnxruntime}/lib/libonnxruntime.so";
  };
  bundle = {
    path = toString bundle;
    inherit (bundle.info) name version;
    # The folder in this repository: bundle.info.path is inside the flake's source.
    source = builtins.head (builtins.match "${builtins.storeDir}/[^/]+/(.*)" (toString bundle.info.path));
  };
}

# The OCI image of one bundle, with dockerTools.buildLayeredImage.
#
# Layering: dockerTools puts every store path of the image's closure in a layer of its own (by
# popularity, up to maxLayers) and ends with one "customisation" layer. The closure here is the
# server's (the wrapped binary, ONNX Runtime and its libraries, glibc, libgcc) and is the same for
# every bundle, so those layers are byte-identical, in the same order, in every image: registries
# and container runtimes store and pull them once. The bundle is not a store path of the image: it
# is copied to /bundle by extraCommands, so it lands in the customisation layer, always the last
# one, and a new model changes that layer only.
{
  /**
    The OCI image (a docker-archive tarball, `docker load < result`) serving one validated bundle
    from /bundle: no shell, a numeric non-root user, a fixed creation time, ports 8080 (HTTP), 8081
    (gRPC) and 8082 (metrics), OCI labels with the bundle's name, version and model hash, and a
    Docker health check that runs `predictor probe` (no curl needed).

    # Arguments
    - `pkgs`: the package set of the image's platform (native or `pkgsCross.*`).
    - `bundle`: a validated bundle (lib.mkBundle); its `.info` carries name, version, modelSha256.
    - `server`: the `predictor` package for `pkgs`' host platform (lib.mkServer pkgs).
    - `name` (optional): the image name, `predictor-<bundle name>` by default.
    - `tag` (optional): the image tag, the bundle version by default.
    - `extraConfig` (optional): merged into the OCI config (e.g. more Env or Labels).
  */
  mkImage =
    pkgs:
    {
      bundle,
      server,
      name ? "predictor-${bundle.info.name}",
      tag ? bundle.info.version,
      extraConfig ? { },
    }:
    let
      inherit (pkgs) lib;
      inherit (bundle) info;
      predictor = lib.getExe server;
      seconds = s: s * 1000000000; # Docker's health check durations are in nanoseconds
      # Fixed, so that the same inputs give the same image digest.
      created = "1970-01-01T00:00:01Z";
      # Run in the customisation layer's root: the bundle lands in the last layer as /bundle.
      extraCommands = ''
        mkdir bundle
        cp -r --no-preserve=mode ${bundle}/. bundle/
      '';
      config = lib.recursiveUpdate {
        Entrypoint = [ predictor ];
        Cmd = [
          "serve"
          "/bundle"
        ];
        Env = [
          # Reachable from outside the container; the server's own default is 127.0.0.1.
          "PREDICTOR_ADDRESS=0.0.0.0"
          "PREDICTOR_LOG_FORMAT=json"
        ];
        # nobody:nogroup, numeric: the image has no /etc/passwd to look a name up in.
        User = "65534:65534";
        ExposedPorts = {
          "8080/tcp" = { };
          "8081/tcp" = { };
          "8082/tcp" = { };
        };
        Labels = {
          "org.opencontainers.image.title" = name;
          "org.opencontainers.image.description" =
            if info.description != "" then info.description else "predictor serving ${info.name}";
          "org.opencontainers.image.version" = info.version;
          "org.opencontainers.image.licenses" = "MIT OR Apache-2.0";
          "io.predictor.bundle.name" = info.name;
          "io.predictor.bundle.version" = info.version;
          "io.predictor.model.sha256" = info.modelSha256;
          "io.predictor.server.version" = server.version;
        };
        # `predictor probe` asks GET /health; with another port set PREDICTOR_PROBE_URL as well.
        Healthcheck = {
          Test = [
            "CMD"
            predictor
            "probe"
          ];
          Interval = seconds 10;
          Timeout = seconds 5;
          StartPeriod = seconds 30;
          Retries = 3;
        };
      } extraConfig;
    in
    assert lib.assertMsg (
      bundle ? info
    ) "predictor: mkImage: `bundle` must be a bundle from lib.mkBundle, got ${bundle.name or "something else"}";
    # The meta is added to the image, not passed to buildLayeredImage: a nixpkgs whose
    # streamLayeredImage takes no `meta` argument would refuse it there.
    lib.addMetaAttrs
      {
        description = "OCI image of predictor serving ${info.name} ${info.version}";
        platforms = lib.platforms.linux;
      }
      (
        pkgs.dockerTools.buildLayeredImage {
          inherit name tag;
          inherit created;
          mtime = created;
          # Nothing linked into / (no /bin, no shell): the entrypoint is a store path.
          contents = [ ];
          inherit config extraCommands;
          # buildLayeredImage keeps these on `image.stream`; its own passthru is imageTag and stream.
          # What it was given, for rehearsal/image/render.nix.
          passthru = {
            inherit
              bundle
              server
              config
              extraCommands
              created
              ;
          };
        }
      );
}

# The Kubernetes and KServe manifests of one bundle's image, written at build time by
# `predictor manifests`: the same generator that the cargo tests run against the real server and
# tests/manifests validates against the Kubernetes and KServe schemas. Nothing here repeats a
# port, a path or a resource: the server and the bundle say them.
{
  /**
    A folder with `kubernetes.yaml` (a Deployment, a Service and a HorizontalPodAutoscaler),
    `kserve.yaml` (this template's ServingRuntime and the bundle's InferenceService) and
    `kserve-serverless.yaml` (the same for KServe's Serverless mode, on one port), which deploy
    `image` serving `bundle`: `kubectl apply -f result/kubernetes.yaml`. The manifests name the
    image `imageName:imageTag`, as `docker load` names it; pushed elsewhere, give `name` to
    lib.mkImage (e.g. through mkPredictor's `imageArgs`) or `kubectl set image`.

    # Arguments
    - `pkgs`: a package set whose `server` runs on the build machine.
    - `bundle`: a validated bundle (lib.mkBundle); its `.info` names the output.
    - `image`: the bundle's image (lib.mkImage); any platform's, as they share name and tag.
    - `server`: the `predictor` package that writes them (lib.mkServer pkgs).
    - `args` (optional): more arguments of `predictor manifests`, e.g. `[ "--max-replicas" "8" ]`.
  */
  mkManifests =
    pkgs:
    {
      bundle,
      image,
      server,
      args ? [ ],
    }:
    let
      inherit (pkgs) lib;
      inherit (bundle) info;
      command = lib.escapeShellArgs (
        [
          "manifests"
          "${bundle}"
          "--image"
          "${image.imageName}:${image.imageTag}"
        ]
        ++ args
      );
    in
    assert lib.assertMsg (
      bundle ? info
    ) "predictor: mkManifests: `bundle` must be a bundle from lib.mkBundle, got ${bundle.name or "something else"}";
    assert lib.assertMsg (
      image ? imageName && image ? imageTag
    ) "predictor: mkManifests: `image` must be an image from lib.mkImage, got ${image.name or "something else"}";
    pkgs.runCommand "predictor-${info.name}-${info.version}-manifests"
      {
        nativeBuildInputs = [ server ];
        meta.description = "Kubernetes and KServe manifests of predictor ${info.name} ${info.version}";
      }
      (
        ''
          mkdir "$out"
          predictor ${command} > "$out/kubernetes.yaml"
          predictor ${command} --kserve > "$out/kserve.yaml"
        ''
        # KEDA scales the Standard mode; Knative, which the Serverless mode runs on, scales itself.
        + lib.optionalString (!lib.elem "--keda-prometheus-url" args) ''
          predictor ${command} --kserve --serverless > "$out/kserve-serverless.yaml"
        ''
      );
}

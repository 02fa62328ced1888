# The contents check of one image: unpack the image, take its entrypoint and command from the
# image's own config, and run the entrypoint's `predictor check` on the bundle as it sits in the
# image's last layer; also refuse a shell anywhere in the image.
pkgs:
{ image, server }:
pkgs.runCommand "${image.imageName}-image-contents"
  {
    nativeBuildInputs = [
      pkgs.jq
      pkgs.gnutar
      pkgs.gzip
    ];
    meta.description = "Runs predictor check on the bundle inside ${image.imageName}'s image";
  }
  ''
    mkdir image
    tar -xf ${image} -C image
    config=image/$(jq -r '.[0].Config' image/manifest.json)
    mapfile -t layers < <(jq -r '.[0].Layers[]' image/manifest.json)

    entrypoint=$(jq -r '.config.Entrypoint[0]' "$config")
    if [ "$entrypoint" != "${pkgs.lib.getExe server}" ]; then
      echo "the image's entrypoint is $entrypoint, expected ${pkgs.lib.getExe server}" >&2
      exit 1
    fi
    for layer in "''${layers[@]}"; do
      # Listed first, on its own: a failing tar fails the check (in `tar | grep` it would read as
      # "no shell", pipefail making the pipeline merely false).
      tar -tf "image/$layer" > files
      if grep -E '(^|/)bin/(sh|bash|dash|ash|zsh)$' files; then
        echo "the image must have no shell; found one in layer $layer" >&2
        exit 1
      fi
    done

    # The bundle comes in the last layer, as /bundle (the image's command names it).
    mkdir root
    tar -xf "image/''${layers[-1]}" -C root
    bundle=$(jq -r '.config.Cmd[1]' "$config")
    "$entrypoint" check "root$bundle"
    touch "$out"
  ''

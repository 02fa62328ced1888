# The smoke check of one bundle: serve it, then `predictor probe` sends its sample over HTTP and
# compares the answer within the sample's tolerance (the comparison `predictor check` uses; both
# are covered by the cargo tests).
pkgs:
{ bundle, server }:
pkgs.runCommand "predictor-${bundle.info.name}-smoke"
  {
    nativeBuildInputs = [
      server
      pkgs.jq
    ];
    meta.description = "Serves ${bundle.info.name} and checks its sample over HTTP";
  }
  ''
    # Port 0 for every listener: a fixed port may be taken where builds share the host's network
    # (sandbox = false, or several checks at once). The server loads its models, then logs
    # "listening" with the addresses it got (as the cargo tests read them).
    predictor serve ${bundle} --log-format json --port 0 --grpc-port 0 --metrics-port 0 2>log &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT
    address=
    for _ in $(seq 1 60); do
      address=$(jq -rR 'fromjson? | select(.message == "listening") | .address' log)
      [ -n "$address" ] && break
      kill -0 "$server" 2>/dev/null || { cat log >&2; echo "predictor serve exited before it listened" >&2; exit 1; }
      sleep 1
    done
    [ -n "$address" ] || { cat log >&2; echo "predictor serve did not listen within 60 s" >&2; exit 1; }
    predictor probe --url "http://$address" ${bundle}
    touch "$out"
  ''

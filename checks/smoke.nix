# The smoke check of one bundle: serve it, then `predictor probe` sends its sample over HTTP and
# compares the answer within the sample's tolerance (the comparison `predictor check` uses; both
# are covered by the cargo tests).
pkgs:
{ bundle, server }:
pkgs.runCommand "predictor-${bundle.info.name}-smoke"
  {
    nativeBuildInputs = [ server ];
    meta.description = "Serves ${bundle.info.name} and checks its sample over HTTP";
  }
  ''
    # The build sandbox has a loopback interface of its own: the port is free. gRPC and metrics
    # take any.
    port=18080
    predictor serve ${bundle} --port "$port" --grpc-port 0 --metrics-port 0 &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT
    for _ in $(seq 1 60); do
      predictor probe --url "http://127.0.0.1:$port" >/dev/null 2>&1 && break
      kill -0 "$server" || { echo "predictor serve exited before it was healthy" >&2; exit 1; }
      sleep 1
    done
    predictor probe --url "http://127.0.0.1:$port" ${bundle}
    touch "$out"
  ''

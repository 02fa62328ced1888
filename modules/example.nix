# An example host: two predictors with monitoring, as a host's flake would declare them with this
# flake as its input `predictor`. nixosConfigurations.example evaluates it, and the VM test
# (checks/nixos.nix) runs it.
predictor:
{ config, pkgs, ... }:
let
  bundle = name: predictor.packages.${pkgs.stdenv.hostPlatform.system}."predictor-${name}-bundle";
in
{
  imports = [ predictor.nixosModules.default ];

  services.predictor = {
    instances = {
      # 8080 (HTTP), 8081 (gRPC), 8082 (metrics), on 127.0.0.1.
      iris-svc = {
        bundles = [ (bundle "iris-svc") ];
        # Bearer tokens, one per line, in a file only root reads (e.g. from sops-nix or agenix).
        authTokenFile = "/run/secrets/predictor-iris-svc-tokens";
        # Its JSON log lines, as they come, to a Vector or Logstash TCP input.
        logShipping.command = "${pkgs.netcat}/bin/nc logs.example.internal 5170";
        # Every inference as a JSON line (inputs, outputs, duration), for drift monitoring, to a
        # collector of its own; the log's command above then gets the other lines only.
        predictionLog = {
          rate = 1;
          shipping.command = "${pkgs.netcat}/bin/nc drift.example.internal 5171";
        };
      };
      # 8090, 8091, 8092: every instance needs ports of its own.
      digits-logreg = {
        bundles = [ (bundle "digits-logreg") ];
        port = 8090;
        threads = 1;
      };
    };
    monitoring = {
      prometheus.enable = true;
      grafana.enable = true;
    };
  };

  services.prometheus.enable = true;
  services.grafana = {
    enable = true;
    settings.security.secret_key = "$__file{/run/secrets/grafana-secret-key}";
    provision.datasources.settings.datasources = [
      {
        name = "Prometheus";
        type = "prometheus";
        url = "http://127.0.0.1:${toString config.services.prometheus.port}";
        isDefault = true;
      }
    ];
  };
}

# Monitoring, opt-in per host: this host's Prometheus scrapes every predictor instance and loads
# monitoring/alerts.yml; this host's Grafana gets monitoring/dashboard.json.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.predictor;
  instances = lib.filterAttrs (_: instance: instance.enable) cfg.instances;

  # Where this host's Prometheus finds an instance's metrics: a wildcard address is reached on
  # loopback, and an IPv6 address needs brackets.
  metricsTarget =
    instance:
    let
      host =
        {
          "0.0.0.0" = "127.0.0.1";
          "::" = "::1";
        }
        .${instance.address} or instance.address;
    in
    if lib.hasInfix ":" host then
      "[${host}]:${toString instance.metricsPort}"
    else
      "${host}:${toString instance.metricsPort}";

  dashboards = pkgs.linkFarm "predictor-grafana-dashboards" [
    {
      name = "predictor.json";
      path = ../monitoring/dashboard.json;
    }
  ];
in
{
  options.services.predictor.monitoring = {
    prometheus.enable = lib.mkEnableOption (
      "scraping every predictor instance by this host's Prometheus (one job `predictor-<name>` "
      + "per instance, the names monitoring/alerts.yml expects) and its alert rules"
    );
    grafana.enable = lib.mkEnableOption (
      "the predictor dashboard (monitoring/dashboard.json) in this host's Grafana; it reads any "
      + "Prometheus data source Grafana has"
    );
  };

  config = lib.mkMerge [
    (lib.mkIf cfg.monitoring.prometheus.enable {
      assertions = [
        {
          assertion = config.services.prometheus.enable;
          message = "services.predictor.monitoring.prometheus.enable adds scrape jobs and alert rules to this host's Prometheus, which is off: set services.prometheus.enable = true too (or leave it off and scrape the metrics ports from another host).";
        }
      ];
      services.prometheus = {
        scrapeConfigs = lib.mapAttrsToList (name: instance: {
          job_name = "predictor-${name}";
          static_configs = [ { targets = [ (metricsTarget instance) ]; } ];
        }) instances;
        ruleFiles = [ ../monitoring/alerts.yml ];
      };
    })
    (lib.mkIf cfg.monitoring.grafana.enable {
      assertions = [
        {
          assertion = config.services.grafana.enable;
          message = "services.predictor.monitoring.grafana.enable provisions a dashboard in this host's Grafana, which is off: set services.grafana.enable = true too.";
        }
      ];
      services.grafana.provision.dashboards.settings.providers = [
        {
          name = "predictor";
          options.path = dashboards;
        }
      ];
    })
  ];
}

# The NixOS VM test of the modules: the example host (modules/example.nix: two predictors,
# Prometheus, Grafana) boots; each predictor answers its bundles' samples (and the one with a token
# file refuses callers without a token); its journal holds JSON lines with the request ids sent;
# the log shipper forwards them; Prometheus scrapes both with the rules of monitoring/alerts.yml
# loaded; Grafana has the dashboard; restarts under a steady load (a connection per request, and
# kept-alive connections) lose no request; and stopping one predictor (with its sockets) fires
# PredictorDown for it alone.
# Ports, units, samples and the dashboard's uid come from the node's configuration and the
# repository's files, not from this file.
{ pkgs, exampleHost }:
let
  inherit (pkgs) lib;
  token = "vm-test-token-not-a-secret";
  dashboard = lib.importJSON ../monitoring/dashboard.json;
  # Grafana's "$__file{/run/secrets/x}" names the file /run/secrets/x.
  fileOf = setting: lib.removeSuffix "}" (lib.removePrefix "$__file{" setting);
in
pkgs.testers.runNixOSTest {
  name = "predictor-nixos";

  nodes.machine =
    { config, lib, ... }:
    {
      imports = [ exampleHost ];
      # Two predictors, Prometheus and Grafana.
      virtualisation.memorySize = 2048;
      environment.systemPackages = [ pkgs.curl ];

      # The example's secrets, as a secrets manager would leave them: files only their reader reads.
      systemd.tmpfiles.rules = [
        "d /run/secrets 0755 root root -"
        "f ${config.services.predictor.instances.iris-svc.authTokenFile} 0400 root root - ${token}"
        "f ${fileOf config.services.grafana.settings.security.secret_key} 0400 grafana grafana - vm-test-only-not-a-secret"
      ];
      # Its log lines into a file the test reads, instead of the example's log server (and its
      # prediction lines into a file of their own, instead of the example's drift collector).
      services.predictor.instances.iris-svc.logShipping.command =
        lib.mkForce ''tee -a "$STATE_DIRECTORY/shipped.jsonl" >/dev/null'';
      services.predictor.instances.iris-svc.predictionLog.shipping.command =
        lib.mkForce ''tee -a "$STATE_DIRECTORY/shipped.jsonl" >/dev/null'';

      # Scrape and evaluate every second, so that the test waits for PredictorDown's own `for:`
      # (2 minutes, from monitoring/alerts.yml) and little else.
      services.prometheus.globalConfig = {
        scrape_interval = "1s";
        evaluation_interval = "1s";
      };
    };

  testScript =
    { nodes, ... }:
    let
      config = nodes.machine;
      sample =
        bundle:
        let
          inherit ((lib.importTOML (bundle.info.path + "/predictor.toml")).sample)
            input
            output
            tolerance
            ;
        in
        {
          inherit (bundle.info) name;
          inherit input output tolerance;
        };
      instances = lib.mapAttrsToList (name: instance: {
        inherit name;
        inherit (instance) port;
        unit = "predictor-${name}.service";
        # The socket units that hold its listening sockets across restarts.
        sockets = map (socket: "${socket}.socket") (
          lib.attrNames (
            lib.filterAttrs (
              _: socket: (socket.socketConfig.Service or null) == "predictor-${name}.service"
            ) config.systemd.sockets
          )
        );
        token = if instance.authTokenFile != null then token else null;
        bundles = map sample instance.bundles;
        shipped =
          let
            shipper = config.systemd.services."predictor-${name}-logs" or null;
          in
          if shipper == null then
            null
          else
            "/var/lib/${shipper.serviceConfig.StateDirectory}/shipped.jsonl";
      }) config.services.predictor.instances;
      facts = {
        inherit instances;
        prometheus = "http://127.0.0.1:${toString config.services.prometheus.port}";
        grafana = "http://127.0.0.1:${toString config.services.grafana.settings.server.http_port}";
        grafana_port = config.services.grafana.settings.server.http_port;
        dashboard = {
          inherit (dashboard) uid title;
        };
      };
    in
    ''
      import json
      import shlex
      import time

      facts = json.loads(${builtins.toJSON (builtins.toJSON facts)})
      instances = facts["instances"]


      def curl(*args):
          return machine.succeed("curl -sS --fail-with-body " + " ".join(shlex.quote(a) for a in args))


      def eventually(check, timeout, what):
          deadline = time.monotonic() + timeout
          while True:
              try:
                  return check()
              except Exception as problem:
                  if time.monotonic() > deadline:
                      raise Exception(f"{what}: not within {timeout} s: {problem}")
                  time.sleep(1)


      def flat(value):
          return [x for item in value for x in flat(item)] if isinstance(value, list) else [value]


      def prometheus(path, **params):
          args = [a for k, v in params.items() for a in ("--data-urlencode", f"{k}={v}")]
          return json.loads(curl("-G", facts["prometheus"] + path, *args))["data"]


      machine.wait_for_unit("multi-user.target")
      for instance in instances:
          machine.wait_for_unit(instance["unit"])
          machine.wait_for_open_port(instance["port"])
          # Ready once every bundle is loaded and passed its sample; open without a token.
          machine.wait_until_succeeds(f"curl -sf http://127.0.0.1:{instance['port']}/v2/health/ready")

      with subtest("each predictor answers its bundles' samples"):
          for instance in instances:
              auth = ["-H", f"authorization: Bearer {instance['token']}"] if instance["token"] else []
              for bundle in instance["bundles"]:
                  url = f"http://127.0.0.1:{instance['port']}/models/{bundle['name']}/predict"
                  answer = json.loads(curl(
                      "-H", "content-type: application/json",
                      "-H", f"x-request-id: vm-{instance['name']}",
                      *auth,
                      "-d", json.dumps({"data": bundle["input"]}),
                      url,
                  ))
                  got, expected = flat(answer["prediction"]), flat(bundle["output"])
                  assert len(got) == len(expected), f"{url}: {answer} against {bundle['output']}"
                  for g, e in zip(got, expected):
                      assert abs(g - e) <= bundle["tolerance"], f"{url}: {answer} against {bundle['output']}"

      with subtest("a predictor with a token file refuses callers without a token"):
          for instance in [i for i in instances if i["token"]]:
              bundle = instance["bundles"][0]
              status = machine.succeed(
                  "curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -d "
                  + shlex.quote(json.dumps({"data": bundle["input"]}))
                  + f" http://127.0.0.1:{instance['port']}/models/{bundle['name']}/predict"
              )
              assert status == "401", f"{instance['name']} answered {status} without a token"

      with subtest("the journal holds one JSON object per line, with the request ids sent"):
          for instance in instances:
              request_id = f"vm-{instance['name']}"
              command = f"journalctl _SYSTEMD_UNIT={instance['unit']} -o cat --quiet"
              machine.wait_until_succeeds(f"{command} | grep -q {request_id}")
              records = []
              for line in machine.succeed(command).splitlines():
                  try:
                      records.append(json.loads(line))
                  except json.JSONDecodeError:
                      raise Exception(f"{instance['unit']} logged a line that is not JSON: {line!r}")
              assert any(
                  r.get("message") == "request"
                  and r.get("status") == "200"
                  and r.get("span", {}).get("request_id") == request_id
                  for r in records
              ), f"no access line with request id {request_id} in {instance['unit']}'s journal"

      with subtest("the log shipper forwards the JSON lines"):
          for instance in [i for i in instances if i["shipped"]]:
              request_id = f"vm-{instance['name']}"
              machine.wait_until_succeeds(f"grep -q {request_id} {instance['shipped']}")
              shipped = [json.loads(line) for line in machine.succeed(f"cat {instance['shipped']}").splitlines()]
              assert any(r.get("span", {}).get("request_id") == request_id for r in shipped)

      with subtest("Prometheus scrapes every predictor, with the alert rules loaded"):
          machine.wait_for_unit("prometheus.service")
          jobs = {f"predictor-{i['name']}" for i in instances}

          def all_up():
              up = {r["metric"]["job"]: r["value"][1] for r in prometheus("/api/v1/query", query='up{job=~"predictor.*"}')}
              assert up == {job: "1" for job in jobs}, f"up: {up}"

          eventually(all_up, 120, "every predictor scraped")
          groups = {g["name"] for g in prometheus("/api/v1/rules")["groups"]}
          assert {"predictor", "predictor.rules"} <= groups, f"rule groups: {groups}"

      with subtest("Grafana has the predictor dashboard"):
          machine.wait_for_unit("grafana.service")
          machine.wait_for_open_port(facts["grafana_port"])

          def dashboard():
              answer = json.loads(curl("-u", "admin:admin", f"{facts['grafana']}/api/dashboards/uid/{facts['dashboard']['uid']}"))
              assert answer["dashboard"]["title"] == facts["dashboard"]["title"], answer["dashboard"]["title"]

          eventually(dashboard, 60, "the dashboard provisioned")

      with subtest("restarts under a steady load lose no request"):
          instance = [i for i in instances if not i["token"]][0]
          bundle = instance["bundles"][0]
          url = f"http://127.0.0.1:{instance['port']}/models/{bundle['name']}/predict"
          machine.succeed("echo " + shlex.quote(json.dumps({"data": bundle["input"]})) + " > /tmp/sample.json")
          ask = "curl -s -o /dev/null -w '%{http_code}\\n' -H 'content-type: application/json' --data @/tmp/sample.json"
          # A connection per request; and one curl for 20 requests, which keeps its connection
          # (opening another after an answer says Connection: close). curl resends a request only
          # on a reused connection that closed before answering (the rehearsal's http.client callers
          # resend nothing). Each loop leaves a file when it has stopped.
          machine.succeed(
              f"(while [ ! -e /tmp/stop-load ]; do {ask} {url}; done > /tmp/per-request.log 2>&1; touch /tmp/per-request.done) >/dev/null 2>&1 &",
              f"(while [ ! -e /tmp/stop-load ]; do {ask} {' '.join([url] * 20)}; done > /tmp/kept-alive.log 2>&1; touch /tmp/kept-alive.done) >/dev/null 2>&1 &",
          )
          machine.wait_until_succeeds("[ $(wc -l < /tmp/per-request.log) -ge 20 ] && [ $(wc -l < /tmp/kept-alive.log) -ge 20 ]")
          for _ in range(3):
              machine.succeed(f"systemctl restart {instance['unit']}")
              machine.wait_until_succeeds(f"curl -sf http://127.0.0.1:{instance['port']}/v2/health/ready")
          machine.succeed("touch /tmp/stop-load")
          machine.wait_for_file("/tmp/per-request.done")
          machine.wait_for_file("/tmp/kept-alive.done")
          for log in ["/tmp/per-request.log", "/tmp/kept-alive.log"]:
              statuses = machine.succeed(f"cat {log}").split()
              assert statuses and set(statuses) == {"200"}, f"{log}: {len(statuses)} answers, not all 200: {sorted(set(statuses))}"

      with subtest("a stopped predictor fires PredictorDown, for its job only"):
          stopped, running = instances[0], instances[1:]
          # With its sockets: a scrape would otherwise start it again (socket activation).
          machine.succeed(f"systemctl stop {stopped['unit']} {' '.join(stopped['sockets'])}")

          def down_jobs():
              return {
                  a["labels"]["job"]
                  for a in prometheus("/api/v1/alerts")["alerts"]
                  if a["labels"]["alertname"] == "PredictorDown" and a["state"] == "firing"
              }

          def fired():
              assert f"predictor-{stopped['name']}" in down_jobs(), "not firing yet"

          # PredictorDown has `for: 2m`: it fires 2 minutes after the first failed scrape.
          eventually(fired, 300, f"PredictorDown for {stopped['name']}")
          assert down_jobs() == {f"predictor-{stopped['name']}"}, f"firing for {down_jobs()}"
          for instance in running:
              machine.succeed(f"curl -sf http://127.0.0.1:{instance['port']}/v2/health/ready")
    '';
}

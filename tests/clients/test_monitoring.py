"""The monitoring assets in monitoring/ against the real server and a real Prometheus (Debian's
`prometheus` package, installed by scripts/monitoring-tools): promtool checks and unit-tests the
alert rules, and each unit test is shown to catch a broken alert; Prometheus scrapes the running
predictor and loads the rules; the Grafana dashboard and the rules' tests use only metrics (and
labels) that the server really exports."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import BUNDLES, EVERY_DTYPE, read_bundle

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERTS_TEST = MONITORING / "alerts.test.yml"
DASHBOARD = MONITORING / "dashboard.json"
# The scrape job's name; alerts.yml matches job=~"predictor.*".
JOB = "predictor"
IRIS_SAMPLE = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


def tool(name):
    """The path of `prometheus` or `promtool`; skips (or fails, in CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH: run scripts/monitoring-tools (it installs Debian's prometheus package)"
        if os.environ.get("PREDICTOR_REQUIRE_MONITORING_TOOLS") == "1":
            pytest.fail(message + "; PREDICTOR_REQUIRE_MONITORING_TOOLS=1 requires it")
        pytest.skip(message)
    return path


def run(*command, cwd=MONITORING):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


# The server's exposition ------------------------------------------------------------------------

def parse_exposition(text):
    """{family: type} from the `# TYPE` lines, and {sample name: set of label names} from the
    samples of an OpenMetrics text."""
    families, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families[name] = kind
        elif line and not line.startswith("#"):
            match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
            assert match, f"not a sample line: {line!r}"
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"', match.group(2) or ""))
            samples.setdefault(match.group(1), set()).update(labels)
    return families, samples


SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}


def exported_names(families):
    """Every sample name a family of these types is exposed as (a counter `c` as `c_total`, a
    histogram `h` as `h_bucket`, `h_sum`, `h_count`), mapped to its family."""
    names = {}
    for family, kind in families.items():
        assert kind in SUFFIXES, f"{family} has type {kind}, which this test does not know"
        for suffix in SUFFIXES[kind]:
            names[family + suffix] = family
    return names


@pytest.fixture(scope="module")
def exposition(server):
    """(families, sample label names, exported sample names) of a live scrape, after a request of
    each kind, so that every labelled family has a series."""
    send_requests(server)
    text = http_get(f"http://{server.metrics}/metrics")
    assert text.rstrip().endswith("# EOF"), "an OpenMetrics exposition ends with # EOF"
    families, samples = parse_exposition(text)
    return families, samples, exported_names(families)


def send_requests(server):
    """One answered and one rejected (400) v2 inference request for iris-svc."""
    for body, expected in [(IRIS_SAMPLE, 200), ({"inputs": []}, 400)]:
        request = urllib.request.Request(
            f"http://{server.http}/v2/models/iris-svc/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        assert status == expected, f"{body} got {status}"


def model_names():
    return sorted(read_bundle(folder)["name"] for folder in [*BUNDLES, EVERY_DTYPE])


# PromQL -----------------------------------------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr):
    """The metric names an expression selects: what is left once strings, label matchers, ranges,
    grouping clauses, function calls and numbers are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?!\w)(\s*\()?", expr):
        name, call = match.groups()
        if not call and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def test_metric_names_parser():
    """The extraction itself, on the shapes the dashboard and rules use."""
    assert metric_names(
        'histogram_quantile(0.99, sum by (model, le) (rate(a_bucket{job=~"p.*", e=~"x|y{z}"}[$__rate_interval])))'
        " / on (model) group_left sum without (le) (b_sum) > bool 1e-3 or c:rec:rate5m"
    ) == {"a_bucket", "b_sum", "c:rec:rate5m"}
    assert metric_names("up == 0") == {"up"}


# Tools ------------------------------------------------------------------------------------------

def test_promtool_check_rules():
    code, output = run(tool("promtool"), "check", "rules", str(ALERTS))
    assert code == 0, output
    assert "SUCCESS" in output, output


def test_promtool_test_rules():
    code, output = run(tool("promtool"), "test", "rules", str(ALERTS_TEST))
    assert code == 0, output
    assert "SUCCESS" in output, output


def alert_rules():
    """(alert name, index among rules of that name, expr line) of every single-line alert expr."""
    text = ALERTS.read_text()
    rules = re.findall(r"^ *- alert: (\w+)\n *expr: (.+)$", text, flags=re.M)
    assert len(rules) >= 6, "alerts.yml: every alert's expr is expected on the line after its name"
    seen = {}
    found = []
    for name, expr in rules:
        found.append((name, seen.get(name, 0), expr))
        seen[name] = seen.get(name, 0) + 1
    return found


def test_every_alert_has_firing_and_silent_tests():
    text = ALERTS_TEST.read_text()
    for name in sorted({name for name, _, _ in alert_rules()}):
        cases = re.findall(rf"alertname: {name}\n *exp_alerts:( \[\])?", text)
        assert any(empty == "" for empty in cases), f"no test where {name} fires"
        assert any(empty == " []" for empty in cases), f"no test where {name} stays silent"


MUTANTS = {
    # Never true: every test where the alert fires must fail.
    "never": lambda expr: "vector(0) > 1",
    # True for any value of the series: a test where the alert stays silent must fail.
    "always": lambda expr: re.sub(r"\s*(==|>|<|>=|<=|!=)\s*[0-9.e+-]+$", " >= -1", expr),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: f"{rule[0]}-{rule[1]}")
def test_promtool_tests_catch_broken_alert(rule, mutant, tmp_path):
    """Breaking one alert's expression makes `promtool test rules` fail on that alert."""
    promtool = tool("promtool")
    name, index, expr = rule
    broken = MUTANTS[mutant](expr)
    assert broken != expr
    text = ALERTS.read_text()
    occurrences = [m.start() for m in re.finditer(rf"- alert: {name}\n *expr: ", text)]
    start = text.index(expr, occurrences[index])
    (tmp_path / "alerts.yml").write_text(text[:start] + broken + text[start + len(expr):])
    shutil.copy(ALERTS_TEST, tmp_path / "alerts.test.yml")
    code, output = run(promtool, "check", "rules", "alerts.yml", cwd=tmp_path)
    assert code == 0, f"the mutant itself must be valid:\n{output}"
    code, output = run(promtool, "test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert code != 0, f"{name} (rule {index}) with expr {broken!r}: the tests still pass:\n{output}"
    assert f"alertname: {name}," in output, output


def test_rule_tests_use_exported_metrics_and_labels(exposition):
    """The series the promtool tests feed in are named and labelled like the server's own (plus
    the job and instance labels that Prometheus adds), so the tests test the real thing."""
    _, samples, _ = exposition
    series = re.findall(r"series: '([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}'", ALERTS_TEST.read_text())
    assert len(series) >= 20
    for name, labels in series:
        if name == "up":
            continue
        assert name in samples, f"alerts.test.yml feeds {name}, which the server does not export"
        names = set(re.findall(r'(\w+)="', labels))
        extra = names - samples[name] - {"job", "instance"}
        assert not extra, f"alerts.test.yml gives {name} labels {extra} the server does not export"


# A real Prometheus ------------------------------------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    def __init__(self, folder, target):
        self.log_path = folder / "prometheus.log"
        config = folder / "prometheus.yml"
        # JSON is YAML.
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }))
        self.address = f"127.0.0.1:{free_port()}"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address={self.address}", "--log.level=info"],
                stdout=log, stderr=subprocess.STDOUT, cwd=folder,
            )

    def log(self):
        return self.log_path.read_text()[-4000:]

    def api(self, path, **params):
        url = f"http://{self.address}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        body = json.loads(http_get(url))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr):
        return self.api("query", query=expr)["result"]

    def wait(self, what, condition, seconds=20):
        """Polls condition() until it returns something true; fails with the log after `seconds`."""
        deadline = time.monotonic() + seconds
        last = None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log()}"
            try:
                last = condition()
                if last:
                    return last
            except (OSError, urllib.error.URLError) as error:
                last = error
            time.sleep(0.25)
        pytest.fail(f"after {seconds} s, {what}; last: {last}\nprometheus log:\n{self.log()}")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    tool("promtool")
    send_requests(server)
    instance = Prometheus(tmp_path_factory.mktemp("prometheus"), server.metrics)
    try:
        instance.wait("Prometheus did not answer", lambda: http_get(f"http://{instance.address}/-/ready"))
        instance.wait(
            "Prometheus did not scrape the predictor's requests",
            lambda: instance.query(f'predictor_requests_total{{job="{JOB}"}}'),
        )
        # rate() needs two samples; three scrapes leave no doubt.
        instance.wait(
            "Prometheus did not scrape three times",
            lambda: instance.query(f'count_over_time(up{{job="{JOB}"}}[1m]) >= 3'),
        )
        yield instance
    finally:
        instance.stop()


def values(results):
    return {tuple(sorted(result["metric"].items())): float(result["value"][1]) for result in results}


def test_prometheus_scrapes_the_server(prometheus, server):
    up = prometheus.query(f'up{{job="{JOB}"}}')
    assert [(result["metric"]["instance"], result["value"][1]) for result in up] == [(server.metrics, "1")]
    target = prometheus.api("targets")["activeTargets"]
    assert [(t["labels"]["job"], t["health"], t["lastError"]) for t in target] == [(JOB, "up", "")]


def test_prometheus_sees_the_requests(prometheus):
    infer = 'model="iris-svc", protocol="http", endpoint="/v2/models/{model}/infer"'
    for status in ["200", "400"]:
        found = prometheus.query(f'predictor_requests_total{{job="{JOB}", {infer}, status="{status}"}}')
        assert len(found) == 1 and float(found[0]["value"][1]) >= 1, (status, found)
    # Histograms arrive as their buckets (one per bound, +Inf last, cumulative), _sum and _count.
    buckets = prometheus.query(f'predictor_request_duration_seconds_bucket{{job="{JOB}", {infer}}}')
    bounds = sorted((float(b["metric"]["le"]), float(b["value"][1])) for b in buckets)
    assert len(bounds) >= 10 and bounds[-1][0] == float("inf"), bounds
    assert bounds[-1][1] >= 2 and [count for _, count in bounds] == sorted(count for _, count in bounds), bounds
    count = prometheus.query(f'predictor_request_duration_seconds_count{{job="{JOB}", {infer}}}')
    assert float(count[0]["value"][1]) == bounds[-1][1]
    for histogram in ["predictor_queue_duration_seconds", "predictor_inference_duration_seconds", "predictor_batch_rows"]:
        found = prometheus.query(f'sum({histogram}_bucket{{job="{JOB}", model="iris-svc", le="+Inf"}})')
        assert found and float(found[0]["value"][1]) >= 1, (histogram, found)


def test_prometheus_sees_every_model_ready(prometheus):
    ready = {dict(key)["model"]: value for key, value in values(prometheus.query(f'predictor_model_ready{{job="{JOB}"}}')).items()}
    assert ready == {name: 1.0 for name in model_names()}
    info = prometheus.query(f'predictor_model_info{{job="{JOB}"}}')
    assert sorted(i["metric"]["model"] for i in info) == model_names()
    assert all(re.fullmatch(r"[0-9a-f]{64}", i["metric"]["model_sha256"]) for i in info), info


def test_prometheus_sees_build_info(prometheus):
    build = prometheus.query(f'predictor_build_info{{job="{JOB}"}}')
    assert len(build) == 1, build
    labels = build[0]["metric"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", labels["onnxruntime"]), labels
    assert labels["version"], labels
    assert build[0]["value"][1] == "1"


def test_prometheus_loads_and_evaluates_the_rules(prometheus):
    def evaluated():
        groups = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return groups if rules and all(rule["health"] == "ok" for rule in rules) else None

    groups = prometheus.wait("the rules were not all evaluated with health ok", evaluated)
    rules = {(rule["type"], rule["name"]) for group in groups for rule in group["rules"]}
    assert {name for kind, name in rules if kind == "alerting"} == {
        "PredictorDown", "PredictorNotReady", "PredictorHighErrorRatio", "PredictorHighLatencyP99", "PredictorSaturated"}
    states = {rule["name"]: rule["state"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    assert states["PredictorDown"] == "inactive" and states["PredictorNotReady"] == "inactive", states
    assert not [a for a in prometheus.api("alerts")["alerts"] if a["labels"]["alertname"] == "PredictorDown"]
    # The recording rules work on the real labels: one queue utilisation per model, at 0.
    utilisation = prometheus.wait(
        "no queue utilisation was recorded",
        lambda: prometheus.query(f'instance_model:predictor_queue:utilisation{{job="{JOB}"}}'),
    )
    assert {dict(key)["model"]: value for key, value in values(utilisation).items()} == {name: 0.0 for name in model_names()}


def test_rules_use_only_exported_metrics(prometheus, exposition):
    """Every metric the rules read (as Prometheus parsed them) is exported, recorded by a rule, or
    Prometheus' own `up`."""
    _, _, exported = exposition
    rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
    recorded = {rule["name"] for rule in rules if rule["type"] == "recording"}
    for rule in rules:
        unknown = metric_names(rule["query"]) - exported.keys() - recorded - {"up"}
        assert not unknown, f"{rule['name']} reads {unknown}, which the server does not export"


# The dashboard ----------------------------------------------------------------------------------

def dashboard():
    return json.loads(DASHBOARD.read_text())


def dashboard_panels():
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def dashboard_exprs():
    return [(panel["title"], target["expr"]) for panel in dashboard_panels() for target in panel["targets"]]


def variable_queries():
    variables = dashboard()["templating"]["list"]
    return {v["name"]: v["query"]["query"] for v in variables if v["type"] == "query"}


def test_dashboard_shape():
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert re.fullmatch(r"label_values\(predictor_model_info(\{.*\})?, model\)", variables["model"]["query"]["query"])
    source = {"type": "prometheus", "uid": "${datasource}"}
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable.get("datasource") == source, variable["name"]
    panels = dashboard_panels()
    assert len(panels) >= 10
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"]), "panel ids repeat"
    for panel in panels:
        assert panel.get("datasource") == source, panel["title"]
        assert panel.get("targets"), panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource") == source and target["expr"].strip(), panel["title"]
    titles = " | ".join(panel["title"] for panel in panels).lower()
    for word in ["requests/s", "error ratio", "p99", "queue", "inference", "rows per run", "in flight",
                 "readiness", "load time", "build info", "model info"]:
        assert word in titles, f"no panel about {word}: {titles}"


def test_dashboard_uses_only_exported_metrics(exposition):
    _, _, exported = exposition
    used = {}
    for title, expr in dashboard_exprs():
        for name in metric_names(expr):
            used.setdefault(name, []).append(title)
    for variable, query in variable_queries().items():
        match = re.fullmatch(r"label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?, *(\w+)\)", query)
        assert match, f"variable {variable}: unexpected query {query}"
        used.setdefault(match.group(1), []).append(f"variable {variable}")
    assert len(used) >= 10, used
    unknown = {name: where for name, where in used.items() if name not in exported}
    assert not unknown, f"the dashboard uses metrics the server does not export: {unknown}\nexported: {sorted(exported)}"
    # And every family the server exports has a place on the dashboard.
    shown = {exported[name] for name in used}
    families, _, _ = exposition
    assert shown == set(families), f"not on the dashboard: {set(families) - shown}"


def test_dashboard_queries_run(prometheus):
    """Every panel's query, with the variables at "All", is valid PromQL for the real Prometheus,
    and the ones about the traffic sent return data."""
    substitutions = {"$__rate_interval": "1m", "$instance": ".*", "$model": ".+", "${datasource}": ""}
    empty = []
    for title, expr in dashboard_exprs():
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        try:
            result = prometheus.query(expr)
        except urllib.error.HTTPError as error:
            pytest.fail(f"{title}: {expr}\n{error.read().decode()}")
        if not result:
            empty.append(title)
    for title in ["Requests/s by model and status", "Requests in flight", "Model readiness", "Model load time",
                  "Servers (build info)", "Models (model info)"]:
        assert title not in empty, f"{title} shows nothing"

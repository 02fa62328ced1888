# The systemd rehearsal's checks, inside the VM (scripts/rehearse-systemd boots it): every predictor
# unit of /rehearsal/facts.json (the units as the NixOS module writes them) is up under its
# hardening, answers its bundles' samples, refuses callers without a token where it has a
# credential, logs JSON lines with the request ids it was sent, and drains and exits 0 on
# `systemctl stop`; every log shipper forwards those lines, and only JSON lines, and every prediction
# log shipper the prediction lines of those requests, which the log's shipper then leaves out; systemd-analyze
# security scores each unit. The rollover: `systemctl start` returns once the server answers; under a
# steady load on its three ports (load.py), restarts and a bundle replaced by a new version lose no
# request; the watchdog restarts a server whose model run never ends. Every wait polls up to a
# generous deadline; nothing asserts a duration.
# The verdict goes to /var/lib/rehearsal/result.json, which the host reads from the image.
import json
import os
import re
import shutil
import subprocess
import time
import tomllib
import urllib.error
import urllib.request

import load

facts = json.load(open("/rehearsal/facts.json"))
token = open("/rehearsal/token").read().strip()


def is_prediction(line):
    """A prediction log line, read as JSON (not by the prefix the units' grep matches on)."""
    try:
        return json.loads(line).get("type") == "prediction"
    except ValueError:
        return False

log, failures, exposure = [], [], {}
passed = 0


def say(message):
    print("rehearsal: " + message, flush=True)
    log.append(message)


def ok(unit, what):
    global passed
    passed += 1
    say(f"ok   {unit}: {what}")


def fail(unit, what):
    failures.append(f"{unit}: {what}")
    say(f"FAIL {unit}: {what}")


def run(*command):
    return subprocess.run(command, capture_output=True, text=True).stdout


def show(unit, *properties):
    out = run("systemctl", "show", unit, *(f"--property={p}" for p in properties))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal_tail(unit):
    lines = run("journalctl", "--unit", unit, "--lines=12", "--no-pager", "--output=short-monotonic")
    return " | ".join(lines.strip().splitlines()[-12:])


class GaveUp(Exception):
    """Waiting longer cannot help (the unit is dead)."""


def eventually(check, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except GaveUp:
            raise
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def http(method, url, body=None, headers=None):
    request = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def flat(value):
    return [x for item in value for x in flat(item)] if isinstance(value, list) else [value]


def close(got, sample):
    got, expected = flat(got), flat(sample["output"])
    tolerance = sample.get("tolerance", 0)
    return len(got) == len(expected) and all(
        (g == e) if isinstance(e, str) or isinstance(g, str) else abs(g - e) <= tolerance
        for g, e in zip(got, expected)
    )


def json_lines(text):
    bad = []
    for line in text.splitlines():
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    return bad


# What each unit is, read from its own file: a predictor runs `predictor serve` (its port and bundles
# are in ExecStart, its token file is a LoadCredential), a shipper runs a job script.
bundles = {b["path"]: b for b in facts["bundles"]}
scripts = {s["unit"]: s for s in facts["scripts"]}
predictors, shippers = [], []
def listening_port(unit, listener):
    """The port of the socket unit that holds `unit`'s `listener` socket (FileDescriptorName=)."""
    for name, text in facts["units"].items():
        if (name.endswith(".socket") and f"Service={unit}\n" in text
                and f"FileDescriptorName={listener}\n" in text):
            return int(re.search(r"^ListenStream=.*:(\d+)$", text, re.M).group(1))
    raise KeyError(f"{unit} has no socket unit named {listener}")


for name, text in facts["units"].items():
    if not name.endswith(".service"):
        continue
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    if '"serve"' in exec_start:
        paths = [p for p in re.findall(r"/nix/store/[^\s\"]+", exec_start) if p in bundles]
        predictors.append({
            "unit": name,
            "exec_start": exec_start,
            "bundle_paths": paths,
            "port": listening_port(name, "http"),
            "ports": {listener: listening_port(name, listener) for listener in ("http", "grpc", "metrics")},
            "token": "LoadCredential=" in text,
            "bundles": [
                {"name": bundles[p]["name"], **tomllib.load(open(p + "/predictor.toml", "rb"))["sample"]}
                for p in paths
            ],
        })
    elif name in scripts:
        text = scripts[name]["text"]
        shipped = re.search(r"_SYSTEMD_UNIT=(\S+)", text).group(1)
        port = re.search(r"/bin/nc \S+ (\d+)", text).group(1)
        shippers.append({
            "unit": name,
            "ships": shipped,
            "predictions": name.endswith("-predictions.service"),
            # What the log server of its `nc HOST PORT` received (rehearse-systemd's collector).
            "received": f"/var/lib/rehearsal-collector/received-{port}.log",
        })

say(run("systemctl", "--version").splitlines()[0])
pid1 = run("journalctl", "--boot", "_PID=1", "--output=cat", "--no-pager")

for p in predictors:
    unit = p["unit"]
    # systemd ignores, with a warning, a setting it does not know or cannot parse: the unit would
    # run with less hardening than written.
    warnings = [line for line in pid1.splitlines() if f"/{unit}:" in line]
    if warnings:
        fail(unit, "systemd did not take every setting of the unit file: " + " | ".join(warnings))
    else:
        ok(unit, "systemd took every setting of the unit file")

    base = f"http://127.0.0.1:{p['port']}"

    def ready():
        # Started at boot, before these checks: inactive or failed is the end (Restart=on-failure
        # shows as activating between attempts).
        state = show(unit, "ActiveState", "SubState", "NRestarts")
        if state["ActiveState"] in ("inactive", "failed"):
            raise GaveUp(f"the unit is {state['ActiveState']}")
        if state["SubState"] == "auto-restart" and int(state["NRestarts"]) >= 3:
            raise GaveUp(f"the unit failed and was restarted {state['NRestarts']} times")
        status, _ = http("GET", base + "/v2/health/ready")
        assert status == 200, status

    try:
        eventually(ready, 240)
    except Exception as problem:
        state = show(unit, "ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus", "NRestarts")
        why = str(problem) if isinstance(problem, GaveUp) else f"not within 240 s: {problem!r}"
        fail(unit, f"not ready (GET /v2/health/ready): {why}; {state}; journal: {journal_tail(unit)}")
        p["down"] = True
        continue
    ok(unit, "active, and ready on /v2/health/ready")

    # The hardening is in force on the running process, not only written down.
    state = show(unit, "MainPID", "DynamicUser", "MemoryDenyWriteExecute", "NoNewPrivileges",
                 "RestrictAddressFamilies", "SystemCallFilter", "PrivateUsers", "ProtectSystem",
                 "PrivateNetwork", "Type", "WatchdogUSec")
    status = dict(
        line.split(":", 1) for line in open(f"/proc/{state['MainPID']}/status").read().splitlines() if ":" in line
    )
    uid = status["Uid"].split()[0]
    checks = {
        "DynamicUser=yes": state.get("DynamicUser") == "yes" and uid != "0",
        "MemoryDenyWriteExecute=yes": state.get("MemoryDenyWriteExecute") == "yes",
        "NoNewPrivileges (NoNewPrivs: 1)": status.get("NoNewPrivs", "").strip() == "1",
        "a seccomp filter (Seccomp: 2)": status.get("Seccomp", "").strip() == "2",
        "RestrictAddressFamilies=AF_UNIX": state.get("RestrictAddressFamilies", "").split()
        == ["AF_UNIX"],
        "PrivateNetwork=yes (serving the sockets systemd passed)": state.get("PrivateNetwork") == "yes",
        "Type=notify with a watchdog": state.get("Type") == "notify" and state.get("WatchdogUSec") not in ("", "0", "infinity"),
        "SystemCallFilter set": len(state.get("SystemCallFilter", "")) > 0,
    }
    missing = [what for what, held in checks.items() if not held]
    if missing:
        fail(unit, f"hardening not in force: {', '.join(missing)} ({state}, uid {uid})")
    else:
        ok(unit, f"runs as dynamic user {uid} with {', '.join(checks)}")

    auth = {"authorization": f"Bearer {token}"} if p["token"] else {}
    for b in p["bundles"]:
        request_id = f"rehearsal-{unit}-{b['name']}"
        url = f"{base}/models/{b['name']}/predict"
        body = json.dumps({"data": b["input"]}).encode()
        status, answer = http("POST", url, body, {"content-type": "application/json", "x-request-id": request_id, **auth})
        if status == 200 and close(json.loads(answer)["prediction"], b):
            ok(unit, f"POST /models/{b['name']}/predict answers its sample")
        else:
            fail(unit, f"POST {url}: {status} {answer[:300]!r}, expected {b['output']}")
        status, answer = http("GET", url + "/test", None, {"x-request-id": request_id + "-test", **auth})
        if status == 200 and close(json.loads(answer)["prediction"], b):
            ok(unit, f"GET /models/{b['name']}/predict/test gives the sample's output")
        else:
            fail(unit, f"GET {url}/test: {status} {answer[:300]!r}, expected {b['output']}")
        if p["token"]:
            refused = [
                http("POST", url, body, {"content-type": "application/json", **h})[0]
                for h in ({}, {"authorization": "Bearer not-the-token"})
            ]
            if refused == [401, 401]:
                ok(unit, "refuses callers without the token (401), through LoadCredential")
            else:
                fail(unit, f"without the token / with a wrong one: {refused}, expected [401, 401]")

    command = ("journalctl", f"_SYSTEMD_UNIT={unit}", "--output=cat", "--quiet", "--no-pager")

    def logged():
        text = run(*command)
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        ids = {r.get("span", {}).get("request_id") for r in records if r.get("message") == "request"}
        wanted = {f"rehearsal-{unit}-{b['name']}" for b in p["bundles"]}
        assert wanted <= ids, (wanted - ids)
        return text

    try:
        text = eventually(logged, 60)
        bad = json_lines(text)
        if bad:
            fail(unit, f"logged lines that are not JSON: {bad[:3]}")
        else:
            ok(unit, f"its journal is JSON lines ({len(text.splitlines())}), with the request ids sent")
    except Exception as problem:
        fail(unit, f"no access line with the request ids sent in its journal: {problem!r}")

def received_lines(s):
    return open(s["received"]).read().splitlines() if os.path.exists(s["received"]) else []


# Which lines each shipper must pass on: with a prediction log shipper beside it, the log's shipper
# gets the other lines only.
splits = {s["ships"] for s in shippers if s["predictions"]}
for s in shippers:
    unit = s["unit"]
    shipped_ids = [f"rehearsal-{s['ships']}-{b['name']}" for p in predictors if p["unit"] == s["ships"] for b in p["bundles"]]
    what = "prediction lines" if s["predictions"] else "lines"

    def forwarded():
        lines = received_lines(s)
        if s["predictions"]:
            ids = {json.loads(line).get("request_id") for line in lines if is_prediction(line)}
        else:
            ids = {i for i in shipped_ids if any(i in line for line in lines)}
        assert set(shipped_ids) <= ids, "not yet"
        return lines

    try:
        lines = eventually(forwarded, 120)
        ok(unit, f"forwarded {s['ships']}'s {what} with the request ids to its log server")
        if s["predictions"]:
            others = [line for line in lines if not is_prediction(line)]
            if others:
                fail(unit, f"forwarded lines that are not prediction lines: {others[:3]}")
            else:
                ok(unit, f"forwarded prediction lines only ({len(lines)})")
        elif s["ships"] in splits:
            predictions = [line for line in lines if is_prediction(line)]
            if predictions:
                fail(unit, f"forwarded prediction lines, which have a shipper of their own: {predictions[:2]}")
            else:
                ok(unit, "left the prediction lines to their own shipper")
    except Exception:
        state = show(unit, "ActiveState", "SubState", "Result", "NRestarts")
        have = "\n".join(received_lines(s)) or "(nothing received)"
        fail(unit, f"its log server did not get the request ids {shipped_ids} within 120 s; {state}; received: {have[-300:]!r}; journal: {journal_tail(unit)}")

for unit in [p["unit"] for p in predictors] + [s["unit"] for s in shippers]:
    out = run("systemd-analyze", "security", "--no-pager", unit)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+ \w+)", out)
    if match:
        exposure[unit] = match.group(1)
        ok(unit, f"systemd-analyze security: exposure {match.group(1)}")
    else:
        fail(unit, f"systemd-analyze security gave no score: {out[-300:]!r}")

# --- The rollover: readiness, restarts and a new bundle under load, the watchdog -----------------
V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "string": "BYTES"}


def drop_in(unit, text):
    """A drop-in for `unit` (as `systemctl edit --runtime` writes), then daemon-reload; None removes it."""
    path = f"/run/systemd/system/{unit}.d/rehearsal.conf"
    if text is None:
        if os.path.exists(path):
            os.remove(path)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write(text)
    subprocess.run(["systemctl", "daemon-reload"], check=True)


def exec_start_with(p, bundles, flags=()):
    """The unit's ExecStart with other bundles, and flags added after `serve`."""
    command = p["exec_start"]
    for path in p["bundle_paths"]:
        command = command.replace(f' "{path}"', "")
    command = command.replace('"serve"', '"serve" ' + " ".join(f'"{f}"' for f in flags), 1)
    return command + "".join(f' "{b}"' for b in bundles)


def messages(unit, since):
    out = run("journalctl", f"_SYSTEMD_UNIT={unit}", f"--since=@{since:.0f}", "--output=cat", "--quiet", "--no-pager")
    return [json.loads(line).get("message") for line in out.splitlines() if line.startswith("{")]


rolled = [p for p in predictors if not p.get("down") and not p["token"]]
if not rolled:
    fail("rollover", "no predictor without a token file is up to roll over")
for p in rolled[:1]:
    unit, b = p["unit"], p["bundles"][0]
    config = tomllib.load(open(p["bundle_paths"][0] + "/predictor.toml", "rb"))
    given = config["inputs"][0]
    rows = b["input"] if isinstance(b["input"][0], list) else [b["input"]]
    infer = {"inputs": [{"name": given["name"], "datatype": V2_DATATYPES[given["dtype"]],
                         "shape": [len(rows), len(rows[0])], "data": flat(rows)}]}

    # Readiness: `systemctl start` of a Type=notify unit returns once the server said READY=1,
    # after its "listening" line; a request sent then is answered.
    subprocess.run(["systemctl", "stop", unit], check=True, timeout=120)
    since = time.time() - 1
    started = subprocess.run(["systemctl", "start", unit], timeout=300)
    listening = "listening" in messages(unit, since)
    status, _ = http("GET", f"http://127.0.0.1:{p['port']}/v2/health/ready")
    if started.returncode == 0 and listening and status == 200:
        ok(unit, "systemctl start returned once the server listened, and a request sent at once was answered")
    else:
        fail(unit, f"systemctl start: exit {started.returncode}, 'listening' logged before it returned: {listening}, ready: {status}")

    # A new version of its bundle: the same model, another version string, where a deploy would
    # put it (a new store path).
    next_bundle = f"/var/lib/rehearsal/{b['name']}-next"
    shutil.copytree(p["bundle_paths"][0], next_bundle, dirs_exist_ok=True)
    old_version = config["version"]
    new_version = old_version + "-next"
    toml_path = next_bundle + "/predictor.toml"
    text = open(toml_path).read()
    open(toml_path, "w").write(text.replace(f'version = "{old_version}"', f'version = "{new_version}"', 1))
    os.chmod(toml_path, 0o644)

    traffic = load.Load(b["name"], p["ports"], infer).start()
    def warmed():
        assert traffic.answered >= 50, "warming"

    eventually(warmed, 60)
    restarts = 0
    for _ in range(3):
        subprocess.run(["systemctl", "restart", unit], check=True, timeout=300)
        restarts += 1
        time.sleep(2)
    drop_in(unit, f"[Service]\nExecStart=\nExecStart={exec_start_with(p, [next_bundle])}\n")
    subprocess.run(["systemctl", "restart", unit], check=True, timeout=300)

    def new_version_answers():
        assert new_version in traffic.versions, traffic.versions

    try:
        eventually(new_version_answers, 60)
    except Exception:
        pass
    time.sleep(3)
    traffic.stop()
    drop_in(unit, None)
    subprocess.run(["systemctl", "restart", unit], check=True, timeout=300)
    state = show(unit, "ActiveState", "NRestarts")
    if traffic.failures:
        fail(unit, f"under load, {restarts} restarts and a new bundle lost {len(traffic.failures)} of "
             f"{traffic.answered + len(traffic.failures)} requests: {traffic.failures[:5]}")
    elif traffic.versions != {old_version, new_version}:
        fail(unit, f"under load the answers came from versions {traffic.versions}, not {old_version} then {new_version}")
    else:
        ok(unit, f"under load on its three ports ({traffic.answered} answers: per-request and kept-alive "
           f"HTTP, gRPC, scrapes), {restarts} restarts and a new bundle version lost no request; "
           f"every answer from {old_version} or {new_version}")

    # The watchdog: a server whose model run never ends (an ONNX Loop of 10^12 turns) is restarted.
    drop_in(unit, "[Service]\nWatchdogSec=3\nExecStart=\nExecStart="
            + exec_start_with(p, ["/rehearsal/long-loop"], ["--request-timeout-seconds", "2"]) + "\n")
    subprocess.run(["systemctl", "restart", unit], check=True, timeout=300)
    before = int(show(unit, "NRestarts")["NRestarts"])
    since = time.time() - 1
    hung = {"inputs": [{"name": "turns", "datatype": "INT64", "shape": [1, 1], "data": [10**12]}]}
    status, answer = http("POST", f"http://127.0.0.1:{p['port']}/v2/models/long-loop/infer",
                          json.dumps(hung).encode(), {"content-type": "application/json"})

    def restarted_by_the_watchdog():
        assert int(show(unit, "NRestarts")["NRestarts"]) > before, "not restarted yet"
        said = run("journalctl", f"--since=@{since:.0f}", "--no-pager", "--output=cat")
        assert "Watchdog timeout" in said, "no watchdog timeout in the journal"
        ready, _ = http("GET", f"http://127.0.0.1:{p['port']}/v2/health/ready")
        assert ready == 200, ready

    try:
        eventually(restarted_by_the_watchdog, 120)
        ok(unit, f"a run that never ends (answered {status} at the request timeout) stopped the "
           "watchdog's pings; systemd restarted the server, which answers again")
    except Exception as problem:
        fail(unit, f"the watchdog did not restart the hung server within 120 s: {problem!r} "
             f"(the request: {status} {answer[:200]!r}); journal: {journal_tail(unit)}")
    drop_in(unit, None)
    subprocess.run(["systemctl", "restart", unit], check=True, timeout=300)

for p in predictors:
    if p.get("down"):
        continue
    unit = p["unit"]
    subprocess.run(["systemctl", "stop", unit], timeout=120)
    state = show(unit, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    lines = [json.loads(line).get("message") for line in run(
        "journalctl", f"_SYSTEMD_UNIT={unit}", "--output=cat", "--quiet", "--no-pager").splitlines() if line.startswith("{")]
    drained = any(m and m.startswith("shutting down") for m in lines) and "stopped" in lines
    # ExecMainCode 1 is CLD_EXITED: the server exited by itself, not by systemd's SIGKILL.
    if state == {"ActiveState": "inactive", "Result": "success", "ExecMainCode": "1", "ExecMainStatus": "0"} and drained:
        ok(unit, "systemctl stop: it drained (\"shutting down\" ... \"stopped\") and exited 0")
    else:
        fail(unit, f"systemctl stop: {state}, shutdown lines {drained}; journal: {journal_tail(unit)}")

for s in shippers:
    unit = s["unit"]

    def got_stop():
        records = [json.loads(line) for line in received_lines(s)]
        assert any(r.get("message") == "stopped" for r in records)

    if not s["predictions"]:
        try:
            eventually(got_stop, 60)
            ok(unit, f"forwarded {s['ships']}'s last line (\"stopped\")")
        except Exception as problem:
            fail(unit, f"the log server did not get {s['ships']}'s \"stopped\" line: {problem!r}")
    subprocess.run(["systemctl", "stop", unit], timeout=60)
    state = show(unit, "ActiveState", "Result")
    if state == {"ActiveState": "inactive", "Result": "success"}:
        ok(unit, "systemctl stop: stopped cleanly")
    else:
        fail(unit, f"systemctl stop: {state}; journal: {journal_tail(unit)}")

for s in shippers:
    text = "\n".join(received_lines(s))
    bad = json_lines(text)
    if bad or not text:
        fail(s["unit"], f"its log server received lines that are not JSON (or nothing): {bad[:3]}")
    else:
        ok(s["unit"], f"its log server received only JSON lines ({len(text.splitlines())})")

os.makedirs("/var/lib/rehearsal", exist_ok=True)
with open("/var/lib/rehearsal/result.json", "w") as f:
    json.dump({"log": log, "failures": failures, "exposure": exposure, "passed": passed,
               "systemd": log[0]}, f)
    f.flush()
    os.fsync(f.fileno())
os.sync()
say(f"done: {passed} passed, {len(failures)} failed")

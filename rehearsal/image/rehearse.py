"""The image rehearsal (scripts/rehearse-image runs it as root, with the clients' Python).

Builds a docker-archive image the way dockerTools.buildLayeredImage builds the flake's
(pkgs/build-support/docker: one layer per store path, the customisation layer last), from
rehearsal/image/image.json (lib/image.nix as the flake evaluates it: config, extraCommands,
store paths) and this machine's files: the release binary, ONNX Runtime's library from the wheel,
Debian's C and C++ runtime libraries. Then `podman load`, a run as the generated Kubernetes
Deployment runs the container, and checks against it. Each failure prints one line
`rehearse-image: FAIL: <what>`; the exit status is 1 if any check failed.

The closure is laid out as Nix lays it out: nothing outside /nix/store but /bundle. The binaries
are Debian's builds, so they are pointed at the store as Nix points its own: patchelf sets the
interpreter and the RUNPATH to a store path of Debian's libraries, and bin/predictor is a
compiled wrapper, as makeBinaryWrapper writes it (set PREDICTOR_ONNXRUNTIME unless set, exec the
real binary beside it): the image has no shell for a script wrapper.
"""

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.request
from datetime import datetime
from pathlib import Path

import yaml

# What the Nix store is: read-only files and folders, owned by root in the image's layers.
STORE = "/nix/store"
NIX_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
# The runtime flags this machine needs (docs/verification.md): crun refuses the VM's cgroup
# layout; podman's default limits exceed its hard limits; the container's log in a file of
# podman's own, complete when the container has exited (Debian's default is journald, which may
# lag or not run at all).
MACHINE_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                 "--log-driver", "k8s-file"]
READY_DEADLINE_SECONDS = 120

failures = []


def fail(what):
    print(f"rehearse-image: FAIL: {what}", flush=True)
    failures.append(what)


def ok(what):
    print(f"rehearse-image: ok: {what}", flush=True)


def run(*command, check=True, **kwargs):
    return subprocess.run(command, check=check, text=True, capture_output=True, **kwargs)


def store_path(name):
    """A store path whose hash is made from its name, as render-rehearsals writes them."""
    digest = hashlib.sha256(name.encode()).digest()
    return f"{STORE}/" + "".join(NIX_ALPHABET[b % 32] for b in digest[:32]) + "-" + name


# --- The closure --------------------------------------------------------------------------------


def shared_libraries(*objects):
    """Debian's libraries that `objects` load (ldd), by their file name as they are asked for."""
    found = {}
    for obj in objects:
        for line in run("ldd", obj).stdout.splitlines():
            match = re.match(r"\s*(\S+) => (/\S+)", line) or re.match(r"\s*(/\S+)()", line)
            if match:
                path = match.group(2) or match.group(1)
                found[os.path.basename(match.group(1))] = path
    return found


def stage_closure(root, facts, binary, onnxruntime, work):
    """The store paths of the image: Debian's libraries, ONNX Runtime, the server package."""
    libraries = store_path("debian-12-runtime-libraries")
    os.makedirs(root + libraries + "/lib")
    for name, path in sorted(shared_libraries(binary, onnxruntime).items()):
        shutil.copy(path, root + libraries + "/lib/" + name)
    interpreter = libraries + "/lib/ld-linux-x86-64.so.2"
    if not os.path.exists(root + interpreter):
        sys.exit("rehearse-image: ldd named no ld-linux-x86-64.so.2 (x86_64 only)")

    server = facts["server"]["path"]
    library = facts["server"]["onnxruntime"]
    os.makedirs(root + os.path.dirname(library))
    shutil.copy(onnxruntime, root + library)
    run("patchelf", "--set-rpath", libraries + "/lib", root + library)

    os.makedirs(root + server + "/bin")
    wrapped = server + "/bin/.predictor-wrapped"
    shutil.copy(binary, root + wrapped)
    run("patchelf", "--set-interpreter", interpreter, "--set-rpath", libraries + "/lib", root + wrapped)
    # The C program makeBinaryWrapper (makeCWrapper) generates for `--set-default
    # PREDICTOR_ONNXRUNTIME <library>`: set it unless set, argv[0] the real binary, execv.
    source = work / "wrapper.c"
    source.write_text(
        "#include <stdlib.h>\n#include <unistd.h>\n#include <stdio.h>\n"
        "int main(int argc, char **argv) {\n"
        f'    if (setenv("PREDICTOR_ONNXRUNTIME", "{library}", 0) != 0) {{ perror("setenv"); return 1; }}\n'
        f'    argv[0] = "{wrapped}";\n'
        f'    execv("{wrapped}", argv);\n'
        f'    perror("{wrapped}");\n'
        "    return 1;\n}\n"
    )
    run("cc", "-O2", "-o", root + server + "/bin/predictor", str(source),
        f"-Wl,--dynamic-linker={interpreter}", f"-Wl,-rpath,{libraries}/lib")

    # The store's modes: nothing writable, programs and folders executable.
    for path in [libraries, os.path.dirname(os.path.dirname(library)), server]:
        for folder, dirs, files in os.walk(root + path):
            for name in files:
                file = os.path.join(folder, name)
                os.chmod(file, 0o555 if os.access(file, os.X_OK) else 0o444)
            os.chmod(folder, 0o555)
    return [libraries, os.path.dirname(os.path.dirname(library)), server]


def stage_bundle(facts, repo, work):
    """The bundle as lib.mkBundle leaves it: predictor.toml and its data files (the model, a text
    bundle's tokenizer, an image bundle's sample images), read-only."""
    bundle = work / "bundle"
    source = repo / facts["bundle"]["source"]
    config = tomllib.load(open(source / "predictor.toml", "rb"))
    tokenizer = [config["text"]["tokenizer"]] if "text" in config else []
    images = config["sample"]["input"] if "image" in config else []
    bundle.mkdir()
    for name in ["predictor.toml", config["model"], *tokenizer, *images]:
        shutil.copy(source / name, bundle / name)
        os.chmod(bundle / name, 0o444)
    os.chmod(bundle, 0o555)
    return bundle


# --- The archive --------------------------------------------------------------------------------


def store_layer(root, path, mtime):
    """One store path's layer, as stream_layered_image.py writes it: /nix and /nix/store first,
    then the path's files sorted, owned by root, with the creation time as their mtime."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for folder in ("/nix", STORE):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        top = Path(root + path)
        for file in sorted([top, *top.rglob("*")]):
            info = tar.gettarinfo(str(file), arcname="/" + str(file.relative_to(root)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = mtime
            if info.isfile():
                with open(file, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def customisation_layer(extra_commands, work, mtime):
    """The last layer: extraCommands run in an empty folder (umask 022, as in the Nix sandbox),
    then `tar --sort name --numeric-owner --mtime @<created> --hard-dereference` under fakeroot."""
    layer = work / "customisation"
    layer.mkdir()
    subprocess.run(["bash", "-euc", "umask 022\n" + extra_commands], cwd=layer, check=True)
    tarball = work / "customisation.tar"
    subprocess.run(["tar", "--sort=name", "--numeric-owner", "--owner=0", "--group=0",
                    f"--mtime=@{mtime}", "--hard-dereference", "-cf", str(tarball), "."],
                   cwd=layer, check=True)
    return tarball.read_bytes()


def write_archive(path, facts, config, layers, mtime):
    created = facts["created"]
    image = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest() for layer, _ in layers]},
        "history": [{"created": created, "comment": comment} for _, comment in layers],
    }
    image_json = json.dumps(image, indent=4).encode()
    config_name = hashlib.sha256(image_json).hexdigest() + ".json"
    names = [hashlib.sha256(layer).hexdigest() + "/layer.tar" for layer, _ in layers]
    manifest = [{"Config": config_name, "RepoTags": [f"{facts['name']}:{facts['tag']}"], "Layers": names}]

    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), mtime
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w") as tar:
        for (layer, _), name in zip(layers, names):
            add(tar, name, layer)
        add(tar, config_name, image_json)
        add(tar, "manifest.json", json.dumps(manifest, indent=4).encode())


def build_image(args, facts, work):
    """The docker-archive of the rendered image; `--break` changes what lib/image.nix would."""
    config = json.loads(json.dumps(facts["config"]))
    extra_commands = "\n".join(facts["extraCommands"])
    if args.broken == "bundle-unreadable":
        extra_commands += "\nchmod -R go-rwx bundle\n"
    elif args.broken == "entrypoint":
        config["Entrypoint"] = [facts["server"]["path"] + "/bin/predictor-server"]
    elif args.broken == "healthcheck":
        config["Healthcheck"]["Test"] = ["CMD-SHELL", "predictor probe"]

    root = str(work / "root")
    store_paths = stage_closure(root, facts, args.binary, args.onnxruntime, work)
    bundle = stage_bundle(facts, args.repo, work)
    # The bundle's store path is the staged folder here: the commands copy from it.
    extra_commands = extra_commands.replace(facts["bundle"]["path"], str(bundle))
    mtime = int(datetime.fromisoformat(facts["created"].replace("Z", "+00:00")).timestamp())
    layers = [(store_layer(root, path, mtime), f"store paths: ['{path}']") for path in store_paths]
    layers.append((customisation_layer(extra_commands, work, mtime), "customisation"))
    archive = work / "image.tar"
    write_archive(archive, facts, config, layers, mtime)
    return archive, config, layers


# --- The container ------------------------------------------------------------------------------


def deployment(binary, onnxruntime, bundle, image):
    """The Deployment that `predictor manifests` writes for this bundle and image."""
    written = run(binary, "manifests", bundle, "--image", image,
                  env={**os.environ, "PREDICTOR_ONNXRUNTIME": onnxruntime}).stdout
    for document in yaml.safe_load_all(written):
        if document and document["kind"] == "Deployment":
            return document["spec"]["template"]["spec"]
    sys.exit("rehearse-image: predictor manifests wrote no Deployment")


def podman_run(name, image, pod):
    """`podman run` as the Deployment runs the container: its environment, its security context,
    its memory limit; the image's own entrypoint, command and user. Returns the host ports."""
    container = pod["containers"][0]
    security = container["securityContext"]
    flags = [*MACHINE_FLAGS, "--name", name, "--detach"]
    if security.get("readOnlyRootFilesystem"):
        # Kubernetes mounts no tmpfs of its own: podman's default /tmp, /run, /var/tmp neither.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    if security.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    for capability in security.get("capabilities", {}).get("drop", []):
        flags += ["--cap-drop", capability.lower()]
    for variable in container["env"]:
        flags += ["--env", f"{variable['name']}={variable['value']}"]
    memory = container["resources"]["limits"]["memory"]
    flags += ["--memory", memory.replace("Mi", "m").replace("Gi", "g")]
    for port in container["ports"]:
        # The host port is podman's choice: one picked here could be taken before podman binds it.
        flags += ["--publish", f"127.0.0.1::{port['containerPort']}"]
    result = run("podman", "run", *flags, image, check=False)
    if result.returncode != 0:
        # podman's own error, without its complaints about systemd timers (no systemd here).
        lines = result.stderr.strip().splitlines()
        fail(f"podman run failed: {' '.join([l for l in lines if l.startswith('Error')] or lines)}")
        return None
    ports = {}
    for port in container["ports"]:
        published = run("podman", "port", name, f"{port['containerPort']}/tcp", check=False)
        # None when the container has already exited: waiting for it to be ready says why.
        for address in published.stdout.split()[:1]:
            ports[port["name"]] = int(address.rsplit(":", 1)[1])
    return ports


def inspect(name):
    result = run("podman", "inspect", name, check=False)
    return json.loads(result.stdout)[0] if result.returncode == 0 else None


def logs(name, lines=5):
    result = run("podman", "logs", "--tail", str(lines), name, check=False)
    return " | ".join((result.stdout + result.stderr).strip().splitlines())


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.status, answer.read().decode()


def wait_until_ready(name, ports, container):
    """Polls the Deployment's readiness probe until it answers 200."""
    probe = container["readinessProbe"]["httpGet"]
    deadline = time.monotonic() + READY_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        state = inspect(name)
        if state is None or not state["State"]["Running"]:
            status = state["State"]["ExitCode"] if state else "gone"
            fail(f"the container exited (status {status}) before it was ready; its last lines: {logs(name)}")
            return False
        try:
            port = ports.get(probe["port"])
            if port and get(f"http://127.0.0.1:{port}{probe['path']}", timeout=2)[0] == 200:
                ok(f"the container is ready (GET {probe['path']}, the readiness probe)")
                return True
        except OSError:
            pass
        time.sleep(0.5)
    fail(f"the container was not ready within {READY_DEADLINE_SECONDS} s; its last lines: {logs(name)}")
    return False


# --- The checks ---------------------------------------------------------------------------------


def check_layers(layers, archive):
    """No shell in any layer; the last layer holds the bundle and nothing else."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        names = manifest[0]["Layers"]
        for index, name in enumerate(names):
            members = tarfile.open(fileobj=tar.extractfile(name)).getnames()
            shells = [m for m in members if re.search(r"(^|/)bin/(sh|bash|dash|ash|zsh)$", m)]
            if shells:
                fail(f"layer {index + 1} holds a shell: {shells[0]}")
            if index == len(names) - 1:
                others = [m for m in members if m not in (".", "./bundle") and not m.startswith("./bundle/")]
                if others or "./bundle" not in members:
                    fail(f"the last layer must hold /bundle only; it holds {others or members}")
                else:
                    ok(f"the last layer holds only /bundle ({len(members) - 2} files)")
    ok(f"no shell in the image's {len(names)} layers")


def check_answers(args, facts, ports):
    import numpy as np
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    # The seed API's sample, compared within its tolerance, by the server's own probe.
    probe = run(args.binary, "probe", "--url", f"http://127.0.0.1:{ports['http']}",
                str(args.repo / facts["bundle"]["source"]), check=False,
                env={**os.environ, "PREDICTOR_ONNXRUNTIME": args.onnxruntime})
    if probe.returncode == 0:
        ok("the seed API answers the bundle's sample (predictor probe)")
    else:
        fail(f"predictor probe of the sample failed: {(probe.stdout + probe.stderr).strip()}")

    bundle = tomllib.load(open(args.repo / facts["bundle"]["source"] / "predictor.toml", "rb"))
    model = facts["bundle"]["name"]
    first = bundle["inputs"][0]
    sample = np.array(bundle["sample"]["input"], dtype=first["dtype"])
    expected = np.array(bundle["sample"]["output"], dtype=np.float64)
    output = bundle["prediction"]
    for protocol, client, module, port in [
        ("v2 REST", httpclient.InferenceServerClient, httpclient, ports["http"]),
        ("gRPC", grpcclient.InferenceServerClient, grpcclient, ports["grpc"]),
    ]:
        try:
            triton = client(f"127.0.0.1:{port}")
            if not triton.is_model_ready(model):
                fail(f"{protocol}: model {model} not ready")
                continue
            tensor = module.InferInput(first["name"], list(sample.shape), "FP32")
            tensor.set_data_from_numpy(sample)
            answer = triton.infer(model, [tensor], outputs=[module.InferRequestedOutput(output)])
            got = answer.as_numpy(output)
            if np.allclose(got, expected, atol=bundle["sample"]["tolerance"]):
                ok(f"{protocol} (tritonclient) answers the sample")
            else:
                fail(f"{protocol} answered {got.tolist()}, expected {expected.tolist()}")
        except Exception as error:  # the client's own exception types differ per protocol
            fail(f"{protocol} (tritonclient): {error}")

    try:
        status, text = get(f"http://127.0.0.1:{ports['metrics']}/metrics")
        if status == 200 and "predictor_requests_total" in text:
            ok("the metrics port answers /metrics")
        else:
            fail(f"the metrics port answered {status} without predictor_requests_total")
    except OSError as error:
        fail(f"the metrics port: {error}")


def check_container(name, config, pod):
    """The image's health check, the user, the read-only root, no shell to exec."""
    health = run("podman", "healthcheck", "run", name, check=False)
    if health.returncode == 0:
        ok(f"podman healthcheck run: healthy ({' '.join(config['Healthcheck']['Test'][1:])})")
    else:
        fail(f"the image's health check {config['Healthcheck']['Test']} is not healthy: "
             f"{(health.stdout + health.stderr).strip()}")

    # Kubernetes' runAsNonRoot can only verify a numeric user; the Deployment names the same one.
    user = config.get("User", "")
    wanted = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    if user != wanted:
        fail(f"the image's User is {user!r}; the Deployment runs the server as {wanted} (numeric, non-root)")

    pid = inspect(name)["State"]["Pid"]
    if not pid:
        fail(f"the container is not running; its last lines: {logs(name)}")
        return
    status = Path(f"/proc/{pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
    user = config["User"].split(":")
    if set(uids) == {user[0]} and set(gids) == {user[1]}:
        ok(f"the server runs as {config['User']} (the image's User)")
    else:
        fail(f"the server runs as uid {uids} gid {gids}, not the image's User {config['User']}")

    root = [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
    options = next((fields[5] for fields in root if fields[4] == "/"), "")
    if "ro" in options.split(","):
        ok("the root file system is read-only")
    else:
        fail(f"the root file system is mounted {options}, not read-only")

    shell = run("podman", "exec", name, "/bin/sh", "-c", "true", check=False)
    if shell.returncode != 0:
        ok("no /bin/sh to exec in the container")
    else:
        fail("podman exec ... /bin/sh ran a shell in the container")


def check_stop(name, grace):
    """`podman stop` with the Deployment's grace period: the server drains and exits 0."""
    started = time.monotonic()
    run("podman", "stop", "--time", str(grace), name, check=False)
    took = time.monotonic() - started
    state = inspect(name)["State"]
    if state["ExitCode"] == 0:
        ok(f"podman stop: drained and exited 0 in {took:.1f} s (grace period {grace} s)")
    else:
        fail(f"podman stop: exit status {state['ExitCode']} after {took:.1f} s (grace period {grace} s); "
             f"its last lines: {logs(name)}")
    # The server's own account: SIGTERM reached it (podman's StopSignal), not the kill after the
    # grace period.
    messages = [json.loads(line).get("message") for line in logs(name, 50).split(" | ")
                if line.startswith("{")]
    if not any(m and m.startswith("shutting down") for m in messages) or "stopped" not in messages:
        fail(f"podman stop: the server did not log its drain and stop: {logs(name)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--onnxruntime", required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--break", dest="broken", choices=["bundle-unreadable", "entrypoint", "healthcheck"])
    args = parser.parse_args()

    facts = json.load(open(args.repo / "rehearsal/image/image.json"))
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    archive, config, layers = build_image(args, facts, args.work)
    print(f"rehearse-image: built {archive.name}: {len(layers)} layers, "
          f"{archive.stat().st_size // 2**20} MiB", flush=True)
    check_layers(layers, archive)

    tag = f"{facts['name']}:{facts['tag']}"
    name = f"rehearse-{facts['name']}"
    run("podman", "rm", "--force", "--ignore", name, check=False)
    run("podman", "rmi", "--force", "--ignore", tag, check=False)
    loaded = run("podman", "load", "--input", str(archive), check=False)
    if loaded.returncode != 0:
        fail(f"podman load refused the archive: {loaded.stderr.strip()}")
        return 1
    ok(f"podman load: {loaded.stdout.strip()}")
    pod = deployment(args.binary, args.onnxruntime, str(args.repo / facts["bundle"]["source"]), tag)
    try:
        ports = podman_run(name, tag, pod)
        if ports is not None and wait_until_ready(name, ports, pod["containers"][0]):
            check_answers(args, facts, ports)
            check_container(name, config, pod)
            check_stop(name, pod["terminationGracePeriodSeconds"])
    finally:
        run("podman", "rm", "--force", "--ignore", name, check=False)
        run("podman", "rmi", "--force", "--ignore", tag, check=False)
    if failures:
        print(f"rehearse-image: {len(failures)} check(s) failed", flush=True)
        return 1
    print("rehearse-image: the image passed every check", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

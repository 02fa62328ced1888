"""The server's own OpenAPI document (/openapi.json), checked by schemathesis against the live
server: generated valid and invalid requests to every operation, and no answer may be a 5xx or
differ from the document (status, content type, headers, body schema). Bounded, with a fixed seed
so that CI is repeatable (SCHEMATHESIS_SEED picks another; SCHEMATHESIS_MAX_EXAMPLES more cases).

Left out: `positive_data_acceptance`. A v2 request that fits the document can still not fit the
model (its input names, datatypes and shapes are the model's), and the server rightly answers 400.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BUNDLES, Server

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
TOKEN = "s3cret-token-for-the-tests-0123"


def schemathesis(server, workdir, *options):
    command = [
        str(SCHEMATHESIS), "run", f"http://{server.http}/openapi.json",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"),
        "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261124"),
        # One worker: schemathesis' own generator is not reliable across threads here.
        "--workers", "1",
        *options,
    ]
    # In `workdir`: schemathesis leaves its .schemathesis folder where it runs.
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=workdir,
                         env={**os.environ, "NO_COLOR": "1"})
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, f"{summary}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    assert " passed" in run.stdout and "0 passed" not in summary, run.stdout[-2000:]


def test_every_operation_keeps_to_the_document(server, tmp_path):
    schemathesis(server, tmp_path)


def test_with_tokens_the_document_and_the_server_agree_on_authentication(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o600)
    # One model: the seed routes at the root answer too.
    guarded = Server([next(b for b in BUNDLES if b.name == "iris-svc")], ["--auth-token-file", str(tokens)])
    try:
        schemathesis(guarded, tmp_path, "--header", f"Authorization: Bearer {TOKEN}")
    finally:
        guarded.stop()

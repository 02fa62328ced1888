"""What the text bundles' tests share: a JSON POST, and the v2 text input in each encoding
tritonclient has (not in conftest.py, which the KServe, docs and perf_analyzer suites import
without tritonclient)."""

import json
import urllib.error
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def text_client_and_input(server, protocol, texts):
    """A tritonclient for `protocol` ("http-json", "http-binary" or "grpc"), its module, and the
    v2 BYTES input "text" holding `texts`, one per row, in that protocol's encoding."""
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(server.grpc if protocol == "grpc" else server.http)
    text = module.InferInput("text", [len(texts)], "BYTES")
    values = np.array([value.encode() for value in texts], dtype=np.object_)
    if protocol == "http-json":
        text.set_data_from_numpy(values, binary_data=False)
    else:
        text.set_data_from_numpy(values)
    return module, client, text


def post(server, path, body):
    """POSTs `body` as JSON to the server's HTTP port: (status, the answer's JSON)."""
    request = urllib.request.Request(
        f"http://{server.http}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())

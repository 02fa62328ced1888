"""The v2 text input of the text bundles' tests, in each encoding tritonclient has (not in
conftest.py, which the KServe, docs and perf_analyzer suites import without tritonclient)."""

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

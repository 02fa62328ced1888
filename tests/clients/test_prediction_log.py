"""The prediction log against the answers the callers got: the seed API, tritonclient over HTTP
and gRPC (BYTES included), each line parsed and matched by request id to its answer; its
sampling rate, redaction and size limit; and its own stream, apart from the server's log."""

import json
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import REPO, Server, read_bundle

IRIS = REPO / "models/iris-svc"
TEXT = REPO / "models/support-tickets-tfidf"


def records(path, count):
    """The log's lines once `count` are there (each written after its answer: poll)."""
    deadline = time.monotonic() + 30
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


def seed_predict(server, rows, request_id):
    request = urllib.request.Request(
        f"http://{server.http}/models/iris-svc/predict",
        data=json.dumps({"data": rows}).encode(),
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
    )
    with urllib.request.urlopen(request) as response:
        assert response.headers["x-request-id"] == request_id
        return json.load(response)["prediction"]


def test_every_line_is_the_inference_its_caller_got(tmp_path):
    log = tmp_path / "predictions.jsonl"
    server = Server([IRIS, TEXT], ["--prediction-log-rate", "1", "--prediction-log-file", str(log)])
    try:
        rows = read_bundle(IRIS)["sample"]["input"]
        answers = {"seed-1": seed_predict(server, rows[:1], "seed-1")}
        array = np.array(rows, dtype=np.float32)
        for protocol, module, url in (("http", httpclient, server.http), ("grpc", grpcclient, server.grpc)):
            client = module.InferenceServerClient(url=url)
            tensor = module.InferInput("input", list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            result = client.infer("iris-svc", [tensor], request_id=f"{protocol}-1")
            answers[f"{protocol}-1"] = result.as_numpy("probabilities").tolist()
        texts = np.array([[b"my package never arrived"]], dtype=np.object_)
        tensor = grpcclient.InferInput("text", [1, 1], "BYTES")
        tensor.set_data_from_numpy(texts)
        result = grpcclient.InferenceServerClient(url=server.grpc).infer(TEXT.name, [tensor], request_id="text-1")
        label = result.as_numpy("output_label")[0].decode()

        lines = records(log, 4)
        assert len(lines) == 4
        by_id = {line["request_id"]: line for line in lines}
        assert sorted(by_id) == ["grpc-1", "http-1", "seed-1", "text-1"]
        for request_id, answer in answers.items():
            line = by_id[request_id]
            assert line["type"] == "prediction"
            assert (line["model"], line["version"]) == ("iris-svc", "1.0.0")
            assert line["inputs"]["input"]["datatype"] == "FP32"
            sent = rows[:1] if request_id == "seed-1" else rows
            np.testing.assert_array_equal(np.array(line["inputs"]["input"]["data"], dtype=np.float32), np.array(sent, dtype=np.float32))
            np.testing.assert_array_equal(
                np.array(line["outputs"]["probabilities"]["data"], dtype=np.float32), np.array(answer, dtype=np.float32)
            )
            assert line["outputs"]["label"]["shape"] == [len(sent)]
            assert line["duration_ms"] > 0
        text = by_id["text-1"]
        assert text["inputs"]["text"] == {"datatype": "BYTES", "shape": [1, 1], "data": [["my package never arrived"]]}
        assert text["outputs"]["output_label"]["data"] == [label]
        # The server's own log (standard error) has no prediction lines, and the log no others.
        assert not any('"type":"prediction"' in line for line in server.log)
    finally:
        server.stop()


def test_the_rate_is_kept_exactly_and_redaction_keeps_shapes_only(tmp_path):
    log = tmp_path / "predictions.jsonl"
    server = Server(
        [IRIS],
        ["--prediction-log-rate", "0.25", "--prediction-log-inputs", "redact", "--prediction-log-file", str(log)],
    )
    try:
        rows = read_bundle(IRIS)["sample"]["input"]
        for number in range(20):
            seed_predict(server, rows, f"r-{number}")
        lines = records(log, 5)
        time.sleep(0.5)
        lines = records(log, 5)
        assert len(lines) == 5, lines
        for line in lines:
            assert line["inputs"] == {"input": {"datatype": "FP32", "shape": [3, 4]}}
            assert len(line["outputs"]["probabilities"]["data"]) == 3
    finally:
        server.stop()


def test_a_record_over_the_limit_keeps_its_shapes(tmp_path):
    log = tmp_path / "predictions.jsonl"
    server = Server(
        [IRIS],
        ["--prediction-log-rate", "1", "--prediction-log-max-record-bytes", "300", "--prediction-log-file", str(log)],
    )
    try:
        rows = read_bundle(IRIS)["sample"]["input"] * 20
        seed_predict(server, rows, "big")
        [line] = records(log, 1)
        assert line["truncated"] is True
        assert line["inputs"]["input"] == {"datatype": "FP32", "shape": [60, 4]}
        assert line["outputs"]["probabilities"] == {"datatype": "FP32", "shape": [60, 3]}
        assert line["request_id"] == "big"
    finally:
        server.stop()


def test_a_failed_inference_is_recorded_with_its_error_and_no_outputs(tmp_path):
    """Past --max-rows-per-request the model refuses the request: the caller's 400 and the
    line's error say the same, and the line keeps the inputs it was sent."""
    import urllib.error

    log = tmp_path / "predictions.jsonl"
    server = Server(
        [IRIS],
        ["--prediction-log-rate", "1", "--max-rows-per-request", "2", "--prediction-log-file", str(log)],
    )
    try:
        rows = read_bundle(IRIS)["sample"]["input"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            seed_predict(server, rows, "too-many-rows")
        assert refused.value.code == 400
        told = json.load(refused.value)["error"]
        [line] = records(log, 1)
        assert line["request_id"] == "too-many-rows"
        assert "outputs" not in line
        assert line["error"] and line["error"] in told, (line["error"], told)
        assert line["inputs"]["input"]["shape"] == [3, 4]
    finally:
        server.stop()


def test_a_rate_outside_0_to_1_is_refused():
    with pytest.raises(RuntimeError, match="--prediction-log-rate 2"):
        Server([IRIS], ["--prediction-log-rate", "2"])

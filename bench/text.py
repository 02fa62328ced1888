"""The text scenario: the MiniLM text bundle (models/minilm-embeddings) served by the release server
pinned to one core, sentences of mixed lengths sent from the other, one per request over
`/predict`, at 1 and 16 connections, with the bundle's padded batching and without it; and in the
same run R, ONNX Runtime's own rows per second on the same sentences, tokenized and padded the same
way in runs of the bundle's batch size, one thread, in-process (server/examples/bench_runtime.rs).
Prints the table and the two targets as ratios; writes text-results.json. Run by bench/text.

    scripts/fetch-models && python bench/text.py --out .cache/bench
"""

import argparse
import http.client
import json
import os
import random
import shutil
import threading
import time
from pathlib import Path

from run import LOAD_CPU, REPO, Server, bench_runtime, least_stolen, pinned, print_scenarios, release

BUNDLE = REPO / "models/minilm-embeddings"
BATCH_ROWS = 8  # the bundle's runtime.max_batch_size
# (name, what it asks, needed ratio)
TARGETS = [
    ("padded batching at 16 connections / ONNX Runtime in-process on the same padded runs", 0.85),
    ("padded batching at 16 connections / no batching at 16 connections", 1.5),
]


def sentences(count=512, seed=20261206):
    """Sentences of 3 to 60 words, of a fixed vocabulary, in a fixed order."""
    words = ("the model serves sentences of many lengths while a server batches them together and "
             "every caller gets its own vector back from one shared run on the same core").split()
    draw = random.Random(seed)
    return [" ".join(draw.choice(words) for _ in range(draw.randint(3, 60))) for _ in range(count)]


def bundle_folder(out, batching):
    """The bundle in a folder of its own (the model and the tokenizer linked), batching or not."""
    folder = out / ("batched" if batching else "alone") / BUNDLE.name
    shutil.rmtree(folder.parent, ignore_errors=True)
    folder.mkdir(parents=True)
    text = (BUNDLE / "predictor.toml").read_text()
    if not batching:
        text = text.replace(f"max_batch_size = {BATCH_ROWS}", "max_batch_size = 1")
    (folder / "predictor.toml").write_text(text)
    (folder / "model.onnx").symlink_to(BUNDLE / "model.onnx")
    (folder / "tokenizer.json").symlink_to(BUNDLE / "tokenizer.json")
    return folder


def load(address, texts, connections, seconds):
    """`connections` keep-alive callers, each sending one sentence per request in turn for
    `seconds`: (rows per second, p50 ms, p99 ms, failures)."""
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    host, port = address.rsplit(":", 1)
    latencies, failures = [], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def caller(index):
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        mine, position = [], index
        while time.monotonic() < deadline:
            body = json.dumps({"data": [texts[position % len(texts)]]})
            position += connections
            started = time.monotonic()
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            if answer.status == 200:
                mine.append(time.monotonic() - started)
            else:
                with lock:
                    failures[0] += 1
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=caller, args=(index,)) for index in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    at = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return len(latencies) / elapsed, at(0.5), at(0.99), failures[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    out = args.out / "text"
    out.mkdir(parents=True, exist_ok=True)
    texts = sentences()
    (out / "sentences.json").write_text(json.dumps(texts))

    batched = bundle_folder(out, batching=True)

    def in_process(rows_per_run):
        return least_stolen(lambda: bench_runtime(batched / "predictor.toml", rows_per_run, args.seconds,
                                                  out / "sentences.json"))

    reference, steal = in_process(BATCH_ROWS)
    rows = [{"scenario": f"ONNX Runtime in-process, runs of {BATCH_ROWS}", "connections": "-",
             "rows_per_second": reference["rows_per_second"], "p50_ms": None, "p99_ms": None, "steal": steal}]
    # The profile of the second target: what a run of one sentence at its own length gives, with
    # no padding and nothing to share; batching can reach 1.5 times no batching only where runs of
    # BATCH_ROWS are much faster per row than this.
    alone, steal = in_process(1)
    rows.append({"scenario": "ONNX Runtime in-process, runs of 1", "connections": "-",
                 "rows_per_second": alone["rows_per_second"], "p50_ms": None, "p99_ms": None, "steal": steal})
    measured = {}
    for name, folder in [("padded batching", batched), ("no batching", bundle_folder(out, batching=False))]:
        server = Server([folder], out / f"{name.replace(' ', '-')}.log")
        try:
            for connections in (1, 16):
                (rate, p50, p99, failures), steal = least_stolen(
                    lambda: load(server.address, texts, connections, args.seconds))
                measured[name, connections] = rate
                rows.append({"scenario": name, "connections": connections, "rows_per_second": rate,
                             "p50_ms": p50, "p99_ms": p99, "failures": failures, "steal": steal,
                             "rss_mib": server.rss_mib()})
        finally:
            server.stop()

    print_scenarios(rows)
    ratios = [
        measured["padded batching", 16] / reference["rows_per_second"],
        measured["padded batching", 16] / measured["no batching", 16],
    ]
    targets = []
    print()
    for (name, needed), ratio in zip(TARGETS, ratios):
        print(f"{'met ' if ratio >= needed else 'MISSED'} {ratio:5.2f} (needs {needed}) {name}")
        targets.append({"name": name, "ratio": ratio, "needed": needed})
    failures = sum(row.get("failures", 0) for row in rows)
    if failures:
        print(f"\n{failures} requests failed")
    (args.out / "text-results.json").write_text(json.dumps({"rows": rows, "targets": targets}, indent=2))
    print(f"\nwrote {args.out / 'text-results.json'}")


if __name__ == "__main__":
    main()

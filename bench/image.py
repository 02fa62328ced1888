"""The image scenario: the image bundle models/document-orientation served by the release server
pinned to one core, one real photograph (server/tests/data/images/china.jpg, 427 x 640 JPEG) sent
raw to `/predict` from the other core by oha, at 1 and 8 connections, as the bundle is (no
batching), and at 8 with batching of 8 (a copy of the bundle); and in the same run the in-process
reference: the same image decoded, preprocessed and run by ONNX
Runtime with one thread, in runs of one image, in-process (server/examples/bench_runtime.rs, the
server's own decoding and preprocessing code). Prints the table and the target as a ratio; writes
image-results.json. Run by bench/image.

    scripts/fetch-models && python bench/image.py --out .cache/bench
"""

import argparse
import json
import os
import shutil
from pathlib import Path

from run import LOAD_CPU, REPO, Server, bench_runtime, least_stolen, oha, print_scenarios, release

BUNDLE = REPO / "models/document-orientation"
IMAGE = REPO / "server/tests/data/images/china.jpg"
# (name, what it asks, needed ratio)
TARGET = ("server at 8 connections, as the bundle is / decode + preprocess + run in-process, runs of 1", 0.8)


def batched_copy(out):
    """The bundle with runtime.max_batch_size = 8, in a folder of its own (its files linked)."""
    folder = out / "batched" / BUNDLE.name
    shutil.rmtree(folder.parent, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "predictor.toml").write_text((BUNDLE / "predictor.toml").read_text() + "\n[runtime]\nmax_batch_size = 8\n")
    for name in ("model.onnx", "document.png", "document-rotated.jpg"):
        (folder / name).symlink_to(BUNDLE / name)
    return folder


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    out = args.out / "image"
    out.mkdir(parents=True, exist_ok=True)
    os.environ["BENCH_OUT"] = str(out)
    (out / "images.json").write_text(json.dumps([str(IMAGE)]))

    def in_process(rows_per_run):
        return least_stolen(lambda: bench_runtime(BUNDLE / "predictor.toml", rows_per_run, args.seconds,
                                                  out / "images.json"))

    reference, steal = in_process(1)
    rows = [{"scenario": "decode + preprocess + run in-process, runs of 1", "connections": "-",
             "rows_per_second": reference["rows_per_second"], "p50_ms": None, "p99_ms": None, "steal": steal}]
    batched, steal = in_process(8)
    rows.append({"scenario": "decode + preprocess + run in-process, runs of 8", "connections": "-",
                 "rows_per_second": batched["rows_per_second"], "p50_ms": None, "p99_ms": None, "steal": steal})
    measured = {}
    body = IMAGE.read_bytes()
    for name, folder, loads in (("server, as the bundle is", BUNDLE, (1, 8)),
                                ("server, batching of 8", batched_copy(out), (8,))):
        server = Server([folder], out / f"{folder.parent.name}.log")
        try:
            for connections in loads:
                summary, steal = least_stolen(lambda: oha(f"http://{server.address}/predict", body, connections,
                                                          args.seconds, ["content-type: image/jpeg"]))
                latency = summary["latencyPercentiles"]
                failures = sum(count for status, count in summary.get("statusCodeDistribution", {}).items()
                               if status != "200")
                measured[name, connections] = summary["summary"]["requestsPerSec"]
                rows.append({"scenario": name, "connections": connections,
                             "rows_per_second": measured[name, connections], "p50_ms": latency["p50"] * 1000,
                             "p99_ms": latency["p99"] * 1000, "failures": failures, "steal": steal,
                             "rss_mib": server.rss_mib()})
        finally:
            server.stop()

    print_scenarios(rows, width=50)
    name, needed = TARGET
    ratio = measured["server, as the bundle is", 8] / reference["rows_per_second"]
    print(f"\n{'met ' if ratio >= needed else 'MISSED'} {ratio:5.2f} (needs {needed}) {name}")
    failures = sum(row.get("failures", 0) for row in rows)
    if failures:
        print(f"\n{failures} requests failed")
    results = {"rows": rows, "targets": [{"name": name, "ratio": ratio, "needed": needed}], "load_cpu": LOAD_CPU}
    (args.out / "image-results.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out / 'image-results.json'}")


if __name__ == "__main__":
    main()

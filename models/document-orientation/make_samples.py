"""Makes this bundle's sample images and prints its expected output.

The images: a page of text rendered by Pillow (its own default font), upright as document.png,
and turned a quarter counter-clockwise as document-rotated.jpg (a JPEG, so that the sample
decodes both formats). The expected output: the model's probabilities for them, run by ONNX
Runtime on the images preprocessed as predictor.toml says, by Pillow and numpy the way
torchvision's Resize(256), CenterCrop(224), ToTensor and Normalize do it, channels in BGR order.

Run it with Pillow 13.0.0, numpy and onnxruntime (the client tests' virtual environment has
them): .cache/clients-venv/bin/python models/document-orientation/make_samples.py
"""

from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Lorem ipsum dolor sit amet, consectetur",
    "adipiscing elit, sed do eiusmod tempor",
    "incididunt ut labore et dolore magna aliqua.",
    "Ut enim ad minim veniam, quis nostrud",
    "exercitation ullamco laboris nisi ut aliquip",
]


def page() -> Image.Image:
    """A white page of 600 x 800 pixels with black lines of text, 32 pixels high."""
    image = Image.new("RGB", (600, 800), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=32)
    for row, y in enumerate(range(40, 760, 44)):
        draw.text((30, y), LINES[row % len(LINES)], fill="black", font=font)
    return image


def preprocess(image: Image.Image) -> np.ndarray:
    """predictor.toml's [image] steps, as torchvision does them on a PIL image."""
    image = image.convert("RGB")
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(256 * long / short)
    size = (256, new_long) if width <= height else (new_long, 256)
    image = image.resize(size, Image.BILINEAR)
    left = int(round((size[0] - 224) / 2.0))
    top = int(round((size[1] - 224) / 2.0))
    image = image.crop((left, top, left + 224, top + 224))
    values = np.asarray(image, dtype=np.float32)[:, :, ::-1] / 255.0
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    return ((values - mean) / std).transpose(2, 0, 1)


def main() -> None:
    upright = page()
    upright.save(HERE / "document.png", optimize=True)
    upright.transpose(Image.Transpose.ROTATE_90).save(HERE / "document-rotated.jpg", quality=75)
    images = [Image.open(HERE / name) for name in ("document.png", "document-rotated.jpg")]
    session = onnxruntime.InferenceSession(HERE / "model.onnx", providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess(image) for image in images])
    probabilities = session.run(None, {"x": batch})[0]
    print("output =", np.round(probabilities, 6).tolist())


if __name__ == "__main__":
    main()

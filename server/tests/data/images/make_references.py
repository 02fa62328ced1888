"""Writes the references of server/src/preprocess/image.rs's tests: what Pillow makes of each image
here, as torchvision's transforms use it (Image.open, convert("RGB"), resize with BILINEAR,
crop), saved as lossless PNGs, and references.json saying which steps made which file.

china.jpg and flower.jpg are real photographs, as scikit-learn 1.7.2's wheel ships them
(sklearn/datasets/images; CC BY 2.0, see README.md here). The synthetic images are written here
(fixed seed): an RGBA PNG with a varying alpha, a greyscale PNG, a palette PNG and a lossless
WebP, small and oddly sized so that resizing up and down and the crop's rounding are exercised.

    python -m pip install pillow==13.0.0 numpy==2.4.6
    python server/tests/data/images/make_references.py
"""

import json
import pathlib

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).parent


def synthetic():
    rng = np.random.default_rng(20261207)
    y, x = np.mgrid[0:23, 0:37]
    rgba = np.stack([x * 7, y * 11, (x * y) % 256, 40 + (x + y) * 4], axis=-1).astype(np.uint8)
    rgba[5:9, 10:20] = rng.integers(0, 256, size=(4, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(HERE / "gradient-rgba.png")
    grey = ((x[:, :30] * 9 + y[:, :30] * 3) % 256).astype(np.uint8)[:, :30]
    Image.fromarray(np.vstack([grey, grey[:7]]), "L").save(HERE / "grey.png")
    Image.fromarray(rgba[:, :, :3], "RGB").quantize(colors=16, method=Image.Quantize.MEDIANCUT).save(HERE / "palette.png")
    Image.fromarray(rgba[:, :, :3], "RGB").save(HERE / "gradient.webp", lossless=True)


def torchvision_resize(image, size):
    """torchvision.transforms.Resize(size) on a PIL image: an int is the shorter side (the longer
    one int(size * long / short)), a pair is [height, width]."""
    width, height = image.size
    if isinstance(size, int):
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = size, int(size * long / short)
        new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
    else:
        new_height, new_width = size
    if (new_width, new_height) == (width, height):
        return image
    return image.resize((new_width, new_height), Image.BILINEAR)


def torchvision_center_crop(image, height, width):
    """torchvision.transforms.CenterCrop([height, width]) on an image at least that large."""
    top = int(round((image.height - height) / 2.0))
    left = int(round((image.width - width) / 2.0))
    return image.crop((left, top, left + width, top + height))


CASES = [
    # (image, resize, crop [height, width]): each image's output as a PNG.
    ("china.jpg", 64, [56, 56]),
    ("flower.jpg", 64, [56, 48]),
    ("china.jpg", None, [96, 128]),  # the decoding alone, on a patch at full resolution
    ("gradient-rgba.png", 64, [56, 56]),
    ("gradient-rgba.png", [10, 15], None),
    ("grey.png", 16, [16, 15]),
    ("palette.png", [40, 33], [39, 32]),
    ("gradient.webp", 29, [29, 29]),
]


def main():
    synthetic()
    references = []
    for index, (name, resize, crop) in enumerate(CASES):
        image = Image.open(HERE / name).convert("RGB")
        if resize is not None:
            image = torchvision_resize(image, resize)
        if crop is not None:
            image = torchvision_center_crop(image, *crop)
        output = f"expected-{index}.png"
        image.save(HERE / output)
        references.append({"image": name, "resize": resize, "crop": crop, "expected": output})
    (HERE / "references.json").write_text(json.dumps(references, indent=1) + "\n")


if __name__ == "__main__":
    main()

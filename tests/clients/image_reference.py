"""The Python pipeline an image bundle's answers are measured against: Pillow's decoding and
resampling, and the steps of torchvision's Resize, CenterCrop, ToTensor and Normalize in numpy, as
torchvision computes them on a PIL image. The client tests and the image fixtures' script share it."""

import io

import numpy as np
from PIL import Image

NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64, "uint8": np.uint8}


def torchvision_pixels(encoded, steps, shape, dtype="float32"):
    """One image as torchvision's transforms make it from `Image.open(...).convert("RGB")`, with the
    bundle's steps: Resize (shorter side, or [height, width]; bilinear, antialiased: PIL's
    resize), CenterCrop to the graph's size, ToTensor's division, Normalize, channel order, layout;
    computed in float32, then made the graph input's `dtype` (predictor.toml's name) by numpy."""
    image = Image.open(io.BytesIO(encoded)).convert("RGB")
    layout = steps.get("layout", "NCHW")
    height, width = shape[2:4] if layout == "NCHW" else shape[1:3]
    resize = steps.get("resize")
    if isinstance(resize, int):
        image = image.resize(shorter_side(image.size, resize), Image.BILINEAR)
    elif resize:
        image = image.resize((resize[1], resize[0]), Image.BILINEAR)
    if image.width < width or image.height < height:
        image = image.resize(shorter_side(image.size, max(width, height)), Image.BILINEAR)
    left = int(round((image.width - width) / 2.0))
    top = int(round((image.height - height) / 2.0))
    image = image.crop((left, top, left + width, top + height))
    values = np.asarray(image, dtype=np.float32) / np.float32(steps.get("divide_by", 255.0))
    if steps.get("channels", "RGB") == "BGR":
        values = values[:, :, ::-1]
    mean = np.array(steps.get("mean", [0.0] * 3), dtype=np.float32)
    std = np.array(steps.get("std", [1.0] * 3), dtype=np.float32)
    values = (values - mean) / std
    values = values.transpose(2, 0, 1) if layout == "NCHW" else values
    return values.astype(NUMPY_DTYPES[dtype])


def shorter_side(size, shorter):
    """torchvision's Resize(shorter) of a (width, height): the longer side truncated."""
    width, height = size
    longer = int(shorter * max(width, height) / min(width, height))
    return (shorter, longer) if width <= height else (longer, shorter)

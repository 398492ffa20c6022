"""Property-based fuzzing (hypothesis): whatever goes in, only documented errors come out.

- the image loader gets random bytes (also behind real format signatures), random PIL modes and
  sizes, random arrays (dtype, shape, values) and random strings as paths: it returns an RGB
  image of the right size or raises `ImageError`, nothing else;
- `explain` gets random valid and invalid methods, layers, targets, batch sizes (images per
  call and the methods' `batch_size`) and output selectors: it returns finite maps of the right
  shape or raises a `CnnvisError` subclass, and never leaves a hook or a changed flag behind.

Examples are few (tens) and the model tiny, so the file runs in well under a minute.
"""

from __future__ import annotations

import io
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import cnnvis
from cnnvis.errors import CnnvisError, ImageError
from cnnvis.images import load_image
from cnnvis.model import LoadedModel, Preprocess
from cnnvis.targets import UnitTarget

from conftest import TinyCNN

# Pillow warns about the damaged files it can still read (truncated TIFF tags, bomb sizes)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible in CI
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SIGNATURES = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"%PDF-1.4",
    b"\x00\x00\x01\x00",  # ICO
    b"P6\n",  # PPM
]


def assert_rgb(image: Image.Image, size: tuple[int, int] | None = None) -> None:
    assert image.mode == "RGB"
    if size is not None:
        assert image.size == size
    assert image.width >= 1 and image.height >= 1


# ----------------------------------------------------------------------------- image loader


@FUZZ
@given(head=st.sampled_from(SIGNATURES), body=st.binary(max_size=2048))
def test_random_bytes(head: bytes, body: bytes):
    try:
        image = load_image(head + body)
    except ImageError as error:
        assert str(error)
    else:
        assert_rgb(image)


@FUZZ
@given(data=st.data(), cut=st.floats(0.05, 0.95))
def test_damaged_real_files(data, cut: float):
    """A real PNG/JPEG/GIF/BMP/TIFF/WebP with bytes cut off or flipped."""
    fmt = data.draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]))
    side = data.draw(st.integers(1, 24))
    pixels = np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    raw = bytearray(buffer.getvalue())
    if data.draw(st.booleans()):
        raw = raw[: max(1, int(len(raw) * cut))]
    else:
        for i in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            raw[i] ^= 0xFF
    try:
        image = load_image(bytes(raw))
    except ImageError:
        return
    assert_rgb(image)


MODES = [
    "1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB",
    "HSV", "I", "F", "I;16", "I;16L", "I;16B", "I;16N",
]  # fmt: skip


@FUZZ
@given(mode=st.sampled_from(MODES), width=st.integers(0, 6), height=st.integers(0, 6))
def test_random_modes_and_sizes(mode: str, width: int, height: int):
    image = Image.new(mode, (width, height))
    try:
        rgb = load_image(image)
    except ImageError as error:
        assert width == 0 or height == 0, (mode, error)
        assert "empty" in str(error)
    else:
        assert_rgb(rgb, (width, height))


DTYPES = [
    np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32,
    np.float64, np.bool_, np.complex64,
]  # fmt: skip


@FUZZ
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(DTYPES),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_random_arrays(array: np.ndarray):
    try:
        image = load_image(array)
    except ImageError as error:
        assert str(error)
    else:
        assert_rgb(image, (array.shape[1], array.shape[0]))


@FUZZ
@given(text=st.text(max_size=40))
def test_random_strings_as_paths(text: str):
    """Only a named sample or an existing file loads; anything else is an ImageError (no such
    file, a folder such as "" or ".", a NUL byte, an unknown user's ~)."""
    try:
        image = load_image(text)
    except ImageError as error:
        assert str(error)
    else:
        assert_rgb(image)
        assert text.strip().lower().startswith("sample:") or Path(text).expanduser().is_file()


rgb_shapes = st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))


@FUZZ
@given(array=hnp.arrays(np.uint8, rgb_shapes))
def test_png_round_trip_is_exact(array: np.ndarray):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    assert np.array_equal(np.asarray(load_image(buffer.getvalue())), array)


# ----------------------------------------------------------------------------- explain

MODEL = LoadedModel(TinyCNN().eval(), name="tiny", preprocess=Preprocess(20, 16))
LAYERS = [name for name, _ in MODEL.module.named_modules() if name]
METHODS = [m.name for m in cnnvis.list_methods()]
CHEAP = {
    "integrated-gradients": {"steps": 3},
    "smoothgrad": {"samples": 2},
    "rise": {"masks": 6},
    "occlusion": {"window": 8, "stride": 8},
}
BATCHED = {"integrated-gradients", "smoothgrad", "rise", "occlusion", "score-cam", "ablation-cam"}

junk = st.text(string.ascii_letters + string.digits + "._-:@ *", max_size=12)


def mostly(valid: st.SearchStrategy, *invalid: st.SearchStrategy) -> st.SearchStrategy:
    """`valid` three times in four, else one of `invalid` (one_of alone favours the simplest
    branch, which here is usually an error)."""
    return st.integers(0, 3).flatmap(lambda k: valid if k else st.one_of(*invalid))


methods = mostly(st.sampled_from(METHODS), junk, st.sampled_from([None, 3, ["gradient"]]))
layers = mostly(
    st.sampled_from([None, "auto", *LAYERS]),
    st.sampled_from(["module.conv2", "", "conv9"]),
    junk,
    st.lists(st.sampled_from([*LAYERS, "nope"]), max_size=3),
    st.sampled_from([7, {"conv2"}]),
)
class_index = st.integers(-3, 8)
targets = mostly(
    st.one_of(st.none(), st.integers(0, 4), st.lists(st.integers(0, 4), min_size=1, max_size=3)),
    class_index,
    st.sampled_from(["top1", "tabby", "2", "-1", "", 2.5, True, b"\x01", {1: 2}]),
    st.lists(st.one_of(class_index, st.sampled_from(["3", "cat", 1.0])), max_size=4),
    class_index.map(np.int64),
    st.lists(class_index, min_size=1, max_size=4).map(torch.tensor),
    st.builds(UnitTarget, st.sampled_from([*LAYERS, "nope"]), st.integers(-1, 10),
              st.sampled_from(["sum", "max"])),
)  # fmt: skip
outputs = mostly(st.none(), st.sampled_from([0, "0", 1, "logits", "scores"]))


def inputs(n: int, kind: str):
    generator = torch.Generator().manual_seed(n)
    if kind == "tensor":
        return torch.randn(n, 3, 16, 16, generator=generator)
    pictures = [
        (torch.rand(12, 18, 3, generator=generator).numpy() * 255).astype(np.uint8)
        for _ in range(n)
    ]
    return pictures if kind == "list" or n != 1 else pictures[0]


@settings(FUZZ, max_examples=150)
@given(
    method=methods,
    layer=layers,
    target=targets,
    n=mostly(st.integers(1, 3), st.just(0)),
    kind=st.sampled_from(["tensor", "list", "single"]),
    batch_size=st.one_of(st.none(), st.integers(-2, 5)),
    output=outputs,
)
def test_explain_only_raises_documented_errors(method, layer, target, n, kind, batch_size, output):
    params = dict(CHEAP.get(method, {})) if isinstance(method, str) else {}
    if batch_size is not None and (
        batch_size < 1 or (isinstance(method, str) and method in BATCHED)
    ):
        params["batch_size"] = batch_size
    images = inputs(n, kind)
    try:
        result = cnnvis.explain(MODEL, images, method, layer, target, output=output, **params)
    except CnnvisError as error:
        assert str(error)
        assert type(error).__module__ == "cnnvis.errors"
        event(type(error).__name__)
    else:
        event("explained")
        assert torch.isfinite(result.map).all()
        assert result.map.shape[0] == n and result.map.shape[-2:] == (16, 16)
        assert len(result.targets) == n
    module = MODEL.module
    assert not module.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())
    assert torch.is_grad_enabled() and not torch._C._len_torch_function_stack()

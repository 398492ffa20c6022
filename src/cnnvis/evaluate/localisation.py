"""Localisation: does the map point at the object? Given boxes or masks per image.

- Pointing game (Zhang et al. 2016, arXiv:1608.00507): a hit (1) when the map's maximum lies
  within `tolerance` pixels (15, Euclidean, in model-input pixels) of the object, else 0; the
  mean over images is the accuracy. The first maximum in row-major order is the point.
- Energy-based pointing game (Wang et al. 2020, Score-CAM, arXiv:1910.01279): the share of
  the map's positive mass inside the object, Σ relu(m)·1_obj / Σ relu(m) (0 for a map with
  no positive value).

Box files (JSON or CSV) name the objects of each image; see `load_boxes`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..errors import ImageError
from ..model import Preprocess
from .errors import EvaluationError

TOLERANCE = 15
SPACES = ("input", "image")
BUNDLED = "boxes.json"


@dataclass(frozen=True)
class Annotation:
    """One object: a box (x0, y0, x1, y1; x1 and y1 excluded) or a mask file, its label, and
    the classes it stands for (empty: any class)."""

    label: str = ""
    box: tuple[float, float, float, float] | None = None
    mask: Path | None = None
    classes: tuple[int, ...] = ()

    def matches(self, target: int) -> bool:
        return not self.classes or target in self.classes


@dataclass
class Boxes:
    """The objects of many images, keyed as written in the file (see `load_boxes`).

    `space` "input": coordinates in the model's input (after resize and centre crop); with a
    `preprocess` ({"resize_size", "crop_size"}) they are in that preprocessing's input and are
    carried over to any other through the original image. "image": original image pixels.
    """

    images: dict[str, list[Annotation]]
    space: str = "input"
    preprocess: dict[str, int] | None = None
    source: str = "boxes"
    notes: dict[str, str] = field(default_factory=dict)

    def lookup(self, key: str) -> list[Annotation] | None:
        """The objects of an image: by the key as written, then (for files) by path, file name
        or stem on both sides, case-insensitive."""
        if key in self.images:
            return self.images[key]
        index: dict[str, list[Annotation]] = {}
        for k, objects in self.images.items():
            index.setdefault(k.lower(), objects)
        if key.lower() in index or key.lower().startswith("sample:"):
            return index.get(key.lower())
        for k, objects in self.images.items():
            if not k.lower().startswith("sample:"):
                index.setdefault(Path(k).name.lower(), objects)
                index.setdefault(Path(k).stem.lower(), objects)
        path = Path(key)
        for candidate in (path.as_posix(), path.name, path.stem):
            found = index.get(candidate.lower())
            if found is not None:
                return found
        return None

    def object_mask(
        self,
        key: str,
        target: int,
        preprocess: Preprocess,
        image_size: tuple[int, int] | None,
        size: tuple[int, int],
    ) -> torch.Tensor | None:
        """(H, W) bool: the pixels of the objects of image `key` that stand for class
        `target`, in model-input pixels; None when the file has nothing for it.
        `image_size` is the original (width, height), needed unless coordinates are already
        in this model's input."""
        objects = self.lookup(key)
        if not objects:
            return None
        chosen = [o for o in objects if o.matches(target)]
        if not chosen:
            return None
        mask = torch.zeros(size, dtype=torch.bool)
        for obj in chosen:
            if obj.box is not None:
                mask |= self._box_mask(obj.box, preprocess, image_size, size)
            if obj.mask is not None:
                mask |= self._file_mask(obj.mask, preprocess, size)
        return mask

    def _box_mask(
        self,
        box: tuple[float, float, float, float],
        preprocess: Preprocess,
        image_size: tuple[int, int] | None,
        size: tuple[int, int],
    ) -> torch.Tensor:
        x0, y0, x1, y1 = box
        if self.space == "image" or self.preprocess is not None:
            if image_size is None:
                raise EvaluationError(
                    f"boxes in {self.source} are not in the model's input coordinates, and the "
                    "original image size is unknown (a tensor was given); pass images as files"
                )
            if self.space == "input" and self.preprocess is not None:  # input of another model
                src = Preprocess(
                    resize_size=self.preprocess["resize_size"],
                    crop_size=self.preprocess["crop_size"],
                )
                x0, y0 = input_to_image((x0, y0), src, image_size)
                x1, y1 = input_to_image((x1, y1), src, image_size)
            x0, y0 = image_to_input((x0, y0), preprocess, image_size)
            x1, y1 = image_to_input((x1, y1), preprocess, image_size)
        return box_mask((x0, y0, x1, y1), size)

    def _file_mask(self, path: Path, preprocess: Preprocess, size: tuple[int, int]) -> torch.Tensor:
        from ..images import load_gray

        try:
            gray = load_gray(path)  # the file and pixel limits apply, checked before decoding
        except ImageError as error:
            raise EvaluationError(f"cannot read the mask {path}: {error}") from None
        if self.space == "image":
            from torchvision.transforms import InterpolationMode

            nearest = Preprocess(
                resize_size=preprocess.resize_size,
                crop_size=preprocess.crop_size,
                interpolation=InterpolationMode.NEAREST,
            )
            return nearest.to_display(gray.convert("RGB"))[0] > 0
        t = torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8)
        t = t.view(gray.size[1], gray.size[0])
        if tuple(t.shape) != tuple(size):
            raise EvaluationError(
                f"the mask {path} is {t.shape[1]}x{t.shape[0]} but the model's input is "
                f'{size[1]}x{size[0]}; give masks at the input size or set "space": "image"'
            )
        return t > 0


def resized_size(preprocess: Preprocess, image_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) after resizing the short side to `resize_size` (as torchvision does)."""
    w, h = image_size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = preprocess.resize_size, int(preprocess.resize_size * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def _crop_offset(preprocess: Preprocess, image_size: tuple[int, int]) -> tuple[int, int]:
    w, h = resized_size(preprocess, image_size)
    c = preprocess.crop_size
    return round((w - c) / 2.0), round((h - c) / 2.0)


def image_to_input(
    point: tuple[float, float], preprocess: Preprocess, image_size: tuple[int, int]
) -> tuple[float, float]:
    """A point in original image pixels -> the model's input pixels (resize, centre crop)."""
    (w, h), (rw, rh) = image_size, resized_size(preprocess, image_size)
    left, top = _crop_offset(preprocess, image_size)
    return point[0] * rw / w - left, point[1] * rh / h - top


def input_to_image(
    point: tuple[float, float], preprocess: Preprocess, image_size: tuple[int, int]
) -> tuple[float, float]:
    """The inverse of `image_to_input`."""
    (w, h), (rw, rh) = image_size, resized_size(preprocess, image_size)
    left, top = _crop_offset(preprocess, image_size)
    return (point[0] + left) * w / rw, (point[1] + top) * h / rh


def box_mask(box: Sequence[float], size: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool, true on pixels x0 <= x < x1, y0 <= y < y1 (rounded, clipped to the image)."""
    h, w = size
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    mask = torch.zeros(size, dtype=torch.bool)
    mask[max(0, y0) : max(0, min(h, y1)), max(0, x0) : max(0, min(w, x1))] = True
    return mask


def pointing_game(
    relevance2d: torch.Tensor, mask: torch.Tensor, tolerance: float = TOLERANCE
) -> float:
    """1.0 when the map's maximum is within `tolerance` pixels of a mask pixel, else 0.0."""
    if not bool(mask.any()):
        return 0.0
    flat = relevance2d.detach().flatten().cpu()
    index = int(torch.argmax(flat))  # the first maximum in row-major order
    py, px = divmod(index, relevance2d.shape[-1])
    ys, xs = torch.nonzero(mask.cpu(), as_tuple=True)
    nearest = ((ys - py) ** 2 + (xs - px) ** 2).min()
    return float(nearest <= tolerance**2)


def energy_pointing_game(relevance2d: torch.Tensor, mask: torch.Tensor) -> float:
    """Σ relu(m) over the object / Σ relu(m) (0 when the map has no positive value)."""
    positive = relevance2d.detach().double().cpu().clamp_min(0)
    total = float(positive.sum())
    if total <= 0:
        return 0.0
    return float(positive[mask.cpu()].sum()) / total


# ----------------------------------------------------------------------------- files


def load_boxes(source: str | Path | Mapping[str, Any] | Boxes | None) -> Boxes:
    """Read a box file (JSON or CSV), a dict in the JSON layout, or the bundled boxes (None).

    JSON::

        {"space": "input",                      # or "image" (original pixels); default input
         "preprocess": {"resize_size": 256, "crop_size": 224},   # optional, see Boxes
         "images": {
           "sample:cat": [{"label": "cat", "box": [0, 0, 224, 224], "classes": [281, 285]}],
           "photos/dog.jpg": [{"label": "dog", "mask": "masks/dog.png"}]}}

    CSV (a header row; `classes` space-separated, optional; `space` optional, per file)::

        image,label,x0,y0,x1,y1,classes,space
        sample:coffee,cup,30,0,182,180,967 968,input

    Boxes are x0, y0, x1, y1 in pixels, origin top-left, x1 and y1 excluded. A mask is a
    PNG (non-zero = object) at the model's input size, or at the original size with
    "space": "image"; its path is relative to the box file. Images are matched by the key as
    written, then by path, file name, or file stem.
    """
    if isinstance(source, Boxes):
        return source
    if source is None:
        text = resources.files("cnnvis").joinpath("data", BUNDLED).read_text(encoding="utf-8")
        return _from_json(json.loads(text), None, "the bundled boxes")
    if isinstance(source, Mapping):
        return _from_json(source, None, "the boxes given")
    path = Path(source)
    if not path.is_file():
        raise EvaluationError(
            f"box file {path} not found; see cnnvis.evaluate.load_boxes for the format"
        )
    if path.suffix.lower() == ".csv":
        return _from_csv(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvaluationError(f"cannot read the box file {path}: {error}") from None
    return _from_json(data, path.parent, str(path))


def _from_json(data: Mapping[str, Any], base: Path | None, label: str) -> Boxes:
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), Mapping):
        raise EvaluationError(f'{label}: expected an object with an "images" mapping')
    space = str(data.get("space", "input"))
    if space not in SPACES:
        raise EvaluationError(f"{label}: space must be one of {', '.join(SPACES)}, got {space!r}")
    pre = data.get("preprocess")
    if pre is not None:
        try:
            pre = {"resize_size": int(pre["resize_size"]), "crop_size": int(pre["crop_size"])}
        except (KeyError, TypeError, ValueError):
            raise EvaluationError(
                f'{label}: preprocess must be {{"resize_size": N, "crop_size": N}}'
            ) from None
    images: dict[str, list[Annotation]] = {}
    for key, objects in data["images"].items():
        if isinstance(objects, Mapping):
            objects = objects.get("objects", [])
        images[str(key)] = [_annotation(o, base, f"{label}, {key}") for o in objects]
    notes = {str(k): str(v) for k, v in dict(data.get("notes", {})).items()}
    return Boxes(images, space, pre, label, notes)


def _annotation(obj: Any, base: Path | None, where: str) -> Annotation:
    if not isinstance(obj, Mapping):
        raise EvaluationError(f"{where}: each object must be a mapping with a box or a mask")
    box = obj.get("box")
    if box is not None:
        if len(box) != 4:
            raise EvaluationError(f"{where}: a box is [x0, y0, x1, y1], got {box!r}")
        box = tuple(float(v) for v in box)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise EvaluationError(f"{where}: empty box {list(box)} (need x1 > x0 and y1 > y0)")
    mask = obj.get("mask")
    if mask is not None:
        mask = Path(mask) if base is None or Path(mask).is_absolute() else base / mask
    if box is None and mask is None:
        raise EvaluationError(f'{where}: an object needs a "box" or a "mask"')
    classes = tuple(int(c) for c in obj.get("classes", ()))
    return Annotation(str(obj.get("label", "")), box, mask, classes)


def _from_csv(path: Path) -> Boxes:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise EvaluationError(f"cannot read the box file {path}: {error}") from None
    images: dict[str, list[dict[str, Any]]] = {}
    spaces = set()
    for n, row in enumerate(rows, start=2):
        if not row.get("image"):
            raise EvaluationError(f"{path}, line {n}: needs an image column (see load_boxes)")
        obj: dict[str, Any] = {"label": row.get("label") or ""}
        if row.get("mask"):
            obj["mask"] = row["mask"]
        if row.get("x0") not in (None, ""):
            try:
                obj["box"] = [float(row[k]) for k in ("x0", "y0", "x1", "y1")]
            except (KeyError, TypeError, ValueError):
                raise EvaluationError(f"{path}, line {n}: x0, y0, x1, y1 must be numbers") from None
        if row.get("classes"):
            obj["classes"] = [int(c) for c in row["classes"].replace(",", " ").split()]
        spaces.add(row.get("space") or "input")
        images.setdefault(row["image"], []).append(obj)
    if len(spaces) > 1:
        raise EvaluationError(f"{path}: one space per file, got {', '.join(sorted(spaces))}")
    space = spaces.pop() if spaces else "input"
    return _from_json({"space": space, "images": images}, path.parent, str(path))

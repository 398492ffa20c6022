"""Model files: weights files (state dicts) for a named architecture, and whole models saved as
TorchScript or as a pickled `nn.Module`."""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..model import LoadedModel, Preprocess, imagenet_categories
from .names import MODELS_HINT, NAME_RULE

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- state dicts


def existing_weights_file(weights: str | os.PathLike[str], what: str) -> Path:
    """A weights path that exists and is a file, else a ModelError."""
    path = Path(os.fspath(weights)).expanduser()
    if not path.is_file():
        raise ModelError(
            f"weights file for {what} not found: {path} (weights are 'DEFAULT', a pretrained "
            "name, None for random init, or a path to a state dict)"
        )
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict (safely: weights_only), unwrapping {'state_dict': ...} wrappers."""
    obj = _torch_load(
        path,
        weights_only=True,
        failure="{path} is not a state dict that can be loaded safely ({kind}); for a whole "
        "saved model pass the file as the model name",
    )
    for key in ("state_dict", "model_state_dict", "model", "module"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _torch_load(path: Path, *, weights_only: bool, failure: str) -> Any:
    """`torch.load` on the CPU; any failure a ModelError saying `failure`, a template with
    {path}, {kind} (the exception's type) and {detail} (its message, cut short)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:
        message = failure.format(path=path, kind=type(e).__name__, detail=short(e))
        raise ModelError(message) from e


def build_and_load(
    build: Callable[..., nn.Module], state: Mapping[str, torch.Tensor], path: Path
) -> nn.Module:
    """Build an architecture and load `state`; retry with num_classes read from the file."""
    module = build()
    try:
        module.load_state_dict(state)
        return module
    except RuntimeError as first:
        n = _state_num_classes(state)
        if n is not None and n != guess_num_classes(module):
            try:
                other = build(num_classes=n)
                other.load_state_dict(state)
            except (RuntimeError, TypeError, ValueError):
                pass
            else:
                log.info("%s: built with num_classes=%d to match the file", path, n)
                return other
        raise ModelError(f"{path} does not fit this architecture: {short(first)}") from first


def short(error: Exception, limit: int = 600) -> str:
    """An exception's message, cut to `limit` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _state_num_classes(state: Mapping[str, torch.Tensor]) -> int | None:
    """The number of classes a state dict's last layer has (its last bias), if clear."""
    if not state:
        return None
    last = next(reversed(list(state.values())))
    return int(last.shape[0]) if last.ndim == 1 else None


def guess_num_classes(module: nn.Module) -> int | None:
    """The size of a module's last parameter vector (the classifier bias), if any."""
    last = None
    for p in module.parameters():
        last = p
    return int(last.shape[0]) if last is not None and last.ndim == 1 else None


# ----------------------------------------------------------------------------- whole models


def load_file(path: Path, *, trust_pickle: bool = False) -> LoadedModel:
    """A TorchScript file or a pickled nn.Module; a bare state dict is refused with advice.

    A pickled module is read weights-only (no code runs); a file that needs full unpickling
    (which can run any code the file holds) is refused unless `trust_pickle`.
    """
    path = path.expanduser()
    if not path.exists():
        raise ModelError(f"model file not found: {path} ({NAME_RULE})", hint=MODELS_HINT)
    if path.is_dir():
        raise ModelError(f"{path} is a folder; pass a model file (.pt, .pth, .ts)")
    if _is_torchscript(path):
        module = _read_torchscript(path)
    else:
        module = _read_pickled_module(path, trust_pickle)
    outputs = guess_num_classes(module)
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
        raise ModelError(f"{path} looks like TorchScript but failed to load: {short(e)}") from e


def _read_pickled_module(path: Path, trust_pickle: bool) -> nn.Module:
    """A whole pickled module, weights-only unless `trust_pickle`; a state dict gets advice."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if not trust_pickle:
            raise ModelError(_weights_only_failure(path, e)) from e
        log.warning("%s: unpickling it in full, as asked (this runs any code it holds)", path)
        obj = _torch_load(
            path,
            weights_only=False,
            failure="{path} could not be read as a PyTorch model ({kind}: {detail}); save it "
            "with torch.save(model) or torch.jit.save(torch.jit.script(model))",
        )
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


def _weights_only_failure(path: Path, error: Exception) -> str:
    """Why a file is refused: it needs classes or functions a weights-only load does not allow
    (the risk, and the safer ways to load it), or it is no PyTorch file at all."""
    reason = _unpickler_reason(error)
    if not reason.startswith("Unsupported global"):
        return (
            f"{path} could not be read as a PyTorch model ({reason}); save it with "
            "torch.save(model) or torch.jit.save(torch.jit.script(model))"
        )
    return (
        f"{path} cannot be loaded weights-only ({reason}). Loading it in full would unpickle it, "
        "and a pickle can run any code on this computer, so cnnvis refuses it by default. "
        "Safer ways: save a state dict (torch.save(model.state_dict(), FILE)) and load it with "
        "the architecture by name (--model torchvision:NAME --weights FILE, or "
        "load_model('timm:NAME', weights=FILE)); save TorchScript "
        "(torch.jit.save(torch.jit.script(model), FILE)); or allow the classes it needs with "
        "torch.serialization.add_safe_globals([...]). If you made the file yourself or trust "
        "who did, pass --trust-model-file (trust_pickle=True in Python)."
    )


def _unpickler_reason(error: Exception) -> str:
    """The one line of a weights-only failure that says what was refused, else the message."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        line = text.split(marker, 1)[1].strip().splitlines()[0]
        return line.split(" was not an allowed global")[0].strip()
    return short(error, 200)

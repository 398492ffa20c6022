"""The target protocol: what turns a model's output into one score per image.

A target is any object with `scores(output, activations) -> Tensor (N,)`. Three more members
are optional, and every helper here reads them with a default:

- `layers: tuple[str, ...]`: the layers whose activations `scores` reads (recorded for it);
- `bind(output, activations, context) -> Target` (or `bind(output)`): the target made
  concrete for one recorded batch (each image's top-1 class, the predicted region of a class, a reference image's
  embedding); a bound target binds to itself. Without it the target is used as it is;
- `take(rows) -> Target`: the target of the images `rows` (a LongTensor; repeats allowed),
  for the extra rows of multi-pass methods (noisy copies, path points, masked images): row i of
  the result scores like row `rows[i]` of this one. Without it the target is taken to be the
  same for every row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import TargetError

Activations = Mapping[str, torch.Tensor]
Forward = Callable[[torch.Tensor, Sequence[str]], tuple[Any, dict[str, torch.Tensor]]]
LoadImage = Callable[[Any], torch.Tensor]


@runtime_checkable
class Target(Protocol):
    """Anything that gives one score per image (N,) from the model's output (and, for targets
    inside the network, the recorded activations). See the module's notes for the optional
    `layers`, `bind` and `take`."""

    def scores(self, output: Any, activations: Activations) -> torch.Tensor:
        """Per-image scores (N,), differentiable with respect to the output."""
        ...


@dataclass(frozen=True)
class Context:
    """What a target may use to bind itself to a recorded batch.

    `rows`: the batch size N; `categories(classes)`: the class names of an output with that
    many classes (or None); `forward(x, layers)`: the model's (selected) output and the
    activations of `layers` for another input, without gradients; `load_image(image)`: an
    image (path, PIL, array) as a model input (1, C, H, W); `owned`: the rows this target will
    be scored for (a per-image list gives each part its own rows; None: all)."""

    rows: int
    categories: Callable[[int], Sequence[str] | None] = lambda classes: None
    forward: Forward | None = None
    load_image: LoadImage | None = None
    owned: torch.Tensor | None = None

    def image_input(self, image: Any) -> torch.Tensor:
        """`image` (a path, PIL image, array) as model input (1, C, H, W)."""
        if self.load_image is None:
            raise TargetError(
                f"a reference image ({type(image).__name__}) needs the model's preprocessing: "
                "use cnnvis.explain, or pass the reference as a model-input tensor"
            )
        return self.load_image(image)

    def owned_rows(self) -> list[int]:
        """The rows this target is scored for, as a list."""
        return list(range(self.rows)) if self.owned is None else self.owned.tolist()


def target_layers(target: Any) -> tuple[str, ...]:
    """The layers a target reads (its `layers`, or none)."""
    return tuple(getattr(target, "layers", ()) or ())


def bind(target: Any, output: Any, activations: Activations, context: Context) -> Any:
    """`target.bind(output, activations, context)` where it has one (`bind(output)` for a
    target whose `bind` takes the output alone), else the target itself."""
    method = getattr(target, "bind", None)
    if method is None:
        return target
    return method(output) if _takes_one(method) else method(output, activations, context)


def _takes_one(method: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): the full call
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional for p in parameters) == 1


def take(target: Any, rows: torch.Tensor) -> Any:
    """`target.take(rows)` where it has one, else the target itself (the same for any row)."""
    method = getattr(target, "take", None)
    return target if method is None else method(rows)


def describe(target: Any) -> str:
    """The target as users write it (its `str`), or the callable's name."""
    if isinstance(target, CallableTarget):
        return str(target)
    text = str(target)
    return text if len(text) <= 80 else text[:77] + "..."


def checked_scores(target: Any, output: Any, activations: Activations, rows: int) -> torch.Tensor:
    """`target.scores(output, activations)`, checked to be one floating score per row (rows,)."""
    found = target.scores(output, activations)
    if not isinstance(found, torch.Tensor):
        raise TargetError(
            f"target {describe(target)} returned {type(found).__name__}; expected a tensor of "
            f"shape ({rows},), one score per image"
        )
    if tuple(found.shape) != (rows,):
        raise TargetError(
            f"target {describe(target)} returned scores of shape {tuple(found.shape)}; expected "
            f"shape ({rows},), one score per image (reduce over everything else, e.g. .sum(1))"
        )
    if not found.is_floating_point():
        raise TargetError(
            f"target {describe(target)} returned {found.dtype} scores; they must be floating "
            "point to be differentiated"
        )
    return found


def cross_scores(
    target: Any, output: Any, activations: Activations, rows: int, images: int
) -> torch.Tensor:
    """(rows, images): every row of a batch scored for the target of every recorded image
    (one evaluation when the target is the same for every row)."""
    columns = []
    for j in range(images):
        taken = take(target, torch.full((rows,), j, dtype=torch.long))
        if taken is target:
            return checked_scores(target, output, activations, rows)[:, None].expand(-1, images)
        columns.append(checked_scores(taken, output, activations, rows))
    return torch.stack(columns, dim=1)


@dataclass(frozen=True, eq=False)
class CallableTarget:
    """Any function `f(output) -> (N,)` as a target: the same function for every row."""

    function: Callable[[Any], torch.Tensor]

    def __str__(self) -> str:
        return getattr(self.function, "__name__", type(self.function).__name__)

    def scores(self, output: Any, activations: Activations) -> torch.Tensor:
        """`f(output)`; its shape is checked by whoever asks for the scores."""
        return self.function(output)


@dataclass(frozen=True, eq=False)
class PerImage:
    """A different target per image (a list that mixes kinds): part g scores the rows where
    `owner == g`. Each part is evaluated on the whole batch and its own rows kept."""

    parts: tuple[Any, ...]
    owner: torch.Tensor  # (N,) part index of each row
    layers: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.layers:
            found = dict.fromkeys(n for p in self.parts for n in target_layers(p))
            object.__setattr__(self, "layers", tuple(found))

    def __str__(self) -> str:
        return "[" + ", ".join(describe(p) for p in self.parts) + "]"

    def row_names(self) -> list[str]:
        """The target of each row, as users write it."""
        return [describe(self.parts[g]) for g in self.owner.tolist()]

    def bind(self, output: Any, activations: Activations, context: Context) -> PerImage:
        """Each part bound on the whole batch, told which rows it owns."""
        if len(self.owner) != context.rows:
            raise TargetError(
                f"{len(self.owner)} targets given for a batch of {context.rows} images; give "
                "one target per image, or a single target for all"
            )
        parts = []
        for g, part in enumerate(self.parts):
            owned = (self.owner == g).nonzero().flatten()
            parts.append(bind(part, output, activations, replace(context, owned=owned)))
        return PerImage(tuple(parts), self.owner)

    def take(self, rows: torch.Tensor) -> PerImage:
        """Each part taken at `rows`, and each row's owner with it."""
        rows = rows.to(self.owner.device)
        return PerImage(tuple(take(p, rows) for p in self.parts), self.owner[rows])

    def scores(self, output: Any, activations: Activations) -> torch.Tensor:
        """Row i: the score of part owner[i] at row i."""
        rows = len(self.owner)
        found = torch.stack([checked_scores(p, output, activations, rows) for p in self.parts])
        owner = self.owner.to(found.device)
        return found.gather(0, owner[None]).squeeze(0)

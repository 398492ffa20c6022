"""Sanity checks (Adebayo et al. 2018, arXiv:1810.03292): does the map change when the model's
weights are randomized? A map that stays the same after the classifier has been scrambled does
not explain the classifier.

- cascading: randomize the layers from the top (logits) down, one more group at each step;
- independent: randomize one group at a time, the others kept trained.

Every step works on a deep copy of the model: the user's model is never modified. A group is a
unit of the network's main path that has parameters (a block, a convolution, the classifier);
a normalization layer joins the unit before it. Each parameter tensor is redrawn from a normal
distribution with that tensor's own mean and standard deviation, which scrambles what was
learnt and keeps the scale of the activations (running statistics are kept). The target class is
the trained model's, at every step. Similarity to the trained model's map: Spearman rank
correlation with and without absolute values, SSIM and HOG (see `similarity`).

Known outcome (the paper, Inception v3): gradient and Grad-CAM maps decorrelate as layers are
randomized (rank correlation about 0.1-0.3 at the end), guided backprop barely changes while
only the top layers are random. The test alone cannot rank methods (Binder et al. 2023).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..api import explain_many, prepare_inputs
from ..layers import requested_layers
from ..methods import get_method
from ..model import LoadedModel, as_loaded
from ..targets import TargetSpec
from . import maps
from .errors import EvaluationError
from .similarity import MEASURES, similarities

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("cascading", "independent")
TRAINED = "trained"
NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


@dataclass
class RandomizationResult:
    """The maps of each method at each randomization step and their similarity to step 0.

    `steps[0]` is "trained"; `steps[i]` names the group randomized at step i (cascading: it
    and every group above it). `similarity[method][measure][i]` compares step i to step 0;
    `maps[method][i]` is the (H, W) relevance map at step i.
    """

    mode: str
    image: str
    target: int
    target_name: str
    steps: list[str]
    similarity: dict[str, dict[str, list[float]]]
    maps: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    display: torch.Tensor | None = None

    def __repr__(self) -> str:
        return (
            f"RandomizationResult({self.mode}, {self.image}, class {self.target} "
            f"{self.target_name}, {len(self.steps)} steps, methods {', '.join(self.similarity)})"
        )


def randomization_groups(module: nn.Module) -> list[tuple[str, list[str]]]:
    """(label, module names) of the groups, top (output) first."""
    units: list[tuple[str, nn.Module]] = []

    def walk(parent: nn.Module, prefix: str) -> None:
        for name, child in parent.named_children():
            full = f"{prefix}{name}"
            if (type(child) is nn.Sequential or type(child) is nn.ModuleList) and len(child):
                walk(child, full + ".")
            elif any(True for _ in child.parameters()):
                units.append((full, child))

    walk(module, "")
    groups: list[tuple[str, list[str]]] = []
    for name, child in units:
        if isinstance(child, NORMS) and groups:
            label, names = groups[-1]
            groups[-1] = (f"{label}+{name.rsplit('.', 1)[-1]}", [*names, name])
        else:
            groups.append((name, [name]))
    return groups[::-1]


def randomize_(module: nn.Module, names: Sequence[str], generator: torch.Generator) -> None:
    """Redraw every parameter of the named submodules from N(mean, std) of that tensor."""
    with torch.no_grad():
        for name in names:
            for p in module.get_submodule(name).parameters():
                values = p.detach().double()
                mean, std = float(values.mean()), float(values.std(unbiased=False))
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
                p.copy_((mean + std * noise).to(device=p.device, dtype=p.dtype))


def _maps(
    lm: LoadedModel,
    x: torch.Tensor,
    methods: Sequence[str],
    layer: str | None,
    target: int,
    output: str | None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{method: (signed, relevance)} (H, W) maps for one image."""
    found = explain_many(lm, x, list(methods), [layer] if layer else None, [target], output=output)
    out = {}
    for (name, _), e in found.items():
        out[name] = (maps.signed(e.map)[0].cpu(), maps.relevance(e.map)[0].cpu())
    return out


def model_randomization(
    model: nn.Module | LoadedModel,
    image: object,
    methods: Sequence[str] = ("gradient", "guided-backprop", "grad-cam"),
    *,
    mode: str = "cascading",
    layer: str | None = None,
    target: TargetSpec = None,
    output: str | None = None,
    seed: int = 0,
    groups: int | None = None,
    measures: tuple[str, ...] = MEASURES,
    name: str = "image",
    on_step: Callable[[], None] | None = None,
) -> RandomizationResult:
    """Cascading or independent randomization of a copy of `model`, one image.

    `groups` limits the steps to the top `groups` groups (all by default); `layer` is the CAM
    layer (default: the model's default layer), resolved once on the trained model. `on_step`,
    when given, is called after each explanation (the trained model's, then one per group):
    one recorded forward each.
    """
    if mode not in MODES:
        raise EvaluationError(f"randomization mode must be one of {', '.join(MODES)}, got {mode!r}")
    lm = as_loaded(model)
    x, display = prepare_inputs(lm, image)
    x = x[:1].to(lm.device)
    needed = any(get_method(m).needs_layer for m in methods)
    layers = requested_layers(lm.module, layer, needed=needed, input_shape=tuple(x.shape))
    layer = layers[0] if layers else None
    trained = explain_many(lm, x, list(methods), layers or None, target, output=output)
    if on_step is not None:
        on_step()
    first = next(iter(trained.values()))
    t, t_name = first.targets[0], first.target_names[0]
    reference = {
        n: (maps.signed(e.map)[0].cpu(), maps.relevance(e.map)[0].cpu())
        for (n, _), e in trained.items()
    }

    work = copy.deepcopy(lm.module)
    copy_lm = LoadedModel(work, lm.name, lm.weights, lm.preprocess, lm.categories)
    chosen = randomization_groups(work)[: groups if groups else None]
    if not chosen:
        raise EvaluationError("the model has no parameters to randomize")
    generator = torch.Generator().manual_seed(seed)
    names = list(reference)
    result = RandomizationResult(
        mode,
        name,
        t,
        t_name,
        [TRAINED],
        {n: {m: [1.0] for m in measures} for n in names},
        {n: [reference[n][1]] for n in names},
        display[0],
    )
    for label, modules in chosen:
        saved = None
        if mode == "independent":
            saved = {k: v.clone() for k, v in work.state_dict().items() if _under(k, modules)}
        randomize_(work, modules, generator)
        now = _maps(copy_lm, x, names, layer, t, output)
        if on_step is not None:
            on_step()
        result.steps.append(label)
        for n in names:
            for measure, value in similarities(reference[n], now[n], measures).items():
                result.similarity[n][measure].append(value)
            result.maps[n].append(now[n][1])
        if saved is not None:
            work.load_state_dict(saved, strict=False)
        log.debug("randomized %s (%s)", label, mode)
    return result


def _under(key: str, modules: Sequence[str]) -> bool:
    return any(key.startswith(m + ".") for m in modules)

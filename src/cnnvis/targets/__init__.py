"""What score to explain: targets, one per image, from any model output.

A target turns the model's output (and, for targets inside the network, the recorded
activations) into one score per image, shape (N,). Every method only ever sees that score:
the gradient methods differentiate it, the CAMs take its gradient at a layer, the perturbation
methods (occlusion, RISE, Score-CAM, Ablation-CAM) compute it on changed inputs, the
evaluation metrics follow it. So a new task is a new target, not a new code path.

The protocol (`Target`) is one method::

    class Target(Protocol):
        def scores(self, output, activations) -> Tensor:  # (N,)
            ...

`output` is what the model returned (the entry picked by `output=` / `--output` if given):
a tensor, a tuple, a dict (torchvision's segmentation models return {"out": ...}), a list of
detection dicts. `activations` maps layer names to their recorded outputs. Optional members,
each with a default (see `cnnvis.targets.base`): `layers` (what to record for it), `bind(output,
activations, context)` (made concrete on the recorded batch: top-1 classes, the predicted
region of a class, a reference image's embedding) and `take(rows)` (the target of chosen or
repeated images, for the extra rows of multi-pass methods). A target whose `scores` does not
give a floating (N,) tensor is a TargetError saying the shape expected.

The targets here:

- `ClassTarget(index_or_name=None, score="logit")`: a class's logit (default), softmax
  probability or log-softmax; None is each image's top-1. Written `285`, `tabby`, `top1`,
  `285@softmax`, `tabby@log_softmax`.
- `MultiLabel(labels, score="sigmoid")`: several labels at once, their sigmoids (or logits)
  summed. Written `labels:3,7`, `labels:cat,dog@logit`.
- `Regression(index=0)`: one output of a regression model. Written `regression:0`.
- `UnitTarget(layer, channel, reduce="sum")`: a channel of a layer, summed, max or at a point.
  Written `layer4:17`, `layer4:17@max`, `layer4:17@3,4`.
- `MaskTarget(category, mask=None, box=None)`: a segmentation class's scores (N, C, H, W)
  summed over its predicted region (default), a mask, or a box. Written `mask:15`,
  `mask:person`.
- `Similarity(reference, layer=None)`: the cosine similarity of an embedding (the output, or a
  layer's activation averaged over space) to a reference image's or a given vector. Written
  `similar:other.jpg`.
- Any callable `f(output) -> (N,)` (`CallableTarget`), and a per-image list mixing all of these
  (`PerImage`), None / "top1" included.

`as_target` turns any of these spellings into a target; `parse_target` reads a string.
"""

from .base import (
    Activations,
    CallableTarget,
    Context,
    PerImage,
    Target,
    bind,
    checked_scores,
    cross_scores,
    describe,
    take,
    target_layers,
)
from .classes import (
    ClassTarget,
    MultiLabel,
    Regression,
    resolve_targets,
    row_classes,
    row_names,
    target_scores,
)
from .output import select_logits, select_output
from .segmentation import MaskTarget, segment_scores
from .similarity import Similarity, embedding
from .spelling import FORMS, TargetSpec, as_target, parse_target, register_spelling
from .unit import UnitTarget

__all__ = [
    "FORMS",
    "Activations",
    "CallableTarget",
    "ClassTarget",
    "Context",
    "MaskTarget",
    "MultiLabel",
    "PerImage",
    "Regression",
    "Similarity",
    "Target",
    "TargetSpec",
    "UnitTarget",
    "as_target",
    "bind",
    "checked_scores",
    "cross_scores",
    "describe",
    "embedding",
    "parse_target",
    "register_spelling",
    "resolve_targets",
    "row_classes",
    "row_names",
    "segment_scores",
    "select_logits",
    "select_output",
    "take",
    "target_layers",
    "target_scores",
]

"""One CAM from several layers: the per-layer maps of one method, fused.

Deep layers localise coarsely and semantically, shallow ones finely (Jiang et al. 2021, LayerCAM
§3.3). Each layer's map, at the input's resolution, is ReLU'd and min-max normalised per image,
then the layers are combined position by position:

    how="mean"  mean over layers, normalised again     pytorch-grad-cam (several target_layers)
    how="max"   maximum over layers                    TorchCAM's `fuse_cams`

The maps come from one recorded forward (`explain_many(..., layers=[...])` or `sweep`), so
fusing costs nothing more than the per-layer maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch

from .errors import MethodError
from .explanation import Explanation, Sweep
from .postprocess import normalize

FUSIONS = ("mean", "max")


def fuse_layers(
    explanations: Sweep | Mapping[str, Explanation] | Sequence[Explanation],
    how: str = "mean",
) -> Explanation:
    """The CAMs of one method at several layers as one map (N, H, W) in [0, 1] (see the
    module's notes); `layer` names the fused layers joined by '+', `layer_map` is None (the
    layers' resolutions differ) and `params` records `fused_layers` and `fusion`."""
    if how not in FUSIONS:
        raise MethodError(f"fuse_layers: how must be one of {', '.join(FUSIONS)}; got {how!r}")
    if isinstance(explanations, Sweep):
        explanations = explanations.explanations
    items = list(explanations.values() if isinstance(explanations, Mapping) else explanations)
    if not items:
        raise MethodError("fuse_layers: no explanations given")
    first = items[0]
    for e in items:
        if e.kind != "cam" or e.layer is None:
            raise MethodError(
                f"fuse_layers fuses CAM maps of several layers; {e.method} is a pixel method"
            )
        if e.method != first.method or e.map.shape != first.map.shape:
            raise MethodError(
                "fuse_layers: every map must come from the same method and images "
                f"(got {e.method} {tuple(e.map.shape)} and {first.method} "
                f"{tuple(first.map.shape)})"
            )
        if e.targets != first.targets:
            raise MethodError("fuse_layers: the maps explain different targets")
    scaled = torch.stack([normalize(e.map.clamp(min=0)) for e in items])  # (L, N, H, W)
    fused = normalize(scaled.mean(dim=0)) if how == "mean" else scaled.amax(dim=0)
    layers = [e.layer for e in items if e.layer is not None]  # all of them (checked above)
    return replace(
        first,
        map=fused,
        layer="+".join(layers),
        layer_map=None,
        params={**first.params, "layer": "+".join(layers), "fused_layers": layers, "fusion": how},
    )

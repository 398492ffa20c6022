"""Layers: by name (`names`), as one forward sees them (`probe`: listing, the default layer,
sweep layers), what a user asks for (`requests`: "auto", lists, patterns) and the geometry of
feature maps and transformer tokens (`tokens`)."""

from .names import resolve_layer
from .patterns import MAX_LAYERS, pattern_layers, sweep_layers
from .probe import LayerInfo, default_layer, list_layers, probe
from .requests import LayerRequest, requested_layers
from .tokens import MAX_PREFIX_TOKENS, is_grid, patch_size, to_spatial, token_grid
from .units import layers_for_unit

__all__ = [
    "MAX_LAYERS",
    "MAX_PREFIX_TOKENS",
    "LayerInfo",
    "LayerRequest",
    "default_layer",
    "is_grid",
    "layers_for_unit",
    "list_layers",
    "patch_size",
    "pattern_layers",
    "probe",
    "requested_layers",
    "resolve_layer",
    "sweep_layers",
    "to_spatial",
    "token_grid",
]

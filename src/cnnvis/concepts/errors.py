"""The error of concept methods given settings or inputs that cannot work."""

from __future__ import annotations

from ..errors import CnnvisError


class ConceptError(CnnvisError, ValueError):
    """A concept method's setting that cannot work: k too large for the activations, too few
    images, k below 1."""

    exit_code = 2

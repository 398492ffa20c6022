"""Concepts: what a network has learned, not only where it looked (#20).

`dff(model, images, k=4)`: Deep Feature Factorization, k concepts of a layer over a set of
images, a map per concept per image, and what the classifier head says about each.
"""

from .dff import dff
from .errors import ConceptError
from .nmf import Factors, nmf
from .result import ConceptResult, TopClass

__all__ = ["ConceptError", "ConceptResult", "Factors", "TopClass", "dff", "nmf"]

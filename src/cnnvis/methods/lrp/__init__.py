"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019): rules, composites,
canonizers and the relevance pass, checked against Zennit (Anders et al. 2021).

- `rules.py`: the LRP rules as modified gradients (ε, γ, αβ, z⁺, z-box, flat, w², pass);
- `composites.py`: which rule each layer gets (Zennit's named composites, user rules);
- `canonizers.py`: a copy of the model with BatchNorms merged into their convolutions;
- `functional.py`: activations, pooling, residual sums and gates where they are called;
- `propagate.py`: one forward of the copy with the rules on and one backward.

The registered method lives in `cnnvis.methods.relevance`.
"""

from __future__ import annotations

from .composites import COMPOSITES, Composite, named_composite
from .propagate import relevance
from .rules import RULE_NAMES, AlphaBeta, Epsilon, Flat, Gamma, Pass, Rule, WSquare, ZBox, ZPlus

__all__ = [
    "COMPOSITES",
    "RULE_NAMES",
    "AlphaBeta",
    "Composite",
    "Epsilon",
    "Flat",
    "Gamma",
    "Pass",
    "Rule",
    "WSquare",
    "ZBox",
    "ZPlus",
    "named_composite",
    "relevance",
]

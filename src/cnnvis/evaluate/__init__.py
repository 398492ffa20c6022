"""Evaluation: can a map be trusted? Faithfulness, localisation and sanity checks, each method
beside baselines that know nothing about the model.

    import cnnvis
    model = cnnvis.load_model()
    ev = cnnvis.evaluate(model, ["sample:cat", "sample:coffee"], methods=["grad-cam", "gradient"])
    print(ev.table())          # mean ± CI per map x metric; verdicts of paired tests
    ev.comparisons()           # every method vs baseline: difference, CI, p, effect, verdict
    ev.save("cnnvis-out/evaluate")   # CSV, PNG figures, evaluation.html
    ev.html()                  # an HTML fragment for a report

The package itself is callable: `cnnvis.evaluate(...)` is `cnnvis.evaluate.evaluate(...)`.
Metrics (see `METRICS`): deletion, insertion (RISE), average-drop, increase (Grad-CAM++),
road-morf, road-lerf (ROAD), pointing-game, energy-pointing-game; randomization checks
"cascading" and "independent" (Adebayo et al. 2018). Baselines: smooth random, centred
Gaussian, Sobel edges, and each method's own reversed (least-relevant-first) order. Each
method-versus-baseline comparison is paired over the images (`verdicts`: bootstrap interval,
Wilcoxon signed-rank test, rank-biserial effect; better, worse or no evidence).
"""

from __future__ import annotations

import inspect
import sys
import types

from .baselines import BASELINES, centre_gaussian, smooth_random, sobel_edges
from .errors import EvaluationError
from .faithfulness import (
    ROAD_FRACTIONS,
    SUBSTRATES,
    Curve,
    auc,
    blur,
    deletion_insertion,
    substrate,
)
from .imputation import linear_imputation, noisy_linear_imputation
from .localisation import (
    Annotation,
    Boxes,
    box_mask,
    energy_pointing_game,
    load_boxes,
    pointing_game,
)
from .metrics import GROUPS, METRICS, Metric
from .protocol import resolve_metrics
from .result import Evaluation, Flag, Score
from .runner import evaluate
from .sanity import MODES, RandomizationResult, model_randomization, randomization_groups
from .similarity import MEASURES, hog_similarity, spearman, ssim
from .verdicts import Comparison, Interval, compare

__all__ = [
    "BASELINES",
    "GROUPS",
    "MEASURES",
    "METRICS",
    "MODES",
    "ROAD_FRACTIONS",
    "SUBSTRATES",
    "Annotation",
    "Boxes",
    "Comparison",
    "Curve",
    "Evaluation",
    "EvaluationError",
    "Flag",
    "Interval",
    "Metric",
    "RandomizationResult",
    "Score",
    "auc",
    "blur",
    "box_mask",
    "centre_gaussian",
    "compare",
    "deletion_insertion",
    "energy_pointing_game",
    "evaluate",
    "hog_similarity",
    "linear_imputation",
    "load_boxes",
    "model_randomization",
    "noisy_linear_imputation",
    "pointing_game",
    "randomization_groups",
    "resolve_metrics",
    "smooth_random",
    "sobel_edges",
    "spearman",
    "ssim",
    "substrate",
]


class _CallableModule(types.ModuleType):
    """`cnnvis.evaluate(...)` calls `evaluate`; `cnnvis.evaluate.bench` etc. stay reachable."""

    __call__ = staticmethod(evaluate)


# `inspect.signature(cnnvis.evaluate)` and `help` show `evaluate`'s own parameters
__signature__ = inspect.signature(evaluate)
sys.modules[__name__].__class__ = _CallableModule

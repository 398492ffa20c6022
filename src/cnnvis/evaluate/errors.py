"""The evaluation's own error: a metric, box file or protocol setting that cannot be used."""

from __future__ import annotations

from ..errors import CnnvisError


class EvaluationError(CnnvisError, ValueError):
    """An unknown metric or baseline, a box file that cannot be read, localisation asked for
    without boxes, or a protocol setting out of range."""

    exit_code = 2

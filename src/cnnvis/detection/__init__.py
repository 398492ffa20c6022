"""Explaining object detectors: their outputs as `Detections`, a detection as a target
(`BoxTarget`), and the black-box D-RISE saliency (`drise`).

`outputs` reads any detector's output (torchvision's list of dicts, a batch dict, tuples);
`box_target` scores one detection as pytorch-grad-cam's `FasterRCNNBoxScoreTarget` does, with a
gradient through the detector; `drise` (Petsiuk et al., CVPR 2021) needs no gradient at all.
"""

from __future__ import annotations

from .box_target import BoxTarget, parse_box
from .detect import detect
from .drise import MaskDraw, draw_masks, drise
from .outputs import Detections, box_iou, read_detections

__all__ = [
    "BoxTarget",
    "Detections",
    "MaskDraw",
    "box_iou",
    "detect",
    "draw_masks",
    "drise",
    "parse_box",
    "read_detections",
]

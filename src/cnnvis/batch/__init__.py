"""Whole datasets: explain every image of a folder, tree, glob or list into maps and a Parquet
index, resumably, with DataLoader workers locally or model-holding actors on Ray.

    import cnnvis.batch
    summary = cnnvis.batch.run("photos/", "out/", "torchvision:resnet50", ["grad-cam"])
    table = cnnvis.batch.read_index("out/")          # pyarrow Table, a row per image and map
"""

from __future__ import annotations

from .index import read_index
from .inputs import Inputs, Item, discover
from .ray_actors import release_actors
from .run import BatchSummary, run

__all__ = ["BatchSummary", "Inputs", "Item", "discover", "read_index", "release_actors", "run"]

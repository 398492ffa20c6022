"""The `cnnvis` command: `main(argv) -> int`, and `entry_point()` for the console script.

`main.py` builds the parser from one module per command (`explain.py`, `sweep.py`, ...);
`common.py` has the flags and helpers they share, `output.py` writes the output folder.
"""

from .main import entry_point, main

__all__ = ["entry_point", "main"]

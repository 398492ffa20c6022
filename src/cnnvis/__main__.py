"""`python -m cnnvis`: the same as the `cnnvis` command."""

from cnnvis.cli import entry_point

if __name__ == "__main__":
    entry_point()

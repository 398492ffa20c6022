"""The methods registry; importing this package registers every built-in method, in the order
the tutorial introduces them (which is the order of the CLI, the docs and the figures)."""

# isort: off
from . import gradient  # noqa: F401  (registration side effects)
from . import cam  # noqa: F401
from . import guided_grad_cam  # noqa: F401

# isort: on
from .registry import MethodInfo, get_method, list_methods, register

__all__ = ["MethodInfo", "get_method", "list_methods", "register"]

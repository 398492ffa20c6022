"""The methods registry; importing this package registers every built-in method."""

from . import cam, gradient, guided_grad_cam  # noqa: F401  (registration side effects)
from .registry import MethodInfo, get_method, list_methods, register

__all__ = ["MethodInfo", "get_method", "list_methods", "register"]

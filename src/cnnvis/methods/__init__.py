"""The methods registry. Importing this package imports every module in it, and each module
registers its methods; `list_methods()` orders them by `MethodInfo.order` (the tutorial's
order first: gradient, guided backprop, deconvnet, CAM, Grad-CAM, guided Grad-CAM)."""

import importlib
import pkgutil

from .registry import MethodInfo, get_method, list_methods, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["MethodInfo", "get_method", "list_methods", "register"]

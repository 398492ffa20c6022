"""The methods registry and every method module, imported here by name: each module registers
its methods when imported, and `list_methods()` orders them by `MethodInfo.order` (the
tutorial's order first: gradient, guided backprop, deconvnet, CAM, Grad-CAM, guided Grad-CAM).

A new method is one new module in this folder plus its line below (tests/methods check that
every module is listed)."""

# isort: off
# The method modules, in the order `cnnvis methods` lists them.
from . import gradient  # noqa: F401  (gradient, guided-backprop, deconvnet)
from . import gradient_x_input  # noqa: F401
from . import integrated_gradients  # noqa: F401
from . import smoothgrad  # noqa: F401
from . import gradient_shap  # noqa: F401
from . import relevance  # noqa: F401  (lrp)
from . import deeplift  # noqa: F401  (deeplift, deeplift-shap)
from . import cam  # noqa: F401  (cam, grad-cam)
from . import guided_grad_cam  # noqa: F401
from . import cam_family  # noqa: F401  (grad-cam++, xgrad-cam, layer-cam, hires-cam, eigen-cam)
from . import score_cam  # noqa: F401
from . import ablation_cam  # noqa: F401
from . import occlusion  # noqa: F401
from . import rise  # noqa: F401
from . import feature_ablation  # noqa: F401
from . import kernel_shap  # noqa: F401  (kernel-shap, lime)
from . import shapley_sampling  # noqa: F401
from . import drise  # noqa: F401  (D-RISE, for detectors)

# isort: on
from .facts import Cost, Kind, MethodInfo, Needs
from .registry import check_params, get_method, list_methods, register, scripted_methods

__all__ = [
    "Cost",
    "Kind",
    "MethodInfo",
    "Needs",
    "check_params",
    "get_method",
    "list_methods",
    "register",
    "scripted_methods",
]

"""The one-pass CAM family: Grad-CAM++, XGrad-CAM, LayerCAM, HiRes-CAM and Eigen-CAM.

Each is a pure function of one layer's activations A (N, C, h, w) and, except Eigen-CAM, the
gradient G = ∂y_c/∂A, both read from the shared recorded forward through `layer_activation` /
`layer_gradient` (so they work on ViT tokens and Swin's channels-last outputs too). Maps are raw
and signed, before the final ReLU that the display applies, as for Grad-CAM.
"""

from __future__ import annotations

import torch

from ..capture import Recording
from .cam import layer_activation, layer_gradient, weighted_sum
from .facts import Compute, Cost, MethodInfo, Needs
from .registry import register

ONE_BACKWARD = Cost(
    "1 forward + 1 backward to the layer (shared with every CAM and layer)", backwards=1
)
NO_GRADIENT = Cost("1 forward (no gradient)")


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, and 0 where den == 0."""
    return torch.where(den != 0, num / torch.where(den != 0, den, 1), 0)


def _activation_and_gradient(rec: Recording, layer: str | None) -> tuple[torch.Tensor, ...]:
    return layer_activation(rec, layer).detach(), layer_gradient(rec, layer)


def grad_cam_plus_plus(rec: Recording, layer: str | None) -> torch.Tensor:
    """Grad-CAM++, raw: Σ_k w_k A_k with w_k = Σ_ij α_kij ReLU(G_kij) (Chattopadhay et al. 2018).

    α_kij = G² / (2 G² + Σ_ab A_kab · G³), the paper's eq. 19 with its 2nd and 3rd derivatives
    replaced by powers of the first (exact for an exponential of a piecewise-linear score, the
    closed form TorchCAM and pytorch-grad-cam implement), taken as 0 where the denominator is
    0. For G > 0 this is 1 / (2 + G Σ_ab A_kab): not invariant to scaling the logits.
    pytorch-grad-cam 1.5.7 adds 1e-6 to the denominator, which shrinks α like G²/1e-6 once
    |G| ≲ 1e-3 (typical of random-init models); TorchCAM 0.5.0 divides a boolean-masked copy in
    place (`alpha[mask].div_(...)`), so its α stays G² and its weights are Σ G² ReLU(G).
    """
    acts, grads = _activation_and_gradient(rec, layer)
    g2 = grads.pow(2)
    denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g2 * grads
    alpha = _safe_divide(g2, denom)
    return weighted_sum(acts, (alpha * grads.clamp(min=0)).sum(dim=(2, 3)))


def xgrad_cam(rec: Recording, layer: str | None) -> torch.Tensor:
    """XGrad-CAM, raw: Σ_k w_k A_k with w_k = Σ_ij (A_kij / Σ_ab A_kab) G_kij (Fu et al. 2020).

    A channel whose activations sum to 0 gets weight 0 (the peers add eps 1e-7 / 1e-8 instead).
    """
    acts, grads = _activation_and_gradient(rec, layer)
    weights = _safe_divide((grads * acts).sum(dim=(2, 3)), acts.sum(dim=(2, 3)))
    return weighted_sum(acts, weights)


def layer_cam(rec: Recording, layer: str | None) -> torch.Tensor:
    """LayerCAM, raw: Σ_k ReLU(G_k) ⊙ A_k, element-wise (Jiang et al. 2021)."""
    acts, grads = _activation_and_gradient(rec, layer)
    return (grads.clamp(min=0) * acts).sum(dim=1)


def hires_cam(rec: Recording, layer: str | None) -> torch.Tensor:
    """HiRes-CAM, raw: Σ_k G_k ⊙ A_k, element-wise (Draelos & Carin 2020). Equals Grad-CAM
    when G is constant over space (the layer feeds global average pooling and a linear head)."""
    acts, grads = _activation_and_gradient(rec, layer)
    return (grads * acts).sum(dim=1)


def eigen_cam(rec: Recording, layer: str | None) -> torch.Tensor:
    """Eigen-CAM: the activations' projection on their first principal component
    (Muhammad & Yeasin 2020). No gradient, so the same map for every target class.

    Per image, M = the (h·w, C) activations centred per channel (as pytorch-grad-cam does;
    the paper does not centre); map = M v with v M's first right singular vector. SVD leaves
    v's sign free: here Σ_k v_k >= 0, i.e. the map correlates positively with the
    channel-summed activation (M v · M 1 = σ² Σ_k v_k). pytorch-grad-cam keeps LAPACK's sign.
    """
    acts = layer_activation(rec, layer).detach()
    n, _, h, w = acts.shape
    work = acts.to(torch.promote_types(acts.dtype, torch.float32))  # SVD in fp32 or fp64
    flat = work.flatten(2).transpose(1, 2)  # (N, h*w, C)
    centred = flat - flat.mean(dim=1, keepdim=True)
    v: torch.Tensor = torch.linalg.svd(centred, full_matrices=False).Vh[:, 0]  # (N, C)
    sign = torch.where(v.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    projection = centred @ (v * sign)[..., None]  # (N, h*w, 1)
    return projection.reshape(n, h, w).to(acts.dtype)


def _register(
    name: str,
    order: int,
    compute: Compute,
    summary: str,
    formula: str,
    paper: str,
    *,
    gradients: bool = True,
) -> None:
    """Register one CAM of the family; `gradients`: it reads ∂y_c/∂A at its layer."""
    register(
        MethodInfo(
            name=name,
            order=order,
            kind="cam",
            summary=summary,
            formula=formula,
            paper=paper,
            cost=ONE_BACKWARD if gradients else NO_GRADIENT,
            compute=compute,
            layer_gradients=gradients,
            needs=Needs(layer=True),
        )
    )


_register(
    "grad-cam++",
    23,
    grad_cam_plus_plus,
    "Grad-CAM with per-position weights from higher-order terms: better for several objects.",
    "ReLU(Σ_k Σ_ij α_kij ReLU(∂y_c/∂A_kij) A_k), α = G²/(2G² + Σ_ab A_kab G³)",
    "Chattopadhay et al. 2018, arXiv:1710.11063",
)
_register(
    "xgrad-cam",
    24,
    xgrad_cam,
    "Grad-CAM with gradients averaged in proportion to the activations (axiom-based).",
    "ReLU(Σ_k (Σ_ij A_kij G_kij / Σ_ij A_kij) A_k)",
    "Fu et al. 2020, arXiv:2008.02312",
)
_register(
    "layer-cam",
    25,
    layer_cam,
    "Activations weighted by their own positive gradients, position by position: works at "
    "shallow layers too.",
    "ReLU(Σ_k ReLU(∂y_c/∂A_k) ⊙ A_k)",
    "Jiang et al. 2021, IEEE TIP 30:5875",
)
_register(
    "hires-cam",
    26,
    hires_cam,
    "Gradient times activation summed over channels: faithful to what the head computes.",
    "ReLU(Σ_k ∂y_c/∂A_k ⊙ A_k)",
    "Draelos & Carin 2020, arXiv:2011.08891",
)
_register(
    "eigen-cam",
    27,
    eigen_cam,
    "First principal component of the layer's activations: no gradient, not class-specific.",
    "ReLU(centred(A) v₁), v₁ first right singular vector, sign Σ_k v₁k ≥ 0",
    "Muhammad & Yeasin 2020, arXiv:2008.00299",
    gradients=False,
)

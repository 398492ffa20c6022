"""Non-negative matrix factorization X ~ W H by multiplicative updates, in torch.

Lee & Seung (NIPS 2000), Frobenius loss: H <- H * (W^T X) / (W^T W H), then
W <- W * (X H^T) / (W H H^T). Started as scikit-learn's `init="random"` starts (the same
draws of NumPy's RandomState for the same seed: abs(N(0, 1)) * sqrt(mean(X) / k), H first),
so a factorization here and scikit-learn's `NMF(init="random", random_state=seed)` begin at
the same point; both descend the same loss and reach the same factors on activations
(checked against pytorch-grad-cam, which runs scikit-learn). Runs on the tensor's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

TINY = 1e-12  # keeps the update's denominator positive


@dataclass(frozen=True)
class Factors:
    """X (rows, columns) ~ w (rows, k) @ h (k, columns); `error` = ||X - w h|| / ||X||."""

    w: torch.Tensor
    h: torch.Tensor
    error: float
    iterations: int


def random_init(x: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(w0, h0) drawn as scikit-learn's `init="random"` draws them for `random_state=seed`."""
    rows, columns = x.shape
    avg = float(np.sqrt(float(x.double().mean()) / k))
    rng = np.random.RandomState(seed)
    h = np.abs(avg * rng.standard_normal(size=(k, columns)))
    w = np.abs(avg * rng.standard_normal(size=(rows, k)))
    return torch.from_numpy(w).to(x.device, x.dtype), torch.from_numpy(h).to(x.device, x.dtype)


def nmf(
    x: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-5,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Factors:
    """Factor the non-negative (rows, columns) matrix `x` into k parts.

    Stops when the relative reconstruction error improves by less than `tol` (relative) over
    10 iterations, or after `max_iter`. `init`: (w0, h0) instead of the seeded random start.
    """
    w, h = random_init(x, k, seed) if init is None else (init[0].clone(), init[1].clone())
    norm_x = float(torch.linalg.norm(x)) or 1.0
    previous = _error(x, w, h, norm_x)
    error, done = previous, 0
    with torch.no_grad():
        for done in range(1, max_iter + 1):
            h = h * (w.T @ x) / ((w.T @ w) @ h).clamp_min(TINY)
            w = w * (x @ h.T) / (w @ (h @ h.T)).clamp_min(TINY)
            if done % 10 == 0:
                error = _error(x, w, h, norm_x)
                if previous - error < tol * previous:
                    break
                previous = error
    return Factors(w=w, h=h, error=_error(x, w, h, norm_x), iterations=done)


def _error(x: torch.Tensor, w: torch.Tensor, h: torch.Tensor, norm_x: float) -> float:
    return float(torch.linalg.norm(x - w @ h)) / norm_x

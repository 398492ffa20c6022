"""Non-negative matrix factorization X ~ W H by coordinate descent, in torch.

The solver of scikit-learn's `NMF(solver="cd")` (Cichocki & Phan 2009, hierarchical
alternating least squares; Hsieh & Dhillon 2011): each column of W in turn, then each row of H,
is moved to the non-negative minimum of the Frobenius loss with the others held:
W[:, t] <- max(0, W[:, t] + ((X H^T)[:, t] - W (H H^T)[:, t]) / (H H^T)[t, t]).
Per element this is scikit-learn's update (its rows are independent, so one column at a time
is the same), in the same order (W, then H, components in order, no shuffle), from the same
start: its `init="random"` draws of NumPy's RandomState for the same seed (abs(N(0, 1)) *
sqrt(mean(X) / k), H first). It stops as scikit-learn does, when the summed projected gradient
of an iteration falls below `tol` times the first one's (checked every CHECK_EVERY iterations).
Runs on the tensor's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CHECK_EVERY = 10  # iterations between convergence checks (each costs a few more ops)


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
    max_iter: int = 500,
    tol: float = 1e-4,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Factors:
    """Factor the non-negative (rows, columns) matrix `x` into k parts (see the module).

    `init`: (w0, h0) instead of the seeded random start."""
    w, h = random_init(x, k, seed) if init is None else (init[0].clone(), init[1].clone())
    w_rows = w.T.contiguous()  # (k, rows): each component a contiguous row
    xt = x.T.contiguous()
    first, done = 0.0, 0
    with torch.no_grad():
        for done in range(1, max_iter + 1):
            check = done == 1 or done % CHECK_EVERY == 0
            violation = _sweep(w_rows, h @ xt, h @ h.T, check)  # W's columns, rows of W^T
            violation += _sweep(h, w_rows @ x, w_rows @ w_rows.T, check)  # H's rows
            if done == 1:
                first = violation or 1.0
            elif check and violation / first <= tol:
                break
    w = w_rows.T.contiguous()
    error = float(torch.linalg.norm(x - w @ h)) / (float(torch.linalg.norm(x)) or 1.0)
    return Factors(w=w, h=h, error=error, iterations=done)


def _sweep(rows: torch.Tensor, target: torch.Tensor, gram: torch.Tensor, check: bool) -> float:
    """One pass over the rows of `rows` (k, n), in place, for the loss ||X - a rows|| with the
    other factor a fixed: `target` = a^T X (k, n), `gram` = a^T a (k, k). With `check`, the
    summed projected gradient (scikit-learn's `violation`), else 0."""
    violation = torch.zeros((), dtype=rows.dtype, device=rows.device)
    diagonal = gram.diagonal().tolist()
    negative = target.neg()
    for t in range(rows.shape[0]):
        grad = torch.addmv(negative[t], rows.T, gram[t])  # (gram @ rows - target)[t]
        if check:
            projected = torch.where(rows[t] == 0, grad.clamp(max=0), grad)
            violation += projected.abs().sum()
        if diagonal[t] != 0:
            rows[t].sub_(grad, alpha=1 / diagonal[t]).clamp_(min=0)
    return float(violation)

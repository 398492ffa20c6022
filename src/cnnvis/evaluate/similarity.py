"""How alike two maps are, as in the sanity checks of Adebayo et al. 2018 (arXiv:1810.03292):
Spearman rank correlation of the signed maps and of their absolute values, SSIM and the
correlation of HOG features of the maps scaled to [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MEASURES: tuple[str, ...] = ("spearman-abs", "spearman", "ssim", "hog")


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a flat tensor, tied values sharing their average rank (float64)."""
    v = values.detach().flatten().double().cpu()
    sorted_values, order = torch.sort(v, stable=True)
    _, inverse, counts = torch.unique_consecutive(
        sorted_values, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2  # (first + last) / 2, ranks from 1
    ranks = torch.empty_like(v)
    ranks[order] = mean_rank[inverse]
    return ranks


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two flat tensors; 0 when either is constant."""
    a = a.flatten().double() - a.double().mean()
    b = b.flatten().double() - b.double().mean()
    den = float((a.square().sum() * b.square().sum()).sqrt())
    return float((a * b).sum()) / den if den > 0 else 0.0


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation: the Pearson correlation of the average ranks."""
    return pearson(average_ranks(a), average_ranks(b))


def unit_scale(map2d: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """|m| scaled to [0, 1] and clipped at its `percentile` (Adebayo et al.'s visualisation)."""
    m = map2d.detach().double().cpu().abs()
    top = float(torch.quantile(m.flatten(), percentile / 100.0))
    top = top if top > 0 else float(m.max())
    return (m / top).clamp(0, 1) if top > 0 else torch.zeros_like(m)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """Structural similarity of two (H, W) images (Wang et al. 2004): Gaussian window 11,
    sigma 1.5, K1 = 0.01, K2 = 0.03, mean over the valid (unpadded) windows."""
    x = a.detach().double().cpu()
    y = b.detach().double().cpu()
    size = min(11, x.shape[-1], x.shape[-2])
    g = _gaussian_1d(size - 1 + size % 2)
    stack = torch.stack([x, y, x * x, y * y, x * y])[:, None]  # one separable pass for all five
    blurred = F.conv2d(F.conv2d(stack, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))[:, 0]
    mu_x, mu_y, xx, yy, xy = blurred
    sxx, syy, sxy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def hog_features(map2d: torch.Tensor) -> torch.Tensor:
    """Histogram-of-oriented-gradients features (scikit-image: 9 orientations, 8 x 8 cells,
    3 x 3 blocks, L2-Hys) of an (H, W) image."""
    from skimage.feature import hog

    image = map2d.detach().double().cpu().numpy()
    cells = min(8, image.shape[0] // 3, image.shape[1] // 3) or 1
    return torch.from_numpy(hog(image, pixels_per_cell=(cells, cells), cells_per_block=(3, 3)))


def hog_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of the HOG features of two (H, W) images."""
    return pearson(hog_features(a), hog_features(b))


def similarities(
    reference: tuple[torch.Tensor, torch.Tensor],
    other: tuple[torch.Tensor, torch.Tensor],
    measures: tuple[str, ...] = MEASURES,
) -> dict[str, float]:
    """Every measure between two maps, each given as (signed, relevance) (H, W) pair: Spearman
    on the signed maps and on |relevance|, SSIM and HOG on `unit_scale(relevance)`."""
    (signed_a, rel_a), (signed_b, rel_b) = reference, other
    out: dict[str, float] = {}
    if "spearman-abs" in measures:
        out["spearman-abs"] = spearman(rel_a.abs(), rel_b.abs())
    if "spearman" in measures:
        out["spearman"] = spearman(signed_a, signed_b)
    if "ssim" in measures or "hog" in measures:
        ua, ub = unit_scale(rel_a), unit_scale(rel_b)
        if "ssim" in measures:
            out["ssim"] = ssim(ua, ub)
        if "hog" in measures:
            out["hog"] = hog_similarity(ua, ub)
    return out

"""The image being optimized: a Fourier-space, colour-decorrelated parametrization.

Olah, Mordvintsev & Schubert 2017, "Feature Visualization" (Distill), and lucid: optimizing
pixels directly lets the gradient's high frequencies win and gives noise. Instead the image is
the inverse real FFT of a spectrum whose coefficients are scaled by 1/f (so every frequency is
equally easy to change: a whitened, 'decorrelated' space), and its three channels are mixed by
the square root of ImageNet's colour covariance (decorrelated colour), then squashed into
[0, 1] by a sigmoid:

    image = sigmoid(C · irfft2(spectrum / max(f, 1/size)) / 4)
"""

from __future__ import annotations

import torch

# sqrt of ImageNet's RGB covariance (from its SVD), as in lucid; columns normalized below.
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
FOURIER_MAGIC = 4.0  # lucid's divisor: keeps the starting image near grey, avoids saturation


def color_correlation() -> torch.Tensor:
    """The colour mixing matrix C (3, 3), scaled so its largest column has norm 1."""
    m = torch.tensor(COLOR_CORRELATION_SVD_SQRT, dtype=torch.float64)
    return m / m.norm(dim=0).max()


def frequencies(height: int, width: int) -> torch.Tensor:
    """|f| of every coefficient of `torch.fft.rfft2` for an image (height, width), in cycles/px."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    return (fx * fx + fy * fy).sqrt()


class ImageParam:
    """N images (N, 3, size, size) in [0, 1] made from one trainable tensor, `self.tensor`.

    `fourier`: a spectrum scaled by 1/f**decay_power (else raw pixels); `decorrelate`: channels
    mixed by `color_correlation()`. The tensor starts as sd * N(0, 1) from `generator`, which
    is a near-grey image.
    """

    def __init__(
        self,
        batch: int,
        size: int,
        generator: torch.Generator,
        *,
        fourier: bool = True,
        decorrelate: bool = True,
        decay_power: float = 1.0,
        sd: float = 0.01,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.size, self.fourier, self.decorrelate = size, fourier, decorrelate
        if fourier:
            freqs = frequencies(size, size)
            # 1/f**decay, scaled so the constant (DC) term has weight `size` for any decay
            scale = (freqs.clamp(min=1.0 / size) * size) ** -decay_power * size
            self.scale = scale.to(device, dtype)[None, None]
            shape: tuple[int, ...] = (batch, 3, *freqs.shape, 2)
        else:
            shape = (batch, 3, size, size)
        start = torch.randn(shape, generator=generator, dtype=torch.float64) * sd
        self.tensor = start.to(device, dtype).requires_grad_(True)
        self.color = color_correlation().to(device, dtype)

    def __call__(self) -> torch.Tensor:
        if self.fourier:
            spectrum = torch.view_as_complex(self.tensor) * self.scale
            x = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / FOURIER_MAGIC
        else:
            x = self.tensor
        if self.decorrelate:
            x = torch.einsum("dc,nchw->ndhw", self.color, x)
        return torch.sigmoid(x)

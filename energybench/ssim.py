"""SSIM (Wang et al. 2004) as the JEAT paper's memorization check uses it, batched over pairs.

Settings (DESIGN.md): 11x11 Gaussian window with sigma 1.5, data range 1, K1 0.01, K2 0.03,
population covariances (scikit-image's `gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1`), the SSIM map averaged over the positions where the
window fits (scikit-image crops the same border), then over channels.

`nearest_by_ssim` finds, for each query image, the k most similar images of a large set: the local
means and variances of every image are filtered once; only sigma_xy needs each pair, computed with
the separable window as two small matrix products, in chunks so memory stays bounded.
"""

from __future__ import annotations

import math

import torch

from energybench.progress import progress

WINDOW, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, dtype=torch.float32) -> torch.Tensor:
    """1-D normalised Gaussian taps (size,), as scikit-image's gaussian filter truncated at 3.5 sigma."""
    half = size // 2
    taps = torch.exp(-(torch.arange(-half, half + 1, dtype=torch.float64) ** 2) / (2 * sigma**2))
    return (taps / taps.sum()).to(dtype)


def valid_filter_matrix(length: int, taps: torch.Tensor) -> torch.Tensor:
    """(length - len(taps) + 1, length) matrix M with (M @ v) = valid 1-D correlation of v."""
    out = length - len(taps) + 1
    m = torch.zeros(out, length, dtype=taps.dtype)
    for i in range(out):
        m[i, i:i + len(taps)] = taps
    return m


class SSIMFilter:
    """Valid-mode separable Gaussian filtering of (..., H, W) tensors: Fh @ X @ Fw^T."""

    def __init__(self, height: int, width: int, device, dtype=torch.float32):
        taps = gaussian_window(dtype=torch.float64)
        self.fh = valid_filter_matrix(height, taps).to(device, dtype)
        self.fw = valid_filter_matrix(width, taps).to(device, dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fh @ x @ self.fw.T


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of matching pairs. a, b: (N, C, H, W) float in [0, data_range] -> (N,)."""
    filt = SSIMFilter(a.shape[-2], a.shape[-1], a.device, torch.float64)
    a, b = a.double(), b.double()
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    return _ssim_map(mu_a, mu_b, var_a, var_b, cov, data_range).mean(dim=(1, 2, 3)).float()


def _ssim_map(mu_a, mu_b, var_a, var_b, cov, data_range):
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


@torch.no_grad()
def nearest_by_ssim(queries: torch.Tensor, images: torch.Tensor, k: int = 10, chunk: int | None = None,
                    device: torch.device | str = "cpu", show_progress: bool = True,
                    memory_mb: int = 1024):
    """For each query, the k images of `images` with the highest SSIM.

    queries: float (Q, C, H, W) in [0, 1]; images: uint8 or float (N, C, H, W) (uint8 is divided
    by 255). Returns (values (Q, k) float32, indices (Q, k) int64), best first. The pair tensors
    of one chunk take about 4 * Q * chunk * C * H * W * 4 bytes; by default the chunk is sized to
    keep that near `memory_mb`.
    """
    device = torch.device(device)
    q = queries.to(device, torch.float32)
    if chunk is None:
        per_image = 4 * len(q) * q[0].numel() * 4
        chunk = max(1, min(len(images), memory_mb * 2**20 // per_image))
    filt = SSIMFilter(q.shape[-2], q.shape[-1], device)
    c1, c2 = K1**2, K2**2
    mu_q = filt(q)
    var_q = filt(q * q) - mu_q**2
    best_v = torch.full((len(q), k), -math.inf, device=device)
    best_i = torch.zeros((len(q), k), dtype=torch.long, device=device)
    starts = range(0, len(images), chunk)
    for start in progress(starts, desc="SSIM neighbours", total=len(starts)) if show_progress else starts:
        x = images[start:start + chunk].to(device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        mu_x = filt(x)
        var_x = filt(x * x) - mu_x**2
        # sigma_xy for every (query, image) pair: (Q, B, C, h, w)
        cov = filt(q[:, None] * x[None]) - mu_q[:, None] * mu_x[None]
        num = (2 * mu_q[:, None] * mu_x[None] + c1) * (2 * cov + c2)
        den = (mu_q[:, None] ** 2 + mu_x[None] ** 2 + c1) * (var_q[:, None] + var_x[None] + c2)
        scores = (num / den).mean(dim=(2, 3, 4))  # (Q, B)
        merged_v = torch.cat([best_v, scores], dim=1)
        merged_i = torch.cat([best_i, torch.arange(start, start + len(x), device=device).expand(len(q), -1)], 1)
        top = merged_v.topk(k, dim=1)
        best_v, best_i = top.values, merged_i.gather(1, top.indices)
    return best_v.cpu(), best_i.cpu()

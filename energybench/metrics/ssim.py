"""SSIM (Wang et al. 2004) as the JEAT paper's memorization check uses it, batched over pairs.

Settings (JEAT Fig. 7, scikit-image conventions): 11x11 Gaussian window with sigma 1.5, data range 1, K1 0.01, K2 0.03,
population covariances (scikit-image's `gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1`), the SSIM map averaged over the positions where the
window fits (scikit-image crops the same border), then over channels.

`nearest_by_ssim` finds, for each query image, the k most similar images of a large set: the local
means and variances of every image are filtered once; only sigma_xy needs each pair, and it is
computed as two large matrix products (see `banded_query_filters`), in chunks so memory stays
bounded.
"""

from __future__ import annotations

import math

import torch

from energybench.core.progress import progress

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


def banded_query_filters(queries: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Row filters with each query folded in: (Q, C, H, W) -> (C * H, W, Q * w), w = W - len(taps) + 1.

    Entry [(c, r), s, (q, j)] is taps[s - j] * queries[q, c, r, s], so that an image row x[c, r, :]
    times this matrix gives the valid 1-D Gaussian correlation of (query * image) along the row, for
    every query at once.
    """
    n_q, channels, height, width = queries.shape
    k = len(taps)
    w = width - k + 1
    bands = queries.new_zeros(channels, height, width, n_q, w)
    rows = queries.permute(1, 2, 3, 0)  # (C, H, W, Q)
    for j in range(w):
        bands[:, :, j:j + k, :, j] = rows[:, :, j:j + k, :] * taps[:, None]
    return bands.reshape(channels * height, width, n_q * w)


@torch.no_grad()
def nearest_by_ssim(queries: torch.Tensor, images: torch.Tensor, k: int = 10, chunk: int | None = None,
                    device: torch.device | str = "cpu", show_progress: bool = True,
                    query_block: int = 32, pair_mb: float = 2.0):
    """For each query, the k images of `images` with the highest SSIM.

    queries: float (Q, C, H, W) in [0, 1]; images: uint8 or float (N, C, H, W) (uint8 is divided
    by 255). Returns (values (Q, k) float32, indices (Q, k) int64), best first.

    Local means and variances are filtered once per image. The only per-pair quantity, the filtered
    product behind sigma_xy, is two large matrix products: image rows times the query-folded row
    filters of `banded_query_filters` (one GEMM per channel-row over all queries of a block), then
    the column filter applied to everything at once. The SSIM map is then a few in-place elementwise
    passes over a (C, h, images, queries, w) tensor. `chunk` images (default: sized so that tensor
    is about `pair_mb` MB, small enough to stay in cache) are scored against `query_block` queries
    at a time; memory is bounded by the chunk, not by the number of images.
    """
    device = torch.device(device)
    q_all = queries.to(device, torch.float32)
    n_q, channels, height, width = q_all.shape
    taps = gaussian_window().to(device)
    filt = SSIMFilter(height, width, device)
    h, w = height - WINDOW + 1, width - WINDOW + 1
    c1, c2 = K1**2, K2**2
    block = max(1, min(query_block, n_q))
    if chunk is None:
        chunk = max(1, int(pair_mb * 2**20 // (4 * channels * h * w * block)))
    to_pairs = lambda t: t.permute(1, 2, 0, 3)  # (n, C, h, w) -> (C, h, n, w)

    blocks = []
    for b0 in range(0, n_q, block):
        q = q_all[b0:b0 + block]
        mu_q = filt(q)
        var_q = filt(q * q) - mu_q**2
        blocks.append({
            "rows": 2 * banded_query_filters(q, taps),  # yields 2 * filt(q * x)
            "two_mu": to_pairs(2 * mu_q).unsqueeze(2).contiguous(),  # (C, h, 1, Qb, w)
            "var_c2": to_pairs(var_q + c2).unsqueeze(2).contiguous(),
            "sq_c1": to_pairs(mu_q**2 + c1).unsqueeze(2).contiguous(),
            "n": len(q)})
    neg_c2 = torch.tensor(-c2, device=device)

    best_v = torch.full((n_q, k), -math.inf, device=device)
    best_i = torch.zeros((n_q, k), dtype=torch.long, device=device)
    starts = range(0, len(images), chunk)
    for start in progress(starts, desc="SSIM neighbours", total=len(starts)) if show_progress else starts:
        x = images[start:start + chunk].to(device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        n_x = len(x)
        mu_x = filt(x)
        var_x = filt(x * x) - mu_x**2
        mu_x_p = to_pairs(mu_x).unsqueeze(3).contiguous()  # (C, h, B, 1, w)
        var_x_p = to_pairs(var_x).unsqueeze(3).contiguous()
        sq_x_p = mu_x_p.square()
        x_rows = x.permute(1, 2, 0, 3).reshape(channels * height, n_x, width)
        scores = []
        for qb in blocks:
            along_rows = torch.bmm(x_rows, qb["rows"]).reshape(channels, height, -1)
            two_cross = (filt.fh @ along_rows).reshape(channels, h, n_x, qb["n"], w)  # 2 filt(q x)
            luminance = torch.addcmul(neg_c2, mu_x_p, qb["two_mu"])  # 2 mu_x mu_q - c2
            structure = two_cross.sub_(luminance)  # 2 sigma_xy + c2
            structure.div_(var_x_p + qb["var_c2"])
            luminance.add_(c1 + c2).div_(sq_x_p + qb["sq_c1"])
            scores.append(structure.mul_(luminance).sum(dim=(0, 1, 4)).T / (channels * h * w))  # (Qb, B)
        scores = torch.cat(scores, 0)
        merged_v = torch.cat([best_v, scores], dim=1)
        merged_i = torch.cat([best_i, torch.arange(start, start + n_x, device=device).expand(n_q, -1)], 1)
        top = merged_v.topk(k, dim=1)
        best_v, best_i = top.values, merged_i.gather(1, top.indices)
    return best_v.cpu(), best_i.cpu()

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from energybench.metrics.ssim import nearest_by_ssim, ssim


def skimage_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """scikit-image with the settings of DESIGN.md; a, b: (C, H, W) in [0, 1]."""
    return structural_similarity(a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy(),
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, channel_axis=2)


def test_ssim_matches_scikit_image(exact_test):
    x = exact_test.images[:20].float() / 255
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    pairs = [(x, noisy), (x, x.roll(1, 0)), (x, x)]
    for a, b in pairs:
        ours = ssim(a, b)
        ref = torch.tensor([skimage_ssim(ai, bi) for ai, bi in zip(a, b)], dtype=torch.float32)
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert torch.allclose(ssim(x, x), torch.ones(20))


def test_nearest_neighbours_match_brute_force_with_scikit_image(exact_test):
    train = exact_test.images[:300]
    queries = train[[5, 77, 200]].float() / 255
    queries = (queries + 0.05 * torch.randn(queries.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    values, indices = nearest_by_ssim(queries, train, k=10, chunk=64, show_progress=False, query_block=2)
    assert indices[:, 0].tolist() == [5, 77, 200]  # each finds its own source image first
    for qi in range(3):
        ref = np.array([skimage_ssim(queries[qi], t.float() / 255) for t in train])
        order = np.argsort(-ref)[:10]
        assert indices[qi].tolist() == order.tolist()
        np.testing.assert_allclose(values[qi].numpy(), ref[order], atol=1e-4)


def test_nearest_neighbours_do_not_depend_on_chunking(exact_test):
    train = exact_test.images[:200]
    queries = torch.rand(7, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    reference = nearest_by_ssim(queries, train, k=5, chunk=200, query_block=7, show_progress=False)
    for chunk, block in [(1, 1), (13, 3), (None, 32)]:
        values, indices = nearest_by_ssim(queries, train, k=5, chunk=chunk, query_block=block, show_progress=False)
        assert torch.equal(indices, reference[1])
        torch.testing.assert_close(values, reference[0], atol=1e-6, rtol=0)

"""The smooth-area grain (issue 33): 1 for the original itself, > 1 when a decode adds grain where the
original is smooth, < 1 when it smooths the original's own fine texture away."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from dpexplorer.metrics.image import all_metrics, patch_energies, smooth_area_grain


@pytest.fixture
def half_flat() -> np.ndarray:
    """Left half a gentle gradient (the smooth area), right half textured."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    img = np.stack([60 + yy * 0.5, 90 + xx * 0.2, 120 + 0 * xx], axis=2).astype(np.float64)
    img[:, 64:] += rng.normal(0, 25, (96, 64, 3))
    img[:, :64] += rng.normal(0, 1.0, (96, 64, 3))  # a real sky is not perfectly flat either
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_identical_is_one(half_flat, photo):
    assert smooth_area_grain(half_flat, half_flat) == 1.0
    assert smooth_area_grain(photo, photo.copy()) == 1.0


def test_noise_on_the_flat_area_is_above_one(half_flat):
    rng = np.random.default_rng(1)
    noisy = half_flat.astype(np.float64)
    noisy[:, :64] += rng.normal(0, 6, (96, 64, 3))
    noisy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    assert smooth_area_grain(half_flat, noisy) > 3


def test_a_blurred_decode_is_below_one(half_flat):
    blurred = np.clip(np.rint(gaussian_filter(half_flat.astype(np.float64), (2, 2, 0))), 0, 255).astype(np.uint8)
    assert smooth_area_grain(half_flat, blurred) < 0.8


def test_only_the_smooth_share_counts(half_flat):
    """Noise added to the textured half only leaves the smoothest 30 % (all in the flat half) untouched."""
    rng = np.random.default_rng(2)
    noisy = half_flat.astype(np.float64)
    noisy[:, 72:] += rng.normal(0, 20, (96, 56, 3))  # 8 px off the boundary: the σ = 1.5 high-pass stays local
    noisy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    assert smooth_area_grain(half_flat, noisy) == pytest.approx(1.0, abs=0.02)


def test_zero_energy_patches_and_odd_sizes():
    flat = np.full((40, 37, 3), 128, np.uint8)
    assert smooth_area_grain(flat, flat) == 1.0  # 0/0 guarded by the epsilon
    e = patch_energies(flat)
    assert e.shape == (3, 3) and np.all(e < 1e-20)  # partial patches at the edges count
    tiny = np.full((5, 7, 3), 10, np.uint8)
    assert smooth_area_grain(tiny, tiny) == 1.0
    with pytest.raises(ValueError, match="differ"):
        smooth_area_grain(flat, tiny)


def test_in_every_measurement(half_flat):
    """Cheap and network-free, so `all_metrics` reports it beside LPIPS (the app's table, eval, the CLI)."""
    noisy = half_flat.copy()
    noisy[:, : half_flat.shape[1] // 2] += np.random.default_rng(0).integers(0, 8, noisy[:, : half_flat.shape[1] // 2].shape,
                                                                              dtype=np.uint8)
    assert all_metrics(half_flat, half_flat)["grain"] == 1.0
    assert all_metrics(half_flat, noisy)["grain"] > 1.0

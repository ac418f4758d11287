"""High-pass luma energy per patch: what the grain guard reads (`decoders.grainguard`) and what the
smooth-area grain measures (`metrics.image.smooth_area_grain`, which imports it from here: the decoders
sit below the metrics)."""

from __future__ import annotations

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114])


def patch_energies(img: np.ndarray, *, patch: int = 16, sigma: float = 1.5) -> np.ndarray:
    """High-pass luma energy per patch: luma (0..255, BT.601) minus its Gaussian blur (σ px, reflected
    edges), squared, averaged over each patch×patch block (the last row and column of patches may be
    partial). A ⌈H/patch⌉×⌈W/patch⌉ float64 grid."""
    from scipy.ndimage import gaussian_filter

    y = img.astype(np.float64) @ _LUMA
    high = y - gaussian_filter(y, sigma, mode="reflect")
    h, w = y.shape
    rows, cols = np.arange(0, h, patch), np.arange(0, w, patch)
    sums = np.add.reduceat(np.add.reduceat(high * high, rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))
    return sums / counts

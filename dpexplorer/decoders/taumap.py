"""τ maps: a spatial τ(x, y) ∈ [0, 1] at image resolution (the "τ brush").

A painted mask says where realism may be invented (texture, foliage: τ high) and where it may not
(faces, text: τ = 0). The bitstream is the same; the map is a decode-time argument like τ itself.
A decoder applies it natively (the latent decoder: averaged onto its latent grid, ỹ = ŷ + τ(x, y)·r̃)
or, for one that cannot, `blend` mixes the plain and the τ = 1 decode in pixel space.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dpexplorer.errors import ImageError
from dpexplorer.io.images import _open
from dpexplorer.io.tauhint import TauHint, hint_grid


def check_tau_map(tau_map, height: int, width: int) -> np.ndarray:
    """`tau_map` as a float32 H×W array in [0, 1] of the image's size, or a ValueError saying why not."""
    m = np.asarray(tau_map, dtype=np.float32)
    if m.shape != (height, width):
        raise ValueError(f"the τ map is {m.shape[1] if m.ndim > 1 else '?'}×{m.shape[0] if m.ndim else '?'}, "
                         f"the image {width}×{height}")
    if not np.isfinite(m).all() or m.min() < 0.0 or m.max() > 1.0:
        raise ValueError("τ map values must be in [0, 1]")
    return m


def mask_to_unit(img: Image.Image) -> np.ndarray:
    """A mask image of any mode or bit depth → float32 in [0, 1] (white = 1; colour via luma)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNGs open as these
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(arr / peak, 0, 1).astype(np.float32)
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA").convert("RGB")  # the colour, not the alpha, is the mask
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def load_tau_map(path: str | Path, height: int, width: int) -> np.ndarray:
    """A mask PNG (or any image) → the H×W τ map; resized (area/bilinear) when its size differs."""
    img = _open(Path(path))
    try:
        img.load()
        m = mask_to_unit(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot decode the τ map: {exc}") from None
    return resize_map(m, height, width)


def resize_map(m: np.ndarray, height: int, width: int) -> np.ndarray:
    if m.shape == (height, width):
        return m
    resized = Image.fromarray(m.astype(np.float32), "F").resize((width, height), Image.BILINEAR, reducing_gap=None)
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 1)


def to_grid(tau_map: np.ndarray, grid_h: int, grid_w: int, cell: int) -> np.ndarray:
    """Area average of the map over each cell×cell block of a grid_h×grid_w grid (the map is
    edge-extended to the padded size the codec codes). A constant map stays exactly constant."""
    h, w = tau_map.shape
    padded = np.pad(tau_map.astype(np.float64), ((0, grid_h * cell - h), (0, grid_w * cell - w)), mode="edge")
    return padded.reshape(grid_h, cell, grid_w, cell).mean(axis=(1, 3)).astype(np.float32)


def blend(plain: np.ndarray, full: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    """x̂ = x̂₀ + w·(x̂₁ − x̂₀) on 8-bit images, rounded: the one pixel-space blend, for a τ map (`weight`
    H×W: the brush, the sender's hint, a family that cannot apply maps itself) and for the pixel
    decoder's scalar τ. Exact at the ends: w = 1 gives `full`, w = 0 `plain`, bit for bit."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim == 2:
        w = w[..., None]
    x0 = plain.astype(np.float32)
    return np.clip(np.rint(x0 + w * (full.astype(np.float32) - x0)), 0, 255).astype(np.uint8)


# ---- the sender's τ hint as a τ map (what the receiver multiplies by τ) --------------------------------
# It runs once per bitstream, and must give the same bits on every receiver, so it is a few small matrix
# products: the level grid upsampled to pixels (nearest) and blurred by a Gaussian of σ px are both
# linear and separable, so the map is Wy · T · Wxᵀ with T the cell grid of τ and Wy (H × rows), Wx
# (W × cols) each pixel's Gaussian weight on each cell (a difference of the kernel's prefix sums),
# renormalised at the image edges (normalised convolution): a uniform hint gives a uniform map in [0, 1].
def _axis_weights(size: int, cells: int, cell: int, sigma: int) -> np.ndarray:
    """size × cells: pixel p's share of each cell under a sampled Gaussian (σ px, 4σ support), rows summing to 1."""
    pixels = np.arange(size)[:, None]
    start = np.arange(cells)[None, :] * cell
    end = np.minimum(start + cell, size)  # the last cell may be partial; nothing beyond the image counts
    if sigma == 0:
        return ((pixels >= start) & (pixels < end)).astype(np.float64)
    radius = 4 * sigma
    offsets = np.arange(-radius, radius + 1)
    prefix = np.concatenate([[0.0], np.cumsum(np.exp(-0.5 * (offsets / sigma) ** 2))])  # prefix[t + r + 1] = Σ_{k ≤ t}
    hi = np.clip(end - 1 - pixels, -radius - 1, radius) + radius + 1
    lo = np.clip(start - 1 - pixels, -radius - 1, radius) + radius + 1
    weights = prefix[hi] - prefix[lo]
    return weights / weights.sum(axis=1, keepdims=True)


def hint_tau_map(hint: TauHint, height: int, width: int) -> np.ndarray:
    """The hint's τ map at image size: float32 H×W in [0, 1], the same bits on every call."""
    if hint.grid != hint_grid(height, width, hint.cell):
        raise ValueError(f"the τ hint's {hint.grid[1]}×{hint.grid[0]} grid of {hint.cell}-px cells does not "
                         f"cover a {width}×{height} image")
    wy = _axis_weights(height, hint.grid[0], hint.cell, hint.sigma)
    wx = _axis_weights(width, hint.grid[1], hint.cell, hint.sigma)
    tau = (wy @ hint.tau_grid()) @ wx.T
    return np.clip(tau, 0.0, 1.0).astype(np.float32)

"""Tiled analysis (g_a) and synthesis (g_s): memory bounded by the tile, not by the image.

Untiled, the first layer of g_a alone holds N = 128 channels at half resolution in float32: 6 GB at
48 MP (the whole encode or decode peaked at 9.1–9.3 GB at 16 MP). Both transforms are local, since
GDN/IGDN act per position across channels:

- g_a is 4 stride-2 5×5 convolutions: one latent cell sees a 61-px window (±30 px) of the image;
- g_s is 4 stride-2 5×5 transposed convolutions: a pixel of latent cell k sees cells k−1..k+2.

So each tile is computed with a halo wider than that window and only its core is kept. Tiles are
aligned to latent cells (16 px) so that every stride lands where it does untiled, and tiles at the
image border are clipped there, so they see the same zero padding as the untiled convolutions. The
result equals the untiled one up to float summation order (tests/unit/test_tiling.py: ≤ 1e-5 on y and on
g_s's float output, measured in the README). The image enters g_a tile by tile from uint8
(replicate padding by index clamping, as `pad_to_multiple`) and g_s writes uint8 tile by tile, so no
full-size float image is ever held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dpexplorer.io.images import to_tensor, to_uint8

CELL = 16  # pixels per latent cell (g_a downsamples ×16)


@dataclass(frozen=True)
class Tiling:
    # Padded images up to 2.5 MP (the app's ≤ 2-MP images included) run untiled, exactly as before: untiled
    # costs ~0.5 GB per MP (2842 MiB at 3.9 MP), so this keeps the untiled peak under the tiled 48-MP one.
    above_pixels: int = 2_500_000
    # Cores of 32 cells (512 px): a tile adds ~150 MB over the ~0.9 GB of Python, torch and the q3 weights
    # (64 cells: ~600 MB); the halos cost (36/32)² = 1.27× the untiled compute.
    analysis_cells: int = 32  # core of a g_a tile, in latent cells
    analysis_halo: int = 2  # 32 px > g_a's ±30 px receptive field: the core is exact
    synthesis_cells: int = 32  # core of a g_s tile, in latent cells
    synthesis_halo: int = 2  # a pixel of cell k depends on latent cells k−1..k+2 only (measured by perturbation)

    def active(self, height: int, width: int) -> bool:
        """Whether a (padded) image of this size is tiled."""
        return height * width > self.above_pixels


UNTILED = Tiling(above_pixels=2**62)


def _spans(n: int, core: int, halo: int):
    """Tiles over 0..n: (start, stop) of the tile with its halo (clipped to 0..n), (start, stop) of its core."""
    for a in range(0, n, core):
        b = min(a + core, n)
        yield max(a - halo, 0), min(b + halo, n), a, b


def analysis(g_a, img: np.ndarray, height: int, width: int, *, tiling: Tiling) -> torch.Tensor:
    """g_a of the H×W×3 uint8 `img` replicate-padded to height×width (multiples of 16), tile by tile."""
    h, w = img.shape[:2]
    y = None
    for r0, r1, a, b in _spans(height // CELL, tiling.analysis_cells, tiling.analysis_halo):
        band = img[np.minimum(np.arange(r0 * CELL, r1 * CELL), h - 1)]  # uint8 rows; clamping = replicate pad
        for c0, c1, c, d in _spans(width // CELL, tiling.analysis_cells, tiling.analysis_halo):
            t = g_a(to_tensor(band[:, np.minimum(np.arange(c0 * CELL, c1 * CELL), w - 1)]))
            if y is None:
                y = t.new_empty(1, t.shape[1], height // CELL, width // CELL)
            y[..., a:b, c:d] = t[..., a - r0:b - r0, c - c0:d - c0]
    return y


def _float_pixels(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).numpy()


def synthesis(g_s, y_hat: torch.Tensor, height: int, width: int, *, tiling: Tiling, dtype=np.uint8) -> np.ndarray:
    """g_s(ŷ) cropped to height×width as 8-bit H×W×3 (to_uint8 is per pixel, so tiles agree), tile by tile.

    `dtype=np.float32` gives g_s's raw float output instead (to measure tiled against untiled)."""
    convert = to_uint8 if dtype == np.uint8 else _float_pixels
    out = np.empty((height, width, 3), dtype)
    for r0, r1, a, b in _spans(y_hat.shape[-2], tiling.synthesis_cells, tiling.synthesis_halo):
        if a * CELL >= height:  # only padding rows left
            break
        ya, yb = a * CELL, min(b * CELL, height)
        for c0, c1, c, d in _spans(y_hat.shape[-1], tiling.synthesis_cells, tiling.synthesis_halo):
            if c * CELL >= width:
                break
            xa, xb = c * CELL, min(d * CELL, width)
            x = g_s(y_hat[..., r0:r1, c0:c1])
            out[ya:yb, xa:xb] = convert(x[..., ya - r0 * CELL:yb - r0 * CELL, xa - c0 * CELL:xb - c0 * CELL])
    return out

"""The receiver's side of the τ hint. Decoding applies it in the decoder interface
(`dpexplorer.decoders.base.resolve_tau`: the map τ·h, h = `decoders.taumap.hint_tau_map`); this module
keeps `blend_levels`, the other receiver `tools/hint_choice.py` measured against it (decodes at each
level's θ_τ, blended piecewise), and re-exports `hint_tau_map` for that tool and the tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dpexplorer.decoders.taumap import hint_tau_map  # noqa: F401  (the receiver's map, where decoding applies it)


def blend_levels(decodes: Sequence[np.ndarray], tau_map: np.ndarray) -> np.ndarray:
    """Per pixel, the piecewise-linear blend of decodes at evenly spaced τ levels (decodes[i] at
    τ = i / (L − 1)) at the map's τ; with two decodes, `decoders.taumap.blend` (x̂₀ + m·(x̂₁ − x̂₀)), rounded."""
    if len(decodes) < 2:
        raise ValueError("blending needs decodes at two levels at least")
    steps = len(decodes) - 1
    position = tau_map.astype(np.float64) * steps
    lower = np.minimum(np.floor(position), steps - 1).astype(np.intp)
    frac = (position - lower)[..., None]
    stack = np.stack([d.astype(np.float64) for d in decodes])
    rows, cols = np.indices(tau_map.shape)
    x0, x1 = stack[lower, rows, cols], stack[lower + 1, rows, cols]
    return np.clip(np.rint(x0 + frac * (x1 - x0)), 0, 255).astype(np.uint8)

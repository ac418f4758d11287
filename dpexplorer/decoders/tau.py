"""τ, the receiver's distortion–perception knob: one rule for every decoder (0 = the plain decoder)."""

from __future__ import annotations

import math


def check_tau(tau: float) -> float:
    """τ as a float in [0, 1]; anything else (NaN, ±inf, out of range) raises instead of being clipped."""
    tau = float(tau)
    if not math.isfinite(tau) or not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    return tau

"""Bjøntegaard-delta helpers on top of the `bjontegaard` package (PCHIP interpolation, which
stays well-defined with three or four points, unlike the classic cubic fit)."""

from __future__ import annotations

import math

import bjontegaard


def bd_rate(rate_ref, quality_ref, rate_test, quality_test, *, higher_is_better: bool = True) -> float:
    """Average rate difference (%) of test vs reference at equal quality; negative = test saves bits.

    For a lower-is-better quality such as LPIPS pass `higher_is_better=False` (it is negated).
    NaN when the curves do not overlap enough to compare.
    """
    sign = 1.0 if higher_is_better else -1.0
    ref = sorted(zip(rate_ref, quality_ref))
    test = sorted(zip(rate_test, quality_test))
    try:
        return float(bjontegaard.bd_rate([r for r, _ in ref], [sign * q for _, q in ref],
                                         [r for r, _ in test], [sign * q for _, q in test],
                                         method="pchip", require_matching_points=False, min_overlap=0.0))
    except Exception:
        return math.nan


def bd_quality(rate_ref, quality_ref, rate_test, quality_test) -> float:
    """Average quality difference (e.g. dB of PSNR) of test vs reference at equal rate."""
    ref = sorted(zip(rate_ref, quality_ref))
    test = sorted(zip(rate_test, quality_test))
    try:
        return float(bjontegaard.bd_psnr([r for r, _ in ref], [q for _, q in ref],
                                         [r for r, _ in test], [q for _, q in test],
                                         method="pchip", require_matching_points=False, min_overlap=0.0))
    except Exception:
        return math.nan

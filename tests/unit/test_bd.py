"""Bjøntegaard deltas of two curves, and JPEG/WebP at a matched rate."""

import pytest

from dpexplorer.evaluation import baselines
from dpexplorer.metrics.bd import bd_rate


def test_bd_rate_of_a_curve_needing_20_percent_more_bits():
    rate = [0.1, 0.2, 0.3, 0.45]
    psnr = [27.0, 29.0, 30.5, 32.0]
    assert bd_rate(rate, psnr, [r * 1.2 for r in rate], psnr) == pytest.approx(20.0, abs=0.5)
    lp = [0.45, 0.35, 0.28, 0.2]  # lower is better
    assert bd_rate(rate, lp, [r * 0.8 for r in rate], lp, higher_is_better=False) == pytest.approx(-20.0, abs=0.5)


def test_baseline_rate_matching(photo):
    for fmt in ("jpeg", "webp"):
        low = baselines.match_rate(photo, fmt, 1.0)
        high = baselines.match_rate(photo, fmt, 3.0)
        assert low["bpp"] < high["bpp"]
        assert low["image"].shape == photo.shape
        assert abs(high["bpp"] - 3.0) < 1.0

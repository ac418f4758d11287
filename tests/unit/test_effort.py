"""Encoder effort (dpexplorer.codec.effort): SGA refinement of the latents before coding."""

import numpy as np
import pytest
import torch

from dpexplorer.codec import effort
from dpexplorer.codec.precision import bf16_is_fast
from dpexplorer.errors import ImageError


def test_sga_round_picks_floor_or_ceil_and_becomes_rounding_when_cold():
    v = torch.linspace(-3.2, 3.2, 1001, dtype=torch.float64).requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    warm = effort.sga_round(v, 0.5, g)
    assert torch.all(warm >= torch.floor(v) - 1e-9) and torch.all(warm <= torch.ceil(v) + 1e-9)
    warm.sum().backward()
    assert v.grad.abs().sum() > 0  # differentiable in v
    cold = effort.sga_round(v.detach(), 1e-3, g)
    off_half = (v.detach() - torch.floor(v.detach()) - 0.5).abs() > 0.05
    assert torch.allclose(cold[off_half], torch.round(v.detach())[off_half], atol=1e-6)


def test_schedule_anneals_from_start_to_end():
    s = effort.EffortSchedule(tau_start=0.5, tau_end=0.05)
    temps = [s.temperature(i, 10) for i in range(10)]
    assert temps[0] == pytest.approx(0.5) and temps[-1] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(temps, temps[1:]))


def test_fast_synthesis_matches_g_s_and_leaves_the_model_as_it_was(tiny_codec):
    """The search's fast g_s (channels-last; bf16 where the CPU has AMX) computes the same image within bf16's
    precision, gives gradients, and does not change the layout of the model the decoders use."""
    model = tiny_codec.model
    y = torch.randn(1, model.g_s[0].in_channels, 6, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model.g_s(y)
        fast = effort.synthesize(model, y, fast=True)
    assert fast.dtype == torch.float32 and fast.shape == plain.shape
    tolerance = 0.05 if bf16_is_fast(y.device) else 1e-4  # bf16 keeps 8 bits of mantissa
    assert (fast - plain).abs().max() <= tolerance * plain.abs().max()
    y.requires_grad_(True)
    effort.synthesize(model, y, fast=True).square().mean().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.is_contiguous() for p in model.g_s.parameters())  # the decoders' copy keeps its layout


def test_fp32_search_still_lowers_the_cost(tiny_codec, photo):
    """EffortSchedule(fast_synthesis=False), the A/B arm: the plain fp32 path runs and refines."""
    data = tiny_codec.encode(photo, effort=3, schedule=effort.EffortSchedule(fast_synthesis=False))
    assert tiny_codec.decode(data).x_hat.shape == photo.shape


def _rd_cost(codec, img, data) -> float:
    """The objective the codec was trained on, with real bytes: bpp + λ·255²·MSE (0..1 scale)."""
    x_hat = codec.decode(data).x_hat
    mse = np.mean((img.astype(np.float64) / 255 - x_hat.astype(np.float64) / 255) ** 2)
    return len(data) * 8 / (img.shape[0] * img.shape[1]) + codec.cfg.lmbda * 255**2 * mse


def test_effort_refines_deterministically_and_reports_progress(photo):
    from dpexplorer.hub.loading import get_codec

    codec = get_codec(1)
    calls = []
    plain = codec.encode(photo)
    assert codec.encode(photo, effort=0) == plain  # 0 = today's encoder, byte for byte
    refined = codec.encode(photo, effort=6, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(i, 6) for i in range(1, 7)]
    assert codec.encode(photo, effort=6) == refined  # the same image gives the same file
    assert codec.decode(refined).x_hat.shape == photo.shape


def test_effort_lowers_the_real_rate_distortion_cost_with_the_same_decoder(kodak_dir):
    """On a real photograph with the shipped weights: the cost the codec was trained on (bits + λ·MSE),
    with real bytes and the decoder's 8-bit pixels, is lower than the plain encoder's. (Short runs on small
    crops can lose: 20 and 40 iterations on a crop of kodim23 did; tools/effort_report.py measures the product.)"""
    from dpexplorer.hub.loading import get_codec
    from dpexplorer.io.images import load_image

    codec = get_codec(1)
    img = load_image(kodak_dir / "kodim15.png")[100:228, 300:492]
    plain, refined = codec.encode(img), codec.encode(img, effort=100)
    assert codec.parse(refined).strings != codec.parse(plain).strings
    assert _rd_cost(codec, img, refined) < _rd_cost(codec, img, plain)


def test_effort_is_refused_clearly_above_its_size_limit(tiny_codec, photo, monkeypatch):
    from dpexplorer.codec import codec as codec_module

    monkeypatch.setattr(codec_module, "MAX_EFFORT_PIXELS", 96 * 128 - 1)
    with pytest.raises(ImageError, match="up to"):
        tiny_codec.encode(photo, effort=2)
    assert tiny_codec.encode(photo)  # the plain encoder has no such limit


def test_estimate_scales_with_pixels_and_iterations(tiny_codec):
    small = effort.estimate_seconds(tiny_codec.model, 64, 64, 10)
    assert small > 0 and effort.estimate_seconds(tiny_codec.model, 64, 64, 0) == 0
    assert effort.estimate_seconds(tiny_codec.model, 128, 128, 20) == pytest.approx(8 * small)


def test_estimate_keeps_the_fastest_calibration_run(tiny_codec, monkeypatch):
    """Another request's encode can only slow a calibration run down: the estimate takes the fastest."""
    import time

    durations = iter([0.0, 0.3, 0.02, 0.3])  # warm-up, then a run slowed by other work, a quiet one, a slow one
    monkeypatch.setattr(effort, "refine_latents", lambda *a, **k: time.sleep(next(durations)))
    effort._seconds_per_megapixel_iteration.cache_clear()
    try:
        per_mp = effort._seconds_per_megapixel_iteration(tiny_codec.model)
    finally:
        effort._seconds_per_megapixel_iteration.cache_clear()
    quiet = 0.02 / 2 / (256 * 256 / 1e6)
    assert quiet <= per_mp < 3 * quiet  # the 0.3-s runs would give 15× this

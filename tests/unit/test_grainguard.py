"""The receiver's grain guard: its pieces, and the one τ rule that places it after the sender's hint."""

import numpy as np
import pytest
import torch

from dpexplorer.decoders import grainguard
from dpexplorer.decoders.base import DecodeOptions, resolve_tau
from dpexplorer.decoders.texture import patch_energies
from dpexplorer.training.guard import patch_energies_torch, upsample_torch


def test_the_trainings_differentiable_copies_match_what_decoding_and_the_metric_compute():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 64, 3)).astype(np.uint8)
    t = torch.from_numpy(img).float().permute(2, 0, 1)[None]
    assert np.allclose(patch_energies_torch(t)[0, 0].numpy(), patch_energies(img), rtol=1e-4, atol=1e-3)
    weights = rng.random((3, 4))
    torch_map = upsample_torch(torch.from_numpy(weights).float()[None, None], 40, 60)[0, 0].numpy()
    assert np.allclose(torch_map, grainguard.upsample_map(weights, 40, 60), atol=1e-5)


def test_features_cover_an_image_of_odd_size():
    symbols, log_scales = torch.zeros(4, 4, 5), torch.zeros(4, 4, 5)  # a padded latent grid
    plain = np.full((50, 70, 3), 128, np.uint8)
    features = grainguard.guard_features(symbols, log_scales, plain, plain)
    assert features.shape == (1, 2 * 4 + 3, 4, 5)  # ⌈50/16⌉ × ⌈70/16⌉ patches


def test_an_open_guard_starts_from_uniform_tau_and_its_map_stays_in_range():
    net = grainguard.GuardNet.open(channels=4)
    m = net(torch.randn(1, 11, 3, 3))
    assert torch.allclose(m, torch.full_like(m, float(torch.sigmoid(torch.tensor(3.0)))))
    g = grainguard.upsample_map(np.array([[0.0, 1.0], [1.0, 0.0]]), 30, 25)
    assert g.shape == (30, 25) and g.dtype == np.float32 and 0 <= g.min() < g.max() <= 1


class _Stream:
    height, width = 8, 10

    def __init__(self, hint=None):
        self._hint = hint

    def hint_map(self):
        return self._hint


def test_the_rule_hint_first_then_the_guard_then_uniform(monkeypatch):
    guard = np.full((8, 10), 0.5, np.float32)
    asked = []
    monkeypatch.setattr(grainguard, "stream_guard_map", lambda stream: asked.append(1) or guard)
    tau, m = resolve_tau(_Stream(), 0.8, DecodeOptions())
    assert tau == 1.0 and np.allclose(m, 0.4)
    assert resolve_tau(_Stream(), 0.8, DecodeOptions(use_guard=False)) == (0.8, None)
    hint = np.ones((8, 10), np.float32)
    tau, m = resolve_tau(_Stream(hint), 0.5, DecodeOptions())
    assert np.allclose(m, 0.5)  # the sender's hint, not the guard
    tau, m = resolve_tau(_Stream(hint), 0.5, DecodeOptions(use_hint=False))
    assert np.allclose(m, 0.25)  # hint switched off: the guard
    asked.clear()
    assert resolve_tau(_Stream(), 0.0, DecodeOptions()) == (0.0, None) and not asked  # τ = 0 needs no guard
    monkeypatch.setattr(grainguard, "stream_guard_map", lambda stream: None)  # no guard for this codec
    assert resolve_tau(_Stream(), 0.8, DecodeOptions()) == (0.8, None)


def test_the_grain_hinge_is_zero_when_smooth_areas_stay_smooth_and_averages_over_a_batch():
    from dpexplorer.training.guard import grain_hinge

    rng = np.random.default_rng(0)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(rng.uniform(0, 255, (2, 3, 6, 8))).float(),
                                             scale_factor=8, mode="bilinear")
    grainy = smooth + torch.from_numpy(rng.normal(0, 6, smooth.shape)).float()
    assert grain_hinge(smooth, smooth, cap=1.2, share=0.5) == 0
    assert grain_hinge(smooth * 0.5, smooth, cap=1.2, share=0.5) == 0  # less energy than the original: no cost
    both = grain_hinge(grainy, smooth, cap=1.2, share=0.5)
    each = [grain_hinge(grainy[i:i + 1], smooth[i:i + 1], cap=1.2, share=0.5) for i in range(2)]
    assert both > 0.5 and torch.isclose(both, (each[0] + each[1]) / 2)


def test_the_training_cache_is_keyed_on_the_codec_and_theta1(tiny_weights_dir, monkeypatch, tmp_path):
    """The guard's decoded photos are cached per codec and θ₁: after a new θ₁ the training decodes afresh instead
    of learning from the old θ₁'s images."""
    from dpexplorer.hub.manifest import find_entry
    from dpexplorer.io.images import save_png
    from dpexplorer.training.guard import GuardTrainConfig, build_cache

    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        save_png(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8), photos / f"p{i}.png")
    cfg = GuardTrainConfig(data=str(photos), quality=1, images=2, out=str(tmp_path / "runs"))
    cached = build_cache(cfg, tmp_path / "cache")
    codec = find_entry("codec", None, 1, tiny_weights_dir)[1]["sha256"]
    theta1 = find_entry("synthesis", None, 1, tiny_weights_dir)[1]["sha256"]
    assert len(cached) == 2
    assert {p.parent.name for p in cached} == {f"codec-{codec[:12]}-theta1-{theta1[:12]}"}

"""Interpolated synthesis (θ_τ) and its fine-tuning, on a tiny untrained codec."""

import numpy as np
import pytest
import torch

from dpexplorer.imageio import save_png


def _theta1(g_s, seed=1):
    gen = torch.Generator().manual_seed(seed)
    params = dict(g_s.named_parameters())  # buffers are not trained: θ₁ keeps θ₀'s
    return {k: v + 0.01 * torch.randn(v.shape, generator=gen) if k in params else v.clone()
            for k, v in g_s.state_dict().items()}


@pytest.fixture
def latent(tiny_codec):
    gen = torch.Generator().manual_seed(0)
    return torch.round(3 * torch.randn(1, tiny_codec.cfg.M, 4, 6, generator=gen))


def test_tau0_is_the_plain_decoder_and_tau1_is_theta1(tiny_codec, latent):
    import copy

    from dpexplorer.synthesis import InterpolatedSynthesis

    g_s0 = tiny_codec.model.g_s
    theta1 = _theta1(g_s0)
    synth = InterpolatedSynthesis(g_s0, theta1)
    with torch.no_grad():
        assert torch.equal(synth(latent, 0.0), g_s0(latent))
        g_s1 = copy.deepcopy(g_s0)
        g_s1.load_state_dict(theta1)
        assert torch.equal(synth(latent, 1.0), g_s1(latent))
        mid = synth(latent, 0.5)
    assert not torch.equal(mid, g_s0(latent)) and not torch.equal(mid, g_s1(latent))
    assert torch.equal(tiny_codec.model.g_s.state_dict()["0.weight"], g_s0.state_dict()["0.weight"])  # θ₀ untouched
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError):
            synth(latent, bad)


def test_synthesis_training_writes_and_resumes(tmp_path, tiny_codec, latent):
    from dpexplorer.evaluation.synthesis_eval import evaluate_images, summarize
    from dpexplorer.synthesis import InterpolatedSynthesis
    from dpexplorer.training.synthesis import (SynthesisTrainConfig, add_arguments, configs_from,
                                               load_theta1, train_synthesis)

    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        save_png(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), data / f"p{i}.png")

    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    (cfg,) = configs_from(p.parse_args(["--data", str(data), "--quality", "1", "--workdir", str(tmp_path / "w"),
                                         "--steps", "2", "--batch", "2", "--crop", "64", "--threads", "1",
                                         "--run-name", "t", "--no-disc-cond", "--w-hf", "0.3"]))
    assert cfg.disc_cond is False and cfg.min_scale == SynthesisTrainConfig.min_scale
    out = train_synthesis(cfg, codec=tiny_codec)
    assert torch.load(cfg.run_dir() / "last.pt", weights_only=True)["step"] == 2
    cfg.steps, cfg.disc_cond = 3, False
    train_synthesis(cfg, codec=tiny_codec)
    assert torch.load(out, weights_only=True)["step"] == 3
    assert "resumed from" in (cfg.run_dir() / "train.log").read_text()

    synth = InterpolatedSynthesis(tiny_codec.model.g_s, load_theta1(out))
    rows = evaluate_images(tiny_codec, synth, sorted(data.iterdir())[:1], taus=(0.0, 1.0))
    s = summarize(rows, taus=(0.0, 1.0))
    assert set(s["bar"]) >= {"lpips_-25%", "hf_<=1.15"} and 0 <= s["share_tau1_better"] <= 1


def test_conditioned_discriminator_trains(tmp_path, tiny_codec):
    from dpexplorer.training.synthesis import MultiScaleCropSampler, SynthesisTrainConfig, train_synthesis

    data = tmp_path / "photos"
    data.mkdir()
    save_png(np.random.default_rng(0).integers(0, 256, (100, 90, 3), dtype=np.uint8), data / "p.png")
    x = MultiScaleCropSampler(data, 64, 0.5, seed=0).batch(3)
    assert x.shape == (3, 3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    cfg = SynthesisTrainConfig(data=str(data), quality=1, workdir=str(tmp_path / "w"), steps=1, batch=1, crop=64,
                               threads=1, disc_cond=True)
    state = torch.load(train_synthesis(cfg, codec=tiny_codec), weights_only=True)
    assert state["step"] == 1 and state["config"]["disc_cond"] is True


def test_hf_overshoot_matches_the_metric_and_only_penalises_excess():
    from dpexplorer.metrics import hf_energy_ratio, to_tensor
    from dpexplorer.training.synthesis import hf_energy, hf_overshoot

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    blur = ((ref.astype(int) + np.roll(ref, 1, 0) + np.roll(ref, 1, 1) + np.roll(ref, 1, (0, 1))) // 4).astype(np.uint8)
    a, b = to_tensor(ref), to_tensor(blur)
    assert float(hf_energy(b) / hf_energy(a)) == pytest.approx(hf_energy_ratio(ref, blur), rel=1e-4)
    assert float(hf_overshoot(b, a)) == 0.0  # blur: no penalty
    flat = torch.full((1, 3, 64, 64), 0.4)
    grain = (flat + 0.02 * torch.randn(flat.shape)).requires_grad_(True)
    loss = hf_overshoot(grain, flat)
    loss.backward()
    assert float(loss) > 1 and grain.grad.abs().sum() > 0

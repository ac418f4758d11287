"""The latent τ decoder trained through the perceptual synthesis: x̂_τ = g_s(ŷ + τ·r̃; θ_τ)."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from dpexplorer.decoders.base import DecodeOptions


def _pipeline(tiny_codec):
    from dpexplorer.decoders.latent.denoiser import LatentDenoiser
    from dpexplorer.decoders.latent.decoder import LatentDecoder
    from dpexplorer.decoders.synthesis import InterpolatedSynthesis

    torch.manual_seed(0)
    denoiser = LatentDenoiser(latent_channels=tiny_codec.cfg.M, width=16, blocks=1)
    torch.nn.init.normal_(denoiser.out.weight, std=0.05)  # a non-trivial residual
    g_s0 = tiny_codec.model.g_s
    theta1 = {k: v + 0.02 * torch.randn_like(v) if k.endswith("weight") else v.clone()
              for k, v in g_s0.state_dict().items()}
    return LatentDecoder(tiny_codec, denoiser, synthesis=InterpolatedSynthesis(g_s0, theta1)), theta1


def test_tau_moves_latent_and_synthesis_weights(tiny_codec, photo):
    pipeline, theta1 = _pipeline(tiny_codec)
    data = tiny_codec.encode(photo)
    plain = tiny_codec.decode(data).x_hat
    h, w = photo.shape[:2]
    assert np.array_equal(pipeline.reconstruct(data, tau=0.0), plain)
    assert np.array_equal(pipeline.reconstruct(data, options=DecodeOptions(tau_map=np.zeros((h, w), np.float32))), plain)

    y_hat = pipeline.open(data).y_hat
    residual = pipeline.cached_sample(data, DecodeOptions())
    g_s1 = copy.deepcopy(tiny_codec.model.g_s)
    g_s1.load_state_dict(theta1)
    with torch.no_grad():
        expected = tiny_codec.synthesize(y_hat + residual, h, w, g_s=g_s1)
    full = pipeline.reconstruct(data, tau=1.0)
    assert np.array_equal(full, expected)
    assert not np.array_equal(full, tiny_codec.synthesize(y_hat + residual, h, w))  # θ₁, not θ₀
    assert np.array_equal(pipeline.reconstruct(data, options=DecodeOptions(tau_map=np.ones((h, w), np.float32))), full)


def test_loader_checks_the_synthesis_the_residual_was_trained_through(tiny_weights_dir, tmp_path, monkeypatch):
    from dpexplorer.decoders.latent.decoder import LatentDecoder
    from dpexplorer.decoders.synthesis import SynthesisDecoder
    from dpexplorer.errors import WeightsError

    for name, sha in (("right", None), ("wrong", "0" * 64)):
        directory = tmp_path / name
        shutil.copytree(tiny_weights_dir, directory)
        manifest = json.loads((directory / "manifest.json").read_text())
        models = manifest["models"]
        latent = next(e for e in models.values() if e["kind"] == "latent")
        latent["synthesis_sha256"] = sha or next(e for e in models.values() if e["kind"] == "synthesis")["sha256"]
        (directory / "manifest.json").write_text(json.dumps(manifest))
        monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(directory))
        if sha is None:
            assert LatentDecoder.load(1).synthesis is SynthesisDecoder.load(1).synthesis
        else:
            with pytest.raises(WeightsError, match="synthesis"):
                LatentDecoder.load(1)

"""τ, the receiver's knob: the one range rule (`check_tau`: raises, never clips) and τ = 0 being the
plain decoder to the bit for every decoder family, at the pipeline level (no server)."""

import math

import numpy as np
import pytest
import torch

from dpexplorer.decoders.base import DecodeOptions
from dpexplorer.decoders.tau import check_tau

from helpers import tiny_pixel_denoiser


@pytest.mark.parametrize("tau", [0, 0.0, 0.5, 1, 1.0, np.float32(0.25)])
def test_check_tau_accepts_the_closed_unit_interval(tau):
    assert check_tau(tau) == float(tau) and type(check_tau(tau)) is float


@pytest.mark.parametrize("tau", [-0.01, 1.01, -1e-12, 1 + 1e-12, math.nan, math.inf, -math.inf, "half", ""])
def test_check_tau_raises_instead_of_clipping(tau):
    with pytest.raises(ValueError):
        check_tau(tau)


def test_check_tau_refuses_what_is_not_a_number():
    with pytest.raises(TypeError):
        check_tau(None)


@pytest.fixture
def data(tiny_codec, photo):
    return tiny_codec.encode(photo)


def _latent_pipeline(codec):
    from dpexplorer.decoders.latent.denoiser import LatentDenoiser
    from dpexplorer.decoders.latent.decoder import LatentDecoder

    torch.manual_seed(0)
    denoiser = LatentDenoiser(latent_channels=codec.cfg.M, width=16, blocks=1)
    torch.nn.init.normal_(denoiser.out.weight, std=0.05)  # a non-zero residual: τ > 0 does change the image
    return LatentDecoder(codec, denoiser)


def _pixel_pipeline(codec):
    from dpexplorer.decoders.pixel.decoder import PixelDecoder

    return PixelDecoder(codec, tiny_pixel_denoiser())


@pytest.mark.parametrize("build", [_latent_pipeline, _pixel_pipeline], ids=["latent", "pixel"])
def test_tau0_of_a_sampling_pipeline_is_the_plain_decoder(build, tiny_codec, data):
    pipeline = build(tiny_codec)
    plain = tiny_codec.decode(data).x_hat
    for sampler in pipeline.offered_samplers():  # every sampler it offers (the pixel decoder withholds DDPM)
        assert np.array_equal(pipeline.reconstruct(data, 0.0, options=DecodeOptions(sampler=sampler, steps=2, seed=7)), plain)
    assert not np.array_equal(pipeline.reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=2, seed=0)), plain)  # the test can fail


def test_the_latent_residual_strength_scales_the_sample_and_travels_with_the_weights(tiny_codec, data):
    from dpexplorer.decoders.latent.denoiser import LatentDenoiser
    from dpexplorer.decoders.latent.decoder import LatentDecoder

    full = _latent_pipeline(tiny_codec)
    weaker = LatentDecoder(tiny_codec, LatentDenoiser(**{**full.denoiser.config(), "strength": 0.25}))
    weaker.denoiser.load_state_dict(full.denoiser.state_dict())
    r = full.cached_sample(data, DecodeOptions(sampler="ddim", steps=2, seed=0))
    assert torch.allclose(weaker.cached_sample(data, DecodeOptions(sampler="ddim", steps=2, seed=0)), 0.25 * r)
    assert weaker.denoiser.config()["strength"] == 0.25 and full.denoiser.config()["strength"] == 1.0
    assert np.array_equal(weaker.reconstruct(data, 0.0), tiny_codec.decode(data).x_hat)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="strength"):
            LatentDenoiser(latent_channels=tiny_codec.cfg.M, width=16, blocks=1, strength=bad)


def test_tau0_of_the_interpolated_synthesis_is_g_s0_itself(tiny_codec):
    from dpexplorer.decoders.synthesis import InterpolatedSynthesis

    g_s0 = tiny_codec.model.g_s
    theta1 = {k: v + 0.01 for k, v in g_s0.state_dict().items()}
    synth = InterpolatedSynthesis(g_s0, theta1)
    assert synth.at(0.0) is g_s0 and synth.at(0) is g_s0
    assert synth.at(0.5) is not g_s0


def test_reconstruct_file_at_tau0_is_the_plain_decoder_for_every_family(tiny_weights_dir, monkeypatch, photo):
    """Every registered family, through the registry and through its own loaded module (tiny weights:
    the latent decoder and the synthesis are there, so those are checked at the module level too)."""
    from dpexplorer.decoders.latent.decoder import LatentDecoder
    from dpexplorer.decoders.registry import DECODERS, decode_file, reconstruct_file
    from dpexplorer.decoders.synthesis import SynthesisDecoder
    from dpexplorer.hub.loading import get_codec

    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    codec = get_codec(1)
    data = codec.encode(photo)
    plain = codec.decode(data).x_hat
    assert np.array_equal(decode_file(data), plain)
    with_weights = [key for key, cls in DECODERS.items() if 1 in cls.qualities()]
    assert {"plain", "latent", "synthesis"} <= set(with_weights)
    sampling = DecodeOptions(sampler="ddpm", steps=3, seed=5)
    for decoder in DECODERS:
        assert np.array_equal(reconstruct_file(data, 0.0, decoder=decoder, options=sampling), plain), decoder
        zero_map = DecodeOptions(tau_map=np.zeros(photo.shape[:2], np.float32))
        assert np.array_equal(reconstruct_file(data, decoder=decoder, options=zero_map), plain), decoder
    assert np.array_equal(LatentDecoder.load(1).reconstruct(data, 0.0), plain)
    synthesis = SynthesisDecoder.load(1)
    assert synthesis.at(0.0) is synthesis.synthesis.g_s0  # the loaded codec's own g_s (the module cache outlives get_codec's)


@pytest.mark.slow
def test_reconstruct_file_at_tau0_with_the_shipped_weights(photo):
    """The same with the shipped weights: each family that has weights for a shipped quality."""
    from dpexplorer.decoders.registry import DECODERS, reconstruct_file
    from dpexplorer.hub.loading import get_codec, shipped_qualities

    for quality in shipped_qualities():
        codec = get_codec(quality)
        data = codec.encode(photo)
        plain = codec.decode(data).x_hat
        for decoder, cls in DECODERS.items():
            if quality in cls.qualities():
                assert np.array_equal(reconstruct_file(data, 0.0, decoder=decoder), plain), (decoder, quality)

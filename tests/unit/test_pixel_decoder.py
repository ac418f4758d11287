"""The pixel-space diffusion decoder (issue 18) on a tiny untrained codec: denoiser, samplers, τ, tiles,
caching (its training, export, evaluation and bench: integration/test_pixel_training.py)."""

import numpy as np
import pytest
import torch

from helpers import TINY_PIXEL, tiny_pixel_denoiser

from dpexplorer.decoders.base import DecodeOptions


@pytest.fixture
def pipeline(tiny_codec):
    from dpexplorer.decoders.pixel.decoder import PixelDecoder

    return PixelDecoder(tiny_codec, tiny_pixel_denoiser())


@pytest.fixture
def data(tiny_codec, photo):
    return tiny_codec.encode(photo)  # 96×128: the padded grid is 128×128


def test_denoiser_shapes_for_ours_and_the_paper_configurations():
    from dpexplorer.decoders.pixel.denoiser import CDC, MARI_MILANI, PixelDenoiser

    for cfg in (TINY_PIXEL, {**MARI_MILANI, "width": 16}, {**CDC, "width": 16}):
        den = PixelDenoiser(24, **cfg)
        h, w = 2 * den.multiple, 3 * den.multiple
        out = den(torch.randn(2, 3, h, w), torch.tensor([3, 900]), torch.rand(2, 3, h, w),
                  torch.randn(2, 24, h // 16, w // 16))
        assert out.shape == (2, 3, h, w)
    assert PixelDenoiser(24, **TINY_PIXEL).config()["mults"] == [1, 2]


def test_tau0_is_the_plain_decoder_bit_for_bit_and_tau_changes_cost_no_network_pass(pipeline, data, tiny_codec,
                                                                                    monkeypatch):
    plain = tiny_codec.decode(data).x_hat
    assert np.array_equal(pipeline.reconstruct(data, 0.0), plain)
    assert np.array_equal(pipeline.base(data)[:96, :128], plain)  # the blend starts from exactly this image
    x1 = pipeline.reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=3, seed=0))
    assert x1.shape == plain.shape and x1.dtype == np.uint8 and not np.array_equal(x1, plain)

    calls = []
    forward = type(pipeline.denoiser).forward
    monkeypatch.setattr(type(pipeline.denoiser), "forward", lambda *a: calls.append(1) or forward(*a))
    half = pipeline.reconstruct(data, 0.5, options=DecodeOptions(sampler="ddim", steps=3, seed=0))
    assert calls == []  # cached sample: a τ change is a blend only
    expected = np.rint(plain.astype(np.float32) + 0.5 * (x1.astype(np.float32) - plain)).astype(np.uint8)
    assert np.array_equal(half, expected)
    assert np.array_equal(pipeline.reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=3, seed=0)), x1)
    pipeline.reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=3, seed=0, noise_scale=0.8))  # another sample: the noise scale is in the key
    assert len(calls) == 3


def test_a_synthesis_base_samples_over_theta1_and_blends_from_the_plain_decode(tiny_codec, data):
    from dpexplorer.decoders.pixel.denoiser import PixelDenoiser
    from dpexplorer.decoders.pixel.decoder import PixelDecoder
    from dpexplorer.decoders.synthesis import InterpolatedSynthesis

    g_s = tiny_codec.model.g_s
    theta1 = {k: p.detach() + 0.05 * torch.randn_like(p) for k, p in g_s.named_parameters()}
    synthesis = InterpolatedSynthesis(g_s, theta1)
    den = tiny_pixel_denoiser()
    den.cfg["base"] = "synthesis"
    pipe = PixelDecoder(tiny_codec, den, synthesis=synthesis)
    plain = tiny_codec.decode(data).x_hat
    y_hat, bs = tiny_codec.decode_latent(data)
    theta1_image = tiny_codec.synthesize(y_hat, bs.height, bs.width, g_s=synthesis.at(1.0))
    assert not np.array_equal(theta1_image, plain)
    assert np.array_equal(pipe.base(data)[:96, :128], theta1_image)  # conditioned on, and sampled over, θ₁
    assert np.array_equal(pipe.open(data).plain(), plain)
    assert np.array_equal(pipe.reconstruct(data, 0.0), plain)  # τ = 0 is still the plain decoder
    x1 = pipe.reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=2, seed=0))
    expected = np.rint(plain.astype(np.float32) + 0.5 * (x1.astype(np.float32) - plain)).astype(np.uint8)
    assert np.array_equal(pipe.reconstruct(data, 0.5, options=DecodeOptions(sampler="ddim", steps=2, seed=0)), expected)  # the blend starts at x̂₀
    with pytest.raises(ValueError, match="needs the perceptual synthesis"):
        PixelDecoder(tiny_codec, den)
    with pytest.raises(ValueError, match="needs no synthesis"):
        PixelDecoder(tiny_codec, tiny_pixel_denoiser(), synthesis=synthesis)
    with pytest.raises(ValueError, match="unknown base"):
        PixelDenoiser(24, base="theta")


def test_samplers_seeds_progress_and_prediction_types(tiny_codec, data):
    from dpexplorer.decoders.pixel.decoder import PixelDecoder

    for prediction in ("sample", "epsilon"):
        pipe = PixelDecoder(tiny_codec, tiny_pixel_denoiser(prediction))
        seen = []
        a = pipe.reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=4, seed=0,
                                                               progress=lambda i, n: seen.append((i, n))))
        assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
        assert not np.array_equal(a, pipe.reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=4, seed=1)))  # the seed matters
        assert np.array_equal(a, pipe.sample(data, DecodeOptions(sampler="ddim", steps=4, seed=0)))  # and reproduces
        for sampler in ("dpmsolver++",):
            assert pipe.reconstruct(data, 1.0, options=DecodeOptions(sampler=sampler, steps=2, seed=0)).shape == a.shape
    for bad in (dict(tau=1.5), dict(sampler="nope"), dict(steps=0), dict(noise_scale=0.0)):
        with pytest.raises(ValueError):
            tau = bad.pop("tau", 1.0)
            PixelDecoder(tiny_codec, tiny_pixel_denoiser()).reconstruct(data, tau, options=DecodeOptions(**bad))
    with pytest.raises(ValueError, match="prediction type"):
        tiny_pixel_denoiser("v_prediction")
    # DDPM is withheld from the pixel decoder (measured below the codec decoder on PSNR and LPIPS), with why
    with pytest.raises(ValueError, match="does not offer ddpm.*codec decoder"):
        PixelDecoder(tiny_codec, tiny_pixel_denoiser()).reconstruct(data, 1.0, options=DecodeOptions(sampler="ddpm"))
    assert PixelDecoder.offered_samplers() == ("ddim", "dpmsolver++")


def test_an_epsilon_denoiser_that_knows_the_answer_samples_it(tiny_codec, data):
    """An oracle ε for a fixed target image: every sampler lands on the target, even through the first
    trailing step where ᾱ ≈ 2e-9 (ε's implied x₀ is clamped to the image range, as in training)."""
    from dpexplorer.decoders.pixel.decoder import PixelDecoder
    from dpexplorer.decoders.schedulers import cumulative_alphas

    target = torch.rand(1, 3, 128, 128)
    alphas = cumulative_alphas()

    class Oracle(torch.nn.Module):
        prediction_type, multiple, cfg = "epsilon", 8, {"base": "plain"}
        residual_scale = torch.tensor(1.0)

        def forward(self, r_t, t, x_base, y_hat):
            a = alphas[int(t)]
            r_t = r_t.clamp(-6, 6)  # like a network, it knows only the inputs that training showed it
            r0 = (target - x_base) / self.residual_scale
            return (r_t - a.sqrt() * r0) / (1 - a).sqrt() + 0.01 * torch.randn_like(r_t)  # a slightly wrong ε

    pipe = PixelDecoder(tiny_codec, Oracle())
    want = target[0, :, :96].mul(255).round().byte().permute(1, 2, 0).numpy().astype(int)
    for sampler in ("ddim", "ddpm", "dpmsolver++"):
        got = pipe.sample(data, DecodeOptions(sampler=sampler, steps=10, seed=0)).astype(int)
        assert np.abs(got - want).mean() < 2, sampler


def test_tiles_blend_to_the_untiled_prediction_for_a_local_denoiser(tiny_codec, data):
    """With a denoiser that has no spatial context, tiling must not change anything: the ramps sum correctly."""
    from dpexplorer.decoders.pixel.decoder import PixelDecoder, PixelTiling, ramp, tile_spans

    assert tile_spans(128, 64, 32) == [(0, 64), (32, 96), (64, 128)]
    assert tile_spans(100, 128, 32) == [(0, 100)]
    assert float(ramp(64, True, True, 16).min()) > 0

    class Local(torch.nn.Module):
        prediction_type, multiple, cfg = "sample", 8, {"base": "plain"}
        residual_scale = torch.tensor(0.05)

        def forward(self, r_t, t, x_base, y_hat):
            return 0.5 * r_t + torch.sin(7 * x_base) + 0.001 * t

    whole = PixelDecoder(tiny_codec, Local()).sample(data, DecodeOptions(sampler="ddim", steps=3, seed=0))
    tiled = PixelDecoder(tiny_codec, Local(), tiling=PixelTiling(tile=64, overlap=32))
    assert np.abs(tiled.sample(data, DecodeOptions(sampler="ddim", steps=3, seed=0)).astype(int) - whole).max() <= 1
    with pytest.raises(ValueError):
        PixelDecoder(tiny_codec, Local(), tiling=PixelTiling(tile=72, overlap=32))
    # a real denoiser on tiles: right shape, no seams beyond the image's own range
    real = PixelDecoder(tiny_codec, tiny_pixel_denoiser(), tiling=PixelTiling(tile=64, overlap=32)).reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=2, seed=0))
    assert real.shape == whole.shape


def test_sample_cache_is_bounded_in_bytes():
    from dpexplorer.cache import LRU

    lru = LRU(250, weight=lambda a: a.nbytes)
    for k in range(5):
        lru.get_or(k, lambda: np.zeros(100, np.uint8))
    assert list(lru) == [3, 4]
    lru.get_or("big", lambda: np.zeros(1000, np.uint8))
    assert list(lru) == ["big"]  # the newest is kept even above the bound
    counted = LRU(2)
    for k in range(3):
        counted.get_or(k, lambda: None)
    assert list(counted) == [1, 2]

"""Unit tests of the hyperprior's rules (dpexplorer/codec/hyperprior.py), which the codec, the codec's
training and the latent module's training share, and of the `.dpx` container's round trip."""

import pytest
import torch

from dpexplorer.codec.codec import Codec, pad_to_multiple
from dpexplorer.codec.hyperprior import (hyper_analysis, hyper_likelihoods, latent_likelihoods, quantize_around_means,
                                         scales_and_means)
from dpexplorer.io.bitstream import Bitstream
from dpexplorer.io.images import to_tensor


@pytest.fixture(scope="module", params=["mbt2018-mean", "bmshj2018-hyperprior"])
def codec(request):
    return Codec.untrained(quality=1, arch=request.param, channels=(16, 24), seed=0)


def _hyper(codec, photo):
    m = codec.model
    y = m.g_a(pad_to_multiple(to_tensor(photo)))
    z = hyper_analysis(m, y)
    z_hat = m.entropy_bottleneck.decompress(m.entropy_bottleneck.compress(z), z.shape[-2:])
    return y, *scales_and_means(m, z_hat)


@torch.no_grad()
def test_the_entropy_coder_quantizes_around_the_means(codec, photo):
    """The ŷ the decoder gets from the bitstream is round(y − μ) + μ (μ = 0 without means)."""
    y, _, means = _hyper(codec, photo)
    assert (means is None) == (codec.cfg.arch == "bmshj2018-hyperprior")
    y_hat, _ = codec.decode_latent(codec.encode(photo))
    assert torch.allclose(y_hat, quantize_around_means(y, means), atol=1e-4)


def test_quantization_passes_gradients_straight_through():
    y = torch.randn(1, 4, 3, 3, requires_grad=True)
    means = torch.randn(1, 4, 3, 3)
    q = quantize_around_means(y, means)
    assert torch.equal(q, torch.round(y - means) + means)
    q.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))


@torch.no_grad()
def test_likelihoods_are_the_entropy_models(codec, photo):
    """The same values as CompressAI's public forward on the same symbols (non-zero ones: y × 5)."""
    y, scales, means = _hyper(codec, photo)
    y = 5 * y
    _, public = codec.model.gaussian_conditional(y, scales, means=means, training=False)
    ours = latent_likelihoods(codec.model, quantize_around_means(y, means), scales, means)
    assert torch.allclose(ours, public) and float(ours.min()) < 0.5


@torch.no_grad()
def test_hyper_likelihoods_are_the_entropy_bottleneck(codec, photo):
    """ẑ's likelihood as CompressAI's public forward gives it (eval mode: z rounded around the medians),
    laid out as ẑ; the encoder-effort mode differentiates it."""
    m = codec.model
    z = 3 * hyper_analysis(m, m.g_a(pad_to_multiple(to_tensor(photo))))
    m.entropy_bottleneck.eval()
    z_hat, public = m.entropy_bottleneck(z, training=False)
    ours = hyper_likelihoods(m, z_hat)
    assert torch.allclose(ours.reshape(-1), public.transpose(0, 1).reshape(-1))


@pytest.mark.parametrize("arch", ["mbt2018-mean", "bmshj2018-hyperprior"])
def test_container_round_trip(arch):
    bs = Bitstream(arch, 3, bytes(range(8)), 17, 1000, (1, 16), (b"\x01" * 12, b"\x02" * 8))
    data = bs.to_bytes()
    assert Bitstream.from_bytes(data) == bs
    assert len(data) == 40 + 12 + 8  # 40 bytes of container, then the strings


@torch.no_grad()
def test_codec_training_sees_the_hyperprior_compressai_sees(codec):
    """Mixed quantization's z and rate terms are CompressAI's own forward's (the scale-only model's h_a
    sees |y|)."""
    from dpexplorer.training.codec import MixedQuantization

    model = codec.model.eval()  # deterministic rounding in both entropy models
    seen = []
    hook = model.entropy_bottleneck.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    x = torch.rand(1, 3, 64, 64)
    ours, theirs = MixedQuantization(model)(x)["likelihoods"], model(x)["likelihoods"]
    hook.remove()
    assert torch.equal(seen[0], seen[1])
    assert torch.allclose(ours["z"], theirs["z"]) and torch.allclose(ours["y"], theirs["y"])

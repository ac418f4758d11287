"""Tiled g_a / g_s (dpexplorer/codec/tiling.py) against the untiled transforms, with tiles forced small."""

import numpy as np
import pytest
import torch

from dpexplorer.decoders.base import DecodeOptions
from dpexplorer.codec.codec import Codec, pad_to_multiple
from dpexplorer.codec.tiling import UNTILED, Tiling, _spans, analysis, synthesis
from dpexplorer.io.bitstream import Bitstream
from dpexplorer.io.images import to_tensor

SMALL = Tiling(above_pixels=0, analysis_cells=4, analysis_halo=2, synthesis_cells=4, synthesis_halo=2)


@pytest.fixture(scope="module")
def codec():
    return Codec.untrained(quality=1, channels=(16, 24), seed=0)


@pytest.fixture(scope="module")
def image():
    """272×330: not a multiple of 64 (replicate padding inside the tiles), several tiles each way."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:272, 0:330]
    base = np.stack([xx * 0.7, yy * 0.9, (xx + yy) * 0.4], 2)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def test_spans_cover_once():
    spans = list(_spans(21, 4, 2))
    assert [(a, b) for _, _, a, b in spans] == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 21)]
    assert spans[0][:2] == (0, 6) and spans[2][:2] == (6, 14) and spans[-1][:2] == (18, 21)


def test_tiled_analysis_equals_untiled(codec, image):
    with torch.no_grad():
        y = codec.model.g_a(pad_to_multiple(to_tensor(image)))
        yt = analysis(codec.model.g_a, image, 320, 384, tiling=SMALL)
    assert yt.shape == y.shape
    assert (yt - y).abs().max() <= 1e-5  # the halo covers g_a's receptive field: only summation order differs


def test_tiled_synthesis_equals_untiled(codec, image):
    with torch.no_grad():
        y_hat = torch.round(codec.model.g_a(pad_to_multiple(to_tensor(image))))
        x = codec.model.g_s(y_hat)[..., :272, :330][0].permute(1, 2, 0).numpy()
        xt = synthesis(codec.model.g_s, y_hat, 272, 330, tiling=SMALL, dtype=np.float32)
        u8 = synthesis(codec.model.g_s, y_hat, 272, 330, tiling=SMALL)
    assert np.abs(xt - x).max() <= 1e-5
    assert_pixels_agree(u8, codec.synthesize(y_hat, 272, 330))  # codec's own, untiled at this size


def assert_pixels_agree(a: np.ndarray, b: np.ndarray) -> None:
    """Stated tolerance of tiled vs untiled 8-bit output: a float difference of ~1e-6 flips the rounding of
    a value that sits on a .5 boundary, so ≤ 1 level on a few values in 10⁴ (q3 on kodim01: 16 of 1.2 M)."""
    d = np.abs(a.astype(int) - b.astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 1e-4


@pytest.mark.parametrize("arch", ["mbt2018-mean", "bmshj2018-hyperprior"])
def test_entropy_encode_gives_compressais_bytes(arch, image):
    """Below the threshold the encoder is CompressAI's `compress`, byte for byte."""
    codec = Codec.untrained(quality=1, arch=arch, channels=(16, 24), seed=0)
    x = pad_to_multiple(to_tensor(image))
    with torch.no_grad():
        out = codec.model.compress(x)
    bs = Bitstream.from_bytes(codec.encode(image))
    assert bs.strings == (out["strings"][0][0], out["strings"][1][0])
    assert bs.z_shape == tuple(out["shape"])


def test_tiled_codec_round_trips(codec, image):
    tiled = Codec(codec.model, codec.cfg, codec.weights_sha256, codec.source, tiling=SMALL)
    data = tiled.encode(image)
    a, b = tiled.decode(data), codec.decode(data)  # a tiled bitstream decodes either way, alike
    assert a.x_hat.shape == image.shape and torch.equal(a.y_hat, b.y_hat)
    assert_pixels_agree(a.x_hat, b.x_hat)
    assert data == codec.encode(image)  # y agrees to ~1e-6, so no symbol flips here (one may, rarely)


def test_threshold():
    t = Tiling()
    assert not t.active(1600, 1536) and t.active(1600, 1600)  # 2.46 MP untiled, 2.56 MP tiled
    assert not UNTILED.active(8000, 6000)
    assert Codec.untrained(channels=(8, 8)).tiling == Tiling()


def test_latent_decoder_synthesizes_through_the_tiles(codec, image):
    """The latent decoder's ỹ_τ goes through the codec's (tiled) synthesis, so it is bounded too."""
    from dpexplorer.decoders.latent.denoiser import LatentDenoiser
    from dpexplorer.decoders.latent.decoder import LatentDecoder

    torch.manual_seed(0)
    tiled = Codec(codec.model, codec.cfg, codec.weights_sha256, codec.source, tiling=SMALL)
    pipeline = LatentDecoder(tiled, LatentDenoiser(24, width=16, blocks=1))
    data = tiled.encode(image)
    calls = []
    hook = codec.model.g_s.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    try:
        x = pipeline.reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=2, seed=0))
    finally:
        hook.remove()
    assert x.shape == image.shape and len(calls) > 1 and max(s[-1] for s in calls) <= 4 + 2 * 2  # tiles, not the 20×24 latent
    fused = tiled.decode_latent(data)[0] + pipeline.cached_sample(data, DecodeOptions(sampler="ddim", steps=2, seed=0))
    assert_pixels_agree(x, codec.synthesize(fused, 272, 330))

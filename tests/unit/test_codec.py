import numpy as np
import pytest
import torch

from dpexplorer.codec.codec import pad_to_multiple
from dpexplorer.io.bitstream import Bitstream
from dpexplorer.io.images import to_tensor
from dpexplorer.metrics.image import psnr

from helpers import decode_with_threads


def test_pad_to_multiple_replicates_edges():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    y = pad_to_multiple(x, 4)
    assert y.shape == (1, 1, 4, 4)
    assert torch.equal(y[..., :2, :3], x)
    assert y[0, 0, 3, 3] == x[0, 0, 1, 2]


@pytest.mark.parametrize("shape", [(1, 1), (77, 101), (64, 64), (65, 200)])
def test_any_size_round_trips(tiny_codec, shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    data = tiny_codec.encode(img)
    x_hat, y_hat = tiny_codec.decode(data)
    assert x_hat.shape == img.shape and x_hat.dtype == np.uint8
    assert y_hat.shape[-2:] == (-(-shape[0] // 64) * 4, -(-shape[1] // 64) * 4)


def test_decode_is_deterministic_and_matches_synthesis(tiny_codec, photo):
    data = tiny_codec.encode(photo)
    a = tiny_codec.decode(data)
    b = tiny_codec.decode(data)
    assert np.array_equal(a.x_hat, b.x_hat)
    assert np.array_equal(tiny_codec.synthesize(a.y_hat, *photo.shape[:2]), a.x_hat)
    assert tiny_codec.encode(photo) == data


def test_decoded_latent_equals_forward_quantization(tiny_codec, photo):
    """The entropy-decoded ŷ is exactly what the encoder quantized (real, lossless entropy coding)."""
    data = tiny_codec.encode(photo)
    y_hat, _ = tiny_codec.decode_latent(data)
    m = tiny_codec.model
    with torch.no_grad():
        y = m.g_a(pad_to_multiple(to_tensor(photo)))
        z = m.h_a(y)
        z_hat = m.entropy_bottleneck.decompress(m.entropy_bottleneck.compress(z), z.shape[-2:])
        _, means = m.h_s(z_hat).chunk(2, 1)
        expected = torch.round(y - means) + means
    assert torch.allclose(y_hat, expected, atol=1e-4)


def test_bpp_counts_the_bytes_written(tiny_codec, photo):
    data = tiny_codec.encode(photo)
    bs = Bitstream.from_bytes(data)
    assert len(data) == bs.payload_bytes + 28 + 4 * 2 + 4


def test_untrained_codec_reconstructs_something(tiny_codec, photo):
    x_hat, _ = tiny_codec.decode(tiny_codec.encode(photo))
    assert np.isfinite(psnr(photo, x_hat))


def test_a_12_megapixel_photo_round_trips(tiny_codec):
    """4000×3000 works (tiled: above 2.5 MP; the shipped model's memory at 48 MP is in the README)."""
    img = np.full((3000, 4000, 3), 128, dtype=np.uint8)
    img[::7, ::5] = 200
    x_hat, y_hat = tiny_codec.decode(tiny_codec.encode(img))
    assert x_hat.shape == img.shape and y_hat.shape[-2:] == (188, 252)


def test_decode_does_not_depend_on_the_thread_count(tiny_codec, photo):
    data = tiny_codec.encode(photo)
    one, *others = (decode_with_threads(tiny_codec, data, t) for t in (1, 2, 3))
    for other in others:
        assert torch.equal(one.y_hat, other.y_hat) and np.array_equal(one.x_hat, other.x_hat)

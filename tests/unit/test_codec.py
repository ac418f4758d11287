import numpy as np
import pytest
import torch

from dpexplorer.codec.codec import pad_to_multiple
from dpexplorer.errors import WeightsError
from dpexplorer.hub.loading import load_codec, pretrained_codec
from dpexplorer.io.bitstream import Bitstream
from dpexplorer.io.images import to_tensor
from dpexplorer.metrics.image import psnr


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


def test_shipped_loader_verifies_the_hash(tiny_weights_dir, tmp_path):
    import shutil

    codec = load_codec(1, directory=tiny_weights_dir)
    assert codec.cfg.N == 16
    bad = tmp_path / "w"
    shutil.copytree(tiny_weights_dir, bad)
    f = bad / "codec-mbt2018-mean-q1.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="SHA-256"):
        load_codec(1, directory=bad)
    with pytest.raises(WeightsError, match="no shipped codec"):
        load_codec(7, directory=bad)


def test_pretrained_zoo_path_offline(tmp_path, monkeypatch):
    """CompressAI's `pretrained=True` route, served from the torch hub cache (no network)."""
    from compressai.zoo.image import model_urls

    from dpexplorer.codec.config import build_model, codec_config

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError, match="hub/checkpoints"):
        pretrained_codec(1, "bmshj2018-hyperprior")

    url = model_urls["bmshj2018-hyperprior"]["mse"][1]
    ckpt_dir = tmp_path / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3)
    reference = build_model(codec_config("bmshj2018-hyperprior", 1))
    torch.save(reference.state_dict(), ckpt_dir / url.rsplit("/", 1)[-1])
    codec = pretrained_codec(1, "bmshj2018-hyperprior")
    assert torch.equal(codec.model.g_s[0].weight, reference.g_s[0].weight)
    img = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert codec.decode(codec.encode(img)).x_hat.shape == img.shape


def test_pretrained_weights_are_not_unpickled(tmp_path, monkeypatch):
    """A checkpoint that carries pickled code is refused (weights_only)."""
    from compressai.zoo.image import model_urls

    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    d = tmp_path / "hub" / "checkpoints"
    d.mkdir(parents=True)
    url = model_urls["bmshj2018-hyperprior"]["mse"][2]
    torch.save({"x": Evil()}, d / url.rsplit("/", 1)[-1])
    with pytest.raises(Exception) as info:
        pretrained_codec(2, "bmshj2018-hyperprior")
    assert "pwned" not in str(info.value) and info.type is not SystemExit


def test_untrained_codec_reconstructs_something(tiny_codec, photo):
    x_hat, _ = tiny_codec.decode(tiny_codec.encode(photo))
    assert np.isfinite(psnr(photo, x_hat))


def test_a_12_megapixel_photo_round_trips(tiny_codec):
    """4000×3000 works (tiled: above 2.5 MP; the shipped model's memory at 48 MP is in the README)."""
    img = np.full((3000, 4000, 3), 128, dtype=np.uint8)
    img[::7, ::5] = 200
    x_hat, y_hat = tiny_codec.decode(tiny_codec.encode(img))
    assert x_hat.shape == img.shape and y_hat.shape[-2:] == (188, 252)


def _decode_with_threads(codec, data, threads):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        return codec.decode(data)
    finally:
        torch.set_num_threads(before)


def test_decode_does_not_depend_on_the_thread_count(tiny_codec, photo):
    data = tiny_codec.encode(photo)
    one, *others = (_decode_with_threads(tiny_codec, data, t) for t in (1, 2, 3))
    for other in others:
        assert torch.equal(one.y_hat, other.y_hat) and np.array_equal(one.x_hat, other.x_hat)


@pytest.mark.slow
def test_shipped_decoder_does_not_depend_on_the_thread_count(kodak_dir):
    """With oneDNN, kodim01 at q3 decoded with 1 and 2 threads differed by ±1 in 12 pixels."""
    codec = load_codec(3)
    data = codec.encode(kodak_dir / "kodim01.png")
    one, two, four = (_decode_with_threads(codec, data, t) for t in (1, 2, 4))
    assert np.array_equal(one.x_hat, two.x_hat) and np.array_equal(one.x_hat, four.x_hat)

"""Loading the shipped codec (hash-checked) and CompressAI's published one (offline, never unpickled),
and the shipped decoder's thread independence."""

import numpy as np
import pytest
import torch

from dpexplorer.errors import WeightsError
from dpexplorer.hub.loading import load_codec, pretrained_codec

from helpers import decode_with_threads


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


@pytest.mark.slow
def test_shipped_decoder_does_not_depend_on_the_thread_count(kodak_dir):
    """With oneDNN, kodim01 at q3 decoded with 1 and 2 threads differed by ±1 in 12 pixels."""
    codec = load_codec(3)
    data = codec.encode(kodak_dir / "kodim01.png")
    one, two, four = (decode_with_threads(codec, data, t) for t in (1, 2, 4))
    assert np.array_equal(one.x_hat, two.x_hat) and np.array_equal(one.x_hat, four.x_hat)

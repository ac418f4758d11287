"""τ maps (the τ brush): the CLI's --tau-map, the latent decoder's native map and the pixel-space fallback."""

import numpy as np
import pytest
from PIL import Image

from dpexplorer.decoders.base import DecodeOptions
from dpexplorer.cli import main
from dpexplorer.io.images import load_image, save_png


@pytest.fixture
def encoded(tiny_weights_dir, monkeypatch, photo, tmp_path):
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    src = save_png(photo, tmp_path / "x.png")
    assert main(["encode", str(src), "-q", "1", "-o", str(tmp_path / "x.dpx")]) == 0
    return tmp_path / "x.dpx"


def _decode(dpx, out, *extra):
    assert main(["decode", str(dpx), "-o", str(out), "--sampler", "ddim", "--steps", "3", *extra]) == 0
    return out.read_bytes()


def test_black_mask_is_the_plain_decoder_and_white_is_tau_1_bit_for_bit(encoded, tmp_path):
    plain = _decode(encoded, tmp_path / "plain.png")
    full = _decode(encoded, tmp_path / "full.png", "--tau", "1")
    assert plain != full
    Image.new("L", (128, 96), 0).save(tmp_path / "black.png")
    # 16-bit, and of another size: resized to the image
    Image.fromarray(np.full((40, 50), 65535, np.uint16)).save(tmp_path / "white16.png")
    assert Image.open(tmp_path / "white16.png").mode.startswith("I")
    assert _decode(encoded, tmp_path / "b.png", "--tau-map", str(tmp_path / "black.png"), "--tau", "1") == plain
    assert _decode(encoded, tmp_path / "w.png", "--tau-map", str(tmp_path / "white16.png")) == full
    Image.new("RGB", (128, 96), (255, 255, 255)).save(tmp_path / "white_rgb.png")
    assert _decode(encoded, tmp_path / "w2.png", "--tau-map", str(tmp_path / "white_rgb.png")) == full


def test_a_half_mask_paints_realism_on_one_side_only(encoded, tmp_path):
    _decode(encoded, tmp_path / "plain.png")
    _decode(encoded, tmp_path / "full.png", "--tau", "1")
    mask = np.zeros((96, 128), np.uint8)
    mask[:, 64:] = 255  # realism on the right half only
    Image.fromarray(mask).save(tmp_path / "half.png")
    _decode(encoded, tmp_path / "half_out.png", "--tau-map", str(tmp_path / "half.png"))
    plain, full, half = (load_image(tmp_path / n).astype(int) for n in ("plain.png", "full.png", "half_out.png"))
    left, right = np.s_[:, :32], np.s_[:, 96:]  # away from the seam (g_s spreads a latent cell ~2 cells)
    assert np.abs(half[left] - plain[left]).mean() < np.abs(half[left] - full[left]).mean()
    assert np.abs(half[right] - full[right]).mean() < np.abs(half[right] - plain[right]).mean()


def test_a_bad_mask_is_one_error_line(encoded, tmp_path, capsys):
    (tmp_path / "mask.png").write_text("not an image")
    assert main(["decode", str(encoded), "-o", str(tmp_path / "o.png"), "--tau-map", str(tmp_path / "mask.png")]) == 1
    err = capsys.readouterr().err
    assert "not an image" in err and "Traceback" not in err and not (tmp_path / "o.png").exists()


def test_native_map_and_the_sample_drawn_once(tiny_weights_dir, monkeypatch, photo):
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    from dpexplorer.app import session
    from dpexplorer.decoders.latent.decoder import LatentDecoder
    from dpexplorer.decoders.registry import decode_file, reconstruct_file

    enc = session.encode(photo, 1)
    pipeline = LatentDecoder.load(1)
    calls = []
    real = pipeline.sample
    monkeypatch.setattr(pipeline, "sample", lambda *a, **k: calls.append(1) or real(*a, **k))

    def decode(tau=1.0, tau_map=None):
        options = DecodeOptions(sampler="euler", steps=2, seed=11, tau_map=tau_map)
        return reconstruct_file(enc.data, tau, decoder="latent", options=options)

    full = decode(1.0)
    ones = decode(0.3, np.ones((96, 128), np.float32))
    ramp = decode(tau_map=np.tile(np.linspace(0, 1, 128, dtype=np.float32), (96, 1)))
    assert np.array_equal(ones, full) and not np.array_equal(ramp, full)
    assert len(calls) == 1  # one r̃ for the bitstream and settings, whatever τ or map
    assert np.array_equal(decode(1.0, np.zeros((96, 128))), decode_file(enc.data))
    with pytest.raises(ValueError, match="τ map is 10×10"):
        decode(tau_map=np.ones((10, 10)))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        decode(tau_map=np.full((96, 128), 1.5))


def test_a_new_family_is_one_class_and_one_table_row(tiny_weights_dir, monkeypatch, photo):
    """A toy family that only implements `_decode` (τ = 1: the inverted plain decode): registered by one
    table row, it gets the τ = 0 rule and the pixel-space τ map from the interface."""
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    from dpexplorer.app import session
    from dpexplorer.decoders import registry
    from dpexplorer.decoders.base import TauDecoder

    class Toy(TauDecoder):
        key, label, description = "toy", "Toy", "255 − x̂₀ at τ = 1"

        @classmethod
        def qualities(cls):
            return [1]

        @classmethod
        def load(cls, quality, arch=None):
            from dpexplorer.hub.loading import get_codec

            return cls(get_codec(quality, arch))

        def _decode(self, stream, tau, options):
            return (255 - stream.plain()).astype(np.uint8)

    monkeypatch.setitem(registry.FAMILIES, "toy", Toy)
    monkeypatch.setitem(registry.DECODERS, "toy", Toy)
    enc = session.encode(photo, 1)
    plain = registry.decode_file(enc.data)
    assert "toy" in [f.key for f in session.families_for(1)]
    assert np.array_equal(session.reconstruct(enc, "toy", 0.0), plain)
    m = np.zeros((96, 128), np.float32)
    m[:, 64:] = 1.0
    m[:10, :10] = 0.5
    out = registry.reconstruct_file(enc.data, decoder="toy", options=DecodeOptions(tau_map=m))
    assert np.array_equal(out[:, :64][10:], plain[:, :64][10:]) and np.array_equal(out[:, 64:], 255 - plain[:, 64:])
    assert (out[:10, :10] == 128).all()  # x₀ + ½·(255 − 2x₀) = 127.5, rounded half to even
    ones = DecodeOptions(tau_map=np.ones((96, 128)))
    assert np.array_equal(registry.reconstruct_file(enc.data, decoder="toy", options=ones), 255 - plain)

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dpexplorer.cli import main
from dpexplorer.imageio import load_image, save_png

from conftest import REPO


@pytest.fixture
def tiny_env(tiny_weights_dir, monkeypatch):
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))


def test_encode_decode_single_file(tiny_env, photo, tmp_path, capsys):
    src = save_png(photo, tmp_path / "img.png")
    assert main(["encode", str(src), "-q", "1", "-o", str(tmp_path / "img.dpx")]) == 0
    data = (tmp_path / "img.dpx").read_bytes()
    out = capsys.readouterr().out
    assert f"{len(data)} bytes" in out and f"{len(data) * 8 / (96 * 128):.4f} bpp" in out
    assert main(["decode", str(tmp_path / "img.dpx"), "-o", str(tmp_path / "back.png")]) == 0
    assert load_image(tmp_path / "back.png").shape == photo.shape


def test_folder_mode_skips_bad_files(tiny_env, photo, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        save_png(np.roll(photo, i * 7, axis=1), src / f"p{i}.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    code = main(["encode", str(src), "-q", "1", "-o", str(tmp_path / "enc")])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.png" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["p0.dpx", "p1.dpx", "p2.dpx"]

    (tmp_path / "enc" / "trunc.dpx").write_bytes((tmp_path / "enc" / "p0.dpx").read_bytes()[:-9])
    code = main(["decode", str(tmp_path / "enc"), "-o", str(tmp_path / "dec")])
    err = capsys.readouterr().err
    assert code == 1 and "trunc.dpx" in err and "corrupted or truncated" in err
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["p0.png", "p1.png", "p2.png"]


def test_model_is_loaded_once_for_a_folder(tiny_env, photo, tmp_path, monkeypatch):
    from dpexplorer import codec as codec_module
    from dpexplorer import models

    models._cached_codec.cache_clear()
    loads = []
    real = codec_module.Codec.load.__func__

    def counting(cls, *a, **k):
        loads.append(a)
        return real(cls, *a, **k)

    monkeypatch.setattr(codec_module.Codec, "load", classmethod(counting))
    for i in range(4):
        save_png(photo, tmp_path / f"{i}.png")
    assert main(["encode", str(tmp_path), "-q", "1", "-o", str(tmp_path / "o")]) == 0
    assert main(["decode", str(tmp_path / "o"), "-o", str(tmp_path / "d")]) == 0
    assert len(loads) == 1


def test_metrics_with_bitstream(tiny_env, photo, tmp_path, capsys):
    src = save_png(photo, tmp_path / "img.png")
    main(["encode", str(src), "-q", "1", "-o", str(tmp_path / "img.dpx")])
    capsys.readouterr()
    assert main(["metrics", str(src), str(tmp_path / "img.dpx"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bytes"] == (tmp_path / "img.dpx").stat().st_size
    assert result["bpp"] == pytest.approx(result["bytes"] * 8 / (96 * 128))
    assert {"psnr", "ms_ssim", "lpips"} <= set(result)


def test_errors_are_one_line(tiny_env, tmp_path, capsys):
    (tmp_path / "x.dpx").write_bytes(b"garbage")
    assert main(["decode", str(tmp_path / "x.dpx"), "-o", str(tmp_path / "x.png")]) == 1
    assert "wrong magic" in capsys.readouterr().err
    assert main(["metrics", str(tmp_path / "missing.png"), str(tmp_path / "x.dpx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    assert main(["encode", str(tmp_path / "x.dpx"), "-q", "5", "-o", str(tmp_path / "y.dpx")]) == 1
    assert "no shipped codec weights" in capsys.readouterr().err


@pytest.mark.parametrize("args", [[], ["encode"], ["decode"], ["metrics"], ["train", "codec"],
                                  ["train", "export"], ["eval", "codec"], ["download-kodak"]])
def test_help_everywhere(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([*args, "--help"])
    assert info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_usage_errors_in_a_real_process(tiny_weights_dir):
    env = {**os.environ, "DPEXPLORER_WEIGHTS": str(tiny_weights_dir)}
    r = subprocess.run([sys.executable, "-m", "dpexplorer", "decode", "/nonexistent.dpx", "-o", "/tmp/x.png"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "/nonexistent.dpx" in r.stderr
    r = subprocess.run([sys.executable, "-m", "dpexplorer", "encode"], capture_output=True, text=True, env=env)
    assert r.returncode == 2


@pytest.mark.slow
def test_shipped_weights_round_trip_a_kodak_image(kodak_dir, tmp_path, capsys, monkeypatch):
    """The real thing: shipped q1 weights, a Kodak image, bpp from the bytes written."""
    monkeypatch.delenv("DPEXPLORER_WEIGHTS", raising=False)
    from dpexplorer.models import shipped_qualities

    if not shipped_qualities():
        pytest.skip("no shipped weights")
    q = shipped_qualities()[0]
    src = kodak_dir / "kodim23.png"
    assert main(["encode", str(src), "-q", str(q), "-o", str(tmp_path / "k.dpx")]) == 0
    assert main(["decode", str(tmp_path / "k.dpx"), "-o", str(tmp_path / "k.png")]) == 0
    capsys.readouterr()
    assert main(["metrics", str(src), str(tmp_path / "k.png"), "--bitstream", str(tmp_path / "k.dpx"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bpp"] == pytest.approx((tmp_path / "k.dpx").stat().st_size * 8 / (768 * 512))
    assert 0.02 < result["bpp"] < 1.5
    assert result["psnr"] > 20

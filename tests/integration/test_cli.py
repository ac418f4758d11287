import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dpexplorer.cli import main
from dpexplorer.io.images import load_image, save_png

from helpers import REPO, short_y_string_dpx


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


def test_encode_with_effort_writes_a_file_every_decoder_reads(tiny_env, photo, tmp_path, capsys):
    src = save_png(photo, tmp_path / "img.png")
    # (the bits it saves are measured on the shipped weights: tests/unit/test_effort.py)
    assert main(["encode", str(src), "-q", "1", "--no-hint", "--effort", "3", "-o", str(tmp_path / "e.dpx")]) == 0
    assert "(effort)" in capsys.readouterr().err  # the progress bar, with the time left
    for decoder in ("synthesis", "latent"):
        assert main(["decode", str(tmp_path / "e.dpx"), "--decoder", decoder, "--tau", "1", "--force",
                     "-o", str(tmp_path / "e.png")]) == 0
        assert load_image(tmp_path / "e.png").shape == photo.shape
    for bad in ("-1", "x", "100000"):
        with pytest.raises(SystemExit) as info:
            main(["encode", str(src), "-q", "1", "--effort", bad])
        assert info.value.code == 2 and "effort" in capsys.readouterr().err


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
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["p0.dpx.png", "p1.dpx.png", "p2.dpx.png"]


def test_model_is_loaded_once_for_a_folder(tiny_env, photo, tmp_path, monkeypatch):
    from dpexplorer.hub import loading

    loading._cached_codec.cache_clear()
    loads = []
    real = loading.load_codec

    def counting(*a, **k):
        loads.append(a)
        return real(*a, **k)

    monkeypatch.setattr(loading, "load_codec", counting)
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



def test_noise_scale_is_a_pixel_decoder_option(tiny_env, photo, tmp_path, capsys):
    src = tmp_path / "img.png"
    save_png(photo, src)
    assert main(["encode", str(src), "-q", "1", "-o", str(tmp_path / "img.dpx")]) == 0
    assert main(["decode", str(tmp_path / "img.dpx"), "-o", str(tmp_path / "x.png"), "--decoder", "synthesis",
                 "--tau", "1", "--noise-scale", "0.5"]) == 1
    assert "the synthesis decoder has no noise scale" in capsys.readouterr().err


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
    from dpexplorer.hub.loading import shipped_qualities

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


# ---- never overwrite without asking (each case of the data-loss report) -------------------------
@pytest.fixture
def encoded(tiny_env, photo, tmp_path):
    """d/photo.png and its d/photo.dpx, made with the default names."""
    d = tmp_path / "d"
    src = save_png(photo, d / "photo.png")
    assert main(["encode", str(src), "-q", "1"]) == 0
    assert (d / "photo.dpx").is_file()
    return src, d / "photo.dpx"


def test_default_decode_name_never_replaces_the_original(encoded, photo):
    src, dpx = encoded
    before = src.read_bytes()
    assert main(["decode", str(dpx)]) == 0
    assert src.read_bytes() == before  # the photo is untouched …
    assert load_image(dpx.with_name("photo.dpx.png")).shape == photo.shape  # … the decode is beside it


def test_output_onto_its_own_input_is_refused_even_with_force(encoded, capsys):
    src, dpx = encoded
    data, photo_bytes = dpx.read_bytes(), src.read_bytes()
    for argv in (["decode", str(dpx), "-o", str(dpx)], ["encode", str(src), "-q", "1", "-o", str(src)]):
        for force in ([], ["--force"]):
            capsys.readouterr()
            assert main(argv + force) == 1
            err = capsys.readouterr().err
            assert "is an input" in err and err.count("\n") == 1
    assert dpx.read_bytes() == data and src.read_bytes() == photo_bytes


def test_existing_output_needs_force(encoded, capsys):
    src, dpx = encoded
    first = dpx.read_bytes()
    dpx.write_bytes(b"someone else's file")
    assert main(["encode", str(src), "-q", "1"]) == 1
    assert "exists (use --force)" in capsys.readouterr().err
    assert dpx.read_bytes() == b"someone else's file"
    assert main(["encode", str(src), "-q", "1", "--force"]) == 0
    assert dpx.read_bytes() == first
    assert [p.name for p in dpx.parent.iterdir() if p.name.endswith(".part")] == []  # no temp file left


def test_folder_name_collision_is_reported_and_nothing_is_lost(tiny_env, photo, tmp_path, capsys):
    d = tmp_path / "in"
    save_png(photo, d / "x.png")
    from PIL import Image

    Image.fromarray(photo).save(d / "x.jpg")
    save_png(photo, d / "y.png")
    code = main(["encode", str(d), "-q", "1", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "x.png" in err and "x.jpg" in err and "would also be written" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["y.dpx"]  # neither x is written


def test_symlink_at_the_output_is_not_followed(encoded, tmp_path, capsys):
    src, dpx = encoded
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"keep me")
    link = tmp_path / "link.png"
    link.symlink_to(precious)
    assert main(["decode", str(dpx), "-o", str(link)]) == 1
    assert "exists (use --force)" in capsys.readouterr().err
    assert main(["decode", str(dpx), "-o", str(link), "--force"]) == 0
    assert precious.read_bytes() == b"keep me"  # the target is untouched; the link itself was replaced
    assert not link.is_symlink() and load_image(link).ndim == 3
    dangling = tmp_path / "dangling.dpx"
    dangling.symlink_to(tmp_path / "nowhere" / "x.dpx")
    assert main(["encode", str(src), "-q", "1", "-o", str(dangling)]) == 1
    assert not (tmp_path / "nowhere").exists()


def test_output_with_a_trailing_slash_is_a_folder(encoded, tmp_path):
    src, dpx = encoded
    assert main(["encode", str(src), "-q", "1", "-o", str(tmp_path / "newdir") + "/"]) == 0
    assert (tmp_path / "newdir" / "photo.dpx").is_file()
    assert main(["decode", str(dpx), "-o", str(tmp_path / "newdir")]) == 0  # an existing folder too
    assert (tmp_path / "newdir" / "photo.dpx.png").is_file()


def test_several_inputs_need_a_folder_output(encoded, tmp_path, capsys):
    src, dpx = encoded
    (tmp_path / "file").write_text("not a folder")
    assert main(["decode", str(dpx), str(dpx), "-o", str(tmp_path / "file")]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "not a folder"


def test_crafted_bitstream_is_a_one_line_error_in_a_real_process(tiny_env, tiny_weights_dir, photo, tmp_path):
    """It used to end the process with SIGSEGV (exit 139) in CompressAI's rANS decoder; in folder
    mode the good files around it must still be decoded."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_bad.dpx").write_bytes(short_y_string_dpx(tiny_weights_dir, photo))
    env = {**os.environ, "DPEXPLORER_WEIGHTS": str(tiny_weights_dir)}
    one = subprocess.run([sys.executable, "-m", "dpexplorer", "decode", str(folder / "a_bad.dpx"),
                          "-o", str(tmp_path / "x.png")], cwd=REPO, env=env, capture_output=True, text=True)
    assert one.returncode == 1 and len(one.stderr.strip().splitlines()) == 1, one.stderr
    assert "Traceback" not in one.stderr and not (tmp_path / "x.png").exists()
    src = save_png(photo, tmp_path / "good.png")
    assert main(["encode", str(src), "-q", "1", "-o", str(folder / "b_good.dpx")]) == 0
    batch = subprocess.run([sys.executable, "-m", "dpexplorer", "decode", str(folder), "-o", str(tmp_path / "out/")],
                           cwd=REPO, env=env, capture_output=True, text=True)
    assert batch.returncode == 1 and "a_bad.dpx:" in batch.stderr and "Traceback" not in batch.stderr
    assert load_image(tmp_path / "out" / "b_good.dpx.png").shape == photo.shape

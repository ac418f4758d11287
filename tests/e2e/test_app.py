"""The app launched on 127.0.0.1 and driven through gradio_client, on tiny untrained models."""

import re
from urllib.parse import unquote

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from dpexplorer.io.images import load_image, save_png

from helpers import served_app


@pytest.fixture(scope="module")
def app_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("app-files")


@pytest.fixture(scope="module")
def app_url(tiny_weights_dir, app_tmp):
    mp = pytest.MonkeyPatch()
    with served_app(mp, tiny_weights_dir, app_tmp) as url:
        yield url
    mp.undo()


@pytest.fixture
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture
def photo_file(photo, tmp_path):
    return save_png(photo, tmp_path / "photo.png")


def test_encode_change_tau_switch_sampler(client, photo, photo_file):
    original, info, dpx = client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    assert np.array_equal(load_image(original), photo)  # shown as lossless PNG
    data = open(dpx, "rb").read()
    assert f"{len(data):,} bytes" in info and f"{len(data) * 8 / photo[..., 0].size:.4f} bpp" in info

    pair, crops, table, plot, recon_png = client.predict("latent", 1.0, "ddim", 4, 0, 0.5, 0.5, api_name="/render")
    base, recon = load_image(pair[0]), load_image(pair[1])
    assert base.shape == recon.shape == photo.shape
    assert not np.array_equal(base, recon)
    assert np.array_equal(load_image(recon_png), recon)  # download = pixels shown
    assert "PSNR" in table and "LPIPS" in table and len(crops) == 3

    pair0, *_ = client.predict("latent", 0.0, "ddim", 4, 0, 0.5, 0.5, api_name="/render")
    assert np.array_equal(load_image(pair0[1]), base)  # τ = 0 is the codec decoder, bit for bit

    pair_dpm, *_ = client.predict("latent", 1.0, "dpmsolver++", 4, 0, 0.5, 0.5, api_name="/render")
    assert load_image(pair_dpm[1]).shape == photo.shape


def test_smaller_file_re_encodes_the_same_photo_for_the_same_decoders(client, photo, photo_file, monkeypatch):
    from dpexplorer.app import handlers

    monkeypatch.setattr(handlers, "APP_EFFORT", 4)  # the shipped setting takes minutes; the path is the point
    client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    original, info, dpx = client.predict(handle_file(str(photo_file)), 1, api_name="/encode_smaller")
    assert np.array_equal(load_image(original), photo) and "smaller-file encoder (4 iterations)" in info
    assert "bytes against the fast encoder's file" in info
    data = open(dpx, "rb").read()
    assert f"{len(data):,} bytes" in info
    pair, *_ = client.predict("latent", 1.0, "ddim", 2, 0, 0.5, 0.5, api_name="/render")
    assert load_image(pair[1]).shape == photo.shape
    note = handlers.effort_note(str(photo_file), 1)  # what the page shows before the button is pressed
    assert "about" in note and "for this photo at q1" in note


def test_pngs_not_webp(client, photo_file):
    client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    pair, crops, *_ = client.predict("latent", 0.5, "ddim", 2, 0, 0.5, 0.5, api_name="/render")
    for path in (*pair, crops[0]["image"]):
        assert Image.open(path).format == "PNG"


def test_bitstream_download_and_upload(client, photo_file, tmp_path):
    _, _, dpx = client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    pair_a, *_ = client.predict("latent", 0.7, "ddim", 3, 5, 0.5, 0.5, api_name="/render")
    other = Client(client.src, verbose=False)  # a different user, who only has the .dpx
    original, info, _ = other.predict(handle_file(dpx), api_name="/open_dpx")
    assert original is None and "uploaded bitstream" in info
    pair_b, _, table, *_ = other.predict("latent", 0.7, "ddim", 3, 5, 0.5, 0.5, api_name="/render")
    assert np.array_equal(load_image(pair_a[1]), load_image(pair_b[1]))  # same decode at the receiver
    assert "No original" in table


def test_bad_uploads_show_an_error_and_the_server_keeps_serving(client, photo_file, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    with pytest.raises(Exception, match="not an image"):
        client.predict(handle_file(str(bad)), 1, api_name="/encode")
    corrupt = tmp_path / "x.dpx"
    corrupt.write_bytes(b"DPX\x89" + b"\x01" * 60)
    with pytest.raises(Exception, match="corrupted|inconsistent|truncated"):
        client.predict(handle_file(str(corrupt)), api_name="/open_dpx")
    original, *_ = client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    assert original is not None


def test_tau_frames_sample_once_and_are_the_exact_renders(client, photo_file, monkeypatch):
    from dpexplorer.decoders.latent.decoder import LatentDecoder

    client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    pipeline = LatentDecoder.load(1)
    calls, real = [], pipeline.sample
    monkeypatch.setattr(pipeline, "sample", lambda *a, **k: calls.append(1) or real(*a, **k))
    html, status, plot = client.predict("latent", "euler", 3, 7, api_name="/tau_frames")
    assert "ready: 11" in status and html.count("<img data-tau=") == 11
    assert plot and plot.get("type") == "matplotlib"
    assert len(calls) == 1  # one diffusion sample for the whole sweep: a frame is one synthesis pass
    pair_half, *_ = client.predict("latent", 0.5, "euler", 3, 7, 0.5, 0.5, api_name="/render")
    pair_odd, *_ = client.predict("latent", 0.55, "euler", 3, 7, 0.5, 0.5, api_name="/render")
    assert len(calls) == 1
    half = load_image(pair_half[1])
    frame = re.search(r'data-tau="0.5" src="gradio_api/file=([^"]+)"', html).group(1)
    assert np.array_equal(load_image(unquote(frame)), half)  # the frame shown while dragging = the exact τ
    assert not np.array_equal(load_image(pair_odd[1]), half)


def test_same_size_baselines_on_the_left_and_in_the_table(client, photo, photo_file):
    _, _, dpx = client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    budget = len(open(dpx, "rb").read())
    from dpexplorer.evaluation.baselines import same_size

    pair, _, table, *_ = client.predict("latent", 1.0, "ddim", 2, 0, 0.5, 0.5, "webp", api_name="/render")
    webp = same_size(photo, "webp", budget)  # the largest quality whose file is not larger than the .dpx
    assert webp["bytes"] <= budget or webp["over"]
    assert np.array_equal(load_image(pair[0]), webp["image"])  # left side: WebP at this bitstream's size
    assert f"WebP q{webp['setting']}, same size | {webp['bytes']:,}" in table and "JPEG q" in table
    pair, *_ = client.predict("latent", 1.0, "ddim", 2, 0, 0.5, 0.5, "original", api_name="/render")
    assert np.array_equal(load_image(pair[0]), photo)
    pair, *_ = client.predict("latent", 1.0, "ddim", 2, 0, 0.5, 0.5, "jpeg", api_name="/render")
    assert Image.open(pair[0]).format == "PNG" and not np.array_equal(load_image(pair[0]), photo)


def test_export_comparison(client, photo_file):
    client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    slide, files = client.predict("latent", "ddim", 2, 0, 0.5, 0.5, api_name="/export")
    full, *_ = client.predict("latent", 1.0, "ddim", 2, 0, 0.5, 0.5, api_name="/render")
    base, *_ = client.predict("latent", 0.0, "ddim", 2, 0, 0.5, 0.5, api_name="/render")
    im = Image.open(slide)
    assert im.format == "PNG" and im.width > 3 * 600  # original | codec decoder | τ = 1
    shown = [load_image(f) for f in files]
    assert any(np.array_equal(x, load_image(full[1])) for x in shown)  # lossless reconstructions
    assert any(np.array_equal(x, load_image(base[1])) for x in shown)


def test_tau_brush(client, photo, photo_file, tmp_path):
    client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    full, *_ = client.predict("latent", 1.0, "ddim", 2, 0, 0.5, 0.5, api_name="/render")
    base, *_ = client.predict("latent", 0.0, "ddim", 2, 0, 0.5, 0.5, api_name="/render")
    white = save_png(np.full((48, 64, 3), 255, np.uint8), tmp_path / "white.png")  # resized to the image
    out, png = client.predict(handle_file(str(white)), "latent", 1.0, "ddim", 2, 0, "paint realism", api_name="/brush")
    assert np.array_equal(load_image(out), load_image(full[1])) and np.array_equal(load_image(png), load_image(out))
    out, _ = client.predict(handle_file(str(white)), "latent", 1.0, "ddim", 2, 0, "protect", api_name="/brush")
    assert np.array_equal(load_image(out), load_image(base[1]))  # everything protected: the codec decoder
    half = np.zeros((96, 128, 3), np.uint8)
    half[:, 64:] = 255
    out, _ = client.predict(handle_file(str(save_png(half, tmp_path / "half.png"))), "latent", 1.0, "ddim", 2, 0,
                            "paint realism", api_name="/brush")
    out = load_image(out)
    assert not np.array_equal(out, load_image(full[1])) and not np.array_equal(out, load_image(base[1]))
    bad = tmp_path / "mask.png"
    bad.write_text("not a mask")
    with pytest.raises(Exception, match="not an image|cannot"):
        client.predict(handle_file(str(bad)), "latent", 1.0, "ddim", 2, 0, "paint realism", api_name="/brush")
    assert client.predict(handle_file(str(white)), "latent", 1.0, "ddim", 2, 0, "protect", api_name="/brush")


def test_oversized_upload_is_refused_by_the_server(app_url, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (26 * 2**20))  # over the 25 MB limit stated in the app
    with open(big, "rb") as f:
        r = httpx.post(app_url + "gradio_api/upload", files={"files": ("big.png", f, "image/png")}, timeout=60)
    assert r.status_code == 413 and "maximum allowed size" in r.text
    assert httpx.get(app_url, timeout=30).status_code == 200  # still serving


# ---- temporary files, upload caps, no server paths in messages -----------------------------------
def test_files_live_in_the_session_folder_and_go_with_the_session(client, photo_file, app_tmp):
    from types import SimpleNamespace

    from dpexplorer.app import housekeeping

    client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    client.predict("latent", 0.5, "ddim", 2, 0, 0.5, 0.5, api_name="/render")
    mine = housekeeping.session_dir(SimpleNamespace(session_hash=client.session_hash))
    assert mine.parent == app_tmp and {p.suffix for p in mine.iterdir()} == {".dpx", ".png"}
    assert not [p for p in app_tmp.iterdir() if p.is_file()]  # nothing outside a session folder
    housekeeping.end_session(SimpleNamespace(session_hash=client.session_hash))  # what demo.unload runs
    assert not mine.exists()
    pair, *_ = client.predict("latent", 0.5, "ddim", 2, 0, 0.5, 0.5, api_name="/render")
    assert load_image(pair[0]).ndim == 3  # the session goes on: its files are written again


def test_closing_the_tab_removes_the_session_files(client, app_url, photo_file):
    """A browser tab holds a heartbeat stream open; when it closes, Gradio runs demo.unload."""
    import time
    from types import SimpleNamespace

    import httpx

    from dpexplorer.app import housekeeping

    client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    mine = housekeeping.session_dir(SimpleNamespace(session_hash=client.session_hash))
    assert any(mine.iterdir())
    with httpx.stream("GET", f"{app_url}gradio_api/heartbeat/{client.session_hash}", timeout=30) as r:
        assert r.status_code == 200
        next(r.iter_raw())  # the stream is open: the tab is "there"
    deadline = time.time() + 30  # the server notices the closed stream at its next heartbeat
    while mine.exists() and time.time() < deadline:
        time.sleep(0.5)
    assert not mine.exists()


def test_old_files_are_swept_by_age(tmp_path, monkeypatch):
    import os
    import time

    from dpexplorer.app import housekeeping

    monkeypatch.setattr(housekeeping, "OUT_DIR", tmp_path)
    old, fresh = tmp_path / "old", tmp_path / "fresh"
    for d in (old, fresh):
        d.mkdir()
        (d / "x.png").write_bytes(b"x")
    (tmp_path / "stray.dpx").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    for p in (old, tmp_path / "stray.dpx"):
        os.utime(p, (two_hours_ago, two_hours_ago))
    assert housekeeping.sweep(force=True) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh"]


def test_a_large_dpx_is_refused_before_reading(client, tmp_path):
    from dpexplorer.app.handlers import MAX_DPX_BYTES

    big = tmp_path / "big.dpx"
    big.write_bytes(b"DPX\x89" + b"\0" * MAX_DPX_BYTES)
    with pytest.raises(Exception, match="larger than"):
        client.predict(handle_file(str(big)), api_name="/open_dpx")


def test_messages_never_show_server_paths(client, tmp_path):
    from dpexplorer.app.messages import user_error as _user_error
    from dpexplorer.errors import ImageError

    for exc in (FileNotFoundError(2, "No such file or directory", "/srv/app/tmp/gradio/ab12/x.png"),
                ImageError("/tmp/gradio/ab12/photo.png: no such file"),
                ValueError("cannot read '/home/user/app/tmp dir/x.dpx'"),
                RuntimeError("boom in /usr/lib/python3/site-packages/torch/nn.py")):
        message = _user_error(exc).message
        assert "/" not in message and "\\" not in message, message
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(bad)), 1, api_name="/encode")
    assert "/tmp" not in str(info.value) and str(tmp_path) not in str(info.value)


def test_crafted_dpx_upload_and_render_leave_the_server_serving(client, photo, photo_file, tiny_weights_dir,
                                                                tmp_path):
    """A CRC-valid .dpx with a 12-byte ŷ string used to kill the server (SIGSEGV) at render."""
    from helpers import short_y_string_dpx

    crafted = tmp_path / "crafted.dpx"
    crafted.write_bytes(short_y_string_dpx(tiny_weights_dir, photo))
    with pytest.raises(Exception, match="malformed|crashed|entropy"):
        client.predict(handle_file(str(crafted)), api_name="/open_dpx")
        client.predict("latent", 1.0, "ddim", 2, 0, 0.5, 0.5, api_name="/render")
    original, *_ = client.predict(handle_file(str(photo_file)), 1, api_name="/encode")
    assert original is not None

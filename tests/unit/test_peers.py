"""The peers (issue 31): the same-size rule, missing encoders, BD-rates against peer curves."""

import math

import numpy as np
import pytest

from dpexplorer.evaluation import baselines, peers


def _photo_like(h=48, w=64):
    """Smooth gradients plus texture: file size grows with quality over the whole scale."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    return np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)


def _available():
    return [f for f, why in baselines.available_formats().items() if why is None]


def test_same_size_is_the_largest_quality_within_the_budget_on_a_real_encoder():
    img = _photo_like()
    for fmt in _available():
        top = baselines.QUALITY_TOP.get(fmt, baselines.QUALITY_MAX)
        sizes = {}

        def size(q):
            if q not in sizes:
                sizes[q] = len(baselines.encode_at(img, fmt, q))
            return sizes[q]

        for budget in (size(5) + 1, (size(20) + size(60)) // 2, size(90)):
            got = baselines.same_size(img, fmt, budget)
            assert got["bytes"] <= budget and not got["over"], (fmt, budget)
            assert got["bytes"] == size(got["setting"]) and got["image"].shape == img.shape
            # the next quality does not fit: exact wherever the size grows with the quality
            assert got["setting"] == top or size(got["setting"] + 1) > budget, (fmt, budget)
        if fmt != "avif":  # AVIF's 100 encodes are slow: the exact search is the test below
            every = {q: size(q) for q in range(1, top + 1)}
            budget = (every[30] + every[31]) // 2 + 1
            fitting = [q for q, n in every.items() if n <= budget]
            if all(every[q] <= every[q + 1] for q in range(1, top)):
                assert baselines.same_size(img, fmt, budget)["setting"] == max(fitting), fmt


def test_same_size_search_on_a_known_size_curve(monkeypatch):
    """Exact against brute force, for every budget, on a monotone but curved size(quality)."""
    sizes = {q: int(200 + 3 * q + 0.4 * q**2 + (q > 80) * 2000) for q in range(1, 101)}
    calls = []
    monkeypatch.setattr(baselines, "encode_at", lambda img, fmt, q, threads=None: calls.append(q) or b"x" * sizes[q])
    monkeypatch.setattr(baselines, "decode", lambda data: np.zeros((4, 4, 3), np.uint8))
    img = np.zeros((4, 4, 3), np.uint8)
    worst = 0
    for budget in range(sizes[1], sizes[100] + 50, 37):
        calls.clear()
        got = baselines.same_size(img, "webp", budget)
        assert got["setting"] == max(q for q, n in sizes.items() if n <= budget)
        assert got["bytes"] <= budget and not got["over"]
        worst = max(worst, len(set(calls)))
    assert worst <= 10  # a bisection of 1..100 takes 8 (with quality 1): interpolation stays close


def test_same_size_over_budget_returns_the_lowest_quality_flagged():
    img = _photo_like()
    got = baselines.same_size(img, "jpeg", 10)
    assert got["over"] and got["setting"] == baselines.QUALITY_MIN and got["bytes"] > 10


def test_a_missing_encoder_is_a_note_not_a_crash(monkeypatch):
    from dpexplorer.app import compare

    why = "JPEG XL needs the pillow-jxl-plugin package (pip install pillow-jxl-plugin)"
    probe = {"avif": None, "jxl": why, "webp": None, "jpeg": None}
    monkeypatch.setattr(baselines, "available_formats", lambda: dict(probe))
    assert "jxl" not in compare.left_choices() and "avif" in compare.left_choices()
    assert compare.same_size_formats() == ("avif", "webp", "jpeg")
    assert compare.unavailable_note() == f"JPEG XL: not offered here: {why}"
    with pytest.raises(baselines.EncoderUnavailable, match="pillow-jxl-plugin"):
        baselines.encode_at(_photo_like(), "jxl", 50)
    # the peer curves skip it and say why
    curves = peers.peer_curves([], formats=["jxl"])
    assert curves["formats"] == {} and curves["unavailable"] == {"jxl": why}
    monkeypatch.setattr(baselines, "available_formats", lambda: {f: None for f in probe})
    assert compare.unavailable_note() == ""


def test_the_probe_never_raises_and_says_why(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_jxl(name, *args, **kwargs):
        if name == "pillow_jxl":
            raise ImportError("no module named pillow_jxl")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jxl)
    assert "pillow-jxl-plugin" in baselines._probe("jxl")
    assert baselines._probe("jpeg") is None


def test_left_image_of_an_unavailable_format_falls_back_to_the_codec_decoder(monkeypatch):
    from types import SimpleNamespace

    from dpexplorer.app import compare, session

    monkeypatch.setattr(baselines, "available_formats", lambda: {"avif": "no AVIF here", "jxl": None,
                                                                 "webp": None, "jpeg": None})
    recon = np.zeros((8, 8, 3), np.uint8)
    monkeypatch.setattr(session, "base_reconstruction", lambda enc: recon)
    enc = SimpleNamespace(original=_photo_like(8, 8), data=b"x" * 100, _baselines={})
    img, caption = compare.left_image(enc, "avif")
    assert img is recon and "no AVIF here" in caption


def _peer(points):
    return {"formats": {"avif": {"name": "AVIF", "points": [dict(zip(("bpp", "psnr", "lpips"), p)) for p in points]}}}


def test_bd_rates_against_peers_on_synthetic_curves():
    rate = [0.1, 0.2, 0.4, 0.8]
    psnr = [27.0, 29.0, 31.0, 33.0]
    lp = [0.40, 0.30, 0.20, 0.12]
    peer = _peer(zip(rate, psnr, lp))
    # 20 % fewer bits for the same PSNR and the same LPIPS
    ours = [(r * 0.8, p, q) for r, p, q in zip(rate, psnr, lp)][1:]
    bd = peers.bd_rates_against_peers(ours, peer)
    assert bd["avif"]["psnr"] == pytest.approx(-20.0, abs=0.5)
    assert bd["avif"]["lpips"] == pytest.approx(-20.0, abs=1.0)  # PCHIP of LPIPS: not exact
    # a τ = 1 series: same PSNR curve shifted to 50 % more bits, LPIPS as the peer's at half the rate
    tau1 = [(r * 1.5, p, q) for r, p, q in zip(rate, psnr, lp)][1:3]
    bd = peers.bd_rates_against_peers(tau1, peer)
    assert bd["avif"]["psnr"] == pytest.approx(50.0, abs=1.0)
    assert math.isnan(peers.bd_rates_against_peers(ours[:1], peer)["avif"]["psnr"])  # one point: no curve
    far = [(0.2, 50.0, 0.01), (0.3, 51.0, 0.005)]  # no overlap in quality with the peer
    assert all(math.isnan(v) for v in peers.bd_rates_against_peers(far, peer)["avif"].values())


def test_decoder_series_at_tau_one_from_a_curves_file():
    curves = {"series": [
        {"kind": "plain", "points": [{"bpp": 0.2, "psnr": 27, "lpips": 0.4, "quality": 1},
                                     {"bpp": 0.3, "psnr": 29, "lpips": 0.3, "quality": 2}]},
        *({"kind": "latent", "quality": q, "sampler": "ddim",
           "points": [{"bpp": b, "psnr": 27, "lpips": 0.4, "tau": 0.0}, {"bpp": b, "psnr": 26, "lpips": 0.25, "tau": 1.0}]}
          for q, b in ((1, 0.2), (2, 0.3)))]}
    series = peers.decoder_series_at_tau(curves)
    assert series["codec decoder"] == [(0.2, 27, 0.4), (0.3, 29, 0.3)]
    assert series["latent τ=1 (ddim)"] == [(0.2, 26, 0.25), (0.3, 26, 0.25)]


def test_peer_curves_on_a_tiny_folder(tmp_path):
    from dpexplorer.io.images import save_png

    for i in range(2):
        save_png(_photo_like(32 + 8 * i, 40), tmp_path / f"{i}.png")
    images = sorted(tmp_path.glob("*.png"))
    curves = peers.peer_curves(images, formats=["jpeg", "webp"], settings={"jpeg": (10, 50), "webp": (10, 50)},
                               cells_path=tmp_path / "cells.jsonl")
    for fmt in ("jpeg", "webp"):
        pts = curves["formats"][fmt]["points"]
        assert [p["setting"] for p in pts] == [10, 50] and pts[0]["bpp"] < pts[1]["bpp"]
        assert pts[0]["psnr"] < pts[1]["psnr"] and pts[0]["lpips"] > pts[1]["lpips"]
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == 8
    again = peers.peer_curves(images, formats=["jpeg", "webp"], settings={"jpeg": (10, 50), "webp": (10, 50)},
                              cells_path=tmp_path / "cells.jsonl")  # resumed: nothing re-measured
    assert again["formats"] == curves["formats"]
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == 8
    assert peers.stored_peer_curves(tmp_path, {"peers": {"x": curves}}) is curves

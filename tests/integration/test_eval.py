import csv
import json

import numpy as np
import pytest

from dpexplorer.io.images import save_png

from helpers import REPO, random_photos


def _images(tmp_path):
    """Two random 64×96 images in a folder."""
    return random_photos(tmp_path / "imgs", height=64, width=96, prefix="im")


def _tiny_eval(tmp_path, tiny_weights_dir, monkeypatch):
    from dpexplorer.evaluation.full_eval import EvalSettings, run_eval

    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    settings = EvalSettings(data=str(_images(tmp_path)), out_dir=str(tmp_path / "out"), samplers=["ddim", "ddpm"], steps=2,
                            taus=[0.0, 1.0], extra=False, assets=str(tmp_path / "curves.json"))
    return settings, run_eval(settings)


def test_eval_is_resumable_and_writes_the_app_curves(tmp_path, tiny_weights_dir, monkeypatch):
    from dpexplorer.evaluation import full_eval
    from dpexplorer.evaluation.full_eval import run_eval

    measured = []
    measure = full_eval._measure
    monkeypatch.setattr(full_eval, "_measure", lambda *a: measured.append(1) or measure(*a))
    settings, result = _tiny_eval(tmp_path, tiny_weights_dir, monkeypatch)
    cells = (tmp_path / "out" / "cells.jsonl").read_text().splitlines()
    assert len(cells) == 2 * (1 + 2 * 2 + 2 + 2)  # plain + samplers×taus + synthesis taus + jpeg + webp, per image
    assert len(measured) == 2 * (1 + 2 + 1 + 2)  # the τ = 0 cells are the plain image: measured once
    # latent cells measured later reuse the stored plain cell for τ = 0
    (tmp_path / "out" / "cells.jsonl").write_text(
        "\n".join(c for c in cells if json.loads(c)["decoder"] != "latent") + "\n")
    measured.clear()
    assert json.dumps(run_eval(settings)["means"]) == json.dumps(result["means"])
    assert len(measured) == 2 * 2
    cells = (tmp_path / "out" / "cells.jsonl").read_text().splitlines()
    run_eval(settings)  # a second run measures nothing new
    assert (tmp_path / "out" / "cells.jsonl").read_text().splitlines() == cells
    # cells measured with other weights are never reused: here every cell claims another codec
    stale = [json.dumps({**json.loads(c), "codec": "0" * 16}) for c in cells]
    (tmp_path / "out" / "cells.jsonl").write_text("\n".join(stale) + "\n")
    again = run_eval(settings)
    assert len((tmp_path / "out" / "cells.jsonl").read_text().splitlines()) == 2 * len(cells)
    assert json.dumps(again["means"]) == json.dumps(result["means"])  # (NaN-safe comparison)
    tau0 = [m for m in result["means"] if m["decoder"] in ("latent", "synthesis") and m["tau"] == 0.0]
    assert {m["decoder"] for m in tau0} == {"latent", "synthesis"}
    bars = {(b["decoder"], b["sampler"]): b for b in result["tau_bar"]}
    assert set(bars) == {("latent", "ddim"), ("latent", "ddpm"), ("synthesis", None)}
    assert all(b["images"] == 2 and 0 <= b["share_tau1_better"] <= 1 for b in bars.values())
    plain = [m for m in result["means"] if m["decoder"] == "plain"][0]
    assert all(m["psnr"] == pytest.approx(plain["psnr"]) for m in tau0)  # τ = 0 is the base decoder
    for name in ("results.json", "results.csv", "dp_curves.png", "tau_crops_q1.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert curves["schema"] == 1 and curves["generated_by"] == "dpexplorer eval"
    assert curves["weights"]["codec-q1"] and curves["weights"]["latent-q1"] and curves["weights"]["synthesis-q1"]
    kinds = {s["kind"] for s in curves["series"]}
    assert kinds == {"plain", "latent", "synthesis", "jpeg", "webp"}


def test_a_decode_default_set_at_export_gets_cells_of_its_own(tmp_path, tiny_weights_dir, monkeypatch):
    """A latent module re-exported with a strength κ decodes differently from the same file: its cells are
    measured again, the other decoders' reused."""
    import shutil

    from dpexplorer.evaluation import full_eval
    from dpexplorer.decoders.base import unload_all

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    settings, _ = _tiny_eval(tmp_path, weights, monkeypatch)
    manifest = json.loads((weights / "manifest.json").read_text())
    [entry] = [e for e in manifest["models"].values() if e["kind"] == "latent"]
    entry["config"]["strength"] = 0.5
    (weights / "manifest.json").write_text(json.dumps(manifest))
    unload_all()
    measured = []
    measure = full_eval._measure
    monkeypatch.setattr(full_eval, "_measure", lambda *a: measured.append(1) or measure(*a))
    full_eval.run_eval(settings)
    assert len(measured) == 2 * 2  # τ = 1 of each image and sampler; τ = 0 is the stored plain image
    cells = [json.loads(c) for c in (tmp_path / "out" / "cells.jsonl").read_text().splitlines()]
    latent = {c["model"] for c in cells if c["decoder"] == "latent"}
    assert len(latent) == 2 and any(m.endswith("/strength=0.5") for m in latent)
    assert full_eval.model_id({"sha256": "ab" * 32, "config": {"noise_scale": 1.0}}) == "ab" * 8


def test_eval_covers_the_pixel_decoder_per_setting_with_a_slow_subset(tmp_path, tiny_weights_dir, monkeypatch):
    import shutil

    from dpexplorer.evaluation.full_eval import EvalSettings, run_eval
    from dpexplorer.hub.files import save_weights
    from dpexplorer.hub.manifest import find_entry, model_name

    from helpers import tiny_pixel_denoiser

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    _, codec_entry = find_entry("codec", None, 1, weights)
    den = tiny_pixel_denoiser()
    den.cfg["base"] = "synthesis"
    meta = {"kind": "pixel", "arch": codec_entry["arch"], "quality": 1, "codec_sha256": codec_entry["sha256"],
            "synthesis_sha256": find_entry("synthesis", None, 1, weights)[1]["sha256"], "config": den.config()}
    save_weights(den.state_dict(), model_name("pixel", codec_entry["arch"], 1), meta, directory=weights)
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(weights))
    settings = EvalSettings(data=str(_images(tmp_path)), out_dir=str(tmp_path / "out"), decoders=["plain", "pixel"],
                            taus=[0.0, 0.5, 1.0], extra=False, assets=str(tmp_path / "curves.json"),
                            step_settings={"pixel": ["ddim:2", "dpmsolver++:3", "ddpm:2"]}, slow_limit=1, fast_steps=2)
    result = run_eval(settings)
    pixel = {(m["sampler"], m["steps"], m["tau"]): m for m in result["means"] if m["decoder"] == "pixel"}
    # DDPM is not offered with the pixel decoder: not measured either
    assert set(pixel) == {(s, n, t) for s, n in (("ddim", 2), ("dpmsolver++", 3)) for t in (0.0, 0.5, 1.0)}
    assert pixel[("ddim", 2, 1.0)]["n"] == 2 and pixel[("dpmsolver++", 3, 1.0)]["n"] == 1  # the slow subset
    plain = next(m for m in result["means"] if m["decoder"] == "plain")
    assert pixel[("ddim", 2, 0.0)]["psnr"] == pytest.approx(plain["psnr"])  # τ = 0 is the plain decoder
    assert pixel[("ddim", 2, 1.0)]["psnr"] != pytest.approx(plain["psnr"])
    bars = {(b["decoder"], b["sampler"]): b for b in result["tau_bar"]}
    assert set(bars) == {("pixel", "ddim:2"), ("pixel", "dpmsolver++:3")} and bars[("pixel", "dpmsolver++:3")]["images"] == 1
    curves = json.loads((tmp_path / "curves.json").read_text())
    series = [s for s in curves["series"] if s["kind"] == "pixel"]
    assert sorted((s["sampler"], s["steps"]) for s in series) == [("ddim", 2), ("dpmsolver++", 3)]
    assert curves["weights"]["pixel-q1"] == find_entry("pixel", None, 1, weights)[1]["sha256"]
    assert (tmp_path / "out" / "tau_crops_q1.png").stat().st_size > 0


def test_shipped_curves_file_is_what_eval_writes(tmp_path, tiny_weights_dir, monkeypatch):
    """assets/kodak_curves.json has the schema the command writes and the hashes of the shipped weights."""
    shipped = REPO / "assets" / "kodak_curves.json"
    if not shipped.exists():
        pytest.skip("no curves file shipped yet")
    from dpexplorer.hub.manifest import load_manifest

    _, _ = _tiny_eval(tmp_path, tiny_weights_dir, monkeypatch)
    fresh = json.loads((tmp_path / "curves.json").read_text())
    committed = json.loads(shipped.read_text())
    # "peers": AVIF, JPEG XL, WebP and JPEG curves, written by tools/peer_curves.py and carried over by eval
    assert set(committed) - {"peers"} == set(fresh)
    assert committed["schema"] == fresh["schema"] and committed["generated_by"] == fresh["generated_by"]
    assert set(committed["settings"]) == set(fresh["settings"])
    for series in committed["series"]:
        # "measured": the date of the earlier run a carried-over series comes from (same weights)
        assert set(series) <= {"label", "kind", "style", "points", "quality", "sampler", "steps", "measured"}
        assert all({"bpp", "psnr", "lpips", "quality"} <= set(p) for p in series["points"])
    monkeypatch.delenv("DPEXPLORER_WEIGHTS")
    shipped_hashes = {e["sha256"] for e in load_manifest()["models"].values()}
    assert set(committed["weights"].values()) <= shipped_hashes, "curves were made with other weights"


def test_codec_eval_reports_bd_rates_against_compressai_and_same_image_baselines(tmp_path, tiny_weights_dir,
                                                                                  monkeypatch, photo):
    from dpexplorer.evaluation import baselines
    from dpexplorer.evaluation.codec_eval import evaluate_codecs, format_table

    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    data = tmp_path / "imgs"
    data.mkdir()
    save_png(photo, data / "a.png")
    result = evaluate_codecs(data, qualities=[1], out_dir=tmp_path / "out")
    peers = [f for f, why in baselines.available_formats().items() if why is None]
    assert set(result["bd_rate_psnr_percent"]) == {"compressai mbt2018-mean", "compressai bmshj2018-hyperprior",
                                                   *peers}
    assert set(result["bd_rate_lpips_percent"]) == set(peers) == set(result["peers"]["formats"])
    for fmt in peers:  # measured on the same image (the same-size rule: test_peers)
        assert result["baselines"][fmt]["1"]["psnr"] > 10
    ours = next(csv.DictReader(open(tmp_path / "out" / "codec_eval.csv")))
    rows = list(csv.DictReader(open(tmp_path / "out" / "codec_eval_baselines.csv")))
    assert sorted(r["format"] for r in rows) == sorted(peers)
    # never more bytes than ours, unless even the lowest quality is larger (flagged)
    assert all(int(r["bytes"]) <= int(ours["bytes"]) or r["over"] == "True" for r in rows)
    table = format_table(result)
    assert "vs compressai mbt2018-mean" in table and ("vs AVIF" in table) == ("avif" in peers)


def test_curves_of_decoders_not_rerun_are_carried_only_with_the_same_weights(tmp_path, tiny_weights_dir, monkeypatch):
    from dataclasses import replace

    from dpexplorer.evaluation.full_eval import run_eval

    settings, _ = _tiny_eval(tmp_path, tiny_weights_dir, monkeypatch)
    curves_path = tmp_path / "curves.json"
    first = json.loads(curves_path.read_text())
    latent = [s for s in first["series"] if s["kind"] == "latent"]
    # a later run of the plain decoder and the synthesis only keeps the measured latent/JPEG/WebP curves
    run_eval(replace(settings, decoders=["plain", "synthesis"], out_dir=str(tmp_path / "out2")))
    second = json.loads(curves_path.read_text())
    assert [s["kind"] for s in second["series"]].count("latent") == len(latent)
    assert {s["kind"] for s in second["series"]} == {"plain", "latent", "synthesis", "jpeg", "webp"}
    assert all(s["measured"] == first["date"] for s in second["series"] if s["kind"] in ("latent", "jpeg", "webp"))
    # …but not once the latent module they were measured with is no longer the shipped one
    stale = {**second, "weights": {**second["weights"], "latent-q1": "0" * 64}}
    curves_path.write_text(json.dumps(stale))
    run_eval(replace(settings, decoders=["plain", "synthesis"], out_dir=str(tmp_path / "out2")))
    third = json.loads(curves_path.read_text())
    assert {s["kind"] for s in third["series"]} == {"plain", "synthesis", "jpeg", "webp"}
    # …nor when the same file was re-exported with another decode default (the latent strength κ)
    assert second["decode_defaults"]["latent-q1"] == ""
    curves_path.write_text(json.dumps({**second, "decode_defaults": {**second["decode_defaults"],
                                                                     "latent-q1": "strength=0.5"}}))
    run_eval(replace(settings, decoders=["plain", "synthesis"], out_dir=str(tmp_path / "out2")))
    assert "latent" not in {s["kind"] for s in json.loads(curves_path.read_text())["series"]}


def test_eval_measures_the_file_with_the_senders_hint_beside_raw_tau(tmp_path, tiny_weights_dir, monkeypatch, capsys):
    """Hinted cells: each family's first setting decoding the default file (its bpp counts the hint), next to
    the raw τ cells of the file without a hint; the tables name them apart."""
    from dpexplorer.decoders.synthesis import SynthesisDecoder
    from dpexplorer.evaluation.full_eval import EvalSettings, format_summary, run_eval
    from dpexplorer.hint import sender

    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))

    def encode_uncapped(codec, image, **_):  # tiny random files are too small for the 1 % cap
        synthesis = SynthesisDecoder.load(codec.cfg.quality, codec.cfg.arch).synthesis
        return sender.encode_with_hint(codec, image, synthesis=synthesis, max_share=None)

    monkeypatch.setattr(sender, "encode", encode_uncapped)
    settings = EvalSettings(data=str(_images(tmp_path)), out_dir=str(tmp_path / "out"), decoders=["plain", "synthesis"],
                            taus=[0.0, 1.0], extra=False)
    result = run_eval(settings)
    cells = [json.loads(c) for c in (tmp_path / "out" / "cells.jsonl").read_text().splitlines()]
    hinted = [c for c in cells if c["hint"]]
    raw = {(c["image"], c["tau"]): c for c in cells if c["decoder"] == "synthesis" and not c["hint"]}
    assert len(hinted) == 2 * 2 and all(c["hint_bytes"] > 0 for c in hinted)
    for c in hinted:  # the hint's bytes are counted; τ = 0 is the codec decoder's image either way
        assert c["bpp"] > raw[(c["image"], c["tau"])]["bpp"]
        if c["tau"] == 0.0:
            assert c["psnr"] == pytest.approx(raw[(c["image"], 0.0)]["psnr"])
    bars = {(b["decoder"], b["sampler"]): b for b in result["tau_bar"]}
    assert set(bars) == {("synthesis", None), ("synthesis", "hinted")} and bars[("synthesis", "hinted")]["hint_bytes"] > 0
    assert "grain_median_tau1" in bars[("synthesis", "hinted")]
    assert "synthesis hinted" in format_summary(result) and "synthesis τ=1 hinted" in result["bd_rate_peers"]
    # the raw curve stays the app's: hinted means are not merged into it
    raw_means = [m for m in result["means"] if m["decoder"] == "synthesis" and not m.get("hint")]
    assert len(raw_means) == 2 and all(m["n"] == 2 for m in raw_means)
    # resumed: nothing is encoded or measured again
    monkeypatch.setattr(sender, "encode", lambda *a, **k: pytest.fail("encoded again"))
    assert json.dumps(run_eval(settings)["means"]) == json.dumps(result["means"])
    assert len((tmp_path / "out" / "cells.jsonl").read_text().splitlines()) == len(cells)


def test_a_run_at_some_qualities_keeps_a_decoders_curves_at_the_others():
    """Re-evaluating one decoder at one quality (new weights there) keeps its series at the other qualities
    and every other decoder's, while their weights are still the shipped ones."""
    from dpexplorer.evaluation.full_eval import carried_series

    weights = {"codec-q1": "a", "codec-q2": "b", "pixel-q1": "c", "pixel-q2": "d", "latent-q1": "e"}
    old = {"data": "kodak", "images": 24, "date": "then", "weights": {**weights, "pixel-q2": "old"},
           "decode_defaults": {}, "series": [
               {"kind": "plain", "label": "codec decoder (q1,2)"},
               {"kind": "pixel", "quality": 1, "label": "q1 pixel"}, {"kind": "pixel", "quality": 2, "label": "q2 pixel"},
               {"kind": "latent", "quality": 1, "label": "q1 latent"}]}
    result = {"data": "kodak", "images": 24, "weights": weights, "decode_defaults": {},
              "settings": {"decoders": ["pixel"]}, "means": [{"quality": 2}]}
    assert [s["label"] for s in carried_series(old, result)] == ["codec decoder (q1,2)", "q1 pixel", "q1 latent"]
    # a run of the codec decoder at q2 alone keeps its series over q1 and q2 whole
    at_q2 = {**result, "settings": {"decoders": ["plain", "pixel"]}}
    assert "codec decoder (q1,2)" in [s["label"] for s in carried_series(old, at_q2)]
    at_both = {**at_q2, "means": [{"quality": 1}, {"quality": 2}]}
    assert "codec decoder (q1,2)" not in [s["label"] for s in carried_series(old, at_both)]
    # the q1 pixel weights changed as well: that series goes too
    assert "q1 pixel" not in [s["label"] for s in carried_series({**old, "weights": {**old["weights"], "pixel-q1": "x"}}, result)]

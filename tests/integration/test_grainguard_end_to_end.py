"""The receiver's grain guard end to end on tiny weights: trained and exported the way the shipped ones
are, loaded for its codec only, applied by every decode of a file without a hint, and switched off."""

import json
import shutil

import numpy as np
import pytest

from dpexplorer.cli import main
from dpexplorer.decoders import grainguard
from dpexplorer.decoders.base import DecodeOptions, unload_all
from dpexplorer.decoders.registry import open_file, reconstruct_file
from dpexplorer.decoders.taumap import blend
from dpexplorer.errors import WeightsError
from dpexplorer.io.images import load_image, save_png


@pytest.fixture
def guard_env(tiny_weights_dir, tmp_path, photo, monkeypatch):
    """The tiny weights plus a guard trained on three small photos by `dpexplorer train guard`."""
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(weights))
    unload_all()
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        save_png(np.roll(photo, 20 * i, axis=1)[:64, :80], photos / f"p{i}.png")
    assert main(["train", "guard", "--quality", "1", "--data", str(photos), "--images", "3", "--held-out", "0.34",
                 "--epochs", "1", "--out", str(tmp_path / "runs")]) == 0
    yield weights
    unload_all()


def test_a_trained_guard_is_exported_with_its_provenance_and_weights_raw_tau(guard_env, photo):
    entry = json.loads((guard_env / "manifest.json").read_text())["models"]["guard-mbt2018-mean-q1"]
    synthesis = json.loads((guard_env / "manifest.json").read_text())["models"]["synthesis-mbt2018-mean-q1"]
    assert entry["synthesis_sha256"] == synthesis["sha256"] and entry["channels"] == 24
    assert len(entry["training"]["learning_curve"]) == 1 and len(entry["held_out"]["photos"]) == 1

    from dpexplorer.codec.codec import Codec  # noqa: F401  (the tiny codec comes from the weights folder)
    from dpexplorer.hub.loading import get_codec

    stream = open_file(get_codec(1).encode(photo))  # no hint
    guard = grainguard.stream_guard_map(stream)
    assert guard.shape == photo.shape[:2] and 0 <= guard.min() <= guard.max() <= 1
    uniform = reconstruct_file(stream, 1.0, decoder="synthesis", options=DecodeOptions(use_guard=False))
    guarded = reconstruct_file(stream, 1.0, decoder="synthesis")
    assert np.array_equal(guarded, blend(stream.plain(), uniform, guard))
    assert np.array_equal(reconstruct_file(stream, 0.0, decoder="synthesis"), stream.plain())
    half = reconstruct_file(stream, 0.5, decoder="latent")  # every family: τ times the map, as a τ map
    assert np.array_equal(half, reconstruct_file(stream, 1.0, decoder="latent",
                                                 options=DecodeOptions(tau_map=0.5 * guard)))


def test_the_cli_decodes_uniform_tau_with_no_guard(guard_env, photo, tmp_path):
    src = save_png(photo, tmp_path / "img.png")
    assert main(["encode", str(src), "-q", "1", "--no-hint", "-o", str(tmp_path / "img.dpx")]) == 0
    outputs = {}
    for name, flags in (("guarded", []), ("uniform", ["--no-guard"])):
        assert main(["decode", str(tmp_path / "img.dpx"), "--decoder", "synthesis", "--tau", "1", *flags,
                     "-o", str(tmp_path / f"{name}.png")]) == 0
        outputs[name] = load_image(tmp_path / f"{name}.png")
    stream = open_file((tmp_path / "img.dpx").read_bytes())
    assert np.array_equal(outputs["uniform"], reconstruct_file(stream, 1.0, decoder="synthesis",
                                                               options=DecodeOptions(use_guard=False)))
    assert np.array_equal(outputs["guarded"], reconstruct_file(stream, 1.0, decoder="synthesis"))


def test_a_guard_trained_through_another_synthesis_is_refused(guard_env, photo):
    manifest = json.loads((guard_env / "manifest.json").read_text())
    manifest["models"]["guard-mbt2018-mean-q1"]["synthesis_sha256"] = "0" * 64
    (guard_env / "manifest.json").write_text(json.dumps(manifest))
    unload_all()
    from dpexplorer.hub.loading import get_codec

    with pytest.raises(WeightsError, match="other perceptual synthesis"):
        reconstruct_file(open_file(get_codec(1).encode(photo)), 1.0, decoder="synthesis")


def test_eval_measures_guarded_raw_tau_and_uniform_tau_apart(guard_env, photo, tmp_path):
    from dpexplorer.evaluation.full_eval import EvalSettings, run_eval, setting_label

    data = tmp_path / "images"
    data.mkdir()
    save_png(photo, data / "a.png")
    out = tmp_path / "eval"
    for guard in (True, False):
        run_eval(EvalSettings(data=str(data), out_dir=str(out), decoders=["plain", "synthesis"], taus=[0.0, 1.0],
                              extra=False, hint=False, guard=guard))
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    synthesis = {(c["tau"], bool(c.get("guard"))): c for c in cells if c["decoder"] == "synthesis"}
    assert set(synthesis) == {(0.0, True), (1.0, True), (0.0, False), (1.0, False)}  # two ways, kept apart
    assert setting_label(synthesis[1.0, True]) == "guarded" and setting_label(synthesis[1.0, False]) is None
    stream = open_file(next((out / "bitstreams").glob("*/a.dpx")).read_bytes())
    from dpexplorer.metrics.image import psnr

    for guard in (True, False):
        image = reconstruct_file(stream, 1.0, decoder="synthesis", options=DecodeOptions(use_guard=guard))
        assert synthesis[1.0, guard]["psnr"] == pytest.approx(psnr(photo, image))

"""The pixel-space diffusion decoder's training (2 steps), export → the decoder registry and the app's
families, its evaluation and the bench's step timings, on a tiny untrained codec."""

import argparse
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from dpexplorer.decoders.base import DecodeOptions
from dpexplorer.errors import WeightsError
from dpexplorer.io.images import save_png

from helpers import random_photos, tiny_pixel_denoiser


def test_training_resumes_exports_and_the_registry_decodes_with_it(tmp_path, tiny_weights_dir, photo, monkeypatch):
    from dpexplorer.decoders.registry import decode_file, reconstruct_file
    from dpexplorer.hub.loading import get_codec, load_codec, module_qualities
    from dpexplorer.training.common import add_config_arguments, configs_from_args
    from dpexplorer.training.pixel import PixelTrainConfig, export_pixel, initial_weights, train_pixel

    photos = random_photos(tmp_path / "photos", height=80, width=96)
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    codec = load_codec(1, None, weights)

    p = argparse.ArgumentParser()
    add_config_arguments(p, PixelTrainConfig)
    [cfg] = configs_from_args(p.parse_args(["--data", str(photos), "--quality", "1", "--workdir", str(tmp_path / "w"),
                                         "--steps", "2", "--batch", "2", "--crop", "64", "--threads", "1",
                                         "--width", "16", "--mults", "1,2", "--prediction-type", "epsilon", "--base", "plain",
                                         "--run-name", "t"]), PixelTrainConfig)
    assert cfg.rho == PixelTrainConfig.rho and cfg.prediction_type == "epsilon"
    ckpt = train_pixel(cfg, codec=codec)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 2 and 0 < float(state["denoiser"]["residual_scale"]) < 1
    cfg.steps = 3
    train_pixel(cfg, codec=codec)
    assert torch.load(ckpt, weights_only=True)["step"] == 3
    log = (cfg.run_dir() / "train.log").read_text()
    assert "resumed from" in log and "lpips(x̂0)" in log

    entry = export_pixel(ckpt, weights)
    assert entry["kind"] == "pixel" and entry["codec_sha256"] == codec.weights_sha256

    # a fresh machine goes on from the shipped weights (fp16 kernels), checked to fit this codec and base
    shipped = weights / entry["file"]
    start = initial_weights(shipped, codec, None)
    trained = torch.load(ckpt, weights_only=True)["denoiser"]
    assert start.keys() == trained.keys()
    assert all(torch.allclose(start[k], trained[k], atol=2e-3) for k in trained)
    with pytest.raises(ValueError, match="another codec"):
        initial_weights(shipped, codec, "f" * 64)  # plain-base weights for a run over θ₁
    over_old_theta1 = torch.load(ckpt, weights_only=True) | {"synthesis_sha256": "a" * 64}
    torch.save(over_old_theta1, tmp_path / "over-old.pt")
    assert initial_weights(tmp_path / "over-old.pt", codec, "b" * 64).keys() == trained.keys()  # a re-base
    again = dataclasses.replace(cfg, run_name="again", init_from=str(shipped), lr_schedule="cosine", steps=1,
                                w_adv=0.1, w_hf_floor=0.1)  # the A/B terms: the discriminator is checkpointed too
    assert "disc" in torch.load(train_pixel(again, codec=codec), weights_only=True)
    log = (again.run_dir() / "train.log").read_text()
    assert "initialised from" in log and " adv " in log and " hf- " in log
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(weights))
    assert module_qualities("pixel") == [1]
    data = get_codec(1).encode(photo)
    assert np.array_equal(reconstruct_file(data, 0.0, decoder="pixel"), decode_file(data))
    seen = []
    x = reconstruct_file(data, 1.0, decoder="pixel",
                         options=DecodeOptions(sampler="ddim", steps=2, seed=0, progress=lambda i, n: seen.append(i)))
    assert x.shape == photo.shape and seen == [1, 2]
    calmer = reconstruct_file(data, 1.0, decoder="pixel", options=DecodeOptions(sampler="ddim", steps=2, seed=0, noise_scale=0.5))  # CDC's option
    assert calmer.shape == x.shape and not np.array_equal(calmer, x)
    with pytest.raises(ValueError, match="no noise scale"):
        reconstruct_file(data, 1.0, decoder="synthesis", options=DecodeOptions(noise_scale=0.5))

    from dpexplorer.app.session import FAMILIES

    assert 1 in FAMILIES["pixel"].qualities()


def test_a_synthesis_base_records_theta1_and_the_loader_checks_it(tmp_path, tiny_weights_dir, photo, monkeypatch):
    from dpexplorer.decoders.registry import decode_file, reconstruct_file
    from dpexplorer.decoders.pixel.decoder import PixelDecoder
    from dpexplorer.hub.loading import get_codec, load_codec
    from dpexplorer.hub.manifest import find_entry
    from dpexplorer.training.pixel import PixelTrainConfig, train_pixel

    photos = tmp_path / "photos"
    photos.mkdir()
    save_png(np.random.default_rng(1).integers(0, 256, (80, 96, 3), dtype=np.uint8), photos / "p.png")
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(weights))
    cfg = PixelTrainConfig(data=str(photos), quality=1, workdir=str(tmp_path / "w"), steps=1, batch=1, crop=64,
                           threads=1, width=16, mults="1,2", base="synthesis", run_name="s")
    ckpt = train_pixel(cfg, codec=load_codec(1, None, weights))
    from dpexplorer.cli import main

    assert main(["train", "export", "--kind", "pixel", str(ckpt), "--noise-scale", "0.5"]) == 0  # → $DPEXPLORER_WEIGHTS
    _, entry = find_entry("pixel", None, 1, weights)
    assert entry["recipe"] == "recipes/pixel-q1.toml" and entry["training"]["config"]["base"] == "synthesis"
    assert entry["config"]["noise_scale"] == 0.5
    theta1_sha = find_entry("synthesis", entry["arch"], 1, weights)[1]["sha256"]
    assert entry["config"]["base"] == "synthesis" and entry["synthesis_sha256"] == theta1_sha
    data = get_codec(1).encode(photo)
    assert np.array_equal(reconstruct_file(data, 0.0, decoder="pixel"), decode_file(data))
    assert reconstruct_file(data, 1.0, decoder="pixel", options=DecodeOptions(sampler="ddim", steps=2, seed=0)).shape == photo.shape
    pipe = PixelDecoder.load(1)
    assert pipe._base_g_s is not None and pipe.noise_scale() == 0.5 and pipe.noise_scale(1.0) == 1.0
    # the weights' own noise scale is the default: the same sample as asking for it
    assert np.array_equal(reconstruct_file(data, 1.0, decoder="pixel", options=DecodeOptions(sampler="ddim", steps=2, seed=0)),
                          reconstruct_file(data, 1.0, decoder="pixel", options=DecodeOptions(sampler="ddim", steps=2, seed=0, noise_scale=0.5)))
    assert not np.array_equal(reconstruct_file(data, 1.0, decoder="pixel", options=DecodeOptions(sampler="ddim", steps=2, seed=0)),
                              reconstruct_file(data, 1.0, decoder="pixel", options=DecodeOptions(sampler="ddim", steps=2, seed=0, noise_scale=1.0)))

    manifest = weights / "manifest.json"
    models = json.loads(manifest.read_text())
    next(e for e in models["models"].values() if e["kind"] == "pixel")["synthesis_sha256"] = "0" * 64
    manifest.write_text(json.dumps(models))
    from dpexplorer.decoders.base import unload_all

    unload_all()
    with pytest.raises(WeightsError, match="other synthesis weights"):
        PixelDecoder.load(1)


def test_a_one_step_fine_tune_sees_what_the_first_sampler_step_sees(tmp_path, tiny_codec, monkeypatch):
    """first_step_share = 1 trains the first step alone; its input is first_step_noise × unit noise (run_sampler's x_T
    at that noise scale), and the grain hinge is logged."""
    from dpexplorer.decoders.pixel.denoiser import PixelDenoiser
    from dpexplorer.training.pixel import PixelTrainConfig, train_pixel

    photos = tmp_path / "photos"
    photos.mkdir()
    save_png(np.random.default_rng(2).integers(0, 256, (128, 128, 3), dtype=np.uint8), photos / "p.png")
    seen = []
    forward = PixelDenoiser.forward

    def spy(self, r_t, t, *rest):
        seen.append((r_t.detach().clone(), t.clone()))
        return forward(self, r_t, t, *rest)

    monkeypatch.setattr(PixelDenoiser, "forward", spy)
    cfg = PixelTrainConfig(data=str(photos), quality=1, workdir=str(tmp_path / "w"), steps=2, batch=2, crop=64,
                           threads=1, width=16, mults="1,2", base="plain", run_name="one", first_step_share=1.0,
                           first_step_noise=0.25, w_grain=0.3)
    train_pixel(cfg, codec=tiny_codec)
    assert len(seen) == 2 and all(bool((t == 999).all()) for _, t in seen)
    assert all(0.2 < float(r.std()) < 0.3 for r, _ in seen)
    assert "grain" in (tmp_path / "w" / "pixel-q1-one" / "train.log").read_text()
    with pytest.raises(ValueError, match="first_step_share"):
        train_pixel(dataclasses.replace(cfg, first_step_share=1.5, run_name="bad"), codec=tiny_codec)


def test_bf16_pixel_training_runs_and_resumes(tmp_path, tiny_codec):
    """`--bf16` (the denoiser, LPIPS and D channels-last under bf16 autocast where the CPU has AMX, fp32 elsewhere):
    the steps run with the adversary on, the run resumes, and the checkpoint's denoiser is fp32."""
    from dpexplorer.codec.precision import bf16_is_fast
    from dpexplorer.training.pixel import PixelTrainConfig, train_pixel

    photos = tmp_path / "photos"
    photos.mkdir()
    save_png(np.random.default_rng(3).integers(0, 256, (128, 128, 3), dtype=np.uint8), photos / "p.png")
    cfg = PixelTrainConfig(data=str(photos), quality=1, workdir=str(tmp_path / "w"), steps=1, batch=2, crop=64,
                           threads=1, width=16, mults="1,2", base="plain", run_name="bf16", w_adv=0.1, bf16=True)
    train_pixel(cfg, codec=tiny_codec)
    ckpt = train_pixel(dataclasses.replace(cfg, steps=2), codec=tiny_codec)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 2 and state["config"]["bf16"] is True
    assert all(v.dtype == torch.float32 for v in state["denoiser"].values() if v.is_floating_point())
    log = (tmp_path / "w" / "pixel-q1-bf16" / "train.log").read_text()
    assert "resumed" in log and ("no AMX" in log) != bf16_is_fast(torch.device("cpu"))


def test_the_pixel_family_is_offered_only_with_weights(tiny_weights_dir, monkeypatch, photo):
    from dpexplorer.app.session import FAMILIES
    from dpexplorer.decoders.registry import decode_file, reconstruct_file
    from dpexplorer.hub.loading import get_codec, module_qualities

    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    assert FAMILIES["pixel"].qualities() == [] and module_qualities("pixel") == []
    data = get_codec(1).encode(photo)
    with pytest.raises(ValueError, match="no weights"):
        reconstruct_file(data, 0.5, decoder="pixel")
    assert np.array_equal(reconstruct_file(data, 0.0, decoder="pixel"), decode_file(data))


def test_eval_reports_the_bar(tiny_codec, tmp_path, photo):
    from dpexplorer.decoders.pixel.decoder import PixelDecoder
    from dpexplorer.evaluation.pixel_eval import evaluate_images, markdown_table, summarize

    pipeline = PixelDecoder(tiny_codec, tiny_pixel_denoiser())

    save_png(photo, tmp_path / "a.png")
    save_png(photo[:, ::-1].copy(), tmp_path / "b.png")
    settings = ("ddim:2", "dpmsolver++:3")
    rows = evaluate_images(pipeline, sorted(tmp_path.glob("*.png")), settings, (1.0,), fast_steps=2, slow_limit=1,
                           log=lambda *_: None)
    assert "dpmsolver++:3" in rows[0]["settings"] and "dpmsolver++:3" not in rows[1]["settings"]  # the slow subset
    s = summarize(rows, settings, (1.0,))
    assert s["settings"]["dpmsolver++:3"]["images"] == 1 and s["settings"]["ddim:2"]["images"] == 2
    assert s["plain"]["lpips"] >= 0 and "| ddim:2 | 1 |" in markdown_table("t", s)


def test_bench_times_ours_and_the_paper_configurations():
    from dpexplorer.evaluation.bench import pixel_step_times

    r = pixel_step_times(repeat=1, crop=32, latent_channels=24)
    assert set(r) == {"ours", "mari_milani", "cdc"}
    assert r["ours"]["scale"] == 1 and r["mari_milani"]["scale"] == 768 * 512 / 32**2
    assert r["mari_milani"]["params_m"] > 10 * r["ours"]["params_m"] and all(v["step_s"] > 0 for v in r.values())


def test_cli_train_and_eval_pixel_parse():
    from dpexplorer.cli import build_parser
    from dpexplorer.training.common import configs_from_args
    from dpexplorer.training.pixel import PixelTrainConfig

    a = build_parser().parse_args(["train", "pixel", "--data", "d", "--quality", "1", "--minutes", "2"])
    [cfg] = configs_from_args(a, PixelTrainConfig)  # flags given only; the dataclass holds the defaults
    assert cfg.minutes == 2.0 and cfg.prediction_type == "sample" and a.func.__name__ == "cmd_train_pixel"
    for kind in ("pixel", "latent", "latent-refine", "guard"):  # -q as in `dpexplorer encode -q`
        assert build_parser().parse_args(["train", kind, "--data", "d", "-q", "3"]).quality == 3
    a = build_parser().parse_args(["eval", "pixel", "--set", "k=d", "--settings", "ddim:10", "ddpm:100"])
    assert a.func.__name__ == "cmd_eval_pixel" and a.settings == ["ddim:10", "ddpm:100"]


def test_decode_starts_from_each_familys_own_step_count():
    from dpexplorer.cli import build_parser
    from dpexplorer.cli.coding import decode_options

    parser = build_parser()
    given = lambda decoder, *argv: decode_options(parser.parse_args(["decode", "x.dpx", "-o", "x.png", *argv]),
                                                  decoder).steps
    assert given("pixel") == 1 and given("latent") == 10
    assert given("pixel", "--steps", "7") == 7


def test_a_decode_without_decoder_takes_the_first_family_with_weights(tiny_weights_dir, monkeypatch):
    """The default family (the pixel decoder) where it has weights for the file's quality, else the next."""
    from dpexplorer.decoders.registry import FAMILIES, default_family

    assert next(iter(FAMILIES)) == "pixel"
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))  # a codec, θ₁ and a latent module at q1
    assert default_family(1) == "synthesis" and default_family(2) == "pixel"  # q2: none has, the first's error


def test_the_hint_checks_the_default_decoders_grain(tiny_weights_dir, monkeypatch, photo):
    """The sender's grain rule also looks at the app's default τ decoder, at its own setting (the pixel
    decoder's DDIM 1, raw τ = 1), where it is not the synthesis; with the tiny weights (no pixel decoder) the
    synthesis alone is checked."""
    from dpexplorer.decoders.pixel.decoder import PixelDecoder
    from dpexplorer.decoders.registry import reconstruct_file
    from dpexplorer.hint.sender import default_decoder_check
    from dpexplorer.hub.loading import get_codec

    options = PixelDecoder.default_options(use_hint=False, use_guard=False)
    assert (options.sampler, options.steps, options.use_guard) == ("ddim", 1, False)
    codec = get_codec(1)
    [check] = default_decoder_check(codec)
    data = codec.encode(photo[:64, :96])
    assert np.array_equal(check(data), reconstruct_file(data, 1.0, decoder="pixel", options=options))
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    assert default_decoder_check(get_codec(1)) == []


def test_the_app_opens_on_the_default_familys_own_setting():
    """On the shipped weights the app opens on the pixel decoder at its default setting, DDIM 1 (not DDIM 10)."""
    from dpexplorer.app.layout import build_demo

    demo = build_demo()
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert by_id["family"].value == "pixel"
    assert by_id["sampler"].value == "ddim" and by_id["steps"].value == 1
    assert "ddpm" not in [key for _, key in by_id["sampler"].choices]  # the pixel decoder withholds it

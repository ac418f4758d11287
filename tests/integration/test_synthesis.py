"""Interpolated synthesis (θ_τ) and its fine-tuning, on a tiny untrained codec."""

import dataclasses

import numpy as np
import pytest
import torch

from dpexplorer.io.images import save_png

from helpers import random_photos


def _theta1(g_s, seed=1):
    gen = torch.Generator().manual_seed(seed)
    params = dict(g_s.named_parameters())  # buffers are not trained: θ₁ keeps θ₀'s
    return {k: v + 0.01 * torch.randn(v.shape, generator=gen) if k in params else v.clone()
            for k, v in g_s.state_dict().items()}


@pytest.fixture
def latent(tiny_codec):
    gen = torch.Generator().manual_seed(0)
    return torch.round(3 * torch.randn(1, tiny_codec.cfg.M, 4, 6, generator=gen))


def test_tau0_is_the_plain_decoder_and_tau1_is_theta1(tiny_codec, latent):
    import copy

    from dpexplorer.decoders.synthesis import InterpolatedSynthesis

    g_s0 = tiny_codec.model.g_s
    theta1 = _theta1(g_s0)
    synth = InterpolatedSynthesis(g_s0, theta1)
    with torch.no_grad():
        assert torch.equal(synth(latent, 0.0), g_s0(latent))
        g_s1 = copy.deepcopy(g_s0)
        g_s1.load_state_dict(theta1)
        assert torch.equal(synth(latent, 1.0), g_s1(latent))
        mid = synth(latent, 0.5)
    assert not torch.equal(mid, g_s0(latent)) and not torch.equal(mid, g_s1(latent))
    assert torch.equal(tiny_codec.model.g_s.state_dict()["0.weight"], g_s0.state_dict()["0.weight"])  # θ₀ untouched
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError):
            synth(latent, bad)


def test_synthesis_training_writes_and_resumes(tmp_path, tiny_codec, latent):
    from dpexplorer.decoders.synthesis import InterpolatedSynthesis
    from dpexplorer.evaluation.synthesis_eval import evaluate_images, summarize
    from dpexplorer.training.synthesis import (SynthesisTrainConfig, add_arguments, configs_from, load_theta1,
                                               train_synthesis)

    data = random_photos(tmp_path / "photos", height=96, width=96)

    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    (cfg,) = configs_from(p.parse_args(["--data", str(data), "--quality", "1", "--workdir", str(tmp_path / "w"),
                                         "--steps", "2", "--batch", "2", "--crop", "64", "--threads", "1",
                                         "--run-name", "t", "--no-disc-cond", "--w-hf", "0.3"]))
    assert cfg.disc_cond is False and cfg.min_scale == SynthesisTrainConfig.min_scale
    out = train_synthesis(cfg, codec=tiny_codec)
    assert torch.load(cfg.run_dir() / "last.pt", weights_only=True)["step"] == 2
    cfg.steps, cfg.disc_cond = 3, False
    train_synthesis(cfg, codec=tiny_codec)
    assert torch.load(out, weights_only=True)["step"] == 3
    assert "resumed from" in (cfg.run_dir() / "train.log").read_text()

    synth = InterpolatedSynthesis(tiny_codec.model.g_s, load_theta1(out))
    rows = evaluate_images(tiny_codec, synth, sorted(data.iterdir())[:1], taus=(0.0, 1.0))
    s = summarize(rows, taus=(0.0, 1.0))
    assert set(s["bar"]) >= {"lpips_-25%", "hf_<=1.15"} and 0 <= s["share_tau1_better"] <= 1


def test_conditioned_discriminator_trains(tmp_path, tiny_codec):
    from dpexplorer.training.data import MultiScaleCropSampler
    from dpexplorer.training.synthesis import SynthesisTrainConfig, train_synthesis

    data = tmp_path / "photos"
    data.mkdir()
    save_png(np.random.default_rng(0).integers(0, 256, (100, 90, 3), dtype=np.uint8), data / "p.png")
    x = MultiScaleCropSampler(data, 64, 0.5, seed=0).batch(3)
    assert x.shape == (3, 3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    cfg = SynthesisTrainConfig(data=str(data), quality=1, workdir=str(tmp_path / "w"), steps=1, batch=1, crop=64,
                               threads=1, disc_cond=True)
    state = torch.load(train_synthesis(cfg, codec=tiny_codec), weights_only=True)
    assert state["step"] == 1 and state["config"]["disc_cond"] is True


def test_bf16_training_runs_resumes_and_writes_plain_weights(tmp_path, tiny_codec):
    """`--bf16` (channels-last and bf16 autocast where the CPU has AMX, fp32 elsewhere): the steps run, the
    run resumes, and θ₁ comes out fp32 and contiguous, as the decoders and safetensors take it."""
    from dpexplorer.codec.precision import bf16_is_fast
    from dpexplorer.training.synthesis import SynthesisTrainConfig, load_theta1, train_synthesis

    data = random_photos(tmp_path / "photos", height=96, width=96)
    cfg = SynthesisTrainConfig(data=str(data), quality=1, workdir=str(tmp_path / "w"), steps=2, batch=2, crop=64,
                               threads=1, bf16=True)
    out = train_synthesis(cfg, codec=tiny_codec)
    cfg.steps = 3
    train_synthesis(cfg, codec=tiny_codec)
    state = torch.load(out, weights_only=True)
    assert state["step"] == 3 and state["config"]["bf16"] is True
    theta1 = load_theta1(out)
    assert all(v.is_contiguous() and v.dtype == torch.float32 for v in theta1.values())
    assert any(not torch.equal(v, tiny_codec.model.g_s.state_dict()[k]) for k, v in theta1.items())  # it trained
    log = (cfg.run_dir() / "train.log").read_text()
    assert ("no AMX" in log) != bf16_is_fast(torch.device("cpu"))  # says so where bf16 would not be faster


def test_the_grain_hinge_takes_its_cap_and_share_from_the_config(tmp_path, tiny_codec, monkeypatch):
    """`--w-grain`: the grain guard's hinge on θ₁'s crops (0…255) with the run's cap and share, logged; off by
    default (no call)."""
    import dpexplorer.training.synthesis as synthesis

    calls = []
    hinge = synthesis.grain_hinge

    def spy(out, original, *, cap, share):
        calls.append((float(out.max()), cap, share))
        return hinge(out, original, cap=cap, share=share)

    monkeypatch.setattr(synthesis, "grain_hinge", spy)
    data = random_photos(tmp_path / "photos", height=96, width=96)
    cfg = synthesis.SynthesisTrainConfig(data=str(data), quality=1, workdir=str(tmp_path / "w"), steps=1, batch=2,
                                         crop=64, threads=1, run_name="off")
    synthesis.train_synthesis(cfg, codec=tiny_codec)
    assert not calls
    cfg = dataclasses.replace(cfg, run_name="on", steps=2, w_grain=1.0, grain_cap=1.5, grain_share=0.3)
    synthesis.train_synthesis(cfg, codec=tiny_codec)
    assert [(cap, share) for _, cap, share in calls] == [(1.5, 0.3)] * 2
    assert all(1.0 < top <= 255.0 for top, _, _ in calls)  # pixels, as the metric's energies
    assert " grain " in (cfg.run_dir() / "train.log").read_text()


def test_hf_hinges_match_the_metric_and_penalise_one_side_each():
    from dpexplorer.io.images import to_tensor
    from dpexplorer.metrics.image import hf_energy_ratio
    from dpexplorer.training.synthesis import hf_energy, hf_overshoot, hf_shortfall

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    blur = ((ref.astype(int) + np.roll(ref, 1, 0) + np.roll(ref, 1, 1) + np.roll(ref, 1, (0, 1))) // 4).astype(np.uint8)
    a, b = to_tensor(ref), to_tensor(blur)
    assert float(hf_energy(b) / hf_energy(a)) == pytest.approx(hf_energy_ratio(ref, blur), rel=1e-4)
    assert float(hf_overshoot(b, a)) == 0.0  # blur: no penalty
    ratio = hf_energy_ratio(ref, blur)
    assert float(hf_shortfall(b, a)) == pytest.approx(-np.log(ratio), rel=1e-2)  # blur: its log shortfall (ε aside)
    flat = torch.full((1, 3, 64, 64), 0.4)
    grain = (flat + 0.02 * torch.randn(flat.shape)).requires_grad_(True)
    loss = hf_overshoot(grain, flat)
    loss.backward()
    assert float(loss) > 1 and grain.grad.abs().sum() > 0
    assert float(hf_shortfall(grain, flat)) == 0.0  # more energy than the original: no floor penalty


# ---- the synthesis decoder family, end to end on real (tiny) bitstreams ------------------------
@pytest.fixture
def tiny_env(tiny_weights_dir, monkeypatch):
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))


def test_synthesis_decoder_tau0_is_the_plain_decoder_bit_for_bit(tiny_env, photo, tmp_path):
    from dpexplorer.cli import main
    from dpexplorer.decoders.registry import decode_file, reconstruct_file
    from dpexplorer.hub.loading import get_codec, module_qualities
    from dpexplorer.io.images import load_image

    assert module_qualities("synthesis") == [1]
    data = get_codec(1).encode(photo)
    plain = decode_file(data)
    assert np.array_equal(reconstruct_file(data, 0.0, decoder="synthesis"), plain)
    half, one = (reconstruct_file(data, t, decoder="synthesis") for t in (0.5, 1.0))
    assert half.shape == one.shape == photo.shape and half.dtype == np.uint8
    assert not np.array_equal(one, plain) and not np.array_equal(half, one)
    with pytest.raises(ValueError, match="tau"):
        reconstruct_file(data, 1.5, decoder="synthesis")

    # The CLI: --decoder picks the family; τ = 0 writes the plain decoder's PNG.
    (tmp_path / "p.dpx").write_bytes(data)
    for tau, want in (("0", plain), ("1", one)):
        out = tmp_path / f"p{tau}.png"
        assert main(["decode", str(tmp_path / "p.dpx"), "--decoder", "synthesis", "--tau", tau, "-o", str(out)]) == 0
        assert np.array_equal(load_image(out), want)


def test_unknown_decoder_and_missing_quality_are_one_line_errors(tiny_env, photo, tmp_path, capsys):
    from dpexplorer.cli import main
    from dpexplorer.hub.loading import get_codec

    (tmp_path / "p.dpx").write_bytes(get_codec(1).encode(photo))
    assert main(["decode", str(tmp_path / "p.dpx"), "--decoder", "nope", "--tau", "1"]) == 1
    err = capsys.readouterr().err
    assert "unknown decoder 'nope'" in err and "synthesis" in err and "Traceback" not in err


def test_synthesis_weights_of_another_codec_are_refused(tiny_weights_dir, tmp_path, monkeypatch, photo):
    import json
    import shutil

    from dpexplorer.decoders.registry import reconstruct_file
    from dpexplorer.errors import WeightsError
    from dpexplorer.hub.loading import get_codec

    other = tmp_path / "w"
    shutil.copytree(tiny_weights_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["models"]["synthesis-mbt2018-mean-q1"]["codec_sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(other))
    with pytest.raises(WeightsError, match="other codec weights"):
        reconstruct_file(get_codec(1).encode(photo), 1.0, decoder="synthesis")


@pytest.mark.slow
def test_shipped_synthesis_modules_match_the_shipped_codecs(monkeypatch):
    """Every shipped synthesis module was trained on exactly the shipped codec of its quality."""
    monkeypatch.delenv("DPEXPLORER_WEIGHTS", raising=False)
    from dpexplorer.decoders.synthesis import SynthesisDecoder
    from dpexplorer.hub.loading import get_codec, module_qualities, shipped_qualities
    from dpexplorer.hub.manifest import find_entry

    if not module_qualities("synthesis"):
        pytest.skip("no shipped synthesis modules")
    assert set(module_qualities("synthesis")) <= set(shipped_qualities())
    for q in module_qualities("synthesis"):
        assert find_entry("synthesis", None, q)[1]["latent_sha256"] == get_codec(q).latent_sha256
        SynthesisDecoder.load(q)  # loads, hash-checked


def test_a_refit_plain_decoder_keeps_bitstreams_and_modules(tiny_weights_dir, tmp_path, monkeypatch, photo):
    """`train export --kind refit`: the codec file gets a new g_s; ŷ's model, old .dpx files and the
    modules keyed on ŷ stay valid, and the plain decode is the new g_s's."""
    import dataclasses
    import json
    import shutil

    from dpexplorer.decoders.registry import reconstruct_file
    from dpexplorer.errors import BitstreamError
    from dpexplorer.decoders.base import unload_all
    from dpexplorer.hub import loading
    from dpexplorer.io.bitstream import Bitstream
    from dpexplorer.decoders.synthesis import SynthesisDecoder
    from dpexplorer.hub.loading import get_codec
    from dpexplorer.training.export import export_plain_refit

    def fresh():  # a restarted process: the loader caches the files it has read
        loading._cached_codec.cache_clear()
        unload_all()

    weights = tmp_path / "w"
    shutil.copytree(tiny_weights_dir, weights)
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(weights))
    manifest = json.loads((weights / "manifest.json").read_text())
    fresh()
    before = get_codec(1)
    # a module trained on ŷ alone records the latent model's key
    manifest["models"]["synthesis-mbt2018-mean-q1"]["latent_sha256"] = before.latent_sha256
    (weights / "manifest.json").write_text(json.dumps(manifest))
    # a .dpx of the release before the latent key: its header carried the whole file's id
    def with_id(data: bytes, weights_id: bytes) -> bytes:
        return dataclasses.replace(Bitstream.from_bytes(data), weights_id=weights_id).to_bytes()

    old = with_id(before.encode(photo), bytes.fromhex(before.weights_sha256)[:8])

    refit = {k: v * 1.01 if k.endswith("weight") else v for k, v in before.model.g_s.state_dict().items()}
    torch.save({"g_s": refit}, tmp_path / "theta1.pt")
    entry = export_plain_refit(tmp_path / "theta1.pt", 1, {"steps": 1})
    fresh()
    after = get_codec(1)
    assert after is not before and after.weights_sha256 == entry["sha256"] != before.weights_sha256
    assert after.latent_sha256 == before.latent_sha256 == entry["latent_sha256"]
    assert entry["earlier_weights_ids"] == [before.weights_sha256[:16]] and entry["plain_refit"]["steps"] == 1
    data = before.encode(photo)
    assert after.encode(photo) == data  # the bitstream does not change
    assert not np.array_equal(after.decode(data).x_hat, before.decode(data).x_hat)  # the plain decode does
    assert np.array_equal(after.decode(old).x_hat, after.decode(data).x_hat)  # the old file still decodes
    SynthesisDecoder.load(1)  # keyed on ŷ: still loads
    assert np.array_equal(reconstruct_file(data, 0.0, decoder="synthesis"), after.decode(data).x_hat)
    # a module keyed on the whole file (trained through the old g_s) is refused
    manifest = json.loads((weights / "manifest.json").read_text())
    assert manifest["models"]["latent-mbt2018-mean-q1"].get("latent_sha256") is None
    with pytest.raises(Exception, match="other codec weights"):
        reconstruct_file(data, 1.0, decoder="latent")
    # another latent model is still refused at the header
    with pytest.raises(BitstreamError, match="other weights"):
        after.decode(with_id(data, bytes(8)))
    fresh()


def test_mse_only_refit_skips_the_discriminator_and_lpips(tmp_path, tiny_codec, monkeypatch):
    import dpexplorer.metrics.image as image_metrics
    from dpexplorer.training.synthesis import SynthesisTrainConfig, train_synthesis

    data = tmp_path / "photos"
    data.mkdir()
    save_png(np.random.default_rng(1).integers(0, 256, (80, 80, 3), dtype=np.uint8), data / "p.png")

    def no_lpips(*a, **k):
        raise AssertionError("LPIPS must not run at w_lpips = 0")

    monkeypatch.setattr(image_metrics, "lpips_tensor", no_lpips)
    cfg = SynthesisTrainConfig(data=str(data), quality=1, workdir=str(tmp_path / "w"), steps=2, batch=1, crop=64,
                               threads=1, w_mse=1.0, w_lpips=0.0, w_adv=0.0, w_hf=0.0)
    state = torch.load(train_synthesis(cfg, codec=tiny_codec), weights_only=True)
    assert state["step"] == 2
    ckpt = torch.load(cfg.run_dir() / "last.pt", weights_only=True)
    assert not ckpt["opt_d"]["state"]  # the discriminator never stepped
    moved = any(not torch.equal(v, tiny_codec.model.g_s.state_dict()[k]) for k, v in state["g_s"].items())
    assert moved


def test_an_arm_starts_from_a_refit_with_a_tile_hinge_and_keeps_snapshots(tmp_path, tiny_codec):
    """The burst's θ₁ arm: `init_from` a refit's θ (not θ₀), the HF hinge per tile, θ snapshots."""
    from dpexplorer.training.synthesis import SynthesisTrainConfig, tiles, train_synthesis

    x = torch.arange(2 * 3 * 70 * 64, dtype=torch.float32).reshape(2, 3, 70, 64)
    cut = tiles(x, 32)
    assert cut.shape == (2 * 2 * 2, 3, 32, 32) and torch.equal(cut[1], x[0, :, :32, 32:])  # edges dropped

    data = tmp_path / "photos"
    data.mkdir()
    save_png(np.random.default_rng(2).integers(0, 256, (80, 80, 3), dtype=np.uint8), data / "p.png")
    start = {k: v + 0.01 if k.endswith("weight") else v for k, v in tiny_codec.model.g_s.state_dict().items()}
    torch.save({"g_s": start}, tmp_path / "refit.pt")
    cfg = SynthesisTrainConfig(data=str(data), quality=1, workdir=str(tmp_path / "w"), steps=2, batch=1, crop=64,
                               threads=1, w_adv=0.0, hf_tile=32, init_from=str(tmp_path / "refit.pt"),
                               snapshot_every_s=1e-9)
    train_synthesis(cfg, codec=tiny_codec)
    log = (cfg.run_dir() / "train.log").read_text()
    assert f"initialised from {tmp_path / 'refit.pt'}" in log
    snapshots = sorted(p.name for p in cfg.run_dir().glob("theta1-*.pt"))
    assert snapshots and set(snapshots) <= {"theta1-1.pt", "theta1-2.pt"}


def test_export_takes_a_synthesis_runs_snapshot(tmp_path, tiny_weights_dir, monkeypatch, capsys):
    """`train export --kind synthesis RUN_DIR [--snapshot STEP]`: θ₁ of a run folder, or the one it kept at a step,
    into weights/ with that step in its training record; a step it did not keep is a one-line error."""
    import json
    import shutil

    from dpexplorer.cli import main
    from dpexplorer.decoders.base import unload_all
    from dpexplorer.decoders.synthesis import SynthesisDecoder
    from dpexplorer.hub.loading import load_codec
    from dpexplorer.hub.manifest import find_entry
    from dpexplorer.training.synthesis import SynthesisTrainConfig, train_synthesis

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(weights))
    data = random_photos(tmp_path / "photos", height=80, width=80)
    shipped_name, shipped = find_entry("synthesis", None, 1, weights)
    cfg = SynthesisTrainConfig(data=str(data), quality=1, workdir=str(tmp_path / "w"), steps=2, batch=1, crop=64,
                               threads=1, w_adv=0.0, snapshot_every_s=1e-9, init_from=str(weights / shipped["file"]))
    train_synthesis(cfg, codec=load_codec(1, None, weights))
    run = cfg.run_dir()
    kept = torch.load(run / "theta1-1.pt", weights_only=True)
    assert kept["step"] == 1 and kept["wall_s"] >= 0
    assert main(["train", "export", "--kind", "synthesis", str(run), "--snapshot", "1", "--notes", "n"]) == 0
    _, entry = find_entry("synthesis", None, 1, weights)
    assert entry["training"]["steps"] == 1 and entry["training"]["notes"] == "n"
    assert entry["training"]["earlier"]["sha256"] == shipped["sha256"]  # fine-tuned from the shipped θ₁: kept
    unload_all()
    exported = SynthesisDecoder.load(1).synthesis.theta1
    assert all(torch.allclose(exported[k], kept["g_s"][k], atol=1e-3) for k in exported)
    assert main(["train", "export", "--kind", "synthesis", str(run)]) == 0  # the latest
    assert find_entry("synthesis", None, 1, weights)[1]["training"]["steps"] == 2
    capsys.readouterr()
    assert main(["train", "export", "--kind", "synthesis", str(run), "--snapshot", "7"]) != 0
    err = capsys.readouterr().err
    assert "no θ₁ at step 7" in err and len(err.strip().splitlines()) == 1
    json.loads((weights / "manifest.json").read_text())  # still a valid manifest

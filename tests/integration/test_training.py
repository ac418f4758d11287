"""Training code paths on tiny models and a handful of steps (no real training in tests)."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from dpexplorer.decoders.base import DecodeOptions

from helpers import random_photos


def _photos(folder, n=3, size=(80, 96)):
    return random_photos(folder, height=size[0], width=size[1], count=n)


def test_codec_training_resumes_and_exports(tmp_path, monkeypatch):
    from dpexplorer.codec.config import build_model, codec_config
    from dpexplorer.hub.loading import load_codec
    from dpexplorer.training import codec as codec_training
    from dpexplorer.training.codec import CodecTrainConfig, train_codec
    from dpexplorer.training.export import export_codec

    monkeypatch.setattr(codec_training, "build_model",
                        lambda cfg: build_model(codec_config(cfg.arch, cfg.quality, (8, 12))))
    monkeypatch.setattr(codec_training, "codec_config",
                        lambda arch, q: codec_config(arch, q, (8, 12)))
    data = _photos(tmp_path / "photos")
    cfg = CodecTrainConfig(data=str(data), quality=2, workdir=str(tmp_path / "work"), steps=3, batch=2, crop=64,
                           final_crop=64, checkpoint_every_s=0, threads=1)
    ckpt = train_codec(cfg)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3 and "opt" in state and "aux_opt" in state
    cfg.steps = 5
    train_codec(cfg)  # resumes from step 3
    assert torch.load(ckpt, weights_only=True)["step"] == 5
    assert "resumed from" in (cfg.run_dir / "train.log").read_text()

    entry = export_codec(ckpt, directory=tmp_path / "weights")
    assert entry["training"]["steps"] == 5 and entry["quality"] == 2
    codec = load_codec(2, directory=tmp_path / "weights")
    img = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert codec.decode(codec.encode(img)).x_hat.shape == img.shape


def test_rate_through_the_frozen_entropy_model_has_gradients(tiny_codec):
    from dpexplorer.training.latent import latent_and_rate

    model = tiny_codec.model
    y = (5 * model.g_a(torch.rand(1, 3, 64, 64))).detach().requires_grad_(True)  # non-zero symbols
    y_hat, bits = latent_and_rate(model, y)
    assert y_hat.shape == y.shape and torch.all(bits > 0)
    bits.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_latent_training_two_stages_tiny(tmp_path, tiny_codec):
    from dpexplorer.decoders.latent.decoder import LatentDecoder
    from dpexplorer.training.latent import LatentTrainConfig, ablation_runs, earlier_ablation_runs, train_latent

    data = _photos(tmp_path / "photos", size=(96, 96))
    common = dict(data=str(data), quality=1, workdir=str(tmp_path / "work"), aux_steps=2, diffusion_steps=3,
                  batch=2, crop=64, width=16, blocks=1, threads=1, holdout=1)
    # an ablation run: stage 1 only, other loss weights, its validation left beside the main run
    ablation = LatentTrainConfig(**common, w_adv=0.5, run_name="wadv0.5", aux_only=True)
    val = train_latent(ablation, codec=tiny_codec, export=False)["aux_eval"]
    assert val["images"] == 1 and {"bpp", "psnr", "lpips", "flip", "hf_ratio"} <= set(val["aux"])
    assert not (ablation.run_dir("mbt2018-mean") / "denoiser.pt").exists()

    cfg = LatentTrainConfig(**common)
    out = train_latent(cfg, codec=tiny_codec, export=False)
    runs = ablation_runs(cfg, "mbt2018-mean", tiny_codec.weights_sha256)
    assert [r["run"] for r in runs] == ["latent-mbt2018-mean-q1", "latent-mbt2018-mean-q1-wadv0.5"]
    assert [r["weights"]["w_adv"] for r in runs] == [cfg.w_adv, 0.5]
    assert [r["shipped"] for r in runs] == [True, False]  # the run being exported
    assert ablation_runs(cfg, "mbt2018-mean", "another codec") == []
    # a stage 1 copied into another run folder (a stage-2 variant) is one row, named after the export
    variant = LatentTrainConfig(**common, run_name="rho0")
    variant.run_dir("mbt2018-mean").mkdir(parents=True)
    shutil.copy(cfg.run_dir("mbt2018-mean") / "aux_eval.json", variant.run_dir("mbt2018-mean"))
    rows = ablation_runs(variant, "mbt2018-mean", tiny_codec.weights_sha256)
    assert [(r["run"], r["shipped"]) for r in rows] == [("latent-mbt2018-mean-q1-rho0", True),
                                                        ("latent-mbt2018-mean-q1-wadv0.5", False)]
    # re-exporting keeps the rows the current runs do not repeat (retrained codec, or run folders
    # lost with a machine), marked as not shipped
    previous = {"codec_sha256": tiny_codec.weights_sha256, "training": {"ablation": runs}}
    kept = earlier_ablation_runs(previous, [])
    assert [r["run"] for r in kept] == [r["run"] for r in runs] and not any(r["shipped"] for r in kept)
    assert earlier_ablation_runs(previous, runs) == []
    other_weights = [{**runs[0], "weights": {**runs[0]["weights"], "rate_slack": 0.01}}]
    assert [r["run"] for r in earlier_ablation_runs(previous, other_weights)] == [r["run"] for r in runs]
    pipeline = LatentDecoder(tiny_codec, out["denoiser"])
    img = np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    data_bytes = tiny_codec.encode(img)
    assert pipeline.reconstruct(data_bytes, 1.0, options=DecodeOptions(sampler="ddpm", steps=3, seed=0)).shape == img.shape
    log = (cfg.run_dir("mbt2018-mean") / "train.log").read_text()
    assert "latent pairs" in log
    for name in ("aux.pt", "denoiser.pt"):  # each stage's own time, summed into the export's wall_hours
        assert torch.load(cfg.run_dir("mbt2018-mean") / name, weights_only=True)["wall_s"] > 0
    # a finished run exports from its checkpoint: same network, no new latent pairs, same wall time
    again = train_latent(cfg, codec=tiny_codec, export=False)
    assert (cfg.run_dir("mbt2018-mean") / "train.log").read_text().count("latent pairs") == 1
    assert again["wall_hours"] == out["wall_hours"]
    assert all(torch.equal(v, again["denoiser"].state_dict()[k]) for k, v in out["denoiser"].state_dict().items())

    # the model card prints the ablation as a table, one row per stage-1 run
    from dpexplorer.hub.files import save_weights
    from helpers import model_card_tool

    meta = {"kind": "latent", "arch": "mbt2018-mean", "quality": 1, "training": {"ablation": runs}}
    save_weights(out["denoiser"].state_dict(), "latent-mbt2018-mean-q1", meta, directory=tmp_path / "w")
    card = model_card_tool().write_model_card(tmp_path / "w").read_text()
    table = card.split("stage-1 loss weights")[1]
    rows = [line for line in table.splitlines() if line.startswith("| latent-mbt2018-mean-q1")]
    assert [r.split(" | ")[0] for r in rows] == ["| latent-mbt2018-mean-q1 (shipped)",
                                                 "| latent-mbt2018-mean-q1-wadv0.5"]
    assert f" | 0.5 | {cfg.rate_slack} | " in rows[1] and "→" in rows[1]


def test_codec_training_starts_from_shipped_weights(tmp_path, tiny_weights_dir, monkeypatch):
    from dpexplorer.codec.config import codec_config
    from dpexplorer.training import codec as codec_training
    from dpexplorer.training.codec import CodecTrainConfig, train_codec

    monkeypatch.setattr(codec_training, "codec_config", lambda arch, q: codec_config(arch, q, (16, 24)))
    data = _photos(tmp_path / "photos")
    cfg = CodecTrainConfig(data=str(data), quality=1, workdir=str(tmp_path / "work"), steps=1, batch=1, crop=64,
                           final_crop=64, threads=1,
                           init_from=str(tiny_weights_dir / "codec-mbt2018-mean-q1.safetensors"))
    train_codec(cfg)
    assert "initialised from shipped weights" in (cfg.run_dir / "train.log").read_text()


def _ddp_worker(rank, world, port, data, workdir):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    from dpexplorer.codec.config import build_model, codec_config
    from dpexplorer.training import codec as codec_training

    codec_training.build_model = lambda cfg: build_model(codec_config(cfg.arch, cfg.quality, (8, 12)))
    codec_training.codec_config = lambda arch, q: codec_config(arch, q, (8, 12))
    cfg = codec_training.CodecTrainConfig(data=data, quality=2, workdir=workdir, steps=2, batch=1, crop=64,
                                          final_crop=64, checkpoint_every_s=0, threads=1)
    codec_training.train_codec(cfg)


def test_codec_training_under_ddp_two_cpu_ranks(tmp_path):
    """What `torchrun --nproc_per_node 2 -m dpexplorer.training.codec …` runs: gloo, 2 ranks, in step."""
    import socket

    import torch.multiprocessing as mp

    data = _photos(tmp_path / "photos")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(data), str(tmp_path / "work")), nprocs=2)
    state = torch.load(tmp_path / "work" / "codec-mbt2018-mean-q2" / "last.pt", weights_only=True)
    assert state["step"] == 2
    log = (tmp_path / "work" / "codec-mbt2018-mean-q2" / "train.log").read_text()
    assert "world=2" in log


def test_stage_two_perceptual_term_reaches_the_denoiser(tmp_path, tiny_codec):
    """CDC's ρ: LPIPS on g_s of the predicted clean latent, back-propagated through the frozen g_s."""
    from dpexplorer.training.common import TrainLogger
    from dpexplorer.training.latent import LatentTrainConfig, train_denoiser

    torch.manual_seed(0)
    model = tiny_codec.model
    crops = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        y_hat = torch.round(model.g_a(crops.float() / 255))
    y_hat2 = y_hat + torch.randn_like(y_hat)
    log = TrainLogger(tmp_path / "log.txt")
    common = dict(data="unused", quality=1, workdir=str(tmp_path), diffusion_steps=1, batch=1, width=16, blocks=1,
                  perceptual_batch=2)
    with pytest.raises(ValueError, match="crops"):
        train_denoiser(LatentTrainConfig(**common, rho=0.5), tiny_codec, model.g_s, y_hat, y_hat2=y_hat2, log=log, device="cpu")

    grads = {}
    for rho in (0.0, 1.0):  # ρ = 1: the loss is the perceptual term alone
        cfg = LatentTrainConfig(**common, rho=rho, run_name=f"rho{rho}")
        torch.manual_seed(0)
        untrained = LatentTrainConfig(**{**common, "diffusion_steps": 0}, rho=0.0, run_name="init")
        before = {k: v.clone() for k, v in train_denoiser(untrained, tiny_codec, model.g_s, y_hat, y_hat2=y_hat2, log=log,
                                                           device="cpu").state_dict().items()}
        torch.manual_seed(0)
        after = train_denoiser(cfg, tiny_codec, model.g_s, y_hat, y_hat2=y_hat2, log=log, device="cpu", images=crops).state_dict()
        grads[rho] = torch.cat([(after[k] - before[k]).flatten() for k in before if k.endswith("weight")])
        assert grads[rho].abs().sum() > 0
    assert not torch.allclose(grads[0.0], grads[1.0])  # the perceptual term, not the latent MSE, moved it
    assert not any(p.requires_grad for p in model.g_s.parameters())  # g_s stays frozen


def test_cosine_schedule_warms_up_then_decays_to_lr_min():
    from dpexplorer.training.codec import CodecTrainConfig, learning_rate

    cfg = CodecTrainConfig(data="", quality=1, lr=1e-4, lr_schedule="cosine", warmup_steps=10, lr_min=1e-6)
    assert learning_rate(cfg, 0, 0.0) == 1e-5
    assert abs(learning_rate(cfg, 10, 0.0) - 1e-4) < 1e-12
    assert abs(learning_rate(cfg, 500, 0.5) - (1e-6 + 0.5 * (1e-4 - 1e-6))) < 1e-12
    assert abs(learning_rate(cfg, 999, 1.0) - 1e-6) < 1e-12
    step = CodecTrainConfig(data="", quality=1, lr=1e-4)
    assert learning_rate(step, 0, 0.5) == 1e-4 and abs(learning_rate(step, 0, 0.95) - 1e-5) < 1e-12


def test_a_call_progresses_by_its_steps_or_its_minutes_whichever_ends_first(monkeypatch):
    import time

    from dpexplorer.training.pixel import PixelTrainConfig

    cfg = PixelTrainConfig(data="", quality=1, steps=110, minutes=None)
    assert cfg.call_progress(10, 10, time.time()) == 0.0  # a call that resumed at step 10
    assert cfg.call_progress(60, 10, time.time()) == 0.5
    cfg.minutes = 1.0
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 45)
    assert cfg.call_progress(60, 10, now) == 0.75 and cfg.call_progress(200, 10, now) == 1.0


def test_the_pixel_burst_fine_tunes_each_shipped_decoder_and_brings_back_its_checkpoint(tmp_path, monkeypatch):
    from dpexplorer.training import burst

    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tmp_path / "shipped"))
    started = {}

    def fake_run(commands, out_dir):  # the training processes, as far as the burst sees them
        started.update(commands)
        for q in commands:
            (tmp_path / "work" / f"pixel-q{q}-burst").mkdir(parents=True)
            (tmp_path / "work" / f"pixel-q{q}-burst" / "last.pt").write_bytes(b"ckpt")
        return {q: 0 for q in commands}

    monkeypatch.setattr(burst, "run_parallel", fake_run)
    rc = burst.main(["pixel", "--data", "pack", "-q", "2", "1", "--minutes", "3", "--out", str(tmp_path / "out"),
                     "--workdir", str(tmp_path / "work"), "--batch", "64"])
    assert rc == 0 and sorted(started) == [1, 2]
    cmd = started[2]
    assert cmd[cmd.index("--recipe") + 1] == "recipes/pixel-q2.toml" and cmd[-2:] == ["--batch", "64"]
    assert cmd[cmd.index("--init-from") + 1] == str(tmp_path / "shipped" / "pixel-mbt2018-mean-q2.safetensors")
    assert (tmp_path / "out" / "pixel-burst-q1.pt").read_bytes() == b"ckpt"


def test_the_synthesis_burst_refits_then_trains_each_arm_from_the_refit(tmp_path, monkeypatch, tiny_weights_dir):
    from safetensors.torch import load_file

    from dpexplorer.hub.loading import load_codec
    from dpexplorer.hub.manifest import find_entry
    from dpexplorer.training import burst
    from dpexplorer.training.export import export_synthesis_bundle
    from dpexplorer.training.synthesis import load_theta1

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    codec = load_codec(1, None, weights)
    g_s = {k: v.clone() for k, v in codec.model.g_s.state_dict().items()}
    keys = {"codec_sha256": codec.weights_sha256, "latent_sha256": codec.latent_sha256}
    started = []

    def fake_run(commands, log_dir):  # each process leaves the θ files a synthesis run writes
        started.append(commands)
        for key, cmd in commands.items():
            name = cmd[cmd.index('--run-name') + 1]
            run = tmp_path / "work" / f"synthesis-q{key.split('-')[0]}-{name}"
            run.mkdir(parents=True)
            theta = {k: v + (name == "B") for k, v in g_s.items()}  # arm B's θ is θ_A + 1
            config = {"data": "pack", "quality": 1, "arch": None, "run_name": name, "hf_tile": 32 * (name == "B")}
            torch.save({"step": 30, "wall_s": 60.0, "config": config, **keys}, run / "last.pt")
            torch.save({"g_s": theta, "step": 30}, run / "theta1.pt")
            if "--snapshot-every-s" in cmd:
                torch.save({"g_s": theta, "step": 30}, run / "theta1-30.pt")
                torch.save({"g_s": theta, "step": 7}, run / "theta1-7.pt")
        return {key: 0 for key in commands}

    monkeypatch.setattr(burst, "run_parallel", fake_run)
    rc = burst.main(["synthesis", "--data", "pack", "-q", "1", "--refit-minutes", "1", "--minutes", "2",
                     "--arm", "A", "", "--arm", "B", "--hf-tile 32", "--out", str(tmp_path / "out"),
                     "--workdir", str(tmp_path / "work"), "--batch", "16"])
    refit, arms = started
    assert rc == 0 and list(refit) == ["1-refit"] and sorted(arms) == ["1-A", "1-B"]
    assert refit["1-refit"][-8:] == ["--w-mse", "1", "--w-lpips", "0", "--w-adv", "0", "--w-hf", "0"]
    b = arms["1-B"]
    assert b[b.index("--init-from") + 1] == str(tmp_path / "work" / "synthesis-q1-refit" / "theta1.pt")
    assert b[-2:] == ["--hf-tile", "32"] and "--batch" in b and "--hf-tile" not in arms["1-A"]
    bundle = load_file(str(tmp_path / "out" / "synthesis-burst-q1.safetensors"))
    assert {k.split("/")[0] for k in bundle} == {"refit", "A", "A@7", "B", "B@7"}  # each arm's first snapshot
    assert all(v.dtype == torch.float16 for k, v in bundle.items() if v.ndim == 4)

    # θ₁ shipped from the bundle: one arm, or the average of two (a soup), with its runs' records
    path = tmp_path / "out" / "synthesis-burst-q1.safetensors"
    entry = export_synthesis_bundle(path, {"A": 0.5, "B": 0.5}, notes="soup", directory=weights)
    assert entry["kind"] == "synthesis" and entry["latent_sha256"] == codec.latent_sha256
    t = entry["training"]
    assert t["blend"] == {"A": 0.5, "B": 0.5} and t["steps"] == "30 / 30" and t["wall_hours"] == round(120 / 3600, 3)
    assert t["runs"]["B"]["config"]["hf_tile"] == 32 and find_entry("synthesis", "mbt2018-mean", 1, weights)[1] == entry
    theta1 = load_theta1(weights / entry["file"])
    assert all(torch.allclose(theta1[k], g_s[k] + 0.5, atol=2e-3 * (1 + g_s[k].abs().max())) for k in g_s)
    assert burst.run_record(tmp_path / "work" / "synthesis-q1-A" / "theta1-7.pt")["wall_s"] == 60.0 * 7 / 30
    with pytest.raises(ValueError, match="sum to 1"):
        export_synthesis_bundle(path, {"A": 0.5, "B": 0.6}, directory=weights)
    with pytest.raises(ValueError, match="no run record"):
        export_synthesis_bundle(path, {"C": 1.0}, directory=weights)


def test_the_gpu_chain_trains_q3_then_q2_q1_from_it_then_refits_and_theta1_on_the_new_codecs(tmp_path, monkeypatch):
    """Issue 32's chain in one call: the stages' order, what each starts from, and what comes back."""
    from safetensors.torch import load_file

    from dpexplorer.codec.config import build_model, codec_config
    from dpexplorer.hub.loading import load_codec
    from dpexplorer.training import burst
    from dpexplorer.training.export import export_codec, export_refit_run

    monkeypatch.delenv("DPEXPLORER_WEIGHTS", raising=False)
    work, out = tmp_path / "work", tmp_path / "out"
    stages = []

    def fake_run(commands, log_dir):  # what each training process leaves behind
        stages.append(commands)
        assert str(log_dir) == str(tmp_path / "logs")  # logs stay out of $OUT (at most 8 files come back)
        for key, cmd in commands.items():
            if "dpexplorer.training.codec" in cmd:
                q = int(cmd[cmd.index("-q") + 1])
                torch.manual_seed(q)
                model = build_model(codec_config("mbt2018-mean", q, (8, 12)))
                (work / f"codec-mbt2018-mean-q{q}").mkdir(parents=True)
                torch.save({"model": model.state_dict(), "step": 5, "wall_s": 9.0, "arch": "mbt2018-mean",
                            "quality": q, "N": 8, "M": 12, "data": "pack"},
                           work / f"codec-mbt2018-mean-q{q}" / "last.pt")
            else:  # a synthesis run, on the codec the chain exported
                q, name = int(key.split("-")[0]), cmd[cmd.index("--run-name") + 1]
                codec = load_codec(q)  # from $DPEXPLORER_WEIGHTS, set by the chain
                run = work / f"synthesis-q{q}-{name}"
                run.mkdir(parents=True)
                torch.save({"step": 3, "wall_s": 6.0, "config": {"run_name": name, "data": "pack", "quality": q},
                            "codec_sha256": codec.weights_sha256,
                            "latent_sha256": codec.latent_sha256}, run / "last.pt")
                torch.save({"g_s": codec.model.g_s.state_dict(), "step": 3}, run / "theta1.pt")
        return {key: 0 for key in commands}

    monkeypatch.setattr(burst, "run_parallel", fake_run)
    rc = burst.main(["chain", "--data", "pack", "--out", str(out), "--workdir", str(work), "--log-dir",
                     str(tmp_path / "logs"), "--init", "q3.safetensors", "--q3-minutes", "2", "--theta1-minutes", "1"])
    assert rc == 0
    codec_q3, codec_low, refits, arms = stages
    assert list(codec_q3) == [3] and sorted(codec_low) == [1, 2] and sorted(refits) == ["1-refit", "2-refit", "3-refit"]
    q3 = codec_q3[3]
    assert q3[q3.index("--init-from") + 1] == "q3.safetensors" and q3[q3.index("--minutes") + 1] == "2.0"
    assert "--channels-last" in q3 and codec_low[1][codec_low[1].index("--init-from") + 1] == str(
        work / "codec-mbt2018-mean-q3" / "last.pt")  # q2 and q1 start from the new q3
    assert sorted(arms) == ["1-A", "1-T", "2-A", "2-T", "3-A", "3-T"] and arms["2-T"][-4:] == ["--hf-tile", "32", "--w-hf", "0.15"]
    assert arms["1-A"][arms["1-A"].index("--minutes") + 1] == "1.0" and "--min-scale" in arms["1-A"]
    for q in (1, 2, 3):
        assert load_file(str(out / f"codec-burst-q{q}.safetensors"))
        assert {k.split("/")[0] for k in load_file(str(out / f"synthesis-burst-q{q}.safetensors"))} == {"refit", "A", "T"}
        assert load_codec(q, directory=work / "weights").cfg.M == 12
    # back on the CPU, a compact file is exported like a checkpoint (what ships after the chain)
    entry = export_codec(out / "codec-burst-q2.safetensors", directory=tmp_path / "shipped")
    assert entry["training"]["steps"] == 5 and load_codec(2, directory=tmp_path / "shipped").cfg.N == 8
    latent = load_codec(2, directory=tmp_path / "shipped").latent_sha256
    refit = export_refit_run(out / "synthesis-burst-q2.safetensors", directory=tmp_path / "shipped")
    assert refit["latent_sha256"] == latent and refit["plain_refit"]["steps"] == 3  # ŷ unchanged by the refit
    other = torch.load(work / "codec-mbt2018-mean-q1" / "last.pt", weights_only=True) | {"quality": 2}
    torch.save(other, tmp_path / "other.pt")  # a q2 codec with other weights (q1's)
    export_codec(tmp_path / "other.pt", directory=tmp_path / "other")
    with pytest.raises(ValueError, match="another codec"):
        export_refit_run(out / "synthesis-burst-q2.safetensors", directory=tmp_path / "other")
    assert set(json.loads((out / "chain.json").read_text())["stages"]) == {"codec-q3", "codec-q2-q1", "synthesis"}
    assert "DPEXPLORER_WEIGHTS" not in os.environ  # the chain's weights folder does not outlive the call


def test_mixed_quantization_feeds_g_s_the_decoder_latent():
    """g_s sees round(y − μ) + μ (what `decompress` gives) with a straight-through gradient."""
    from dpexplorer.codec.codec import Codec
    from dpexplorer.training.codec import MixedQuantization

    # ẑ rounded (entropy bottleneck in eval mode) so that both passes below see the same ẑ; the
    # Gaussian conditional in training mode, where its own ŷ would be noisy
    model = Codec.untrained(quality=1, channels=(16, 24), seed=0).model.eval().requires_grad_(True)
    model.gaussian_conditional.train()
    seen = {}
    model.g_s.register_forward_pre_hook(lambda _, args: seen.setdefault("y_hat", args[0]))
    x = torch.rand(1, 3, 64, 64)
    out = MixedQuantization(model)(x)
    y = model.g_a(x)
    scales, means = model.h_s(model.entropy_bottleneck(model.h_a(y))[0]).chunk(2, 1)
    assert torch.allclose(seen["y_hat"], torch.round(y - means) + means, atol=1e-5)
    out["x_hat"].sum().backward()
    assert model.g_a[0].weight.grad.abs().sum() > 0  # the rounding passes gradients to the encoder

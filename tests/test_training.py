"""Training code paths on tiny models and a handful of steps (no real training in tests)."""

import numpy as np
import torch

from dpexplorer.imageio import save_png


def _photos(folder, n=3, size=(80, 96)):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        save_png(rng.integers(0, 256, (*size, 3), dtype=np.uint8), folder / f"p{i}.png")
    return folder


def test_codec_training_resumes_and_exports(tmp_path, monkeypatch):
    from dpexplorer.codec import Codec
    from dpexplorer.training import codec as codec_training
    from dpexplorer.training.codec import CodecTrainConfig, train_codec
    from dpexplorer.training.export import export_codec
    from dpexplorer.zoo import build_model, codec_config

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
    codec = Codec.load(2, weights_dir=tmp_path / "weights")
    img = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert codec.decode(codec.encode(img)).x_hat.shape == img.shape


def test_rate_through_the_frozen_entropy_model_has_gradients(tiny_codec):
    from dpexplorer.training.latent import latent_and_rate

    model = tiny_codec.model
    y = (5 * model.g_a(torch.rand(1, 3, 64, 64))).detach().requires_grad_(True)  # non-zero symbols
    y_hat, bits = latent_and_rate(model, y, tiny_codec.cfg.arch)
    assert y_hat.shape == y.shape and torch.all(bits > 0)
    bits.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_latent_training_two_stages_tiny(tmp_path, tiny_codec):
    from dpexplorer.latent.pipeline import LatentPipeline
    from dpexplorer.training.latent import LatentTrainConfig, train_latent

    data = _photos(tmp_path / "photos", size=(96, 96))
    cfg = LatentTrainConfig(data=str(data), quality=1, workdir=str(tmp_path / "work"), aux_steps=2,
                            diffusion_steps=3, batch=2, crop=64, width=16, blocks=1, threads=1)
    out = train_latent(cfg, codec=tiny_codec, export=False)
    pipeline = LatentPipeline(tiny_codec, out["denoiser"])
    img = np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    data_bytes = tiny_codec.encode(img)
    assert pipeline.reconstruct(data_bytes, 1.0, "ddpm", 3, 0).shape == img.shape
    log = (cfg.run_dir("mbt2018-mean") / "train.log").read_text()
    assert "latent pairs" in log


def test_codec_training_starts_from_shipped_weights(tmp_path, tiny_weights_dir, monkeypatch):
    from dpexplorer.training import codec as codec_training
    from dpexplorer.training.codec import CodecTrainConfig, train_codec
    from dpexplorer.zoo import codec_config

    monkeypatch.setattr(codec_training, "codec_config", lambda arch, q: codec_config(arch, q, (16, 24)))
    data = _photos(tmp_path / "photos")
    cfg = CodecTrainConfig(data=str(data), quality=1, workdir=str(tmp_path / "work"), steps=1, batch=1, crop=64,
                           final_crop=64, threads=1,
                           init_from=str(tiny_weights_dir / "codec-mbt2018-mean-q1.safetensors"))
    train_codec(cfg)
    assert "initialised from shipped weights" in (cfg.run_dir / "train.log").read_text()

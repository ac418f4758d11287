"""Fixtures for all three test levels (unit/, integration/, e2e/); plain helpers are in helpers.py."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import KODAK, need

warnings.filterwarnings("ignore")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    return need(KODAK)


@pytest.fixture(scope="session")
def tiny_codec():
    from dpexplorer.codec.codec import Codec

    return Codec.untrained(quality=1, channels=(16, 24), seed=0)


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory):
    """A weights/ folder holding a tiny, untrained q1 codec, exported the way real weights are."""
    from dpexplorer.codec.config import build_model, codec_config
    from dpexplorer.hub.files import save_weights
    from dpexplorer.hub.manifest import model_name

    directory = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    cfg = codec_config("mbt2018-mean", 1, (16, 24))
    model = build_model(cfg)
    model.update(force=True)
    meta = {"kind": "codec", "arch": cfg.arch, "quality": 1, "lambda": cfg.lmbda, "N": 16, "M": 24}
    entry = save_weights(model.state_dict(), model_name("codec", cfg.arch, 1), meta, directory=directory)

    from dpexplorer.decoders.latent.denoiser import LatentDenoiser

    denoiser = LatentDenoiser(latent_channels=24, width=16, blocks=1)
    torch.nn.init.normal_(denoiser.out.weight, std=0.05)  # an untrained but non-trivial residual
    meta = {"kind": "latent", "arch": cfg.arch, "quality": 1, "codec_sha256": entry["sha256"],
            "config": denoiser.config()}
    save_weights(denoiser.state_dict(), model_name("latent", cfg.arch, 1), meta, directory=directory)

    # A perceptual synthesis θ₁: θ₀ nudged, so that τ visibly changes the image.
    theta1 = {k: v + 0.02 * torch.randn_like(v) if k.endswith("weight") else v.clone()
              for k, v in model.g_s.state_dict().items()}
    meta = {"kind": "synthesis", "arch": cfg.arch, "quality": 1, "codec_sha256": entry["sha256"]}
    save_weights(theta1, model_name("synthesis", cfg.arch, 1), meta, directory=directory)
    return directory


@pytest.fixture
def photo() -> np.ndarray:
    """A small synthetic 'photo' (smooth gradients + texture), 96×128."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    base = np.stack([xx * 2, yy * 2, (xx + yy)], axis=2).astype(np.float64)
    img = base + rng.normal(0, 12, base.shape)
    return np.clip(img, 0, 255).astype(np.uint8)

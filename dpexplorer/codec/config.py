"""Architectures and quality tables of the base codec (CompressAI's mean-scale hyperprior family).

The numbers mirror CompressAI's own `compressai.zoo.image.cfgs` and the λ table of its training
recipe, so that a model built here is interchangeable with the CompressAI zoo model of the same
(architecture, quality), including its published `pretrained=True` weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from compressai.models import MeanScaleHyperprior, ScaleHyperprior

ARCHITECTURES = {
    "bmshj2018-hyperprior": ScaleHyperprior,
    "mbt2018-mean": MeanScaleHyperprior,
}

# (N, M) per quality, as in compressai.zoo.image.cfgs for both architectures.
CHANNELS = {
    "bmshj2018-hyperprior": {1: (128, 192), 2: (128, 192), 3: (128, 192), 4: (128, 192),
                             5: (128, 192), 6: (192, 320), 7: (192, 320), 8: (192, 320)},
    "mbt2018-mean": {1: (128, 192), 2: (128, 192), 3: (128, 192), 4: (128, 192),
                     5: (192, 320), 6: (192, 320), 7: (192, 320), 8: (192, 320)},
}

# MSE λ per quality (CompressAI's training recipe): loss = λ·255²·MSE + bpp.
LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800}

# Spatial downsampling of the whole model (g_a ×16, h_a ×4): inputs are padded to this multiple.
PAD_MULTIPLE = 64

DEFAULT_ARCH = "mbt2018-mean"


@dataclass(frozen=True)
class CodecConfig:
    arch: str
    quality: int
    N: int
    M: int

    @property
    def lmbda(self) -> float:
        return LAMBDAS[self.quality]


def codec_config(arch: str, quality: int, channels: tuple[int, int] | None = None) -> CodecConfig:
    """The config of (arch, quality); `channels=(N, M)` overrides the table (tiny test models)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if quality not in LAMBDAS:
        raise ValueError(f"quality must be 1..8, got {quality}")
    N, M = channels if channels is not None else CHANNELS[arch][quality]
    return CodecConfig(arch, quality, N, M)


def build_model(cfg: CodecConfig):
    """A freshly initialised CompressAI model for `cfg` (no weights loaded)."""
    return ARCHITECTURES[cfg.arch](N=cfg.N, M=cfg.M)

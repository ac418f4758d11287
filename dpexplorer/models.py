"""One place that loads models, once per process (the CLI, the app and eval all come through here)."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from dpexplorer.bitstream import Bitstream
from dpexplorer.codec import Codec
from dpexplorer.tau import check_tau
from dpexplorer.weights import find_entry, load_manifest, weights_dir

_lock = threading.Lock()


@lru_cache(maxsize=None)
def _cached_codec(quality: int, arch: str, pretrained: bool, directory: str) -> Codec:
    if pretrained:
        return Codec.pretrained(quality, arch)
    return Codec.load(quality, arch, Path(directory))


def get_codec(quality: int, arch: str | None = None, pretrained: bool = False) -> Codec:
    """The codec of `quality` (shipped weights, or CompressAI's with `pretrained`), loaded once."""
    if arch is None:  # resolve first, so that "default" and its explicit name share one cache entry
        arch = "bmshj2018-hyperprior" if pretrained else find_entry("codec", None, quality)[1]["arch"]
    with _lock:
        return _cached_codec(quality, arch, pretrained, str(weights_dir()))


def shipped_qualities() -> list[int]:
    """Qualities with trained codec weights in weights/, ascending."""
    models = load_manifest()["models"].values()
    return sorted({e["quality"] for e in models if e.get("kind") == "codec"})


def codec_for(data: bytes, pretrained: bool = False) -> tuple[Codec, Bitstream]:
    """The codec that made `data` (from its header), with the parsed, checked bitstream."""
    header = Bitstream.from_bytes(data)
    codec = get_codec(header.quality, header.arch, pretrained)
    return codec, codec.parse(data)


def decode_file(data: bytes, pretrained: bool = False) -> np.ndarray:
    codec, bs = codec_for(data, pretrained)
    return codec.decode(bs).x_hat


@lru_cache(maxsize=None)
def _cached_latent(quality: int, arch: str, directory: str):
    from dpexplorer.errors import WeightsError
    from dpexplorer.latent.denoiser import LatentDenoiser
    from dpexplorer.latent.pipeline import LatentPipeline
    from dpexplorer.weights import load_weights

    codec = _cached_codec(quality, arch, False, directory)
    name, entry = find_entry("latent", arch, quality, Path(directory))
    if entry.get("codec_sha256") != codec.weights_sha256:
        raise WeightsError(f"{name} was trained for other codec weights than the shipped {arch} q{quality}")
    denoiser = LatentDenoiser(**entry["config"])
    denoiser.load_state_dict(load_weights(entry, Path(directory)))
    return LatentPipeline(codec, denoiser)


def get_latent_pipeline(quality: int, arch: str | None = None):
    """The τ pipeline (codec + latent denoiser) of a shipped quality, loaded once."""
    if arch is None:
        arch = find_entry("codec", None, quality)[1]["arch"]
    with _lock:
        return _cached_latent(quality, arch, str(weights_dir()))


def latent_qualities() -> list[int]:
    models = load_manifest()["models"].values()
    return sorted({e["quality"] for e in models if e.get("kind") == "latent"})


# Decoders for τ > 0, by name: (qualities with weights, reconstruct(data, tau, sampler, steps, seed, progress)).
# τ = 0 never reaches them: it is the plain decoder for every family (one rule, here).
def _latent_decoder(data: bytes, tau, sampler, steps, seed, progress=None) -> np.ndarray:
    header = Bitstream.from_bytes(data)
    pipeline = get_latent_pipeline(header.quality, header.arch)
    pipeline.codec.parse(data)
    return pipeline.reconstruct(data, tau, sampler, steps, seed, progress)


@lru_cache(maxsize=None)
def _cached_pixel(quality: int, arch: str, directory: str):
    from dpexplorer.errors import WeightsError
    from dpexplorer.pixel.denoiser import PixelDenoiser
    from dpexplorer.pixel.pipeline import PixelPipeline
    from dpexplorer.weights import load_weights

    codec = _cached_codec(quality, arch, False, directory)
    name, entry = find_entry("pixel", arch, quality, Path(directory))
    if entry.get("codec_sha256") != codec.weights_sha256:
        raise WeightsError(f"{name} was trained for other codec weights than the shipped {arch} q{quality}")
    denoiser = PixelDenoiser(**entry["config"])
    denoiser.load_state_dict(load_weights(entry, Path(directory)))
    return PixelPipeline(codec, denoiser)


def get_pixel_pipeline(quality: int, arch: str | None = None):
    """The pixel-space diffusion decoder (codec + pixel denoiser) of a shipped quality, loaded once."""
    if arch is None:
        arch = find_entry("codec", None, quality)[1]["arch"]
    with _lock:
        return _cached_pixel(quality, arch, str(weights_dir()))


def pixel_qualities() -> list[int]:
    models = load_manifest()["models"].values()
    return sorted({e["quality"] for e in models if e.get("kind") == "pixel"})


def _pixel_decoder(data: bytes, tau, sampler, steps, seed, progress=None) -> np.ndarray:
    header = Bitstream.from_bytes(data)
    pipeline = get_pixel_pipeline(header.quality, header.arch)
    pipeline.codec.parse(data)
    return pipeline.reconstruct(data, tau, sampler, steps, seed, progress)


@lru_cache(maxsize=None)
def _cached_synthesis(quality: int, arch: str, directory: str):
    from dpexplorer.errors import WeightsError
    from dpexplorer.synthesis import InterpolatedSynthesis
    from dpexplorer.weights import load_weights

    codec = _cached_codec(quality, arch, False, directory)
    name, entry = find_entry("synthesis", arch, quality, Path(directory))
    if entry.get("codec_sha256") != codec.weights_sha256:
        raise WeightsError(f"{name} was trained for other codec weights than the shipped {arch} q{quality}")
    return InterpolatedSynthesis(codec.model.g_s, load_weights(entry, Path(directory)))


def get_synthesis(quality: int, arch: str | None = None):
    """The perceptual synthesis (θ₀ → θ₁ network interpolation) of a shipped quality, loaded once."""
    if arch is None:
        arch = find_entry("codec", None, quality)[1]["arch"]
    with _lock:
        return _cached_synthesis(quality, arch, str(weights_dir()))


def synthesis_qualities() -> list[int]:
    models = load_manifest()["models"].values()
    return sorted({e["quality"] for e in models if e.get("kind") == "synthesis"})


def _synthesis_decoder(data: bytes, tau, sampler=None, steps=None, seed=None, progress=None) -> np.ndarray:
    """ŷ through g_s(θ_τ): deterministic, so sampler, steps and seed do not apply."""
    codec, bs = codec_for(data)
    y_hat, _ = codec.decode_latent(bs)
    return codec.synthesize(y_hat, bs.height, bs.width, g_s=get_synthesis(bs.quality, bs.arch).at(tau))


DECODERS = {"latent": (latent_qualities, _latent_decoder), "synthesis": (synthesis_qualities, _synthesis_decoder),
            "pixel": (pixel_qualities, _pixel_decoder)}


def reconstruct_file(data: bytes, tau: float = 0.0, sampler: str = "ddim", steps: int = 10, seed: int = 0,
                     pretrained: bool = False, progress=None, decoder: str = "latent") -> np.ndarray:
    """Decode a .dpx: the plain decoder at τ = 0, the `decoder` family (see DECODERS) at τ > 0."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}")
    if check_tau(tau) == 0.0:
        return decode_file(data, pretrained)
    if pretrained:
        raise ValueError("τ > 0 needs the shipped codec (the τ decoders are trained for its latent space)")
    qualities, run = DECODERS[decoder]
    quality = Bitstream.from_bytes(data).quality
    if quality not in qualities():
        raise ValueError(f"the {decoder} decoder has no weights for quality {quality} "
                         f"(it has {', '.join(map(str, qualities())) or 'none'})")
    return run(data, tau, sampler, steps, seed, progress)

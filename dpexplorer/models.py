"""One place that loads models, once per process (the CLI, the app and eval all come through here)."""

from __future__ import annotations

import hashlib
import inspect
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from dpexplorer.bitstream import Bitstream
from dpexplorer.cache import LRU
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


# ---- the τ decoders' modules: each trained for one shipped codec, whose SHA-256 its entry records ----
def _latent_pipeline(codec, entry: dict, state: dict, directory: str):
    from dpexplorer.errors import WeightsError
    from dpexplorer.latent.denoiser import LatentDenoiser
    from dpexplorer.latent.pipeline import LatentPipeline

    denoiser = LatentDenoiser(**entry["config"])
    denoiser.load_state_dict(state)
    synthesis = None
    if "synthesis_sha256" in entry:  # its residual was trained through θ₁: it decodes through θ_τ
        _, synth_entry = find_entry("synthesis", entry["arch"], entry["quality"], Path(directory))
        if synth_entry["sha256"] != entry["synthesis_sha256"]:
            raise WeightsError(f"the latent module of q{entry['quality']} was trained through other synthesis weights")
        synthesis = _cached_module("synthesis", entry["quality"], entry["arch"], directory)
    return LatentPipeline(codec, denoiser, synthesis=synthesis)


def _pixel_pipeline(codec, entry: dict, state: dict, directory: str):
    from dpexplorer.pixel.denoiser import PixelDenoiser
    from dpexplorer.pixel.pipeline import PixelPipeline

    denoiser = PixelDenoiser(**entry["config"])
    denoiser.load_state_dict(state)
    return PixelPipeline(codec, denoiser)


def _interpolated_synthesis(codec, entry: dict, state: dict, directory: str):
    from dpexplorer.synthesis import InterpolatedSynthesis

    return InterpolatedSynthesis(codec.model.g_s, state)


_BUILDERS = {"latent": _latent_pipeline, "pixel": _pixel_pipeline, "synthesis": _interpolated_synthesis}


@lru_cache(maxsize=None)
def _cached_module(kind: str, quality: int, arch: str, directory: str):
    from dpexplorer.errors import WeightsError
    from dpexplorer.weights import load_weights

    codec = _cached_codec(quality, arch, False, directory)
    name, entry = find_entry(kind, arch, quality, Path(directory))
    if entry.get("codec_sha256") != codec.weights_sha256:
        raise WeightsError(f"{name} was trained for other codec weights than the shipped {arch} q{quality}")
    return _BUILDERS[kind](codec, entry, load_weights(entry, Path(directory)), directory)


def get_module(kind: str, quality: int, arch: str | None = None):
    """The shipped `kind` module ("latent", "pixel", "synthesis") of a quality, loaded once."""
    if arch is None:
        arch = find_entry("codec", None, quality)[1]["arch"]
    with _lock:
        return _cached_module(kind, quality, arch, str(weights_dir()))


def module_qualities(kind: str) -> list[int]:
    models = load_manifest()["models"].values()
    return sorted({e["quality"] for e in models if e.get("kind") == kind})


def get_latent_pipeline(quality: int, arch: str | None = None):
    """The τ pipeline (codec + latent denoiser) of a shipped quality."""
    return get_module("latent", quality, arch)


def get_pixel_pipeline(quality: int, arch: str | None = None):
    """The pixel-space diffusion decoder (codec + pixel denoiser) of a shipped quality."""
    return get_module("pixel", quality, arch)


def get_synthesis(quality: int, arch: str | None = None):
    """The perceptual synthesis (θ₀ → θ₁ network interpolation) of a shipped quality."""
    return get_module("synthesis", quality, arch)


def latent_qualities() -> list[int]:
    return module_qualities("latent")


def pixel_qualities() -> list[int]:
    return module_qualities("pixel")


def synthesis_qualities() -> list[int]:
    return module_qualities("synthesis")


# Decoders for τ > 0, by name: (qualities with weights, reconstruct(data, tau, sampler, steps, seed, progress)).
# τ = 0 never reaches them: it is the plain decoder for every family (one rule, here). A decoder whose
# reconstruct also takes `tau_map` applies τ maps itself; for the others `reconstruct_file` blends.
def _latent_decoder(data: bytes, tau, sampler, steps, seed, progress=None, tau_map=None) -> np.ndarray:
    header = Bitstream.from_bytes(data)
    pipeline = get_latent_pipeline(header.quality, header.arch)
    pipeline.codec.parse(data)
    return pipeline.reconstruct(data, tau, sampler, steps, seed, progress, tau_map=tau_map)


def _pixel_decoder(data: bytes, tau, sampler, steps, seed, progress=None) -> np.ndarray:
    header = Bitstream.from_bytes(data)
    pipeline = get_pixel_pipeline(header.quality, header.arch)
    pipeline.codec.parse(data)
    return pipeline.reconstruct(data, tau, sampler, steps, seed, progress)


_synthesis_latents = LRU(8)  # ŷ per bitstream: a τ scrub costs one synthesis pass per frame


def _synthesis_decoder(data: bytes, tau, sampler=None, steps=None, seed=None, progress=None) -> np.ndarray:
    """ŷ through g_s(θ_τ): deterministic, so sampler, steps and seed do not apply."""
    codec, bs = codec_for(data)
    with _lock:
        y_hat, _ = _synthesis_latents.get_or((hashlib.sha256(data).hexdigest(), codec.weights_sha256),
                                             lambda: codec.decode_latent(bs))
    return codec.synthesize(y_hat, bs.height, bs.width, g_s=get_synthesis(bs.quality, bs.arch).at(tau))


DECODERS = {"latent": (latent_qualities, _latent_decoder), "synthesis": (synthesis_qualities, _synthesis_decoder),
            "pixel": (pixel_qualities, _pixel_decoder)}


def takes_tau_map(decoder: str) -> bool:
    """Whether the `decoder` family applies a τ map itself (else: blended in pixel space)."""
    return "tau_map" in inspect.signature(DECODERS[decoder][1]).parameters


def reconstruct_file(data: bytes, tau: float = 0.0, sampler: str = "ddim", steps: int = 10, seed: int = 0,
                     pretrained: bool = False, progress=None, decoder: str = "latent",
                     tau_map: np.ndarray | None = None) -> np.ndarray:
    """Decode a .dpx: the plain decoder at τ = 0, the `decoder` family (see DECODERS) at τ > 0.

    `tau_map` (float32 H×W in [0, 1], the image's size) is τ per pixel; `tau` is then ignored. An
    all-zero map is the plain decoder; a family that cannot apply a map gets
    x̂ = x̂₀ + m·(x̂₁ − x̂₀) (rounded) between its τ = 0 and τ = 1 decodes, so a map of ones is τ = 1.
    """
    from dpexplorer.taumap import blend, check_tau_map

    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}")
    header = Bitstream.from_bytes(data)
    if tau_map is not None:
        tau_map = check_tau_map(tau_map, header.height, header.width)
        tau = 1.0 if tau_map.any() else 0.0  # τ = 1 only to pass the checks below: the map decides
    if check_tau(tau) == 0.0:
        return decode_file(data, pretrained)
    if pretrained:
        raise ValueError("τ > 0 needs the shipped codec (the τ decoders are trained for its latent space)")
    qualities, run = DECODERS[decoder]
    if header.quality not in qualities():
        raise ValueError(f"the {decoder} decoder has no weights for quality {header.quality} "
                         f"(it has {', '.join(map(str, qualities())) or 'none'})")
    if tau_map is None:
        return run(data, tau, sampler, steps, seed, progress)
    if takes_tau_map(decoder):
        return run(data, 1.0, sampler, steps, seed, progress, tau_map=tau_map)
    return blend(decode_file(data), run(data, 1.0, sampler, steps, seed, progress), tau_map)

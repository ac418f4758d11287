"""Loads the shipped files, once per process: the codec and each τ decoder's module (the CLI, the app,
the registry of decoders and the evaluation all come through here).

The codec comes from `weights/` (`load_codec`, hash-checked) or from CompressAI's published weights
(`pretrained_codec`); a τ decoder's module is built on the shipped codec it was trained for (its
manifest entry records that codec's SHA-256).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import torch

from dpexplorer.codec.codec import Codec, state_fingerprint
from dpexplorer.codec.config import build_model, codec_config
from dpexplorer.errors import WeightsError
from dpexplorer.hub.files import load_weights
from dpexplorer.hub.manifest import find_entry, load_manifest, weights_dir


def load_codec(quality: int, arch: str | None = None, directory: Path | None = None) -> Codec:
    """The shipped, trained model of `quality` from `weights/` (or `directory`), hash-checked."""
    name, entry = find_entry("codec", arch, quality, directory)  # the manifest, read once per change
    cfg = codec_config(entry["arch"], quality, (entry["N"], entry["M"]))
    model = build_model(cfg)
    state = load_weights(entry, directory)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{name}: weights do not fit {cfg.arch} (N={cfg.N}, M={cfg.M}): {exc}") from None
    earlier = tuple(bytes.fromhex(i) for i in entry.get("earlier_weights_ids", ()))
    codec = Codec(model, cfg, entry["sha256"], f"weights/{entry['file']}", earlier_ids=earlier)
    if entry.get("latent_sha256") and entry["latent_sha256"] != codec.latent_sha256:
        raise WeightsError(f"{name}: its entry's latent_sha256 does not match the file")
    return codec


def pretrained_codec(quality: int, arch: str = "bmshj2018-hyperprior") -> Codec:
    """CompressAI's published MSE weights (downloaded once to $TORCH_HOME/hub/checkpoints).

    Loaded with `weights_only=True`: the checkpoint is a plain state dict, nothing is unpickled.
    """
    from compressai.zoo.image import model_urls
    from compressai.zoo.pretrained import load_pretrained

    cfg = codec_config(arch, quality)
    url = model_urls[arch]["mse"][quality]
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                   check_hash=True, weights_only=True)
    except OSError as exc:  # offline and not cached
        raise WeightsError(f"cannot fetch CompressAI's pretrained {arch} q{quality} ({exc}); "
                           f"place {url.rsplit('/', 1)[-1]} in $TORCH_HOME/hub/checkpoints/") from None
    state = load_pretrained(state)
    model = type(build_model(cfg)).from_state_dict(state)
    model.update(force=True)
    fingerprint = state_fingerprint(model.state_dict())
    # before the header keyed on the latent model, it held the whole state's fingerprint
    return Codec(model, cfg, fingerprint, url, earlier_ids=(bytes.fromhex(fingerprint)[:8],))


_lock = threading.Lock()


@lru_cache(maxsize=None)
def _cached_codec(quality: int, arch: str, pretrained: bool, directory: str) -> Codec:
    if pretrained:
        return pretrained_codec(quality, arch)
    return load_codec(quality, arch, Path(directory))


def get_codec(quality: int, arch: str | None = None, pretrained: bool = False) -> Codec:
    """The codec of `quality` (shipped weights, or CompressAI's with `pretrained`), loaded once."""
    if arch is None:  # resolve first, so that "default" and its explicit name share one cache entry
        arch = "bmshj2018-hyperprior" if pretrained else find_entry("codec", None, quality)[1]["arch"]
    with _lock:
        return _cached_codec(quality, arch, pretrained, str(weights_dir()))


def shipped_qualities() -> list[int]:
    """Qualities with trained codec weights in weights/, ascending."""
    return module_qualities("codec")


# ---- the τ decoders' modules: each trained for one shipped codec's ŷ, whose SHA-256 its entry records ----
def _latent_pipeline(codec, entry: dict, state: dict, directory: str):
    from dpexplorer.decoders.latent.denoiser import LatentDenoiser
    from dpexplorer.decoders.latent.pipeline import LatentPipeline

    denoiser = LatentDenoiser(**entry["config"])
    denoiser.load_state_dict(state)
    # its residual was trained through θ₁: it decodes through θ_τ
    return LatentPipeline(codec, denoiser, synthesis=trained_synthesis(entry, directory))


def trained_synthesis(entry: dict, directory: str | None = None):
    """The shipped perceptual synthesis a module (a manifest entry, or a checkpoint's `kind`, `arch`,
    `quality`) was trained on, checked against its `synthesis_sha256`; None without one."""
    if not entry.get("synthesis_sha256"):
        return None
    directory = directory or str(weights_dir())
    _, synth_entry = find_entry("synthesis", entry["arch"], entry["quality"], Path(directory))
    if synth_entry["sha256"] != entry["synthesis_sha256"]:
        raise WeightsError(f"the {entry['kind']} module of q{entry['quality']} was trained on other synthesis weights")
    return _cached_module("synthesis", entry["quality"], entry["arch"], directory)


def _pixel_pipeline(codec, entry: dict, state: dict, directory: str):
    from dpexplorer.decoders.pixel.denoiser import PixelDenoiser
    from dpexplorer.decoders.pixel.pipeline import PixelPipeline

    denoiser = PixelDenoiser(**entry["config"])
    denoiser.load_state_dict(state)
    return PixelPipeline(codec, denoiser, synthesis=trained_synthesis(entry, directory))


def _interpolated_synthesis(codec, entry: dict, state: dict, directory: str):
    from dpexplorer.decoders.synthesis import InterpolatedSynthesis

    return InterpolatedSynthesis(codec.model.g_s, state)


_BUILDERS = {"latent": _latent_pipeline, "pixel": _pixel_pipeline, "synthesis": _interpolated_synthesis}


@lru_cache(maxsize=None)
def _cached_module(kind: str, quality: int, arch: str, directory: str):
    codec = _cached_codec(quality, arch, False, directory)
    name, entry = find_entry(kind, arch, quality, Path(directory))
    if not codec.fits(entry):
        raise WeightsError(f"{name} was trained for other codec weights than the shipped {arch} q{quality}")
    return _BUILDERS[kind](codec, entry, load_weights(entry, Path(directory)), directory)


def get_module(kind: str, quality: int, arch: str | None = None):
    """The shipped `kind` module ("latent", "pixel", "synthesis") of a quality, loaded once."""
    if arch is None:
        arch = find_entry("codec", None, quality)[1]["arch"]
    with _lock:
        return _cached_module(kind, quality, arch, str(weights_dir()))


def module_qualities(kind: str) -> list[int]:
    """Qualities with `kind` weights ("codec", "latent", …) in weights/, ascending."""
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

"""The decoder families by name (`DECODERS`), and `reconstruct_file`: a `.dpx` decoded at some τ (or τ
map) by one of them; τ = 0 is the plain decoder for every family. The families' modules are loaded
through `dpexplorer.hub.loading`, once per process."""

from __future__ import annotations

import hashlib
import inspect
import threading

import numpy as np

from dpexplorer.cache import LRU
from dpexplorer.codec.codec import Codec
from dpexplorer.decoders.tau import check_tau
from dpexplorer.hub.loading import (get_codec, get_latent_pipeline, get_pixel_pipeline, get_synthesis, latent_qualities,
                                    pixel_qualities, synthesis_qualities)
from dpexplorer.io.bitstream import Bitstream

_lock = threading.Lock()


def codec_for(data: bytes, pretrained: bool = False) -> tuple[Codec, Bitstream]:
    """The codec that made `data` (from its header), with the parsed, checked bitstream."""
    header = Bitstream.from_bytes(data)
    codec = get_codec(header.quality, header.arch, pretrained)
    return codec, codec.parse(data)


def decode_file(data: bytes, pretrained: bool = False) -> np.ndarray:
    codec, bs = codec_for(data, pretrained)
    return codec.decode(bs).x_hat


# Decoders for τ > 0, by name: (qualities with weights, reconstruct(data, tau, sampler, steps, seed, progress)).
# τ = 0 never reaches them: it is the plain decoder for every family (one rule, here). A decoder whose
# reconstruct also takes `tau_map` applies τ maps itself; for the others `reconstruct_file` blends.
def _pipeline_for(data: bytes, get_pipeline):
    """The sampling pipeline of the bitstream's quality, after its codec has checked the whole bitstream."""
    header = Bitstream.from_bytes(data)
    pipeline = get_pipeline(header.quality, header.arch)
    pipeline.codec.parse(data)
    return pipeline


def _latent_decoder(data: bytes, tau, sampler, steps, seed, progress=None, tau_map=None) -> np.ndarray:
    return _pipeline_for(data, get_latent_pipeline).reconstruct(data, tau, sampler, steps, seed, progress,
                                                                tau_map=tau_map)


def _pixel_decoder(data: bytes, tau, sampler, steps, seed, progress=None, noise_scale: float | None = None) -> np.ndarray:
    return _pipeline_for(data, get_pixel_pipeline).reconstruct(data, tau, sampler, steps, seed, progress,
                                                               noise_scale=noise_scale)


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


def takes_noise_scale(decoder: str) -> bool:
    """Whether the `decoder` family has CDC's initial-noise scale (a pixel-space sampler option)."""
    return "noise_scale" in inspect.signature(DECODERS[decoder][1]).parameters


def reconstruct_file(data: bytes, tau: float = 0.0, sampler: str = "ddim", steps: int = 10, seed: int = 0,
                     pretrained: bool = False, progress=None, decoder: str = "latent",
                     tau_map: np.ndarray | None = None, noise_scale: float | None = None) -> np.ndarray:
    """Decode a .dpx: the plain decoder at τ = 0, the `decoder` family (see DECODERS) at τ > 0.

    `noise_scale` multiplies the sampler's initial noise (CDC's option; < 1 trades realism for
    fidelity), for the families that have it (`takes_noise_scale`); 1 is the plain sampler, None the
    weights' own (their manifest config's `noise_scale`).

    `tau_map` (float32 H×W in [0, 1], the image's size) is τ per pixel; `tau` is then ignored. An
    all-zero map is the plain decoder; a family that cannot apply a map gets
    x̂ = x̂₀ + m·(x̂₁ − x̂₀) (rounded) between its τ = 0 and τ = 1 decodes, so a map of ones is τ = 1.
    """
    from dpexplorer.decoders.taumap import blend, check_tau_map

    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}")
    extra = {}
    if noise_scale is not None:
        if not takes_noise_scale(decoder):
            raise ValueError(f"the {decoder} decoder has no noise scale (the pixel decoder has)")
        extra["noise_scale"] = noise_scale
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
        return run(data, tau, sampler, steps, seed, progress, **extra)
    if takes_tau_map(decoder):
        return run(data, 1.0, sampler, steps, seed, progress, tau_map=tau_map, **extra)
    return blend(decode_file(data), run(data, 1.0, sampler, steps, seed, progress, **extra), tau_map)

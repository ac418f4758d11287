"""Decoder-side latent diffusion with the τ knob (after Zhou et al., paper 000).

The receiver has only ŷ. The denoiser samples a residual r̃ ≈ y' − ŷ (y' = the auxiliary encoder's
perceptual latent, never transmitted), and the reconstruction is

    ỹ_τ = ŷ + τ · κ · r̃ ,        x̂_τ = g_s(ỹ_τ; θ_τ) ,        τ ∈ [0, 1]

a linear fusion of the original and the transformed latent, with r̃ scaled by the strength κ stored
with the weights (chosen on training photos at export: through θ₁, the full residual costs LPIPS;
docs/synthesis.md). A module trained through the perceptual synthesis
(`dpexplorer.decoders.synthesis`, issue 16) moves the synthesis weights along τ too,
θ_τ = (1 − τ)·θ₀ + τ·θ₁; without one, θ_τ = θ₀ (the codec's g_s). τ = 0 is the base decoder exactly (it is
returned without touching the sample, so the PNG is bit-identical); τ = 1 is the full perceptual
latent. The bitstream never changes; τ, sampler, steps and seed are decode-time arguments.

A τ map (the app's τ brush, `--tau-map`) makes τ spatial: averaged over each 16×16 cell onto the
latent grid, ỹ = ŷ + τ(x, y)·κ·r̃ (weights cannot vary per pixel: with θ₁, that ỹ is decoded by θ₁ and
blended with the plain decode by the same map, x̂ = x̂₀ + τ(x, y)·(g_s(ỹ; θ₁) − x̂₀)).

Caching: the entropy-decoded ŷ is cached per bitstream and the sample r̃ per
(bitstream, sampler, steps, seed), so moving τ (a whole τ sweep, or a new τ map) costs one g_s pass
per image.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Callable

import numpy as np
import torch

from dpexplorer.cache import LRU
from dpexplorer.codec.codec import Codec, thread_invariant
from dpexplorer.codec.tiling import CELL
from dpexplorer.decoders.latent.denoiser import LatentDenoiser
from dpexplorer.decoders.schedulers import SAMPLERS, run_sampler
from dpexplorer.decoders.tau import check_tau
from dpexplorer.decoders.taumap import blend, check_tau_map, to_grid
from dpexplorer.io.bitstream import Bitstream


class LatentPipeline:
    def __init__(self, codec: Codec, denoiser: LatentDenoiser, cache_size: int = 16, synthesis=None):
        self.codec = codec
        self.synthesis = synthesis  # the InterpolatedSynthesis the residual was trained through, or None
        self.denoiser = denoiser.eval().requires_grad_(False)
        self._latents = LRU(cache_size)
        self._samples = LRU(cache_size)
        self._lock = threading.RLock()

    # ---- the two cached stages -------------------------------------------------------------------
    def latent(self, data: bytes) -> tuple[torch.Tensor, Bitstream]:
        """ŷ of a bitstream (entropy decoding once per bitstream)."""
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            return self._latents.get_or(key, lambda: self.codec.decode_latent(data))

    @torch.inference_mode()
    def sample(self, y_hat: torch.Tensor, sampler: str = "ddim", steps: int = 10, seed: int = 0,
               progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """One draw of the residual r̃ given ŷ (unnormalised, same shape as ŷ), times the weights' strength κ."""
        def model(r_t, t):
            with thread_invariant():  # the same seed gives the same r̃ whatever the thread count
                return self.denoiser(r_t, t.reshape(1), y_hat)

        r = run_sampler(model, y_hat.shape, sampler, steps, seed, progress=progress)
        return r * (self.denoiser.strength * self.denoiser.residual_scale[None, :, None, None])

    def cached_sample(self, data: bytes, sampler: str, steps: int, seed: int, progress=None) -> torch.Tensor:
        key = (hashlib.sha256(data).hexdigest(), sampler, int(steps), int(seed))
        y_hat, _ = self.latent(data)
        with self._lock:
            return self._samples.get_or(key, lambda: self.sample(y_hat, sampler, steps, seed, progress))

    # ---- τ -----------------------------------------------------------------------------------------
    @staticmethod
    def fuse(y_hat: torch.Tensor, residual: torch.Tensor, tau: float) -> torch.Tensor:
        """ỹ_τ = ŷ + τ·r̃ (r̃ already scaled by κ), τ in [0, 1]."""
        return y_hat + check_tau(tau) * residual

    def reconstruct(self, data: bytes, tau: float = 1.0, sampler: str = "ddim", steps: int = 10, seed: int = 0,
                    progress=None, tau_map: np.ndarray | None = None) -> np.ndarray:
        """The 8-bit reconstruction of a .dpx at τ, or with a τ map (H×W in [0, 1]; τ is then ignored).
        τ = 0 (or an all-zero map) never samples and equals the base decoder."""
        tau = check_tau(tau)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        y_hat, bs = self.latent(data)
        if tau_map is not None:
            tau_map = check_tau_map(tau_map, bs.height, bs.width)
        if (tau == 0.0) if tau_map is None else not tau_map.any():
            return self.codec.synthesize(y_hat, bs.height, bs.width)
        residual = self.cached_sample(data, sampler, steps, seed, progress)
        if tau_map is None:
            return self.codec.synthesize(self.fuse(y_hat, residual, tau), bs.height, bs.width, g_s=self.g_s(tau))
        # the same product and sum as `fuse`, per latent cell: a map of ones gives τ = 1 to the bit
        grid = torch.from_numpy(to_grid(tau_map, *y_hat.shape[-2:], CELL))
        y_tilde = y_hat + grid[None, None] * residual
        if self.synthesis is None:
            return self.codec.synthesize(y_tilde, bs.height, bs.width)
        full = self.codec.synthesize(y_tilde, bs.height, bs.width, g_s=self.g_s(1.0))
        return blend(self.codec.synthesize(y_hat, bs.height, bs.width), full, tau_map)

    def g_s(self, tau: float):
        """The synthesis at τ: θ_τ where the residual was trained through θ₁, else the codec's (None)."""
        return None if self.synthesis is None else self.synthesis.at(tau)

"""Decoder-side latent diffusion with the τ knob, after Zhou et al., "Controllable Distortion-Perception
Tradeoff Through Latent Diffusion for Neural Image Compression" (AAAI 2025, arXiv:2412.11379).

The receiver has only ŷ. The denoiser samples a residual r̃ ≈ y' − ŷ (y' = the auxiliary encoder's
perceptual latent, never transmitted), and the reconstruction is

    ỹ_τ = ŷ + τ · κ · r̃ ,        x̂_τ = g_s(ỹ_τ; θ_τ) ,        τ ∈ [0, 1]

a linear fusion of the original and the transformed latent, with r̃ scaled by the strength κ stored
with the weights (chosen on training photos at export: through θ₁, the full residual costs LPIPS;
docs/synthesis.md). A module trained through the perceptual synthesis (`dpexplorer.decoders.synthesis`)
moves the synthesis weights along τ too, θ_τ = (1 − τ)·θ₀ + τ·θ₁; without one, θ_τ = θ₀ (the codec's
g_s). τ, sampler, steps and seed are decode-time arguments; the bitstream never changes.

A τ map (the app's τ brush, `--tau-map`) makes τ spatial: averaged over each 16×16 cell onto the
latent grid, ỹ = ŷ + τ(x, y)·κ·r̃ (weights cannot vary per pixel: with θ₁, that ỹ is decoded by θ₁ and
blended with the plain decode by the same map, x̂ = x̂₀ + τ(x, y)·(g_s(ỹ; θ₁) − x̂₀)).

Caching: ŷ comes from the stream (decoded once per bitstream); the sample r̃ is cached per
(bitstream, sampler, steps, seed), so moving τ (a whole τ sweep, or a new τ map) costs one g_s pass.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np
import torch

from dpexplorer.cache import LRU
from dpexplorer.codec.codec import Codec, thread_invariant
from dpexplorer.codec.tiling import CELL
from dpexplorer.decoders.base import DecodeOptions
from dpexplorer.decoders.denoising import DenoisingDecoder
from dpexplorer.decoders.latent.denoiser import LatentDenoiser
from dpexplorer.decoders.schedulers import run_sampler
from dpexplorer.decoders.stream import Stream
from dpexplorer.decoders.synthesis import InterpolatedSynthesis
from dpexplorer.decoders.taumap import blend, to_grid


class LatentDecoder(DenoisingDecoder):
    key = "latent"
    label = "Latent diffusion + τ fusion"
    description = ("A diffusion model at latent resolution samples a residual r̃ for ŷ; τ moves both the latent and "
                   "the synthesis weights: x̂ = g_s(ŷ + τ·κ·r̃; θ_τ), θ₁ being the perceptual synthesis and κ the "
                   "residual's strength stored with the weights.")
    denoiser_class = LatentDenoiser
    options = frozenset({"sampler", "steps", "seed"})
    applies_tau_map = True
    name = "latent diffusion"
    marker = "o"
    colour = "#1f77b4"

    def __init__(self, codec: Codec, denoiser: LatentDenoiser, *, synthesis: InterpolatedSynthesis | None = None,
                 cache_size: int = 16):
        super().__init__(codec)
        self.synthesis = synthesis  # the perceptual synthesis the residual was trained through, or None
        self.denoiser = denoiser.eval().requires_grad_(False)
        self._samples = LRU(cache_size)
        self._lock = threading.RLock()

    # ---- the sample --------------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, y_hat: torch.Tensor, *, sampler: str = "ddim", steps: int = 10, seed: int = 0,
               progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """One draw of the residual r̃ given ŷ (unnormalised, same shape as ŷ), times the weights' strength κ."""
        def model(r_t, t):
            with thread_invariant():  # the same seed gives the same r̃ whatever the thread count
                return self.denoiser(r_t, t.reshape(1), y_hat)

        r = run_sampler(model, y_hat.shape, sampler, steps, seed=seed, progress=progress)
        return r * (self.denoiser.strength * self.denoiser.residual_scale[None, :, None, None])

    def cached_sample(self, stream: Stream | bytes, options: DecodeOptions) -> torch.Tensor:
        """r̃ of this stream and sampler setting, drawn once."""
        stream = self.open(stream)
        key = (stream.content_sha256, options.sampler, int(options.steps), int(options.seed))
        y_hat = stream.y_hat
        with self._lock:
            return self._samples.get_or(key, lambda: self.sample(
                y_hat, sampler=options.sampler, steps=int(options.steps), seed=int(options.seed),
                progress=options.progress))

    # ---- τ -----------------------------------------------------------------------------------------
    def _decode(self, stream: Stream, tau: float, options: DecodeOptions) -> np.ndarray:
        # ỹ_τ = ŷ + τ·r̃ (r̃ already scaled by κ)
        y_tilde = stream.y_hat + tau * self.cached_sample(stream, options)
        return stream.synthesize(y_tilde, g_s=self.g_s(tau))

    def _decode_map(self, stream: Stream, tau_map: np.ndarray, options: DecodeOptions) -> np.ndarray:
        y_hat, residual = stream.y_hat, self.cached_sample(stream, options)
        # the same product and sum as `_decode`, per latent cell: a map of ones gives τ = 1 to the bit
        grid = torch.from_numpy(to_grid(tau_map, *y_hat.shape[-2:], CELL))
        y_tilde = y_hat + grid[None, None] * residual
        if self.synthesis is None:
            return stream.synthesize(y_tilde)
        return blend(stream.plain(), stream.synthesize(y_tilde, g_s=self.g_s(1.0)), tau_map)

    def g_s(self, tau: float):
        """The synthesis at τ: θ_τ where the residual was trained through θ₁, else the codec's (None)."""
        return None if self.synthesis is None else self.synthesis.at(tau)

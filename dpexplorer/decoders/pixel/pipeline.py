"""Decoder-side pixel-space diffusion with the τ knob (after Mari & Milani, paper 001, and CDC, paper 002).

The receiver has ŷ and computes the plain decode x̂₀ = g_s(ŷ) and a base image x_b: x̂₀ itself, or
the perceptual synthesis g_s(ŷ; θ₁) (the denoiser's `base`). The denoiser samples the detail that x_b
lacks, r̃ ≈ x − x_b, conditioned on x_b and ŷ, so the sample is x̃ = x_b + r̃, and

    x̂_τ = x̂₀ + τ · (x̃ − x̂₀) ,        τ ∈ [0, 1]

the pixel-space interpolation that is optimal in the distortion–perception theory of Freirich, Michaeli
& Meir (NeurIPS 2021). τ = 0 returns the codec's own decode (bit-identical); a τ change is one
array blend, no network pass. Sampler, steps, seed and the initial-noise scale pick which x̃.

Large images: each denoiser call runs on overlapping tiles whose predictions are blended with linear
ramps over the overlap (then one scheduler step on the whole image, as MultiDiffusion does), so the
network's memory is bounded by the tile and the noise, hence the sample, does not depend on the tiling
except near seams.

Caching: ŷ, the padded base image and the plain decode per bitstream; the 8-bit sample x̃ per
(bitstream, sampler, steps, seed, noise scale), in an LRU bounded in bytes.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from dpexplorer.cache import LRU
from dpexplorer.codec.codec import Codec, thread_invariant
from dpexplorer.codec.tiling import CELL
from dpexplorer.decoders.pixel.denoiser import PixelDenoiser, check_noise_scale
from dpexplorer.decoders.schedulers import SAMPLERS, cumulative_alphas, run_sampler
from dpexplorer.decoders.synthesis import InterpolatedSynthesis
from dpexplorer.decoders.tau import check_tau


@dataclass(frozen=True)
class PixelTiling:
    tile: int = 1024  # pixels per tile side (768×512 runs as one tile); multiple of 16
    overlap: int = 128  # pixels shared by neighbouring tiles, blended linearly


def tile_spans(n: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, stop) of tiles covering 0..n, `overlap` shared, the last one flush with n."""
    if n <= tile:
        return [(0, n)]
    starts = list(range(0, n - tile, tile - overlap)) + [n - tile]
    return [(s, s + tile) for s in starts]


def ramp(n: int, lo_open: bool, hi_open: bool, overlap: int) -> torch.Tensor:
    """1-D blending weights of a tile: rising over `overlap` where a neighbour precedes, falling where one follows."""
    w = torch.ones(n)
    k = min(overlap, n)
    edge = torch.arange(1, k + 1, dtype=torch.float32) / (k + 1)
    if lo_open:
        w[:k] = torch.minimum(w[:k], edge)
    if hi_open:
        w[n - k:] = torch.minimum(w[n - k:], edge.flip(0))
    return w


class PixelPipeline:
    def __init__(self, codec: Codec, denoiser: PixelDenoiser, tiling: PixelTiling = PixelTiling(),
                 cache_bytes: int = 256 << 20, synthesis: InterpolatedSynthesis | None = None):
        if tiling.tile % denoiser.multiple or tiling.overlap % CELL or tiling.tile % CELL:
            raise ValueError(f"tile must be a multiple of {max(denoiser.multiple, CELL)} and overlap of {CELL}")
        if (denoiser.cfg["base"] == "synthesis") != (synthesis is not None):
            raise ValueError(f"a denoiser with base {denoiser.cfg['base']!r} needs "
                             f"{'the perceptual synthesis' if synthesis is None else 'no synthesis'}")
        self.codec = codec
        self.denoiser = denoiser.eval().requires_grad_(False)
        self.tiling = tiling
        # the base image's synthesis transform: θ₁ (weights blended once) or the codec's own g_s
        self._base_g_s = synthesis.at(1.0) if synthesis is not None else None
        self._latents = LRU(8)
        self._bases = LRU(cache_bytes // 4, weight=lambda a: a.nbytes)
        self._plains = LRU(cache_bytes // 8, weight=lambda a: a.nbytes)
        self._samples = LRU(cache_bytes, weight=lambda a: a.nbytes)
        self._lock = threading.RLock()

    # ---- what the receiver has -------------------------------------------------------------------
    def latent(self, data: bytes):
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            return self._latents.get_or(key, lambda: self.codec.decode_latent(data))

    def base(self, data: bytes) -> np.ndarray:
        """The base image x_b as 8-bit pixels on the whole padded grid (what the denoiser is conditioned on)."""
        y_hat, _ = self.latent(data)
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            return self._bases.get_or(key, lambda: self.codec.synthesize(y_hat, *(CELL * s for s in y_hat.shape[-2:]),
                                                                         g_s=self._base_g_s))

    def plain(self, data: bytes) -> np.ndarray:
        """The plain decoder's 8-bit image x̂₀ (τ = 0)."""
        y_hat, bs = self.latent(data)
        if self._base_g_s is None:  # the base is x̂₀ on the padded grid
            return self.base(data)[:bs.height, :bs.width]
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            return self._plains.get_or(key, lambda: self.codec.synthesize(y_hat, bs.height, bs.width))

    # ---- sampling ----------------------------------------------------------------------------------
    def _predict(self, r_t: torch.Tensor, t: torch.Tensor, x_base: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        """The denoiser on overlapping tiles, predictions blended by linear ramps."""
        h, w = r_t.shape[-2:]
        rows, cols = tile_spans(h, self.tiling.tile, self.tiling.overlap), tile_spans(w, self.tiling.tile, self.tiling.overlap)
        with thread_invariant():  # the same seed gives the same x̃ whatever the thread count
            if len(rows) == len(cols) == 1:
                return self.denoiser(r_t, t.reshape(1), x_base, y_hat)
            out, weight = torch.zeros_like(r_t), torch.zeros(1, 1, h, w)
            for i, (r0, r1) in enumerate(rows):
                wr = ramp(r1 - r0, i > 0, i + 1 < len(rows), self.tiling.overlap)
                for j, (c0, c1) in enumerate(cols):
                    wc = ramp(c1 - c0, j > 0, j + 1 < len(cols), self.tiling.overlap)
                    pred = self.denoiser(r_t[..., r0:r1, c0:c1], t.reshape(1), x_base[..., r0:r1, c0:c1],
                                         y_hat[..., r0 // CELL:r1 // CELL, c0 // CELL:c1 // CELL])
                    wt = wr[:, None] * wc[None, :]
                    out[..., r0:r1, c0:c1] += pred * wt
                    weight[..., r0:r1, c0:c1] += wt
            return out / weight

    def _clean_from_noise(self, predict_noise, x_base: torch.Tensor):
        """An ε-predicting denoiser as an x₀-predicting one: r̂₀ = (r_t − √(1 − ᾱ_t)·ε̂) / √ᾱ_t, its image
        clamped to [0, 1] as in training. Unclamped, the trailing schedule's first step (ᾱ ≈ 2.4e-9 at
        t = 999) multiplies ε̂'s error by 20,000 and the sample is noise (docs/pixel-decoder.md)."""
        alphas, s = cumulative_alphas(), self.denoiser.residual_scale

        def predict(r_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            a = alphas[int(t)]
            r0 = (r_t - (1 - a).sqrt() * predict_noise(r_t, t)) / a.sqrt()
            return ((x_base + s * r0).clamp(0, 1) - x_base) / s
        return predict

    def noise_scale(self, noise_scale: float | None = None) -> float:
        """The initial-noise scale to sample with: the given one, else the weights' own (checked)."""
        return check_noise_scale(self.denoiser.cfg.get("noise_scale", 1.0) if noise_scale is None else noise_scale)

    @torch.inference_mode()
    def sample(self, data: bytes, sampler: str = "ddim", steps: int = 10, seed: int = 0,
               noise_scale: float | None = None, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """One draw x̃ (8-bit, H×W×3) for a bitstream."""
        noise_scale = self.noise_scale(noise_scale)
        y_hat, bs = self.latent(data)
        base8 = self.base(data)
        x_base = torch.from_numpy(base8).permute(2, 0, 1)[None].float().div(255.0)
        predict, prediction_type = (lambda r_t, t: self._predict(r_t, t, x_base, y_hat)), self.denoiser.prediction_type
        if prediction_type == "epsilon":
            predict, prediction_type = self._clean_from_noise(predict, x_base), "sample"
        r = run_sampler(predict, x_base.shape, sampler, steps, seed, prediction_type, noise_scale, progress)
        x = x_base + self.denoiser.residual_scale * r
        return x[0, :, :bs.height, :bs.width].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).contiguous().numpy()

    def cached_sample(self, data: bytes, sampler: str, steps: int, seed: int, noise_scale: float | None = None,
                      progress=None) -> np.ndarray:
        noise_scale = self.noise_scale(noise_scale)
        key = (hashlib.sha256(data).hexdigest(), sampler, int(steps), int(seed), noise_scale)
        with self._lock:
            return self._samples.get_or(key, lambda: self.sample(data, sampler, steps, seed, noise_scale, progress))

    # ---- τ -----------------------------------------------------------------------------------------
    @staticmethod
    def blend(base: np.ndarray, sample: np.ndarray, tau: float) -> np.ndarray:
        """x̂_τ = x̂₀ + τ·(x̃ − x̂₀) on 8-bit images, rounded to 8 bits (τ = 1 gives x̃ exactly)."""
        b = base.astype(np.float32)
        return np.clip(np.rint(b + np.float32(tau) * (sample.astype(np.float32) - b)), 0, 255).astype(np.uint8)

    def reconstruct(self, data: bytes, tau: float = 1.0, sampler: str = "ddim", steps: int = 10, seed: int = 0,
                    progress=None, noise_scale: float | None = None) -> np.ndarray:
        """The 8-bit reconstruction of a .dpx at τ. τ = 0 never samples and equals the plain decoder."""
        tau = check_tau(tau)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        noise_scale = self.noise_scale(noise_scale)
        if tau == 0.0:
            y_hat, bs = self.latent(data)
            return self.codec.synthesize(y_hat, bs.height, bs.width)
        sample = self.cached_sample(data, sampler, steps, seed, noise_scale, progress)
        return self.blend(self.plain(data), sample, tau)

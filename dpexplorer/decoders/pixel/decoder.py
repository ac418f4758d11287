"""Decoder-side pixel-space diffusion with the τ knob, after Mari & Milani, "Image Coding for Perceptual
Enhancement with Diffusion Models" (2024), and Yang & Mandt, "Lossy Image Compression with Conditional
Diffusion Models" (CDC, NeurIPS 2023, arXiv:2209.06950).

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

Caching: ŷ and the plain decode come from the stream; the padded base image is cached per bitstream and
the 8-bit sample x̃ per (bitstream, sampler, steps, seed, noise scale), in LRUs bounded in bytes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from dpexplorer.cache import LRU
from dpexplorer.codec.codec import Codec, thread_invariant
from dpexplorer.codec.tiling import CELL
from dpexplorer.decoders.base import DecodeOptions
from dpexplorer.decoders.denoising import DenoisingDecoder
from dpexplorer.decoders.pixel.denoiser import PixelDenoiser, check_noise_scale
from dpexplorer.decoders.schedulers import cumulative_alphas, run_sampler
from dpexplorer.decoders.stream import Stream
from dpexplorer.decoders.synthesis import InterpolatedSynthesis
from dpexplorer.decoders.taumap import blend


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


class PixelDecoder(DenoisingDecoder):
    key = "pixel"
    label = "Pixel diffusion + τ blend"
    description = ("A diffusion model in pixel space (at ¼ resolution by space-to-depth) samples the detail that the "
                   "perceptual synthesis g_s(ŷ; θ₁) still lacks, given ŷ and that image; τ blends the codec's decode "
                   "x̂₀ and the sample x̃ (x̂ = x̂₀ + τ·(x̃ − x̂₀)). Sampler and steps change the sample.")
    denoiser_class = PixelDenoiser
    options = frozenset({"sampler", "steps", "seed", "noise_scale"})
    # DDPM draws fresh noise at every step, which the shipped denoisers (trained to refine, sampled at a
    # noise scale of 0.25) do not undo: on Kodak q1–q3 DDPM 100 gave 21.4 / 23.5 / 23.3 dB at LPIPS
    # 0.67 / 0.54 / 0.59, below the codec decoder on both (27.4 / 28.9 / 30.1 dB, 0.38 / 0.28 / 0.20), and
    # DDPM 10 and 30 were as bad on Kodak crops (docs/log/2026-12-07-effort-and-samplers.md). Euler was never
    # measured. Offered: what measured above the codec decoder.
    samplers = ("ddim", "dpmsolver++")
    # The first step alone (DDIM 1) is trained as a refiner of θ₁'s image (`first_step_share`,
    # docs/pixel-decoder.md): it keeps more PSNR than θ₁ at lower LPIPS on Kodak at every quality and on
    # val_photos at q1 and q2; more steps sample texture of their own at a lower PSNR.
    default_steps = 1
    samplers_withheld_because = ("DDPM measured worse than the codec decoder on both PSNR and LPIPS with these "
                                 "weights; Euler was never measured")
    name = "pixel diffusion"
    marker = "D"
    colour = "#d62728"

    def __init__(self, codec: Codec, denoiser: PixelDenoiser, *, tiling: PixelTiling = PixelTiling(),
                 cache_bytes: int = 256 << 20, synthesis: InterpolatedSynthesis | None = None):
        if tiling.tile % denoiser.multiple or tiling.overlap % CELL or tiling.tile % CELL:
            raise ValueError(f"tile must be a multiple of {max(denoiser.multiple, CELL)} and overlap of {CELL}")
        if (denoiser.cfg["base"] == "synthesis") != (synthesis is not None):
            raise ValueError(f"a denoiser with base {denoiser.cfg['base']!r} needs "
                             f"{'the perceptual synthesis' if synthesis is None else 'no synthesis'}")
        super().__init__(codec)
        self.denoiser = denoiser.eval().requires_grad_(False)
        self.tiling = tiling
        # the base image's synthesis transform: θ₁ (weights blended once) or the codec's own g_s
        self._base_g_s = synthesis.at(1.0) if synthesis is not None else None
        self._bases = LRU(cache_bytes // 4, weight=lambda a: a.nbytes)
        self._samples = LRU(cache_bytes, weight=lambda a: a.nbytes)
        self._lock = threading.RLock()

    # ---- what the receiver has -------------------------------------------------------------------
    def base(self, stream: Stream | bytes) -> np.ndarray:
        """The base image x_b as 8-bit pixels on the whole padded grid (what the denoiser is conditioned on)."""
        stream = self.open(stream)
        y_hat = stream.y_hat
        with self._lock:
            return self._bases.get_or(stream.content_sha256, lambda: self.codec.synthesize(
                y_hat, *(CELL * s for s in y_hat.shape[-2:]), g_s=self._base_g_s))

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
    def sample(self, stream: Stream | bytes, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
        """One draw x̃ (8-bit, H×W×3) for a bitstream."""
        stream = self.open(stream)
        noise_scale = self.noise_scale(options.noise_scale)
        y_hat = stream.y_hat
        x_base = torch.from_numpy(self.base(stream)).permute(2, 0, 1)[None].float().div(255.0)
        predict, prediction_type = (lambda r_t, t: self._predict(r_t, t, x_base, y_hat)), self.denoiser.prediction_type
        if prediction_type == "epsilon":
            predict, prediction_type = self._clean_from_noise(predict, x_base), "sample"
        r = run_sampler(predict, x_base.shape, options.sampler, int(options.steps), seed=int(options.seed),
                        prediction_type=prediction_type, noise_scale=noise_scale, progress=options.progress)
        x = x_base + self.denoiser.residual_scale * r
        return x[0, :, :stream.height, :stream.width].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).contiguous().numpy()

    def cached_sample(self, stream: Stream | bytes, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
        """x̃ of this stream and sampler setting, drawn once."""
        stream = self.open(stream)
        key = (stream.content_sha256, options.sampler, int(options.steps), int(options.seed),
               self.noise_scale(options.noise_scale))
        with self._lock:
            return self._samples.get_or(key, lambda: self.sample(stream, options))

    # ---- τ: x̂_τ = x̂₀ + τ·(x̃ − x̂₀), one blend ------------------------------------------------------------
    def _decode(self, stream: Stream, tau: float, options: DecodeOptions) -> np.ndarray:
        return blend(stream.plain(), self.cached_sample(stream, options), tau)

"""Encoder effort: fewer bits for the same decoder, by refining the latents of one image before coding them.

The analysis transform g_a is amortised: one network guesses y for every image, so for any single image a
better (y, z) exists under the very same decoder and entropy models. Yang, Bamler & Mandt, "Improving
Inference for Neural Image Compression" (NeurIPS 2020) find it by gradient descent on the rate–distortion
loss the codec was trained on, bits + λ·255²·MSE, with Stochastic Gumbel Annealing (SGA): each latent is
rounded down or up at random, the closer integer being likelier, and the temperature of that choice falls
over the run so that the last iterations see (almost) the hard rounding the coder will apply. The result is
coded exactly as `Codec.encode` codes g_a's output: the bitstream format and every decoder are unchanged.

Cost: one forward and backward pass of g_s and the hyperprior per iteration at full size (docs/log has the
seconds and the bits saved per N). `Codec.encode(image, effort=N)` runs it; N = 0 is the plain encoder.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F

from dpexplorer.codec.config import PAD_MULTIPLE
from dpexplorer.codec.hyperprior import hyper_analysis, hyper_likelihoods, latent_likelihoods, scales_and_means
from dpexplorer.codec.precision import fast_autocast

# Refinement runs untiled (backward through g_s at full size): peak RSS 1.15 GB at 0.26 MP and 2.0 GB at
# 1.05 MP (q3, one thread; 0.94 GB without effort), so about 3.5 GB here. Larger images are refused with
# a clear message rather than swapping.
MAX_EFFORT_PIXELS = 2_500_000
# A bound on one request's time: 2000 iterations are about 12 minutes at 768×512 on one core with AMX (50 without).
MAX_EFFORT = 2000
# The setting the README reports and the app's "smaller file (slow)" uses, and what it measured at q2 on
# every image: Kodak 12.4 %, val_photos 17.0 % on average (docs/log/2026-12-07-bf16-on-amx.md).
DOCUMENTED_EFFORT = 400
DOCUMENTED_GAIN = "about 12–17 % fewer bits at the same PSNR"
# The time estimate's calibration runs (`estimate_seconds`): one measured while the app's first encode ran
# beside it said 10 min for a photo that takes under 2.
TIMING_REPEATS = 3


@dataclass(frozen=True)
class EffortSchedule:
    """Adam's learning rate and the SGA temperature, annealed exponentially from `tau_start` to `tau_end`
    over the run. The rate was chosen on train_photos crops (0.005, 0.01, 0.02 tried;
    docs/log/2026-12-07-effort-and-samplers.md); the temperatures are those of the measurement that
    motivated this mode (on Kodak crops) and were not tuned."""

    lr: float = 1e-2
    tau_start: float = 0.5
    tau_end: float = 0.05
    # g_s's passes in channels-last and, where the CPU has AMX tiles, under bf16 autocast (codec/precision.py):
    # about 4× faster per iteration. Only the search runs this way; the refined latents are coded and decoded
    # exactly as before, and the bits saved match the fp32 search's on the same images
    # (docs/log/2026-12-07-bf16-on-amx.md). False: the fp32 search.
    fast_synthesis: bool = True

    def temperature(self, step: int, iterations: int) -> float:
        if iterations <= 1:
            return self.tau_end
        return self.tau_start * (self.tau_end / self.tau_start) ** (step / (iterations - 1))


def sga_round(v: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A soft, random rounding of `v` to floor(v) or ceil(v) (Yang et al.'s SGA): the logit of each side is
    −atanh(distance)/τ, sampled with the Gumbel-softmax at temperature τ. Differentiable in `v`; as τ → 0 it
    becomes round(v)."""
    floor = torch.floor(v)
    frac = v - floor  # the distance to floor; 1 − frac to ceil
    eps = 1e-5
    logits = torch.stack((-torch.atanh(frac.clamp(0, 1 - eps)), -torch.atanh((1 - frac).clamp(0, 1 - eps))), -1)
    u = torch.rand(logits.shape, generator=generator, dtype=v.dtype).clamp_(1e-10, 1 - 1e-10)
    gumbel = -torch.log(-torch.log(u))
    up = torch.softmax((logits / tau + gumbel) / tau, dim=-1)[..., 1]
    return floor + up


@lru_cache(maxsize=8)
def _channels_last_synthesis(model) -> torch.nn.Module:
    """A channels-last copy of g_s for the search; the model itself keeps its layout for the decoders."""
    return copy.deepcopy(model.g_s).to(memory_format=torch.channels_last)


def synthesize(model, y_tilde: torch.Tensor, *, fast: bool) -> torch.Tensor:
    """g_s(ỹ) in fp32, computed the fast way (`EffortSchedule.fast_synthesis`) or the plain one."""
    if not fast:
        return model.g_s(y_tilde)
    with fast_autocast(y_tilde.device):
        return _channels_last_synthesis(model)(y_tilde.contiguous(memory_format=torch.channels_last)).float()


def rate_distortion(model, x: torch.Tensor, y_tilde: torch.Tensor, z_tilde: torch.Tensor, *,
                    scales: torch.Tensor, means: torch.Tensor | None, lmbda: float,
                    fast_synthesis: bool) -> tuple[torch.Tensor, ...]:
    """(loss, bits per pixel, MSE on the 0..1 scale) of soft-rounded latents against the image `x` (its
    unpadded size: padding is never shown, so it costs nothing); `fast_synthesis` as the schedule's, which
    the caller passes (no default of its own to disagree with `EffortSchedule`'s)."""
    h, w = x.shape[-2:]
    x_tilde = synthesize(model, y_tilde, fast=fast_synthesis)[..., :h, :w]
    bits = -(torch.log2(latent_likelihoods(model, y_tilde, scales, means)).sum()
             + torch.log2(hyper_likelihoods(model, z_tilde)).sum())
    bpp = bits / (h * w)
    mse = F.mse_loss(x_tilde, x)
    return bpp + lmbda * 255**2 * mse, bpp, mse


def refine_latents(model, x: torch.Tensor, y: torch.Tensor, *, iterations: int, lmbda: float,
                   schedule: EffortSchedule = EffortSchedule(), seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, z) refined for `iterations` SGA steps from g_a's y and h_a(y), for the image `x` (1×3×H×W, 0..1,
    unpadded; y is the padded image's latent). The model's weights are not touched."""
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()
        y = y.clone().requires_grad_(True)
        z = hyper_analysis(model, y).detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([y, z], lr=schedule.lr)
        medians = model.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
        generator = torch.Generator().manual_seed(seed)  # the same image and effort give the same file
        for step in range(iterations):
            tau = schedule.temperature(step, iterations)
            z_tilde = sga_round(z - medians, tau, generator) + medians
            scales, means = scales_and_means(model, z_tilde)
            y_tilde = sga_round(y if means is None else y - means, tau, generator)
            y_tilde = y_tilde if means is None else y_tilde + means
            loss, _, _ = rate_distortion(model, x, y_tilde, z_tilde, scales=scales, means=means, lmbda=lmbda,
                                         fast_synthesis=schedule.fast_synthesis)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress(step + 1, iterations)
    return y.detach(), z.detach()


@lru_cache(maxsize=8)
def _seconds_per_megapixel_iteration(model) -> float:
    """Measured once per model and process on a 256×256 image: a warm-up iteration, then the fastest of
    TIMING_REPEATS runs of two iterations. The fastest, because anything else running (an encode in another
    request, a page loading) only ever slows a run down, and the first figure is kept for the process."""
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model.g_a(x)
    refine_latents(model, x, y, iterations=1, lmbda=0.01)
    runs = []
    for _ in range(TIMING_REPEATS):
        t0 = time.perf_counter()
        refine_latents(model, x, y, iterations=2, lmbda=0.01)
        runs.append(time.perf_counter() - t0)
    return min(runs) / 2 / (256 * 256 / 1e6)


def estimate_seconds(model, height: int, width: int, iterations: int) -> float:
    """About how long `iterations` of refinement take for an image of this size on this machine (measured
    on a small image the first time it is asked, then scaled by the padded pixel count)."""
    if iterations <= 0:
        return 0.0
    padded = math.ceil(height / PAD_MULTIPLE) * PAD_MULTIPLE * math.ceil(width / PAD_MULTIPLE) * PAD_MULTIPLE
    return _seconds_per_megapixel_iteration(model) * padded / 1e6 * iterations

"""Noise schedule and samplers, all from diffusers: small state machines (`set_timesteps`, `step`)
that one sampling loop (`run_sampler`) drives without knowing which one it got. Shared by the latent
and the pixel-space decoders; only the prediction type (what the network outputs) differs."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

TRAIN_TIMESTEPS = 1000
MAX_STEPS = TRAIN_TIMESTEPS
PREDICTION_TYPES = ("sample", "epsilon")  # x₀ (CDC) or the noise ε (DDPM; Mari & Milani 2024)
_COMMON = dict(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing")

SAMPLERS = {
    "ddim": ("DDIM (deterministic)", lambda **kw: DDIMScheduler(**_COMMON, **kw, clip_sample=False,
                                                                 set_alpha_to_one=False)),
    "ddpm": ("DDPM (stochastic)", lambda **kw: DDPMScheduler(**_COMMON, **kw, clip_sample=False)),
    "dpmsolver++": ("DPM-Solver++ (2nd order)", lambda **kw: DPMSolverMultistepScheduler(
        **_COMMON, **kw, algorithm_type="dpmsolver++", solver_order=2)),
    "euler": ("Euler", lambda **kw: EulerDiscreteScheduler(**_COMMON, **kw)),
}


def _check_prediction(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction type {prediction_type!r}; choose one of {', '.join(PREDICTION_TYPES)}")
    return prediction_type


def make_scheduler(name: str, prediction_type: str = "sample"):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name][1](prediction_type=_check_prediction(prediction_type))


def training_scheduler(prediction_type: str = "sample") -> DDPMScheduler:
    """The forward (noising) process used in training; shares the schedule of every sampler."""
    return DDPMScheduler(**_COMMON, prediction_type=_check_prediction(prediction_type), clip_sample=False)


@lru_cache(maxsize=1)
def cumulative_alphas() -> torch.Tensor:
    """ᾱ_t of the shared schedule, t = 0 … TRAIN_TIMESTEPS − 1."""
    return training_scheduler().alphas_cumprod


def run_sampler(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape, sampler: str = "ddim",
                steps: int = 10, *, seed: int = 0, prediction_type: str = "sample", noise_scale: float = 1.0,
                progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """The one sampling loop: `model(x_t, t)` → the scheduler's prediction type, from noise of `shape`.

    `noise_scale` multiplies the initial noise (CDC's option: < 1 trades realism for fidelity);
    1 is the plain sampler. `progress(i, n)` is called after each step."""
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be 1..{MAX_STEPS}, got {steps}")
    scheduler = make_scheduler(sampler, prediction_type)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(int(seed))
    x = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
    if noise_scale != 1.0:
        x = x * float(noise_scale)
    for i, t in enumerate(scheduler.timesteps):
        pred = model(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(pred, t, x, generator=generator).prev_sample
        if progress:
            progress(i + 1, len(scheduler.timesteps))
    return x

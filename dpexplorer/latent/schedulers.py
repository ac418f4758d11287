"""Noise schedule and samplers, all from diffusers: small state machines (`set_timesteps`, `step`)
that the sampling loop drives without knowing which one it got."""

from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

TRAIN_TIMESTEPS = 1000
_COMMON = dict(num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule="squaredcos_cap_v2",
               prediction_type="sample", timestep_spacing="trailing")

SAMPLERS = {
    "ddim": ("DDIM (deterministic)", lambda: DDIMScheduler(**_COMMON, clip_sample=False, set_alpha_to_one=False)),
    "ddpm": ("DDPM (stochastic)", lambda: DDPMScheduler(**_COMMON, clip_sample=False)),
    "dpmsolver++": ("DPM-Solver++ (2nd order)", lambda: DPMSolverMultistepScheduler(
        **_COMMON, algorithm_type="dpmsolver++", solver_order=2)),
    "euler": ("Euler", lambda: EulerDiscreteScheduler(**_COMMON)),
}


def make_scheduler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name][1]()


def training_scheduler() -> DDPMScheduler:
    """The forward (noising) process used in training; shares the schedule of every sampler."""
    return DDPMScheduler(**_COMMON, clip_sample=False)

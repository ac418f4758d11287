"""A τ-controlled synthesis transform by network interpolation.

The perceptual endpoint gets its own synthesis g_s with weights θ₁ (a copy of the codec's g_s
fine-tuned on ŷ with a GAN; see `dpexplorer.training.synthesis`), and τ blends the *weights*:

    θ_τ = (1 − τ)·θ₀ + τ·θ₁

as in "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks" (network interpolation
between a PSNR-oriented and a GAN-fine-tuned generator). The encoder and the entropy model are
untouched, so the bitstream is the codec's; only the receiver's g_s moves along τ ("High-Fidelity
Generative Image Compression" trains such a GAN decoder from scratch, here it starts from θ₀).

τ = 0 runs g_s0 itself (no blend), so it is bit-identical to the plain decoder.
"""

from __future__ import annotations

import copy

import torch
from torch.func import functional_call

from dpexplorer.decoders.tau import check_tau


class InterpolatedSynthesis:
    """`g(y, tau)`: g_s0 with parameters θ_τ; buffers (e.g. GDN's reparametrisation pedestals) from θ₀."""

    def __init__(self, g_s0: torch.nn.Module, theta1_state: dict[str, torch.Tensor]):
        self.g_s0 = g_s0
        self.theta0 = {k: p.detach() for k, p in g_s0.named_parameters()}
        missing = self.theta0.keys() - theta1_state.keys()
        if missing:
            raise ValueError(f"theta1 lacks parameters {sorted(missing)[:3]}…")
        self.theta1 = {k: theta1_state[k].detach().to(p) for k, p in self.theta0.items()}
        self.buffers = {k: b for k, b in g_s0.named_buffers()}

    def params(self, tau: float) -> dict[str, torch.Tensor]:
        tau = check_tau(tau)
        # torch.lerp is exact at the ends: τ = 1 gives θ₁ bit for bit.
        return {k: torch.lerp(p, self.theta1[k], tau) for k, p in self.theta0.items()}

    def at(self, tau: float):
        """The synthesis transform y ↦ g_s(y; θ_τ), weights blended once (tiles then reuse them)."""
        if check_tau(tau) == 0.0:
            return self.g_s0
        weights = {**self.params(tau), **self.buffers}
        return lambda y: functional_call(self.g_s0, weights, (y,))

    def endpoint(self) -> torch.nn.Module:
        """A frozen copy of g_s0 holding θ₁ (what a training runs through, e.g. the latent residual's)."""
        g_s1 = copy.deepcopy(self.g_s0)
        g_s1.load_state_dict({**self.theta1, **self.buffers})
        return g_s1.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, y: torch.Tensor, tau: float) -> torch.Tensor:
        return self.at(tau)(y)

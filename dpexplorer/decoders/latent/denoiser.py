"""The latent diffusion network: works at the codec's latent resolution (1/16 of the image), so a
sampling step costs a small fraction of one g_s pass.

It denoises the *residual* r = y' − ŷ between the auxiliary encoder's perceptual latent y' and the
decoded latent ŷ, conditioned on ŷ, and predicts the clean residual directly (x₀-/"sample"
prediction, which the CDC paper found to need far fewer steps than ε-prediction). Residuals are
divided by a per-channel scale measured on the training data, so the diffusion runs at unit variance.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dpexplorer.decoders.layers import ResBlock, timestep_embedding


def check_strength(strength: float) -> float:
    """The residual's strength κ (ỹ_τ = ŷ + τ·κ·r̃), checked: in (0, 1]."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"residual strength must be in (0, 1], got {strength}")
    return float(strength)


class LatentDenoiser(nn.Module):
    def __init__(self, latent_channels: int = 192, width: int = 128, blocks: int = 6, strength: float = 1.0):
        super().__init__()
        self.latent_channels, self.width, self.blocks = latent_channels, width, blocks
        # `strength`: the share κ of the sampled residual these weights decode with, chosen at export on
        # training photos (the τ = 1 latent is ŷ + κ·r̃; τ = 0 is untouched)
        self.strength = check_strength(strength)
        emb_dim = 4 * width
        self.time_mlp = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(2 * latent_channels, width, 3, padding=1)
        self.down = nn.Conv2d(width, width, 3, stride=2, padding=1)  # doubles the receptive field
        self.body = nn.ModuleList(ResBlock(width, emb_dim) for _ in range(blocks))
        self.up = nn.ConvTranspose2d(width, width, 4, stride=2, padding=1)
        self.out = nn.Conv2d(2 * width, latent_channels, 3, padding=1)
        # Per-channel scale of the residual y' − ŷ (set from training data) and of ŷ (conditioning).
        self.register_buffer("residual_scale", torch.ones(latent_channels))
        self.register_buffer("cond_scale", torch.ones(latent_channels))

    def forward(self, r_t: torch.Tensor, t: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        """Normalised noisy residual r_t, timesteps t (N,), decoded latent ŷ → predicted clean residual."""
        h, w = r_t.shape[-2:]
        emb = self.time_mlp(timestep_embedding(t.expand(r_t.shape[0]), self.width))
        cond = y_hat / self.cond_scale[None, :, None, None]
        x0 = self.inp(torch.cat([r_t, cond], dim=1))
        x = self.down(F.silu(x0))
        for block in self.body:
            x = block(x, emb)
        x = self.up(x)[..., :h, :w]
        return self.out(torch.cat([F.silu(x), x0], dim=1))

    def config(self) -> dict:
        return {"latent_channels": self.latent_channels, "width": self.width, "blocks": self.blocks,
                "strength": self.strength}

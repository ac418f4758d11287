"""The pixel-space denoiser: a U-Net on a space-to-depth image, conditioned on what the receiver has.

Input at each step: the noisy residual r_t (the detail the base image lacks, r = x − x_base, divided by a
scale measured on the training data) and x_base as 8-bit pixels (the plain decode x̂₀ = g_s(ŷ), or the
perceptual synthesis g_s(ŷ; θ₁): `BASES`), concatenated; ŷ
itself enters at the U-Net level whose stride matches its 1/16 grid. With `space_to_depth` = 4 the
image becomes 4×4 = 16 times as many channels at ¼ resolution, so every convolution runs on 1/16 of
the positions ("pixel unshuffle", as in ESPCN / Real-ESRGAN); the output is shuffled back. The paper
configurations (`MARI_MILANI`, `CDC`) are the same class at full resolution, for the bench.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dpexplorer.decoders.layers import ResBlock, timestep_embedding
from dpexplorer.decoders.schedulers import PREDICTION_TYPES

# Ours (shipped): 3 levels at ¼, ⅛ and 1/16 of the image (the last one on ŷ's grid), one res-block each way,
# no attention: 0.65 M parameters, 6.9 GFLOP per step at 768×512 (docs/pixel-decoder.md).
OURS = dict(space_to_depth=4, width=32, mults=(1, 2, 2), blocks=1, attention=())
# Mari & Milani, "Image Coding for Perceptual Enhancement with Diffusion Models" (2024); their README:
# --num_channels 128 --channel_mult 1,2,2,3,3 --num_res_blocks 3, attention at 16 and 8 px of a 128-px
# crop = the last two levels; full resolution.
MARI_MILANI = dict(space_to_depth=1, width=128, mults=(1, 2, 2, 3, 3), blocks=3, attention=(3, 4))
# CDC (Yang & Mandt): dim 64, dim_mults 1..6, 2 res-blocks per level, full resolution (their linear attention
# at every level is left out here, so its timing is a lower bound).
CDC = dict(space_to_depth=1, width=64, mults=(1, 2, 3, 4, 5, 6), blocks=2, attention=())

# What the receiver-side image x_base, which the denoiser is conditioned on and samples a residual over, is:
# "plain": the codec's g_s(ŷ); "synthesis": the perceptual synthesis g_s(ŷ; θ₁) (the synthesis family's τ = 1 end),
# so the diffusion starts from a decode that already has texture and samples what it still lacks.
BASES = ("plain", "synthesis")


def check_noise_scale(scale: float) -> float:
    """CDC's initial-noise scale (x_T = scale·σ·z), checked: in (0, 2]."""
    if not 0.0 < scale <= 2.0:
        raise ValueError(f"noise scale must be in (0, 2], got {scale}")
    return float(scale)


class SelfAttention(nn.Module):
    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(8, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        self.heads = heads

    def forward(self, x, emb=None):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # n, heads, hw, c/heads
        return x + self.out(a.transpose(-1, -2).reshape(n, c, h, w))


class Level(nn.Module):
    """`blocks` FiLM res-blocks at one resolution (a 1×1 convolution first where the width changes)."""

    def __init__(self, ch_in: int, ch: int, blocks: int, emb_dim: int, *, attention: bool):
        super().__init__()
        self.proj = nn.Conv2d(ch_in, ch, 1) if ch_in != ch else nn.Identity()
        self.blocks = nn.ModuleList(ResBlock(ch, emb_dim) for _ in range(blocks))
        self.attn = SelfAttention(ch) if attention else None

    def forward(self, x, emb):
        x = self.proj(x)
        for block in self.blocks:
            x = block(x, emb)
        return self.attn(x) if self.attn is not None else x


class PixelDenoiser(nn.Module):
    def __init__(self, latent_channels: int = 192, space_to_depth: int = 4, width: int = 32,
                 mults: tuple[int, ...] = (1, 2, 2), *, blocks: int = 1, attention: tuple[int, ...] = (),
                 prediction_type: str = "sample", base: str = "plain", noise_scale: float = 1.0):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction type {prediction_type!r}; choose one of {', '.join(PREDICTION_TYPES)}")
        if base not in BASES:
            raise ValueError(f"unknown base {base!r}; choose one of {', '.join(BASES)}")
        check_noise_scale(noise_scale)
        # `base`: the image the residual is sampled over (the pipeline computes it; see BASES).
        # `noise_scale`: the sampler's initial-noise scale (CDC's option) these weights decode with unless
        # told otherwise, chosen at export on training photos.
        self.cfg = dict(latent_channels=latent_channels, space_to_depth=space_to_depth, width=width,
                        mults=tuple(mults), blocks=blocks, attention=tuple(attention), prediction_type=prediction_type,
                        base=base, noise_scale=noise_scale)
        self.prediction_type = prediction_type
        s, chs = space_to_depth, [width * m for m in mults]
        self.multiple = s * 2 ** (len(mults) - 1)  # image sides must be multiples of this
        emb_dim = 4 * width
        self.time_mlp = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(6 * s * s, chs[0], 3, padding=1)
        self.down = nn.ModuleList(Level(chs[max(i - 1, 0)], c, blocks, emb_dim, attention=i in attention) for i, c in enumerate(chs))
        self.downsample = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1) for c in chs[:-1])
        self.cond = nn.Conv2d(latent_channels, chs[-1], 1)  # ŷ, at the deepest level
        self.mid = Level(chs[-1], chs[-1], 1, emb_dim, attention=False)
        # up level i sees the level below's output (or the middle's) concatenated with level i's skip
        self.up = nn.ModuleList(Level(c + chs[min(i + 1, len(chs) - 1)], c, blocks, emb_dim, attention=i in attention)
                                for i, c in enumerate(chs))
        self.out_norm = nn.GroupNorm(8, chs[0])
        self.out = nn.Conv2d(chs[0], 3 * s * s, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # Scale of the residual x − g_s(ŷ) in [0, 1] units (set from training data), ŷ's scale (conditioning).
        self.register_buffer("residual_scale", torch.ones(()))
        self.register_buffer("cond_scale", torch.ones(latent_channels))

    def forward(self, r_t: torch.Tensor, t: torch.Tensor, x_base: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
        """Normalised noisy residual r_t (N×3×H×W), timesteps t, the base image x_base in [0, 1] (N×3×H×W) and ŷ
        (N×M×H/16×W/16) → the prediction (x₀ or ε, `prediction_type`), N×3×H×W. H, W: multiples of `multiple`."""
        s = self.cfg["space_to_depth"]
        emb = self.time_mlp(timestep_embedding(t.expand(r_t.shape[0]), self.cfg["width"]))
        x = self.inp(F.pixel_unshuffle(torch.cat([r_t, 2 * x_base - 1], 1), s))
        skips = []
        for i, level in enumerate(self.down):
            x = level(x, emb)
            skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
        cond = self.cond(y_hat / self.cond_scale[None, :, None, None])
        if cond.shape[-2:] != x.shape[-2:]:  # the paper configurations' deepest level is not on ŷ's grid
            cond = F.interpolate(cond, size=x.shape[-2:], mode="area" if cond.shape[-1] > x.shape[-1] else "nearest")
        x = self.mid(x + cond, emb)
        for i in reversed(range(len(self.up))):
            if i + 1 < len(self.up):
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.up[i](torch.cat([x, skips[i]], 1), emb)
        return F.pixel_shuffle(self.out(F.silu(self.out_norm(x))), s)

    def config(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.cfg.items()}

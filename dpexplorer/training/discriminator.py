"""The adversary of the perceptual trainings (the latent module's auxiliary encoder, the perceptual
synthesis): one PatchGAN for both."""

from __future__ import annotations

import torch.nn as nn


class PatchDiscriminator(nn.Module):
    """A small spectral-normalised PatchGAN (HiFiC-style), trained from scratch."""

    def __init__(self, ch: int = 64):
        super().__init__()
        sn = nn.utils.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, ch, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(ch, 2 * ch, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * ch, 4 * ch, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(4 * ch, 1, 3, 1, 1)))

    def forward(self, x):
        return self.net(x * 2 - 1)

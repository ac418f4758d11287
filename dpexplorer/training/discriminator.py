"""The adversary of the perceptual trainings (the latent module's auxiliary encoder, the perceptual
synthesis, the pixel decoder's optional term): one PatchGAN, one non-saturating GAN loss for all."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def discriminator_step(disc: nn.Module, opt_d: torch.optim.Optimizer, real: torch.Tensor,
                       fake: torch.Tensor) -> torch.Tensor:
    """One update of D on real vs (detached) fake images, non-saturating loss; the loss, detached."""
    opt_d.zero_grad(set_to_none=True)
    d_loss = F.softplus(-disc(real)).mean() + F.softplus(disc(fake.detach())).mean()
    d_loss.backward()
    opt_d.step()
    return d_loss.detach()


def generator_loss(disc: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The generator's non-saturating loss: −log D(fake), averaged over D's patches."""
    return F.softplus(-disc(fake)).mean()

"""The hyperprior's rules, shared by the codec, its training and the latent module's training.

Ballé et al., "Variational image compression with a scale hyperprior"; Minnen et al., "Joint
autoregressive and hierarchical priors for learned image compression", its mean-scale variant.
"""

from __future__ import annotations

import torch
from compressai.models import MeanScaleHyperprior
from compressai.ops import quantize_ste


def is_mean_scale(model) -> bool:
    """mbt2018-mean predicts a mean and a scale per latent element; bmshj2018-hyperprior a scale only."""
    return isinstance(model, MeanScaleHyperprior)


def hyper_analysis(model, y: torch.Tensor) -> torch.Tensor:
    """z = h_a(y); the scale-only hyperprior looks at |y|, as in CompressAI's models."""
    return model.h_a(y if is_mean_scale(model) else torch.abs(y))


def scales_and_means(model, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """h_s(ẑ) split into the Gaussian's scales and means (None: y is coded around 0)."""
    params = model.h_s(z_hat)
    if is_mean_scale(model):
        return params.chunk(2, 1)
    return params, None


def quantize_around_means(y: torch.Tensor, means: torch.Tensor | None) -> torch.Tensor:
    """ŷ = round(y − μ) + μ, the symbols the entropy coder writes (what `decompress` gives back), with a
    straight-through gradient so that training can see it (CompressAI's `quantize_ste`)."""
    if means is None:
        return quantize_ste(y)
    return quantize_ste(y - means) + means


def latent_likelihoods(model, y_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None) -> torch.Tensor:
    """The frozen Gaussian conditional's likelihood of the symbols ŷ, differentiable in ŷ.

    CompressAI's public `gaussian_conditional(y, …, training=False)` rounds y again without a
    straight-through gradient (no gradient reaches y), so this calls its likelihood directly, the one
    place that does besides `hyper_likelihoods` (tests/unit/test_hyperprior.py pins both to the public
    forward's values)."""
    gc = model.gaussian_conditional
    likelihood = gc._likelihood(y_hat, scales, means)
    return gc.likelihood_lower_bound(likelihood) if gc.use_likelihood_bound else likelihood


def hyper_likelihoods(model, z_hat: torch.Tensor) -> torch.Tensor:
    """The entropy bottleneck's likelihood of ẑ, differentiable in ẑ (its `forward` quantizes again; this is
    the same density, laid out per channel as CompressAI's `EntropyBottleneck.forward` does)."""
    eb = model.entropy_bottleneck
    c = z_hat.shape[1]
    values = z_hat.transpose(0, 1).reshape(c, 1, -1)
    likelihood, _, _ = eb._likelihood(values)
    return eb.likelihood_lower_bound(likelihood) if eb.use_likelihood_bound else likelihood

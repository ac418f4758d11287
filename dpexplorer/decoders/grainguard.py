"""The receiver's grain guard: where θ₁'s texture would be grain, keep the codec decoder's smoothness.

The perceptual synthesis θ₁ invents texture wherever ŷ leaves it room, also over smooth bokeh and sky
inside detailed photos (the smooth-area grain, `metrics.image.smooth_area_grain`). The sender's τ hint
fixes that with the original at hand; a file without a hint (`--no-hint`, `--ignore-hint`) had uniform
τ. The guard is the receiver's own estimate from what it has: per latent position (a 16-px patch), a
small network reads the entropy model's view of the patch — the coded symbols |round(y − μ)| and the
hyperprior's log scales, which say how much the sender spent there and how uncertain the model was —
and the high-pass energies of x̂₀, x̂₁ and x̂₁ − x̂₀ (`decoders.texture.patch_energies`), and gives a weight
m ∈ (0, 1). The map, upsampled and smoothed (Gaussian, `SIGMA` px), multiplies τ in the τ-map path
(`decoders.base.resolve_tau`), as the hint's map does: x̂ = x̂₀ + τ·m·(x̂₁ − x̂₀) for the synthesis, the
family's own τ = 1 decode in place of x̂₁ for the others.

It was trained on train_photos only (`dpexplorer.training.guard`): LPIPS of the blended image plus a hinge
on the high-pass energy above 1.2× the original's over the original's smoother half of patches, then a
logit offset chosen on held-out training photos (docs/grain-guard.md).
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from dpexplorer.codec.hyperprior import scales_and_means
from dpexplorer.decoders.texture import patch_energies
from dpexplorer.errors import WeightsError

PATCH = 16  # px per latent position (the codec's stride), and the energies' patch
SIGMA = 8.0  # px, the smoothing of the upsampled map (no seams at patch edges; half the hint's 16)
SYMBOL_CLAMP = 4.0  # |symbol| above this says nothing more about texture
MIN_SCALE = 0.11  # the entropy model's lower bound on σ (CompressAI's GaussianConditional)
ENERGY_EPS = 0.1  # level², as GRAIN_EPS: the log of a flat patch's energy stays finite
HIDDEN = 32


class GuardNet(torch.nn.Module):
    """Features (1 × (2·M + 3) × h × w, M = the latent's channels) → m per latent position, in (0, 1).
    The features' mean and spread over the training photos are buffers, saved with the weights."""

    def __init__(self, channels: int, hidden: int = HIDDEN):
        super().__init__()
        inputs = 2 * channels + 3
        self.register_buffer("feature_mean", torch.zeros(1, inputs, 1, 1))
        self.register_buffer("feature_std", torch.ones(1, inputs, 1, 1))
        # added to the logit after training: how much texture to let through, chosen on held-out training
        # photos against grain targets (`training.guard.calibrate`)
        self.register_buffer("logit_offset", torch.zeros(1))
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(inputs, hidden, 1), torch.nn.ReLU(),
            torch.nn.Conv2d(hidden, hidden, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(hidden, 1, 3, padding=1))

    @classmethod
    def open(cls, channels: int, hidden: int = HIDDEN) -> "GuardNet":
        """A guard that starts at m ≈ 0.95 everywhere (uniform τ), so training starts from today's decode."""
        net = cls(channels, hidden)
        with torch.no_grad():
            net.body[-1].weight.zero_()
            net.body[-1].bias.fill_(3.0)
        return net

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body((features - self.feature_mean) / self.feature_std) + self.logit_offset)


def patch_grid(height: int, width: int) -> tuple[int, int]:
    return -(-height // PATCH), -(-width // PATCH)


@torch.inference_mode()
def entropy_view(codec, bitstream, y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|symbols| and log σ (each M × h × w on the padded latent grid) of a parsed bitstream and its ŷ:
    what the receiver's entropy model knew about each latent position."""
    m = codec.model
    z_hat = m.entropy_bottleneck.decompress([bitstream.strings[1]], bitstream.z_shape)
    scales, means = scales_and_means(m, z_hat)
    symbols = (y_hat - means).round() if means is not None else y_hat.round()
    return symbols[0].abs(), torch.log(scales[0].clamp_min(MIN_SCALE))


def guard_features(symbols: torch.Tensor, log_scales: torch.Tensor, plain: np.ndarray, full: np.ndarray) -> torch.Tensor:
    """The network's input for an H×W image: the latent's view cropped to the image's ⌈H/16⌉ × ⌈W/16⌉
    patches, then log energies of x̂₀, x̂₁ and x̂₁ − x̂₀ per patch."""
    gh, gw = patch_grid(*plain.shape[:2])

    def log_energy(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.log(patch_energies(img, patch=PATCH) + ENERGY_EPS)).float()

    residual = full.astype(np.float32) - plain.astype(np.float32)  # a constant offset leaves a high-pass as it is
    energies = torch.stack([log_energy(plain), log_energy(full), log_energy(residual)])
    latent = torch.cat([symbols.clamp(max=SYMBOL_CLAMP), log_scales])[:, :gh, :gw].float()
    return torch.cat([latent, energies])[None]


def upsample_map(weights: np.ndarray, height: int, width: int, sigma: float = SIGMA) -> np.ndarray:
    """Per-patch weights → an H×W float32 map in [0, 1]: each patch's value over its pixels, then a
    Gaussian (σ px, edges extended) so that the blend has no seams."""
    full = np.kron(weights.astype(np.float32), np.ones((PATCH, PATCH), np.float32))[:height, :width]
    return np.clip(gaussian_filter(full, sigma, mode="nearest", truncate=3.0), 0.0, 1.0)  # float32 throughout


@torch.inference_mode()
def guard_map(net: GuardNet, codec, bitstream, y_hat: torch.Tensor, plain: np.ndarray, full: np.ndarray) -> np.ndarray:
    """The guard's H×W τ weight for one bitstream, given its ŷ, x̂₀ (`plain`) and θ₁'s x̂₁ (`full`)."""
    weights = net(guard_features(*entropy_view(codec, bitstream, y_hat), plain, full))[0, 0].numpy()
    return upsample_map(weights, *plain.shape[:2])


_loaded: dict[tuple, GuardNet | None] = {}
_loaded_lock = threading.Lock()


def shipped_guard(codec) -> GuardNet | None:
    """The shipped guard of the codec's quality, or None where there is none for this codec (another
    quality, CompressAI's published weights). Weights trained through another θ₁ are refused."""
    from dpexplorer.hub.files import load_weights
    from dpexplorer.hub.loading import module_qualities
    from dpexplorer.hub.manifest import find_entry, weights_dir

    key = (codec.cfg.arch, codec.cfg.quality, codec.weights_sha256, str(weights_dir()))
    with _loaded_lock:
        if key not in _loaded:
            net = None
            if codec.cfg.quality in module_qualities("guard"):
                name, entry = find_entry("guard", codec.cfg.arch, codec.cfg.quality)
                if codec.fits(entry):
                    _, synthesis = find_entry("synthesis", codec.cfg.arch, codec.cfg.quality)
                    if entry["synthesis_sha256"] != synthesis["sha256"]:
                        raise WeightsError(f"{name} was trained through other perceptual synthesis weights")
                    net = GuardNet(entry["channels"])
                    net.load_state_dict(load_weights(entry))
                    net.eval().requires_grad_(False)
            _loaded[key] = net
        return _loaded[key]


def stream_guard_map(stream) -> np.ndarray | None:
    """The grain guard's map of a stream (computed once per stream), or None without a shipped guard."""
    net = shipped_guard(stream.codec)
    if net is None:
        return None

    def compute() -> np.ndarray:
        from dpexplorer.decoders.synthesis import SynthesisDecoder

        full = SynthesisDecoder.load(stream.quality, stream.codec.cfg.arch).full(stream)
        return guard_map(net, stream.codec, stream.bitstream, stream.y_hat, stream.plain(), full)

    return stream.memo("grain_guard", compute)


def unload() -> None:
    with _loaded_lock:
        _loaded.clear()

"""What the app does, without the UI: encode, decode with a chosen decoder family, measure.

Decoder families are entries of `FAMILIES`; each turns (bitstream, τ, sampler, steps, seed) into an
8-bit image. A new family (e.g. a pixel-space diffusion decoder) is one more entry; the app builds its
controls from this table. The app renders a τ sweep (11 frames) per setting, so a family caches its
expensive, τ-independent work (the latent decoder: one r̃ per bitstream, sampler, steps and seed) and a
frame costs one synthesis pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dpexplorer.decoders.schedulers import SAMPLERS
from dpexplorer.io.bitstream import Bitstream
from dpexplorer.io.images import load_image
from dpexplorer.metrics import image as metrics


@dataclass
class Encoded:
    data: bytes
    original: np.ndarray | None  # None when the user brought a .dpx (no reference to compare with)
    encode_s: float = 0.0
    header: Bitstream = field(init=False)
    # The codec decoder's image and its metrics never change for a bitstream: computed once.
    _base: np.ndarray | None = field(default=None, init=False, repr=False)
    _base_metrics: dict | None = field(default=None, init=False, repr=False)
    # The app's τ frames (scrub.py) per decoder setting, and same-size JPEG/WebP (compare.py).
    _frames: dict = field(default_factory=dict, init=False, repr=False)
    _baselines: dict = field(default_factory=dict, init=False, repr=False)
    _pngs: dict = field(default_factory=dict, init=False, repr=False)  # name → PNG the app wrote once
    _live: dict = field(default_factory=dict, init=False, repr=False)  # the app's last plotted points

    def __post_init__(self):
        self.header = Bitstream.from_bytes(self.data)

    @property
    def quality(self) -> int:
        return self.header.quality

    @property
    def bpp(self) -> float:
        return metrics.bpp(len(self.data), self.header.height, self.header.width)

    def summary(self) -> str:
        h = self.header
        text = f"{h.arch} q{h.quality} · {h.width}×{h.height} px · {len(self.data):,} bytes · {self.bpp:.4f} bpp"
        return text + (f" · encoded in {self.encode_s:.2f} s" if self.encode_s else "")


def encode(image, quality: int) -> Encoded:
    from dpexplorer.hub.loading import get_codec

    img = load_image(image)
    codec = get_codec(quality)
    t0 = time.perf_counter()
    data = codec.encode(img)
    return Encoded(data, img, time.perf_counter() - t0)


def open_bitstream(data: bytes) -> Encoded:
    from dpexplorer.decoders.registry import codec_for

    codec_for(data)  # checks the header, the weights and the checksum before anything is shown
    return Encoded(data, None)


# ---- decoder families --------------------------------------------------------------------------
@dataclass(frozen=True)
class DecoderFamily:
    key: str
    label: str
    description: str
    uses_sampler: bool
    qualities: Callable[[], list[int]]
    reconstruct: Callable[..., np.ndarray]  # (data, tau, sampler, steps, seed, progress) -> uint8 image


def _decoder(key: str):
    """The family's (qualities, reconstruct) pair, through `registry.reconstruct_file` (τ rules in one place)."""

    def reconstruct(data, tau, sampler, steps, seed, progress=None):
        from dpexplorer.decoders.registry import reconstruct_file

        return reconstruct_file(data, tau, sampler, steps, seed, progress=progress, decoder=key)

    def qualities():
        from dpexplorer.decoders.registry import DECODERS

        return DECODERS[key][0]()

    return qualities, reconstruct


# The first family is the app's default: the perceptual synthesis, which reaches the lower LPIPS at
# τ = 1 for less PSNR on Kodak and on photos outside it (docs/synthesis.md).
FAMILIES: dict[str, DecoderFamily] = {
    "synthesis": DecoderFamily(
        "synthesis", "Perceptual synthesis (GAN, network interpolation)",
        "A copy of the codec's synthesis transform fine-tuned on ŷ with LPIPS and a GAN loss; τ blends the "
        "weights, θ_τ = (1 − τ)·θ₀ + τ·θ₁. Deterministic: sampler, steps and seed do not apply.",
        False, *_decoder("synthesis")),
    "latent": DecoderFamily(
        "latent", "Latent diffusion + τ fusion",
        "A diffusion model at latent resolution samples a residual r̃ for ŷ; τ moves both the latent and "
        "the synthesis weights: x̂ = g_s(ŷ + τ·κ·r̃; θ_τ), θ₁ being the perceptual synthesis and κ the "
        "residual's strength stored with the weights.",
        True, *_decoder("latent")),
    "pixel": DecoderFamily(
        "pixel", "Pixel diffusion + τ blend",
        "A diffusion model in pixel space (at ¼ resolution by space-to-depth) samples the detail that the "
        "perceptual synthesis g_s(ŷ; θ₁) still lacks, given ŷ and that image; τ blends the codec's decode x̂₀ "
        "and the sample x̃ (x̂ = x̂₀ + τ·(x̃ − x̂₀)). Sampler and steps change the sample (paper 001).",
        True, *_decoder("pixel")),
}


def reconstruct_map(family: DecoderFamily, data: bytes, tau_map: np.ndarray, sampler: str, steps: int,
                    seed: int) -> np.ndarray:
    """The τ brush: decode with τ per pixel (see `decoders.registry.reconstruct_file`); a family outside
    the registry is blended in pixel space between its τ = 0 and τ = 1 decodes."""
    from dpexplorer.decoders.registry import DECODERS, decode_file, reconstruct_file
    from dpexplorer.decoders.taumap import blend, check_tau_map

    if family.key in DECODERS:
        return reconstruct_file(data, sampler=sampler, steps=steps, seed=seed, decoder=family.key,
                                tau_map=tau_map)
    h = Bitstream.from_bytes(data)
    tau_map = check_tau_map(tau_map, h.height, h.width)
    return blend(decode_file(data), family.reconstruct(data, 1.0, sampler, steps, seed), tau_map)


def base_reconstruction(enc: Encoded) -> np.ndarray:
    from dpexplorer.decoders.registry import decode_file

    if enc._base is None:
        enc._base = decode_file(enc.data)
    return enc._base


def base_metrics(enc: Encoded) -> dict[str, float]:
    if enc._base_metrics is None:
        enc._base_metrics = measure(enc.original, base_reconstruction(enc))
    return enc._base_metrics


def sampler_choices() -> list[tuple[str, str]]:
    return [(label, key) for key, (label, _) in SAMPLERS.items()]


# ---- measuring ---------------------------------------------------------------------------------
def measure(original: np.ndarray | None, recon: np.ndarray) -> dict[str, float]:
    if original is None:
        return {}
    return metrics.all_metrics(original, recon)


def example_images() -> list[tuple[str, Path]]:
    """Redistributable example photos, loaded at run time from installed packages (not Kodak)."""
    out = []
    try:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        for name, label in (("astronaut.png", "Astronaut (NASA, public domain)"),
                            ("coffee.png", "Coffee (Rachel Michetti, CC0)"),
                            ("chelsea.png", "Chelsea the cat (Stefan van der Walt, CC0)"),
                            ("rocket.jpg", "Rocket (NASA, public domain)")):
            if (data / name).is_file():
                out.append((label, data / name))
    except ImportError:
        pass
    try:
        import matplotlib

        hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if hopper.is_file():
            out.append(("Grace Hopper (US Navy, public domain)", hopper))
    except ImportError:
        pass
    return out

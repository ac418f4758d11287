"""What the app does, without the UI: encode, decode with a chosen decoder family, measure, plot.

Decoder families are entries of `FAMILIES`; each turns (bitstream, τ, sampler, steps, seed) into an
8-bit image. A new family (e.g. a pixel-space diffusion decoder) is one more entry; the app builds its
controls from this table. The app renders a τ sweep (11 frames) per setting, so a family caches its
expensive, τ-independent work (the latent decoder: one r̃ per bitstream, sampler, steps and seed) and a
frame costs one synthesis pass.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dpexplorer import metrics
from dpexplorer.decoders.schedulers import SAMPLERS
from dpexplorer.hub.manifest import data_home
from dpexplorer.io.bitstream import Bitstream
from dpexplorer.io.images import load_image

CURVES_PATH = data_home() / "assets" / "kodak_curves.json"


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
        "A diffusion model at latent resolution samples a perceptual latent from ŷ; τ blends it with ŷ "
        "(ỹ = ŷ + τ·(y′ − ŷ)) before the codec's own synthesis transform.",
        True, *_decoder("latent")),
    "pixel": DecoderFamily(
        "pixel", "Pixel diffusion + τ blend",
        "A diffusion model in pixel space (at ¼ resolution by space-to-depth) samples the detail the codec's "
        "decode x̂₀ lacks, given ŷ and x̂₀; τ blends the images (x̂ = x̂₀ + τ·(x̃ − x̂₀)). Sampler and steps "
        "change the sample (DDIM 10 vs DDPM 100: paper 001).",
        True, *_decoder("pixel")),
}


def reconstruct_map(family: DecoderFamily, data: bytes, tau_map: np.ndarray, sampler: str, steps: int,
                    seed: int) -> np.ndarray:
    """The τ brush: decode with τ per pixel (see `decoders.registry.reconstruct_file`); a family outside
    the registry is blended in pixel space between its τ = 0 and τ = 1 decodes."""
    from dpexplorer.decoders.registry import DECODERS, decode_file, reconstruct_file
    from dpexplorer.decoders.taumap import blend, check_tau_map

    if family.key in DECODERS:
        return reconstruct_file(data, sampler=sampler, steps=steps, seed=seed, decoder=family.key, tau_map=tau_map)
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


# ---- measuring and showing ---------------------------------------------------------------------
def measure(original: np.ndarray | None, recon: np.ndarray) -> dict[str, float]:
    if original is None:
        return {}
    return metrics.all_metrics(original, recon)


def zoom_crop(image: np.ndarray, cx: float, cy: float, size: int = 96, scale: int = 4) -> np.ndarray:
    """A size×size crop around the relative centre (cx, cy), enlarged by `scale` (nearest: no smoothing)."""
    h, w = image.shape[:2]
    s = min(size, h, w)
    x0 = int(np.clip(round(cx * w - s / 2), 0, w - s))
    y0 = int(np.clip(round(cy * h - s / 2), 0, h - s))
    crop = image[y0:y0 + s, x0:x0 + s]
    return np.repeat(np.repeat(crop, scale, axis=0), scale, axis=1)


def load_curves(path: Path = CURVES_PATH) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


SAMPLER_STYLES = {"ddim": "-", "ddpm": "--", "dpmsolver++": ":", "euler": "-."}
FAMILY_MARKERS = {"latent": "o"}  # a τ sweep of another family (kind) is drawn with squares
QUALITY_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]


def dp_plot(curves: dict | None, live: dict | None = None, live_label: str = "this image",
            quality: int | None = None, own_curve: list[dict] | None = None):
    """Distortion–perception plane (PSNR → right is better, LPIPS ↓ is better) with the Kodak curves.

    Read in seconds: the τ sweeps of `quality` in full colour (the others faint), the sampler as line
    style, the family (series "kind") as marker, the legend outside the axes; this image's τ curve (`own_curve`: dicts with tau, psnr,
    lpips) and its live points (`live`: label → metrics) on the same axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.4, 4.2), layout="constrained")
    faint_labelled = False
    if curves:
        for series in curves.get("series", []):
            pts = series["points"]
            xs, ys = [p["psnr"] for p in pts], [p["lpips"] for p in pts]
            q = series.get("quality")
            if q is None:  # codec decoder, JPEG, WebP: one curve over all qualities
                ax.plot(xs, ys, series.get("style", "o-"), color="0.35", label=series["label"], alpha=0.9,
                        markersize=4, linewidth=1.2)
                continue
            style = SAMPLER_STYLES.get(series.get("sampler"), "-")
            colour = QUALITY_COLOURS[(q - 1) % len(QUALITY_COLOURS)]
            chosen = quality is None or q == quality
            label = series["label"] if chosen else (None if faint_labelled else "other qualities")
            faint_labelled = faint_labelled or not chosen
            ax.plot(xs, ys, style, marker=FAMILY_MARKERS.get(series.get("kind"), "s"), color=colour, alpha=1.0 if chosen else 0.18,
                    markersize=3.5 if chosen else 2, linewidth=1.6 if chosen else 0.8, label=label,
                    zorder=3 if chosen else 1)
        ax.set_title(f"Kodak ({curves.get('images', '?')} images)" + (f", q{quality} highlighted" if quality else ""),
                     fontsize=10)
    else:
        ax.set_title("No precomputed curves (run `dpexplorer eval`)", fontsize=10)
    if own_curve:
        pts = sorted(own_curve, key=lambda p: p["tau"])
        ax.plot([p["psnr"] for p in pts], [p["lpips"] for p in pts], "-o", color="crimson", linewidth=2.2,
                markersize=4, label=f"{live_label}: τ curve", zorder=6)
        for p in (pts[0], pts[-1]):
            ax.annotate(f"τ={p['tau']:g}", (p["psnr"], p["lpips"]), fontsize=8, color="crimson",
                        xytext=(4, 4), textcoords="offset points")
    markers = iter("*PXDs^v")
    for label, point in (live or {}).items():
        ax.plot([point["psnr"]], [point["lpips"]], next(markers, "*"), markersize=13, label=label, zorder=7,
                markeredgecolor="black", markeredgewidth=0.6)
    ax.set_xlabel("PSNR (dB) → better")
    ax.set_ylabel("LPIPS (AlexNet) ↓ better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
    plt.close(fig)
    return fig


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

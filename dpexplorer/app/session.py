"""What the app does, without the UI: encode, decode with a chosen decoder family, measure.

The decoder families are the registry's table (`dpexplorer.decoders.registry.FAMILIES`); the app builds
its controls from it. The app renders a τ sweep (11 frames) per setting, so a family caches its
expensive, τ-independent work (the latent decoder: one r̃ per bitstream, sampler, steps and seed) and a
frame costs one synthesis pass; the bitstream is opened once (`Encoded.stream`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dpexplorer.decoders.base import DecodeOptions, TauDecoder
from dpexplorer.decoders.grainguard import shipped_guard
from dpexplorer.decoders.registry import FAMILIES, open_file, reconstruct_file
from dpexplorer.decoders.schedulers import SAMPLERS
from dpexplorer.decoders.stream import Stream
from dpexplorer.io.images import load_image
from dpexplorer.metrics import image as metrics


@dataclass
class Encoded:
    data: bytes
    original: np.ndarray | None  # None when the user brought a .dpx (no reference to compare with)
    encode_s: float = 0.0
    effort: int = 0  # the encoder's refinement iterations (the app's "smaller file (slow)")
    stream: Stream = field(init=False, repr=False)  # parsed, hashed and entropy-decoded once
    # The codec decoder's metrics never change for a bitstream: computed once.
    _base_metrics: dict | None = field(default=None, init=False, repr=False)
    # The app's τ frames (scrub.py) per decoder setting, and same-size JPEG/WebP (compare.py).
    _frames: dict = field(default_factory=dict, init=False, repr=False)
    _baselines: dict = field(default_factory=dict, init=False, repr=False)
    _pngs: dict = field(default_factory=dict, init=False, repr=False)  # name → PNG the app wrote once
    _live: dict = field(default_factory=dict, init=False, repr=False)  # the app's last plotted points
    use_hint: bool = field(default=True, init=False)  # decode through the sender's τ hint (when it has one)
    use_guard: bool = field(default=True, init=False)  # without a hint: the receiver's grain guard weights τ

    def __post_init__(self):
        self.stream = open_file(self.data)  # checks the header, the weights and the checksum

    # not annotated: a dataclass would take them for fields
    header = property(lambda self: self.stream.bitstream, doc="the parsed header (`Bitstream`)")
    quality = property(lambda self: self.stream.quality)

    @property
    def bpp(self) -> float:
        return metrics.bpp(len(self.data), self.header.height, self.header.width)

    def summary(self) -> str:
        h = self.header
        text = f"{h.arch} q{h.quality} · {h.width}×{h.height} px · {len(self.data):,} bytes · {self.bpp:.4f} bpp"
        if h.hint is not None:
            text += f" · carries the sender's τ hint ({h.hint_bytes} of those bytes)"
        if self.effort:
            text += f" · smaller-file encoder ({self.effort} iterations)"
        return text + (f" · encoded in {self.encode_s:.2f} s" if self.encode_s else "")


def encode(image, quality: int, *, hint: bool = True, effort: int = 0, progress=None) -> Encoded:
    """The image's bitstream at `quality`, with the sender's τ hint unless `hint` is False; `effort` > 0
    refines the latents first (`dpexplorer.codec.effort`; `progress(done, total)` follows it)."""
    from dpexplorer.hint.sender import encode as encode_image
    from dpexplorer.hub.loading import get_codec

    img = load_image(image)
    codec = get_codec(quality)
    t0 = time.perf_counter()
    data = encode_image(codec, img, hint=hint, effort=effort, progress=progress)
    return Encoded(data, img, time.perf_counter() - t0, effort)


def effort_estimate(height: int, width: int, quality: int, effort: int) -> float:
    """Seconds the smaller-file encoder would take on this image (measured on this machine, scaled)."""
    from dpexplorer.codec.effort import estimate_seconds
    from dpexplorer.hub.loading import get_codec

    return estimate_seconds(get_codec(quality).model, height, width, effort)


def warm_effort_estimates() -> None:
    """Calibrate `effort_estimate` for every shipped quality now (at launch, before any request). Measured
    on demand, the first calibration ran beside the same upload's encode and came out several times too slow;
    the process keeps its first figure."""
    from dpexplorer.hub.loading import shipped_qualities

    for quality in shipped_qualities():
        effort_estimate(256, 256, quality, 1)


def open_bitstream(data: bytes) -> Encoded:
    return Encoded(data, None)


# ---- decoding: every family through the registry's one interface -----------------------------------
def family_for(enc: Encoded, key: str | None) -> type[TauDecoder] | None:
    """The family `key` if it has weights for this bitstream's quality, else None."""
    cls = FAMILIES.get(key) if key else None
    return cls if cls is not None and enc.quality in cls.qualities() else None


def families_for(quality: int) -> list[type[TauDecoder]]:
    """The τ decoder families with weights for `quality`, the default first."""
    return [cls for cls in FAMILIES.values() if quality in cls.qualities()]


def reconstruct(enc: Encoded, key: str, tau: float, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    """The `key` family's decode of this bitstream at τ (or `options.tau_map`), through the sender's τ
    hint unless the user switched it off (`enc.use_hint`), else through the grain guard unless switched off
    (`enc.use_guard`)."""
    return reconstruct_file(enc.stream, tau, decoder=key,
                            options=replace(options, use_hint=enc.use_hint, use_guard=enc.use_guard))


def hinted(enc: Encoded) -> bool:
    """Whether decodes of this bitstream follow a τ hint now (the file has one and it is switched on)."""
    return enc.header.hint is not None and enc.use_hint


def has_guard(enc: Encoded) -> bool:
    """Whether a grain guard is shipped for the codec that made this bitstream."""
    return shipped_guard(enc.stream.codec) is not None


def guarded(enc: Encoded) -> bool:
    """Whether decodes of this bitstream go through the receiver's grain guard now (no hint followed, the
    switch on, and a guard shipped for this codec)."""
    return not hinted(enc) and enc.use_guard and has_guard(enc)


def decode_way(enc: Encoded) -> str | None:
    """What weights τ in this bitstream's decodes now: "hint", "guard", or None (uniform τ)."""
    return "hint" if hinted(enc) else "guard" if guarded(enc) else None


def base_reconstruction(enc: Encoded) -> np.ndarray:
    """The codec decoder's image (computed once per bitstream, by its stream)."""
    return enc.stream.plain()


def base_metrics(enc: Encoded) -> dict[str, float]:
    if enc._base_metrics is None:
        enc._base_metrics = measure(enc.original, base_reconstruction(enc))
    return enc._base_metrics


def sampler_choices(family: type[TauDecoder] | None = None) -> list[tuple[str, str]]:
    """The sampler dropdown's choices: those the family offers (all, before a family is known)."""
    offered = family.offered_samplers() if family is not None and family.uses_sampler else tuple(SAMPLERS)
    return [(label, key) for key, (label, _) in SAMPLERS.items() if key in offered]


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

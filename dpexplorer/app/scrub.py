"""τ scrubbing: a sweep of frames τ = 0, 0.1, …, 1 per (bitstream, decoder setting), rendered once in
the background so that a τ drag can show the nearest frame at once (the browser swaps cached PNGs) and
this image's own τ curve (PSNR, LPIPS per frame) is drawn without waiting.

The family caches its τ-independent work (the latent decoder draws r̃ once per bitstream, sampler, steps
and seed), so a frame is one synthesis pass. Frames are PNG files (written by the app, one per τ) plus
their numbers; the images themselves are not kept in memory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dpexplorer.app import session
from dpexplorer.decoders.base import DecodeOptions, TauDecoder
from dpexplorer.errors import ImageError
from dpexplorer.io.images import load_image
from dpexplorer.metrics import image as metrics

FRAME_TAUS = tuple(round(i / 10, 1) for i in range(11))
MAX_SETTINGS = 3  # frame sets kept per bitstream (the latest settings)
# A render (τ release) and the background sweep of one session add frames from two threads.
_lock = threading.RLock()


@dataclass
class Frame:
    tau: float
    png: str
    psnr: float | None = None
    lpips: float | None = None
    ms_ssim: float | None = None
    grain: float | None = None


@dataclass
class FrameSet:
    key: tuple
    frames: dict[float, Frame] = field(default_factory=dict)

    def ready(self) -> list[Frame]:
        """Frames whose files still exist, by τ (the app's folder is swept after an idle hour)."""
        with _lock:
            for tau in [t for t, f in self.frames.items() if not os.path.isfile(f.png)]:
                del self.frames[tau]
            return [self.frames[t] for t in sorted(self.frames)]

    def curve(self) -> list[dict]:
        return [{"tau": f.tau, "psnr": f.psnr, "lpips": f.lpips} for f in self.ready() if f.lpips is not None]


def setting_key(family: type[TauDecoder], sampler: str, steps: int, seed: int, *, way: str | None = None) -> tuple:
    """What a frame depends on besides the bitstream: the family, sampler, steps and seed where it uses
    them, and what weights τ (`session.decode_way`: the sender's hint, the grain guard, or uniform)."""
    key = (family.key, offered_sampler(family, sampler), int(steps), int(seed)) if family.uses_sampler else (family.key,)
    return (*key, way) if way else key


def offered_sampler(family: type[TauDecoder], sampler: str) -> str:
    """The sampler the family decodes with: the chosen one where it offers it, else its first. The family
    switch and the sampler list's update are two events: a render may see the old family's sampler."""
    offered = family.offered_samplers()
    return sampler if sampler in offered else offered[0]


def sampling_options(family: type[TauDecoder], sampler: str, steps: int, seed: int, *,
                     progress=None) -> DecodeOptions:
    """The app's controls as decode options (the sampling ones only where the family samples)."""
    if not family.uses_sampler:
        return DecodeOptions(progress=progress)
    return DecodeOptions(sampler=offered_sampler(family, sampler), steps=int(steps), seed=int(seed),
                         progress=progress)


def frame_set(enc: session.Encoded, key: tuple) -> FrameSet:
    """The frames of `enc` at setting `key` (created empty; the oldest setting beyond MAX_SETTINGS goes)."""
    with _lock:
        return _frame_set(enc._frames, key)


def _frame_set(sets: dict, key: tuple) -> FrameSet:
    if key in sets:
        sets[key] = sets.pop(key)  # most recent last
    else:
        sets[key] = FrameSet(key)
        while len(sets) > MAX_SETTINGS:
            del sets[next(iter(sets))]
    return sets[key]


def latest_setting(enc: session.Encoded) -> tuple | None:
    """The setting whose frames were asked for last (a render of it or its sweep)."""
    with _lock:
        return next(reversed(enc._frames), None)


def on_grid(tau: float) -> float | None:
    """The frame τ equal to `tau` (to 1e-9), or None."""
    nearest = round(float(tau) * 10) / 10
    return nearest if abs(nearest - float(tau)) < 1e-9 else None


def add_frame(enc: session.Encoded, fs: FrameSet, tau: float, image: np.ndarray,
              *, write_png: Callable[[np.ndarray], str], png: str | None = None, measure: bool = True) -> Frame:
    """Store `image` as the frame at grid τ `tau` (its PNG written unless given), measured."""
    frame = Frame(tau, png or write_png(image))
    if measure:
        measure_frame(enc, frame, image)
    with _lock:
        fs.frames[tau] = frame
    return frame


def measure_frame(enc: session.Encoded, frame: Frame, image: np.ndarray | None = None) -> None:
    if enc.original is not None and frame.lpips is None:
        if image is None:
            image = load_image(Path(frame.png))
        m = metrics.all_metrics(enc.original, image)
        frame.psnr, frame.ms_ssim, frame.lpips, frame.grain = m["psnr"], m["ms_ssim"], m["lpips"], m["grain"]


def render_frames(enc: session.Encoded, family: type[TauDecoder], sampler: str, steps: int, *, seed: int,
                  write_png: Callable[[np.ndarray], str],
                  base_png: str | None = None) -> Iterator[tuple[str, int, int]]:
    """Render the missing frames of this setting, then measure them (PSNR, MS-SSIM, LPIPS: the τ curve); yields
    ("frames" or "curve", done, total) after each step: the frames are on screen before the curve."""
    fs = frame_set(enc, setting_key(family, sampler, steps, seed, way=session.decode_way(enc)))
    total = len(FRAME_TAUS)
    for tau in FRAME_TAUS:
        if tau not in fs.frames or not os.path.isfile(fs.frames[tau].png):
            if tau == 0.0:  # τ = 0 is the codec decoder for every family: its PNG is already there
                image = session.base_reconstruction(enc)
            else:
                image = session.reconstruct(enc, family.key, tau, sampling_options(family, sampler, steps, seed))
            add_frame(enc, fs, tau, image, write_png=write_png, png=base_png if tau == 0.0 else None, measure=False)
        yield "frames", len(fs.ready()), total
    for i, frame in enumerate(fs.ready()):
        try:
            measure_frame(enc, frame)
        except ImageError:  # its file went meanwhile (the session ended): no frame, no point
            with _lock:
                fs.frames.pop(frame.tau, None)
        yield "curve", i + 1, total

"""The one interface of a τ decoder family, in the spirit of CompressAI's `CompressionModel` and
diffusers' `DiffusionPipeline`: a class per family with a key, a label, its declared options, the
qualities it has weights for, construction from a manifest entry and a codec, and one

    reconstruct(stream, tau, *, options) -> H×W×3 uint8

Here, and only here, live the rules every family shares: τ is checked once (`check_tau`), τ = 0 (or an
all-zero τ map) is the codec decoder's image to the bit, and a family that cannot apply a τ map itself
gets the pixel blend x̂ = x̂₀ + m·(x̂₁ − x̂₀) between its τ = 0 and τ = 1 decodes (`taumap.blend`, which
is also the pixel decoder's τ). A family implements `_decode(stream, tau, options)` for τ in (0, 1] and,
if it applies τ maps natively, `_decode_map`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from dpexplorer.codec.codec import Codec
from dpexplorer.decoders import grainguard
from dpexplorer.decoders.stream import Stream, open_stream
from dpexplorer.decoders.tau import check_tau
from dpexplorer.decoders.taumap import blend, check_tau_map
from dpexplorer.hub.loading import get_codec, module_qualities, module_weights
from dpexplorer.hub.manifest import find_entry, weights_dir


@dataclass(frozen=True, kw_only=True)
class DecodeOptions:
    """Everything a decode may take besides the bitstream and τ. A family declares which of
    `sampler`, `steps`, `seed`, `noise_scale` it uses (`TauDecoder.options`); the sampling ones are
    ignored by a deterministic family, a `noise_scale` given to a family without one is an error."""

    sampler: str = "ddim"
    steps: int = 10
    seed: int = 0
    noise_scale: float | None = None  # None: the weights' own default (pixel decoder)
    tau_map: np.ndarray | None = field(default=None, compare=False)  # H×W in [0, 1]: τ per pixel, τ ignored
    use_hint: bool = True  # a file's τ hint makes τ = 1 the sender's recommended decode; False: raw τ
    use_guard: bool = True  # without a hint, the receiver's grain guard weights τ; False: uniform τ
    progress: Callable[[int, int], None] | None = field(default=None, compare=False)  # (step, steps)


DEFAULT_OPTIONS = DecodeOptions()


def resolve_tau(stream: Stream, tau: float, options: DecodeOptions) -> tuple[float, np.ndarray | None]:
    """τ checked, and the τ map (checked against the image size) that replaces it, or None.

    The one rule, for every family: a file that carries the sender's τ hint is decoded through the τ-map
    path with the map τ·h (h: the hint's map, `Stream.hint_map`), so the slider runs from the codec
    decoder (0) to the sender's recommended decode (1). Without a hint (or with `use_hint=False`) the
    receiver's grain guard takes its place where its quality has one (τ·g, g: `grainguard.stream_guard_map`,
    which keeps smooth areas smooth); `use_guard=False` too, or a τ map of one's own (the brush), decodes
    uniform τ."""
    if options.tau_map is not None:
        return 1.0, check_tau_map(options.tau_map, stream.height, stream.width)
    tau = check_tau(tau)
    if tau == 0.0:
        return tau, None
    if options.use_hint and stream.hint_map() is not None:
        return 1.0, np.float32(tau) * stream.hint_map()
    if options.use_guard:
        guard = grainguard.stream_guard_map(stream)
        if guard is not None:
            return 1.0, np.float32(tau) * guard
    return tau, None


def is_plain(tau: float, tau_map: np.ndarray | None) -> bool:
    """The one rule: τ = 0, or a τ map that is zero everywhere, is the codec decoder for every family."""
    return not tau_map.any() if tau_map is not None else tau == 0.0


class TauDecoder:
    """A decoder family. Subclasses set the class attributes and implement `from_entry` and `_decode`."""

    key: ClassVar[str]  # the name in the table, the CLI's --decoder and the manifest's `kind`
    label: ClassVar[str]  # what the app shows
    description: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()  # which DecodeOptions fields it uses
    applies_tau_map: ClassVar[bool] = False  # else a τ map is a pixel blend of its τ = 0 and τ = 1 decodes
    name: ClassVar[str]  # short, for figures and tables ("perceptual synthesis")
    marker: ClassVar[str] = "s"  # its τ sweeps in the app's plot
    colour: ClassVar[str] = "gray"  # its curves in the README figure

    uses_sampler: ClassVar[bool] = False  # set from `options`: the app shows sampler, steps and seed for it
    # the samplers it offers (None: all of `schedulers.SAMPLERS`), and why any other is not offered
    samplers: ClassVar[tuple[str, ...] | None] = None
    samplers_withheld_because: ClassVar[str] = ""
    default_steps: ClassVar[int] = 10  # the step count the app and the CLI start from

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.uses_sampler = "sampler" in cls.options

    def __init__(self, codec: Codec):
        self.codec = codec

    @classmethod
    def offered_samplers(cls) -> tuple[str, ...]:
        """The samplers the app, the CLI and eval may use with this family (none if it does not sample)."""
        from dpexplorer.decoders.schedulers import SAMPLERS

        if not cls.uses_sampler:
            return ()
        return tuple(k for k in SAMPLERS if cls.samplers is None or k in cls.samplers)

    @classmethod
    def default_options(cls, **fields) -> DecodeOptions:
        """The setting this family starts from (its first sampler, its own step count), with `fields` set."""
        return DecodeOptions(**{"sampler": (cls.offered_samplers() or ("ddim",))[0], "steps": cls.default_steps,
                                **fields})

    # ---- weights -----------------------------------------------------------------------------------
    @classmethod
    def qualities(cls) -> list[int]:
        """Qualities with this family's weights in weights/, ascending."""
        return module_qualities(cls.key)

    @classmethod
    def from_entry(cls, entry: dict, state: dict, codec: Codec, *, directory: Path) -> "TauDecoder":
        """The family built from its manifest entry, its weights and the codec they were trained for."""
        raise NotImplementedError

    @classmethod
    def load(cls, quality: int, arch: str | None = None) -> "TauDecoder":
        """The shipped module of `quality` on the shipped codec, loaded and hash-checked once per process."""
        directory = weights_dir()
        arch = arch or find_entry("codec", None, quality, directory)[1]["arch"]
        key = (cls.key, quality, arch, str(directory))
        with _loaded_lock:
            if key not in _loaded:
                codec = get_codec(quality, arch)
                entry, state = module_weights(cls.key, codec, directory)
                _loaded[key] = cls.from_entry(entry, state, codec, directory=directory)
            return _loaded[key]

    # ---- decoding ----------------------------------------------------------------------------------
    def open(self, data: bytes | Stream) -> Stream:
        return data if isinstance(data, Stream) else open_stream(data, self.codec)

    def reconstruct(self, stream: Stream | bytes, tau: float = 1.0, *,
                    options: DecodeOptions = DEFAULT_OPTIONS) -> np.ndarray:
        """The 8-bit image of a bitstream at τ (or with `options.tau_map`, τ per pixel)."""
        stream = self.open(stream)
        self.check_options(options)
        tau, tau_map = resolve_tau(stream, tau, options)
        if is_plain(tau, tau_map):
            return stream.plain()
        if tau_map is None:
            return self._decode(stream, tau, options)
        if self.applies_tau_map:
            return self._decode_map(stream, tau_map, options)
        return blend(stream.plain(), self._decode(stream, 1.0, options), tau_map)

    def check_options(self, options: DecodeOptions) -> None:
        """Refuse what this family cannot honour (a sampler it does not have, a noise scale it lacks)."""
        if options.noise_scale is not None and "noise_scale" not in self.options:
            raise ValueError(f"the {self.key} decoder has no noise scale (the pixel decoder has)")
        if self.uses_sampler:
            from dpexplorer.decoders.schedulers import SAMPLERS

            if options.sampler not in SAMPLERS:
                raise ValueError(f"unknown sampler {options.sampler!r}; choose one of {', '.join(SAMPLERS)}")
            if options.sampler not in self.offered_samplers():
                raise ValueError(f"the {self.key} decoder does not offer {options.sampler} "
                                 f"({self.samplers_withheld_because}); choose one of "
                                 f"{', '.join(self.offered_samplers())}")
            if int(options.steps) < 1:
                raise ValueError(f"steps must be at least 1, got {options.steps}")

    def _decode(self, stream: Stream, tau: float, options: DecodeOptions) -> np.ndarray:
        raise NotImplementedError

    def _decode_map(self, stream: Stream, tau_map: np.ndarray, options: DecodeOptions) -> np.ndarray:
        raise NotImplementedError


_loaded: dict[tuple, TauDecoder] = {}
_loaded_lock = threading.RLock()  # re-entrant: a family loads the synthesis it was trained through


def unload_all() -> None:
    """Forget every loaded module (tests that swap weights/ between loads)."""
    with _loaded_lock:
        _loaded.clear()
    grainguard.unload()


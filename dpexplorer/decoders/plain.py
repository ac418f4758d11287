"""The codec's own decoder as a family: x̂ = g_s(ŷ; θ₀) at every τ, the τ = 0 end of every other family."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dpexplorer.codec.codec import Codec
from dpexplorer.decoders.base import DecodeOptions, TauDecoder
from dpexplorer.decoders.stream import Stream
from dpexplorer.hub.loading import get_codec, shipped_qualities


class PlainDecoder(TauDecoder):
    key = "plain"
    label = "Codec decoder"
    description = "The codec's own synthesis transform g_s(ŷ): the best PSNR; τ does not apply."
    name = "codec decoder (τ = 0)"
    marker = "o"
    colour = "black"

    @classmethod
    def qualities(cls) -> list[int]:
        return shipped_qualities()

    @classmethod
    def load(cls, quality: int, arch: str | None = None) -> "PlainDecoder":
        return cls(get_codec(quality, arch))

    @classmethod
    def from_entry(cls, entry: dict, state: dict, codec: Codec, *, directory: Path) -> "PlainDecoder":
        return cls(codec)

    def _decode(self, stream: Stream, tau: float, options: DecodeOptions) -> np.ndarray:
        return stream.plain()

"""A `.dpx` opened once for decoding: parsed and checked by its codec, hashed, its ŷ entropy-decoded
and its plain decode x̂₀ = g_s(ŷ) computed at most once, whatever decoder family and τ ask for them.

`open_stream` keeps the latest streams in one bounded cache (by the file's SHA-256 and the codec's
weights), so a τ sweep through any family costs one entropy decoding in all, and a caller that keeps
the `Stream` (the app keeps one per encoded image) hashes nothing again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import numpy as np
import torch

from dpexplorer.cache import LRU
from dpexplorer.codec.codec import Codec
from dpexplorer.io.bitstream import Bitstream


class Stream:
    """One bitstream as the receiver has it: `data`, `bitstream` (the parsed header and strings),
    `codec` (the model that made it), `sha256`, and lazily `y_hat` and `plain`."""

    def __init__(self, data: bytes, codec: Codec):
        self.data = bytes(data)
        self.codec = codec
        self.bitstream: Bitstream = codec.parse(self.data)  # header, weights id and string lengths checked
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        # what ŷ's decodes are cached under: the file without its τ hint, so that a hinted file and its plain twin
        # (the bytes the sender decoded to compute the hint) share them
        self.content_sha256 = self.sha256 if self.bitstream.hint is None else hashlib.sha256(
            dataclasses.replace(self.bitstream, hint=None).to_bytes()).hexdigest()
        self._lock, self._plain_lock = threading.Lock(), threading.Lock()
        self._y_hat: torch.Tensor | None = None
        self._plain: np.ndarray | None = None
        self._hint_map: np.ndarray | None = None
        self._memo: dict[str, object] = {}
        self._memo_lock = threading.Lock()

    @property
    def height(self) -> int:
        return self.bitstream.height

    @property
    def width(self) -> int:
        return self.bitstream.width

    @property
    def quality(self) -> int:
        return self.bitstream.quality

    def hint_map(self) -> np.ndarray | None:
        """The sender's τ hint as an H×W float32 map in [0, 1], or None for a file without one (computed
        once: every hinted decode multiplies it by τ)."""
        if self.bitstream.hint is None:
            return None
        with self._plain_lock:
            if self._hint_map is None:
                from dpexplorer.decoders.taumap import hint_tau_map

                self._hint_map = hint_tau_map(self.bitstream.hint, self.height, self.width)
            return self._hint_map

    def memo(self, key: str, compute):
        """`compute()` once per stream (e.g. the grain guard's map); concurrent callers wait for the first."""
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]

    @property
    def y_hat(self) -> torch.Tensor:
        """ŷ on the padded latent grid (entropy decoding runs once per stream)."""
        with self._lock:  # two threads asking at once decode once
            if self._y_hat is None:
                self._y_hat = self.codec.decode_latent(self.bitstream)[0]
            return self._y_hat

    def plain(self) -> np.ndarray:
        """The codec decoder's 8-bit image x̂₀ = g_s(ŷ; θ₀): τ = 0 of every family (computed once)."""
        y_hat = self.y_hat
        with self._plain_lock:
            if self._plain is None:
                self._plain = self.codec.synthesize(y_hat, self.height, self.width)
            return self._plain

    def synthesize(self, latent: torch.Tensor | None = None, g_s=None) -> np.ndarray:
        """g_s(`latent`) (default ŷ) as the 8-bit image of this stream's size; `g_s` replaces the codec's
        synthesis transform (the perceptual synthesis at some τ)."""
        return self.codec.synthesize(self.y_hat if latent is None else latent, self.height, self.width, g_s=g_s)


_streams = LRU(8)
_streams_lock = threading.Lock()


def open_stream(data: bytes, codec: Codec) -> Stream:
    """The `Stream` of `data` decoded by `codec` (parsed and checked now; cached by content and weights)."""
    key = (hashlib.sha256(data).hexdigest(), codec.weights_sha256, id(codec))
    with _streams_lock:  # parsing is cheap; ŷ and x̂₀ are computed lazily, outside this lock
        return _streams.get_or(key, lambda: Stream(data, codec))

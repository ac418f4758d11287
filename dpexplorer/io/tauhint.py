"""The sender's τ hint as data, and its entropy coding.

A `TauHint` is a grid of level indexes, one per `cell`×`cell` block of the image: level i means
τ = i / (levels − 1) there. The receiver upsamples and smooths it (σ px) into a τ map
(`dpexplorer.hint.hint_tau_map`); this module only holds it and turns it into bytes and back.

Coding: an adaptive arithmetic coder (the integer coder of Witten, Neal & Cleary, "Arithmetic coding
for data compression", CACM 30(6), 1987), cells in raster order, each coded with the counts of its
context, which is the level of the cell to its left and the one above (a hint map is made of
regions, so a cell mostly repeats a neighbour). Pure Python on purpose: a map has tens to a few
thousand cells (768×512 at 64 px: 96), and a coder that reads untrusted bytes with Python ints can
neither crash nor read out of bounds; CompressAI's rANS needs a guarded child process for that
(`codec/ransguard.py`). The decoder accepts a string only if re-encoding its symbols gives the same
bytes, so every accepted string is the one the encoder writes, and trailing junk is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpexplorer.errors import BitstreamError

MAX_LEVELS = 16
CELL_UNIT = 16  # the container stores the cell size in units of 16 px (one byte: 16..4080 px)

_PRECISION = 32
_TOP = (1 << _PRECISION) - 1
_HALF = 1 << (_PRECISION - 1)
_QUARTER = 1 << (_PRECISION - 2)
_INCREMENT = 4  # count added per coded symbol (first counts 1): a context learns its level after a few cells
_MAX_TOTAL = 1 << 12  # counts are halved above this; must stay < _QUARTER for the coder's precision


@dataclass(frozen=True)
class TauHint:
    """The sender's recommended τ per cell: level index i ∈ [0, levels) means τ = i / (levels − 1).

    `index` is the grid in raster order, one byte per cell (bytes, so that the dataclass compares and
    hashes by value, as `Bitstream` does)."""

    cell: int  # px, a multiple of CELL_UNIT
    levels: int  # number of τ levels, evenly spaced over [0, 1]
    sigma: int  # px, the Gaussian smoothing the receiver applies to the upsampled map (0: none)
    grid: tuple[int, int]  # (rows, cols) = (⌈H / cell⌉, ⌈W / cell⌉)
    index: bytes

    def __post_init__(self):
        check_hint_fields(self.cell, self.levels, self.sigma)
        rows, cols = self.grid
        if rows < 1 or cols < 1 or len(self.index) != rows * cols:
            raise ValueError(f"τ hint grid {rows}×{cols} does not match its {len(self.index)} cells")
        if max(self.index) >= self.levels:
            raise ValueError(f"τ hint has a level index ≥ its {self.levels} levels")

    @classmethod
    def from_array(cls, index: np.ndarray, *, cell: int, levels: int, sigma: int) -> "TauHint":
        index = np.asarray(index)
        if index.ndim != 2:
            raise ValueError("a τ hint is a 2-D grid of level indexes")
        return cls(cell, levels, sigma, (int(index.shape[0]), int(index.shape[1])),
                   bytes(index.astype(np.uint8).reshape(-1).tolist()))

    def array(self) -> np.ndarray:
        """The grid of level indexes, uint8 rows × cols."""
        return np.frombuffer(self.index, dtype=np.uint8).reshape(self.grid).copy()

    def tau_grid(self) -> np.ndarray:
        """τ per cell, float64 in [0, 1] (exact: i / (levels − 1))."""
        return self.array().astype(np.float64) / (self.levels - 1)


def check_hint_fields(cell: int, levels: int, sigma: int) -> None:
    if not (CELL_UNIT <= cell <= 255 * CELL_UNIT and cell % CELL_UNIT == 0):
        raise ValueError(f"τ hint cell size must be a multiple of {CELL_UNIT} px up to {255 * CELL_UNIT}, got {cell}")
    if not 2 <= levels <= MAX_LEVELS:
        raise ValueError(f"τ hint must have 2..{MAX_LEVELS} levels, got {levels}")
    if not 0 <= sigma <= 255:
        raise ValueError(f"τ hint smoothing must be 0..255 px, got {sigma}")


def hint_grid(height: int, width: int, cell: int) -> tuple[int, int]:
    """The cell grid that covers an image (the last row and column may be partial)."""
    return -(-height // cell), -(-width // cell)


# ---- the adaptive arithmetic coder -------------------------------------------------------------

class _Contexts:
    """Adaptive counts per context (left level, above level; `levels` stands for 'outside the map')."""

    def __init__(self, levels: int):
        self.levels = levels
        self.counts = [[1] * levels for _ in range((levels + 1) ** 2)]

    def context(self, grid: list[int], r: int, c: int, cols: int) -> list[int]:
        left = grid[r * cols + c - 1] if c else self.levels
        above = grid[(r - 1) * cols + c] if r else self.levels
        return self.counts[left * (self.levels + 1) + above]

    @staticmethod
    def update(counts: list[int], symbol: int) -> None:
        counts[symbol] += _INCREMENT
        if sum(counts) > _MAX_TOTAL:
            for i, n in enumerate(counts):
                counts[i] = (n + 1) // 2


def encode_index(index: bytes, grid: tuple[int, int], levels: int) -> bytes:
    """Level indexes (raster order) → the arithmetic-coded string."""
    rows, cols = grid
    symbols = list(index)
    model = _Contexts(levels)
    low, high, pending = 0, _TOP, 0
    bits: list[int] = []

    def emit(bit: int) -> None:
        nonlocal pending
        bits.append(bit)
        bits.extend([1 - bit] * pending)
        pending = 0

    for pos, symbol in enumerate(symbols):
        counts = model.context(symbols, pos // cols, pos % cols, cols)
        total = sum(counts)
        below = sum(counts[:symbol])
        span = high - low + 1
        high = low + span * (below + counts[symbol]) // total - 1
        low = low + span * below // total
        while True:
            if high < _HALF:
                emit(0)
            elif low >= _HALF:
                emit(1)
                low -= _HALF
                high -= _HALF
            elif low >= _QUARTER and high < _HALF + _QUARTER:
                pending += 1
                low -= _QUARTER
                high -= _QUARTER
            else:
                break
            low, high = 2 * low, 2 * high + 1
        model.update(counts, symbol)
    pending += 1  # two more bits pin the final interval
    emit(0 if low < _QUARTER else 1)
    bits.extend([0] * (-len(bits) % 8))
    return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


def max_coded_bytes(cells: int) -> int:
    """A bound on what `encode_index` writes: under 13 bits per cell (counts total ≤ 2¹² + increments,
    a count ≥ 1) plus the flush; longer strings are refused before any decoding."""
    return 4 + (13 * cells + 7) // 8


def decode_index(data: bytes, grid: tuple[int, int], levels: int) -> bytes:
    """The coded string → level indexes, or `BitstreamError` (never anything else)."""
    rows, cols = grid
    n = rows * cols
    if not data or len(data) > max_coded_bytes(n):
        raise BitstreamError(f".dpx τ hint has an impossible length ({len(data)} bytes for {n} cells)")
    stream = int.from_bytes(data, "big")
    nbits = 8 * len(data)

    def bit(i: int) -> int:  # bits past the end read as 0, as the encoder's padding
        return (stream >> (nbits - 1 - i)) & 1 if i < nbits else 0

    value = 0
    for i in range(_PRECISION):
        value = 2 * value + bit(i)
    read = _PRECISION
    model = _Contexts(levels)
    low, high = 0, _TOP
    symbols: list[int] = []
    for pos in range(n):
        counts = model.context(symbols, pos // cols, pos % cols, cols)
        total = sum(counts)
        span = high - low + 1
        target = min(max(((value - low + 1) * total - 1) // span, 0), total - 1)
        symbol, below = 0, 0
        while below + counts[symbol] <= target:
            below += counts[symbol]
            symbol += 1
        high = low + span * (below + counts[symbol]) // total - 1
        low = low + span * below // total
        while True:
            if high < _HALF:
                pass
            elif low >= _HALF:
                low -= _HALF
                high -= _HALF
                value -= _HALF
            elif low >= _QUARTER and high < _HALF + _QUARTER:
                low -= _QUARTER
                high -= _QUARTER
                value -= _QUARTER
            else:
                break
            low, high = 2 * low, 2 * high + 1
            value = 2 * value + bit(read)
            read += 1
        model.update(counts, symbol)
        symbols.append(symbol)
    index = bytes(symbols)
    if encode_index(index, grid, levels) != data:
        raise BitstreamError(".dpx τ hint is not a string the encoder writes (re-encoding differs)")
    return index

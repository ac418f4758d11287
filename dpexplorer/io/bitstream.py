"""The `.dpx` container: one encoded image, self-describing, checksummed.

Layout (big-endian), format version 1 (a file without a τ hint; written as version 1, byte for byte
what every earlier release wrote):

    offset size  field
    0      4     magic b"DPX\\x89"
    4      1     format version (1)
    5      1     architecture id (ARCH_IDS)
    6      1     quality (1..8)
    7      8     first 8 bytes of the SHA-256 of the codec weights
    15     4     image height (px)
    19     4     image width (px)
    23     2     z height, 2 z width (latent grid of the hyperprior)
    27     1     number of entropy-coded strings n (2: y then z)
    28     4·n   length of each string, then the strings themselves
    …      4     CRC-32 of everything before it

Format version 2 is version 1 plus the sender's τ hint (`dpexplorer.io.tauhint`), a section
between the strings and the CRC:

    1     cell size / 16 (the hint's cells are cell×cell px; 1..255)
    1     number of τ levels L (2..16; level i is τ = i / (L − 1))
    1     smoothing σ of the receiver's τ map, px (0..255)
    …     the arithmetic-coded level of every cell (raster order) up to the CRC

The grid is not stored: it is ⌈H / cell⌉ × ⌈W / cell⌉, so it cannot disagree with the image size.

Reported bpp counts every byte of the file (8·len(file)/pixels), container included: the
overhead is 40 bytes, 0.0008 bpp on a Kodak image.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from dpexplorer.errors import BitstreamError
from dpexplorer.io.images import MAX_PIXELS
from dpexplorer.io.tauhint import CELL_UNIT, TauHint, check_hint_fields, decode_index, encode_index, hint_grid

MAGIC = b"DPX\x89"
VERSION = 1  # a file without a τ hint
VERSION_HINT = 2  # version 1 plus the τ hint section
VERSIONS = (VERSION, VERSION_HINT)
ARCH_IDS = {"bmshj2018-hyperprior": 1, "mbt2018-mean": 2}
ARCH_NAMES = {v: k for k, v in ARCH_IDS.items()}

_HEAD = struct.Struct(">4sBBB8sIIHHB")
_CRC = struct.Struct(">I")
_HINT = struct.Struct(">BBB")  # cell / 16, levels, σ
MAX_STRINGS = 8



def hint_section_bytes(hint: TauHint) -> int:
    """Bytes a τ hint adds to a `.dpx` (its section: fields and coded levels)."""
    return _HINT.size + len(encode_index(hint.index, hint.grid, hint.levels))

@dataclass(frozen=True)
class Bitstream:
    arch: str
    quality: int
    weights_id: bytes  # 8 bytes
    height: int
    width: int
    z_shape: tuple[int, int]
    strings: tuple[bytes, ...]
    hint: TauHint | None = None  # the sender's τ hint (format version 2); None writes version 1

    @property
    def payload_bytes(self) -> int:
        return sum(len(s) for s in self.strings)

    def to_bytes(self) -> bytes:
        if len(self.weights_id) != 8:
            raise ValueError("weights_id must be 8 bytes")
        version = VERSION if self.hint is None else VERSION_HINT
        head = _HEAD.pack(MAGIC, version, ARCH_IDS[self.arch], self.quality, self.weights_id,
                          self.height, self.width, self.z_shape[0], self.z_shape[1], len(self.strings))
        body = head + b"".join(struct.pack(">I", len(s)) for s in self.strings) + b"".join(self.strings)
        if self.hint is not None:
            hint = self.hint
            if hint.grid != hint_grid(self.height, self.width, hint.cell):
                raise ValueError(f"τ hint grid {hint.grid} does not cover a {self.width}×{self.height} image "
                                 f"in {hint.cell}-px cells")
            body += _HINT.pack(hint.cell // CELL_UNIT, hint.levels, hint.sigma)
            body += encode_index(hint.index, hint.grid, hint.levels)
        return body + _CRC.pack(zlib.crc32(body))

    @property
    def hint_bytes(self) -> int:
        """Bytes the τ hint section adds to the file (0 without one)."""
        return 0 if self.hint is None else hint_section_bytes(self.hint)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Bitstream":
        if len(data) < 4 or data[:4] != MAGIC:
            raise BitstreamError("not a .dpx bitstream (wrong magic bytes)")
        if len(data) < _HEAD.size + _CRC.size:
            raise BitstreamError(f"truncated .dpx file ({len(data)} bytes, header alone is {_HEAD.size})")
        # Checksum first: a damaged version byte is damage, not a file from the future.
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(data[:-_CRC.size]) != crc:
            raise BitstreamError(".dpx file is corrupted or truncated (checksum mismatch)")
        magic, version, arch_id, quality, wid, h, w, zh, zw, n = _HEAD.unpack_from(data)
        if version not in VERSIONS:
            raise BitstreamError(f".dpx format version {version} is not supported (this reads versions "
                                 f"{VERSION} and {VERSION_HINT})")
        if arch_id not in ARCH_NAMES:
            raise BitstreamError(f".dpx names an unknown codec architecture (id {arch_id})")
        if not 1 <= quality <= 8:
            raise BitstreamError(f".dpx names an invalid quality {quality}")
        if not (0 < n <= MAX_STRINGS) or h * w == 0 or h * w > MAX_PIXELS:
            raise BitstreamError(f".dpx header is inconsistent ({n} strings, {w}×{h} px)")
        if (zh, zw) != (-(-h // 64), -(-w // 64)):
            raise BitstreamError(".dpx header is inconsistent (latent size does not match the image size)")
        pos = _HEAD.size + 4 * n
        if pos + _CRC.size > len(data):
            raise BitstreamError(f"truncated .dpx file (its header announces {n} strings)")
        lengths = struct.unpack_from(f">{n}I", data, _HEAD.size)
        rest = len(data) - _CRC.size - pos - sum(lengths)  # what follows the strings: the hint section
        if rest < 0 or (version == VERSION and rest != 0):
            raise BitstreamError(".dpx string lengths do not add up to the file size")
        if version == VERSION_HINT and rest <= _HINT.size:
            raise BitstreamError(f".dpx version {VERSION_HINT} file has no room for its τ hint section "
                                 f"({rest} bytes after the strings)")
        strings = []
        for length in lengths:
            strings.append(bytes(data[pos:pos + length]))
            pos += length
        hint = _parse_hint(data[pos:len(data) - _CRC.size], h, w) if version == VERSION_HINT else None
        return cls(ARCH_NAMES[arch_id], quality, wid, h, w, (zh, zw), tuple(strings), hint)


def _parse_hint(section: bytes, height: int, width: int) -> TauHint:
    """The τ hint section (after the strings, before the CRC) → `TauHint`, or a one-line `BitstreamError`."""
    units, levels, sigma = _HINT.unpack_from(section)
    try:
        check_hint_fields(units * CELL_UNIT, levels, sigma)
    except ValueError as exc:
        raise BitstreamError(f".dpx τ hint is inconsistent: {exc}") from None
    cell = units * CELL_UNIT
    grid = hint_grid(height, width, cell)
    index = decode_index(bytes(section[_HINT.size:]), grid, levels)
    return TauHint(cell, levels, sigma, grid, index)

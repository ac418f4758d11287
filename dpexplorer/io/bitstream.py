"""The `.dpx` container: one encoded image, self-describing, checksummed.

Layout (big-endian), format version 1:

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

Reported bpp counts every byte of the file (8·len(file)/pixels), container included: the
overhead is 40 bytes, 0.0008 bpp on a Kodak image.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from dpexplorer.errors import BitstreamError
from dpexplorer.io.images import MAX_PIXELS

MAGIC = b"DPX\x89"
VERSION = 1
ARCH_IDS = {"bmshj2018-hyperprior": 1, "mbt2018-mean": 2}
ARCH_NAMES = {v: k for k, v in ARCH_IDS.items()}

_HEAD = struct.Struct(">4sBBB8sIIHHB")
_CRC = struct.Struct(">I")
MAX_STRINGS = 8


@dataclass(frozen=True)
class Bitstream:
    arch: str
    quality: int
    weights_id: bytes  # 8 bytes
    height: int
    width: int
    z_shape: tuple[int, int]
    strings: tuple[bytes, ...]

    @property
    def payload_bytes(self) -> int:
        return sum(len(s) for s in self.strings)

    def to_bytes(self) -> bytes:
        if len(self.weights_id) != 8:
            raise ValueError("weights_id must be 8 bytes")
        head = _HEAD.pack(MAGIC, VERSION, ARCH_IDS[self.arch], self.quality, self.weights_id,
                          self.height, self.width, self.z_shape[0], self.z_shape[1], len(self.strings))
        body = head + b"".join(struct.pack(">I", len(s)) for s in self.strings) + b"".join(self.strings)
        return body + _CRC.pack(zlib.crc32(body))

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
        if version != VERSION:
            raise BitstreamError(f".dpx format version {version} is not supported (this is version {VERSION})")
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
        if pos + sum(lengths) + _CRC.size != len(data):
            raise BitstreamError(".dpx string lengths do not add up to the file size")
        strings = []
        for length in lengths:
            strings.append(bytes(data[pos:pos + length]))
            pos += length
        return cls(ARCH_NAMES[arch_id], quality, wid, h, w, (zh, zw), tuple(strings))

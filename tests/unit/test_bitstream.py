import struct

import pytest

from dpexplorer.errors import BitstreamError
from dpexplorer.io.bitstream import MAGIC, Bitstream


@pytest.fixture(scope="module")
def encoded(tiny_codec):
    import numpy as np

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (70, 130, 3), dtype=np.uint8)
    return img, tiny_codec.encode(img)


def test_header_fields(encoded, tiny_codec):
    img, data = encoded
    bs = Bitstream.from_bytes(data)
    assert (bs.height, bs.width) == img.shape[:2]
    assert bs.z_shape == (2, 3)
    assert bs.arch == tiny_codec.cfg.arch and bs.quality == 1
    assert bs.weights_id == tiny_codec.weights_id
    assert bs.to_bytes() == data


def test_wrong_magic(encoded):
    with pytest.raises(BitstreamError, match="magic"):
        Bitstream.from_bytes(b"PNG\x89" + encoded[1][4:])
    with pytest.raises(BitstreamError, match="magic"):
        Bitstream.from_bytes(b"")


def test_future_version(encoded):
    import zlib

    data = bytearray(encoded[1][:-4])
    data[4] = 2
    with pytest.raises(BitstreamError, match="version 2"):
        Bitstream.from_bytes(bytes(data) + struct.pack(">I", zlib.crc32(data)))
    with pytest.raises(BitstreamError, match="corrupted"):  # without a matching checksum: damage
        Bitstream.from_bytes(bytes(data) + encoded[1][-4:])


@pytest.mark.parametrize("keep", [5, 20, 30, -1, -5])
def test_truncated(encoded, keep):
    data = encoded[1]
    with pytest.raises(BitstreamError):
        Bitstream.from_bytes(data[:keep])


def test_every_single_bit_flip_is_detected(encoded):
    data = encoded[1]
    for pos in range(len(data)):
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            with pytest.raises(BitstreamError):
                Bitstream.from_bytes(bytes(bad))


def test_other_weights_are_refused(encoded):
    from dpexplorer.codec.codec import Codec

    other = Codec.untrained(quality=1, channels=(16, 24), seed=1)
    with pytest.raises(BitstreamError, match="other weights"):
        other.decode(encoded[1])
    other_q = Codec.untrained(quality=2, channels=(16, 24), seed=0)
    with pytest.raises(BitstreamError, match="q1"):
        other_q.decode(encoded[1])


def test_inconsistent_header_with_valid_crc_is_refused(encoded):
    import zlib

    data = bytearray(encoded[1][:-4])
    struct.pack_into(">I", data, 15, 5000)  # claim another height; recompute the checksum
    forged = bytes(data) + struct.pack(">I", zlib.crc32(bytes(data)))
    with pytest.raises(BitstreamError, match="inconsistent"):
        Bitstream.from_bytes(forged)
    assert forged[:4] == MAGIC

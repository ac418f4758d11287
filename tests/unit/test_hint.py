"""The sender's τ hint (issue 36): its coding, the version-2 `.dpx`, the receiver's map, the rule."""

import dataclasses
import struct
import time
import zlib

import numpy as np
import pytest
import torch

from dpexplorer.codec.codec import Codec
from dpexplorer.decoders.synthesis import InterpolatedSynthesis
from dpexplorer.decoders.taumap import blend
from dpexplorer.errors import BitstreamError
from dpexplorer.hint import sender
from dpexplorer.hint.receiver import blend_levels, hint_tau_map
from dpexplorer.io.bitstream import Bitstream
from dpexplorer.io.tauhint import TauHint, decode_index, encode_index, hint_grid, max_coded_bytes


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def grids():
    rng = np.random.default_rng(0)
    for rows, cols, levels in [(1, 1, 2), (8, 12, 3), (5, 8, 4), (17, 3, 16), (40, 60, 3)]:
        yield rng.integers(0, levels, (rows, cols)), levels  # noise: the worst case for the contexts
        blocks = rng.integers(0, levels, (rows // 4 + 1, cols // 4 + 1))
        yield np.repeat(np.repeat(blocks, 4, 0), 4, 1)[:rows, :cols], levels  # regions, as real hints are
        yield np.full((rows, cols), levels - 1), levels


# ---- coding --------------------------------------------------------------------------------------

def test_coding_round_trip():
    for grid, levels in grids():
        hint = TauHint.from_array(grid, cell=64, levels=levels, sigma=16)
        coded = encode_index(hint.index, hint.grid, levels)
        assert decode_index(coded, hint.grid, levels) == hint.index
        assert len(coded) <= max_coded_bytes(grid.size)
        assert np.array_equal(hint.array(), grid)


def test_coding_compresses_regions():
    """A real hint is a few regions: far below the 1.58 bits per cell of three levels written plainly."""
    grid = np.zeros((8, 12), int)
    grid[3:, :] = 2
    grid[3, 4] = 1
    assert len(encode_index(TauHint.from_array(grid, cell=64, levels=3, sigma=16).index, (8, 12), 3)) <= 8
    assert len(encode_index(bytes(96), (8, 12), 3)) <= 3


def test_crafted_strings_are_refused_or_canonical():
    """Random, cut and extended strings: a `BitstreamError`, or a grid the encoder writes exactly so."""
    rng = np.random.default_rng(1)
    good = encode_index(bytes(rng.integers(0, 3, 96).tolist()), (8, 12), 3)
    cases = [b"", good + b"\x00", good + rng.bytes(50), good[:-1], bytes(10_000), b"\xff" * 40]
    cases += [rng.bytes(int(rng.integers(1, 40))) for _ in range(500)]
    start = time.perf_counter()
    for data in cases:
        try:
            index = decode_index(data, (8, 12), 3)
        except BitstreamError:
            continue
        assert len(index) == 96 and max(index) < 3 and encode_index(index, (8, 12), 3) == data
    assert time.perf_counter() - start < 10  # no hang


def test_hint_fields_are_checked():
    with pytest.raises(ValueError, match="multiple of 16"):
        TauHint(40, 3, 16, (1, 1), b"\x00")
    with pytest.raises(ValueError, match="levels"):
        TauHint(64, 1, 16, (1, 1), b"\x00")
    with pytest.raises(ValueError, match="grid"):
        TauHint(64, 3, 16, (2, 2), b"\x00")
    with pytest.raises(ValueError, match="level index"):
        TauHint(64, 3, 16, (1, 1), b"\x03")


# ---- the version-2 container ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def codec():
    return Codec.untrained(quality=1, channels=(8, 8), seed=0)


@pytest.fixture(scope="module")
def synthesis(codec):
    torch.manual_seed(1)
    theta1 = {k: v + 0.05 * torch.randn_like(v) if k.endswith("weight") else v.clone()
              for k, v in codec.model.g_s.state_dict().items()}
    return InterpolatedSynthesis(codec.model.g_s, theta1)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:70, 0:130]
    img = np.stack([xx * 1.5, yy * 2.0, 100 + 0 * xx], axis=2).astype(np.float64)
    img[:, 65:] += rng.normal(0, 30, (70, 65, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(codec, synthesis, image):
    plain = codec.encode(image)
    hinted = sender.encode_with_hint(codec, image, synthesis=synthesis, cell=32, max_share=None)
    return plain, hinted


def test_the_hint_fits_its_byte_budget_or_is_left_out(codec, synthesis, image, files):
    """At most MAX_SHARE of the file: coarser cells first, then no hint (this tiny file is ~100 bytes)."""
    plain, hinted = files
    assert len(hinted) - len(plain) > 0.01 * len(plain)  # 32-px cells would not fit 1 %
    fitted = sender.encode_with_hint(codec, image, synthesis=synthesis, cell=32)
    extra = len(fitted) - len(plain)
    assert extra == 0 or extra <= 0.01 * len(plain)
    loose = sender.encode_with_hint(codec, image, synthesis=synthesis, cell=32, max_share=0.5)
    bs = Bitstream.from_bytes(loose)
    assert bs.hint is not None and bs.hint_bytes <= 0.5 * len(plain)


def test_files_without_a_hint_are_version_1_byte_for_byte(codec, image, files):
    plain, hinted = files
    assert plain[4] == 1 and hinted[4] == 2
    bs = Bitstream.from_bytes(plain)
    assert bs.hint is None and bs.hint_bytes == 0 and bs.to_bytes() == plain
    # the same strings and header: dropping the hint gives the plain file back, bit for bit
    assert dataclasses.replace(Bitstream.from_bytes(hinted), hint=None).to_bytes() == plain
    # constructors that predate the hint still work and write version 1
    assert Bitstream(bs.arch, bs.quality, bs.weights_id, bs.height, bs.width, bs.z_shape, bs.strings).to_bytes() == plain


def test_a_hinted_file_shares_its_plain_twins_cached_decodes(codec, files):
    """Decodes of ŷ are cached by the file without its hint: the sender's check decode of the plain bytes
    serves the receiver's first decode of the hinted file."""
    from dpexplorer.decoders.stream import Stream

    plain, hinted = files
    assert Stream(hinted, codec).sha256 != Stream(plain, codec).sha256
    assert Stream(hinted, codec).content_sha256 == Stream(plain, codec).sha256 == Stream(plain, codec).content_sha256


def test_version_2_round_trip(codec, image, files):
    plain, hinted = files
    bs = Bitstream.from_bytes(hinted)
    # 16-px cells (sender.CELL) do not fit this small file's 1 % cap: the cells doubled once
    assert sender.CELL == 16 and bs.hint.cell == 32
    assert bs.hint.levels == sender.LEVELS and bs.hint.sigma == sender.SIGMA
    assert bs.hint.grid == hint_grid(70, 130, 32) == (3, 5)
    assert bs.to_bytes() == hinted
    assert len(hinted) - len(plain) == bs.hint_bytes
    # the receiver's ŷ is the same with and without the hint
    assert torch.equal(codec.decode_latent(hinted)[0], codec.decode_latent(plain)[0])
    assert np.array_equal(codec.decode(hinted).x_hat, codec.decode(plain).x_hat)


def test_version_2_truncated_and_flipped(files):
    hinted = files[1]
    for keep in range(len(hinted)):
        with pytest.raises(BitstreamError):
            Bitstream.from_bytes(hinted[:keep])
    for pos in range(len(hinted)):
        bad = bytearray(hinted)
        bad[pos] ^= 0x10
        with pytest.raises(BitstreamError):
            Bitstream.from_bytes(bytes(bad))


def _strings_end(data: bytes) -> int:
    n = data[27]
    return 28 + 4 * n + sum(struct.unpack_from(f">{n}I", data, 28))


def test_crafted_hint_sections_with_valid_crc(files):
    plain, hinted = files
    body, end = hinted[:-4], _strings_end(hinted)
    coded = body[end + 3:]
    head_v2 = body[:4] + b"\x02" + body[5:end]
    cases = {
        "no room": head_v2,
        "cell 0": head_v2 + bytes([0, 3, 16]) + coded,
        "levels 1": head_v2 + bytes([2, 1, 16]) + coded,
        "levels 17": head_v2 + bytes([2, 17, 16]) + coded,
        "empty map": head_v2 + bytes([2, 3, 16]),
        "other cell": head_v2 + bytes([4, 3, 16]) + coded,  # 64-px cells: a 2×3 grid, not the coded 3×5
        "huge cell": head_v2 + bytes([255, 3, 16]) + coded,  # a 1×1 grid
        "junk map": head_v2 + bytes([2, 3, 16]) + bytes(range(200)),
        "long map": head_v2 + bytes([1, 3, 16]) + b"\xaa" * 5000,
    }
    for name, body in cases.items():
        with pytest.raises(BitstreamError):
            Bitstream.from_bytes(with_crc(body))
    with pytest.raises(BitstreamError, match="version 2"):
        Bitstream.from_bytes(with_crc(cases["no room"]))
    # a version-1 file with anything after its strings is refused as before
    with pytest.raises(BitstreamError, match="add up"):
        Bitstream.from_bytes(with_crc(plain[:-4] + b"\x02\x03\x10\x00"))


def test_a_hint_that_does_not_fit_the_image_is_not_written(files):
    bs = Bitstream.from_bytes(files[1])
    wrong = TauHint.from_array(np.zeros((2, 2), np.uint8), cell=32, levels=3, sigma=16)
    with pytest.raises(ValueError, match="does not cover"):
        dataclasses.replace(bs, hint=wrong).to_bytes()


# ---- the receiver -----------------------------------------------------------------------------------

def test_tau_map_is_deterministic_in_range_and_smooth():
    rng = np.random.default_rng(3)
    hint = TauHint.from_array(rng.integers(0, 3, (4, 6)), cell=64, levels=3, sigma=16)
    m = hint_tau_map(hint, 250, 330)
    assert m.dtype == np.float32 and m.shape == (250, 330)
    assert 0.0 <= m.min() and m.max() <= 1.0
    assert hint_tau_map(hint, 250, 330).tobytes() == m.tobytes()
    assert np.abs(np.diff(m, axis=1)).max() < 0.05  # σ = 16 px: no cell edges left
    with pytest.raises(ValueError, match="does not cover"):
        hint_tau_map(hint, 300, 330)


def test_tau_map_special_cases():
    ones = TauHint.from_array(np.full((2, 3), 2), cell=64, levels=3, sigma=24)
    assert np.all(hint_tau_map(ones, 100, 150) == 1.0)  # uniform stays uniform, edges included
    assert np.all(hint_tau_map(dataclasses.replace(ones, index=bytes(6)), 100, 150) == 0.0)
    grid = np.array([[0, 1, 2], [2, 1, 0]])
    plain = hint_tau_map(TauHint.from_array(grid, cell=32, levels=3, sigma=0), 50, 70)
    expected = np.repeat(np.repeat(grid / 2, 32, 0), 32, 1)[:50, :70]
    assert np.array_equal(plain, expected.astype(np.float32))  # σ = 0: the cells, upsampled
    one_cell = np.zeros((5, 5), int)
    one_cell[2, 2] = 2
    m = hint_tau_map(TauHint.from_array(one_cell, cell=32, levels=3, sigma=8), 160, 160)
    assert np.unravel_index(np.argmax(m), m.shape) in {(79, 79), (79, 80), (80, 79), (80, 80)}


def test_blend_levels():
    rng = np.random.default_rng(4)
    decodes = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(3)]
    m = rng.random((20, 30)).astype(np.float32)
    assert np.array_equal(blend_levels(decodes[::2], m), blend(decodes[0], decodes[2], m))
    for i, tau in enumerate((0.0, 0.5, 1.0)):
        assert np.array_equal(blend_levels(decodes, np.full((20, 30), tau, np.float32)), decodes[i])
    quarter = blend_levels(decodes, np.full((20, 30), 0.25, np.float32))
    assert np.array_equal(quarter, blend(decodes[0], decodes[1], np.full((20, 30), 0.5, np.float32)))


# ---- the rule ---------------------------------------------------------------------------------------

def test_rule_steps_down_from_grain():
    # cells: τ = 1 best and clean; τ = 1 best but grainy (½ clean); everything grainy; a tie
    lpips = np.array([[[0.5, 0.5, 0.5, 0.2]], [[0.3, 0.3, 0.3, 0.2]], [[0.1, 0.1, 0.1, 0.3]]])
    grain = np.array([[[1.0, 1.0, 1.6, 1.0]], [[1.1, 1.2, 1.7, 1.0]], [[1.2, 2.0, 3.0, 1.0]]])
    assert choose_list(lpips, grain, 1.5) == [2, 1, 0, 0]
    assert choose_list(lpips, grain, 5.0) == [2, 2, 2, 0]


def choose_list(lpips, grain, thr):
    return sender.choose_levels(lpips, grain, thr)[0].tolist()


def half_textured(rng, h: int = 64, w: int = 192):
    """A 'photo' flat on the left and textured on the right, and its τ = 0 decode, which loses the texture."""
    original = np.full((h, w, 3), 120.0)
    original[:, w // 2:] += rng.normal(0, 30, (h, w - w // 2, 3))
    original = np.clip(np.rint(original), 0, 255).astype(np.uint8)
    smooth = original.copy()
    smooth[:, w // 2:] = 120
    return original, smooth


def test_compute_hint_on_a_synthetic_photo():
    """Left: flat, where τ = 1 paints grain; right: texture, which only τ = 1 keeps."""
    rng = np.random.default_rng(5)
    original, smooth = half_textured(rng)
    h, w = original.shape[:2]
    grainy = original.astype(np.float64)
    grainy[:, :96] += rng.normal(0, 12, (h, 96, 3))  # τ = 1: the texture is right, the flat area is grainy
    grainy = np.clip(np.rint(grainy), 0, 255).astype(np.uint8)
    decodes = {0.0: smooth, 0.5: blend(smooth, grainy, np.full((h, w), 0.5, np.float32)), 1.0: grainy}
    hint = sender.compute_hint(original, decodes.__getitem__, cell=32, levels=3, sigma=8)
    grid = hint.array()
    assert grid.shape == (2, 6) and hint.sigma == 8
    assert np.all(grid[:, :2] == 0) and np.all(grid[:, 4:] == 2)  # away from the boundary


def test_another_receivers_grain_bounds_the_levels_too():
    """Right half: texture that τ = 1 keeps, so the hint takes τ = 1 there. A second receiver whose τ = 1 lays
    strong noise over that texture (five times its energy) makes τ = 1 grainy there: with it checked, those cells
    step down; LPIPS and PSNR stay the first receiver's."""
    rng = np.random.default_rng(8)
    original, smooth = half_textured(rng)
    h, w = original.shape[:2]
    noisy = original.astype(np.float64)
    noisy[:, 96:] += rng.normal(0, 60, (h, 96, 3))
    noisy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    first = {0.0: smooth, 0.5: blend(smooth, original, np.full((h, w), 0.5, np.float32)), 1.0: original}
    second = {tau: blend(smooth, noisy, np.full((h, w), tau, np.float32)) for tau in (0.0, 0.5, 1.0)}
    alone = sender.compute_hint(original, first.__getitem__, cell=32, levels=3, sigma=8).array()
    both = sender.compute_hint(original, first.__getitem__, cell=32, levels=3, sigma=8,
                               grain_receivers=[second.__getitem__]).array()
    assert np.all(alone[:, 4:] == 2) and np.all(both[:, 4:] < 2)
    assert np.array_equal(alone[:, :2], both[:, :2])  # the flat cells, where both receivers agree


def test_grain_cells_sees_only_its_cell():
    rng = np.random.default_rng(6)
    original = np.full((64, 128, 3), 100, np.uint8)
    noisy = original.astype(np.float64)
    noisy[:, 64:] += rng.normal(0, 8, (64, 64, 3))
    noisy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    from dpexplorer.metrics.image import patch_energies

    g = sender.grain_cells(patch_energies(original), patch_energies(noisy), 64, height=64, width=128)
    assert g.shape == (1, 2) and g[0, 0] == pytest.approx(1.0, abs=0.05) and g[0, 1] > 10


def test_lpips_map_averages_to_lpips_and_tiles(photo):
    from dpexplorer.metrics.image import lpips, lpips_map

    rng = np.random.default_rng(7)
    noisy = np.clip(photo.astype(np.float64) + rng.normal(0, 10, photo.shape), 0, 255).astype(np.uint8)
    m = lpips_map(photo, noisy)
    assert m.shape == photo.shape[:2] and m.min() >= 0
    assert float(m.mean()) == pytest.approx(lpips(photo, noisy), rel=0.02)
    # 64-px tiles with 16 px of context (the real ones are 1024 px): AlexNet's deep layers see less
    # around a tile's edge, yet the map stays close to the untiled one (18 % here, mean absolute)
    tiled = sender.lpips_map_tiled(photo, noisy, tile=64, halo=16)
    assert tiled.shape == m.shape and float(np.abs(tiled - m).mean()) < 0.3 * float(m.mean())


def test_budget_rule_spends_psnr_where_it_buys_most_lpips():
    """Two cells, two levels. Realism helps both equally (LPIPS −0.2), but costs cell 0 four times the
    MSE of cell 1: a budget for one move takes cell 1; a big one takes both; none keeps τ = 0."""
    lpips = np.array([[[0.5, 0.5]], [[0.3, 0.3]]])
    mse = np.array([[[10.0, 10.0]], [[18.0, 12.0]]])
    grain = np.ones_like(lpips)
    counts = np.ones((1, 2))

    def rule(budget_db, grain_grids=grain):
        return sender.choose_levels_budget(lpips, grain_grids, 1.5, mse_grids=mse, counts=counts,
                                           psnr_budget=budget_db)[0].tolist()

    assert rule(10 * np.log10(11.5 / 10)) == [0, 1]  # mean MSE may grow 10 → 11.5
    assert rule(10 * np.log10(15.5 / 10)) == [1, 1]
    assert rule(0.0) == [0, 0]
    grainy = grain.copy()
    grainy[1, 0, 1] = 2.0  # cell 1's realism is grainy: only cell 0 may move
    assert rule(10 * np.log10(15.5 / 10), grainy) == [1, 0]

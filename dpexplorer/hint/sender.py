"""The sender's side of the τ hint: per cell, the τ level whose decode looks most like the original,
unless it invents grain where the original is smooth, within a PSNR budget; then the `.dpx` that
carries it.

Scores per cell and level: LPIPS against the original (the mean of LPIPS's spatial map over the cell:
one network pass per level for the whole image, not one per cell), the smooth-area grain (`metrics.image.smooth_area_grain`'s
measure on the cell's smoothest half of 16-px patches) and the MSE. The default rule
(`choose_levels_budget`) minimises the image's LPIPS over the levels whose grain is ≤ GRAIN_MAX, with
the image's PSNR at most PSNR_BUDGET dB below τ = 0's. The first rule, lowest LPIPS per cell
stepped down while grainy (`choose_levels`), lost 0.5-1.0 dB on train_photos, and a per-cell PSNR cap
gave up too much LPIPS; both stay for the record (docs/log/hint-choice.txt, stages 1 and 2).
The receiver smooths the map (σ px, `receiver.hint_tau_map`) and blends its τ = 0 and τ = 1 decodes in
pixel space with it (`pixel_receiver`; level i of L is x̂₀ + i/(L − 1)·(x̂₁ − x̂₀)).

The defaults were chosen on train_photos by `tools/hint_choice.py` (log: docs/log/hint-choice.txt), the levels,
cell size and σ since by `tools/hint_levels_choice.py` (docs/log/2026-12-07-hint-levels.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from dpexplorer.decoders.stream import Stream, open_stream
from dpexplorer.decoders.taumap import blend
from dpexplorer.io.bitstream import hint_section_bytes
from dpexplorer.io.images import ImageSource, load_image
from dpexplorer.io.tauhint import TauHint, hint_grid
from dpexplorer.metrics.image import grain_ratio, lpips_maps, patch_energies

# Chosen on train_photos by tools/hint_choice.py (docs/log/hint-choice.txt) and tools/hint_levels_choice.py (stages 4
# and 5, docs/log/2026-12-07-hint-levels.md).
CELL = 16  # px, where the 1 % cap allows (else 32, 64, 128): with σ 8, 0.4 points more LPIPS gain than 32 px
# with σ 16 on the choice photos, 0.2 on the check photos (stage 5); 64 and 96: 2-3 points less than 32 (stage 1)
LEVELS = 4  # τ ∈ {0, ⅓, ⅔, 1}: 0.2-0.7 points more LPIPS gain than {0, ½, 1} on train_photos (stage 4);
# 5 levels gained 0.1 point more for 6-18 % more bytes
SIGMA = 8  # px, the receiver's smoothing of the upsampled map (16 with 16-px cells: 0.3 points less, stage 5)
GRAIN_MAX = 1.5  # a level whose smooth-area grain over a cell exceeds this is not chosen there (never bound on train_photos)
# ... in the perceptual synthesis's decode and in the app's default τ decoder's (`grain_receivers`): one map serves
# every family, and the pixel decoder's DDIM 1 keeps grain on some smooth areas where θ₁ does not (Kodak's kodim20
# hinted, q2: 2.37 with θ₁'s check alone, 1.37 with both; the same LPIPS on train_photos, docs/log)
MAX_SHARE = 0.01  # the hint makes a file at most 1 % larger (else coarser cells, else no hint)
PSNR_BUDGET = 0.4  # dB: the image's PSNR may fall this much below τ = 0's (`choose_levels_budget`); 0.45 gained
# 0.3-0.7 points on train_photos but brought a photo within 0.04 dB of the hint issue's 0.5 dB (stage 4)

PATCH = 16  # px, the grain measure's patches (`smooth_area_grain`)
CELL_SHARE = 0.5  # a cell's grain is measured on its smoothest half of patches
_LPIPS_TILE = 1024  # px: above this, LPIPS's map is computed on tiles (memory), each with a halo of context
_LPIPS_HALO = 32


def level_taus(levels: int) -> list[float]:
    return [i / (levels - 1) for i in range(levels)]


def cell_means(per_pixel: np.ndarray, cell: int) -> np.ndarray:
    """Mean of a per-pixel map over each cell (partial cells at the right and bottom edges: their pixels)."""
    h, w = per_pixel.shape
    rows, cols = np.arange(0, h, cell), np.arange(0, w, cell)
    sums = np.add.reduceat(np.add.reduceat(per_pixel.astype(np.float64), rows, axis=0), cols, axis=1)
    return sums / np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))


def grain_cells(e_original: np.ndarray, e_decoded: np.ndarray, cell: int, *, patch: int = PATCH,
                share: float = CELL_SHARE, height: int, width: int) -> np.ndarray:
    """Smooth-area grain per cell from the whole image's patch energies (`patch_energies`; computed once
    on the whole image, so a cell's high-pass sees its neighbours, not an artificial edge)."""
    if cell % patch:
        raise ValueError(f"the cell size ({cell}) must be a multiple of the grain patch ({patch})")
    k = cell // patch
    rows, cols = hint_grid(height, width, cell)
    out = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            block = (slice(r * k, (r + 1) * k), slice(c * k, (c + 1) * k))
            out[r, c] = grain_ratio(e_original[block], e_decoded[block], share)
    return out


def choose_levels(lpips_grids: np.ndarray, grain_grids: np.ndarray, grain_max: float, *,
                  mse_grids: np.ndarray | None = None, psnr_drop: float | None = None) -> np.ndarray:
    """The rule: per cell, the level of lowest LPIPS; down one level while its grain exceeds `grain_max`.
    With `psnr_drop` (dB), a level whose MSE over the cell exceeds τ = 0's by more than that factor
    is out too: every cell then loses at most `psnr_drop` dB, so the image does (its MSE is the cells'
    pixel-weighted mean), up to the smoothing of the map. Inputs are levels × rows × cols; returns the
    uint8 rows × cols grid of level indexes."""
    out = np.zeros(lpips_grids.shape, bool)
    if psnr_drop is not None:
        out = mse_grids > mse_grids[:1] * 10 ** (psnr_drop / 10)
    index = np.argmin(np.where(out, np.inf, lpips_grids), axis=0)  # ties go to the lower τ; level 0 is never out
    for _ in range(len(lpips_grids)):
        grain = np.take_along_axis(grain_grids, index[None], axis=0)[0]
        down = ((grain > grain_max) | np.take_along_axis(out, index[None], axis=0)[0]) & (index > 0)
        if not down.any():
            break
        index = index - down
    return index.astype(np.uint8)


def choose_levels_budget(lpips_grids: np.ndarray, grain_grids: np.ndarray, grain_max: float, *,
                         mse_grids: np.ndarray, counts: np.ndarray, psnr_budget: float) -> np.ndarray:
    """The rule with an image-level PSNR budget: minimise the image's LPIPS (the pixel-weighted mean of the
    cells') subject to its MSE staying within `psnr_budget` dB of τ = 0's, over the levels whose grain is
    ≤ `grain_max` in each cell (level 0 always qualifies). Solved by a Lagrange multiplier λ, as rate–
    distortion choices are (Everett, "Generalized Lagrange multiplier method", Operations Research 11,
    1963): each cell takes argmin LPIPS + λ·MSE, and λ is the smallest (bisection) that meets the budget.
    Unlike a per-cell cap, cells where realism costs little PSNR may spend what others save."""
    allowed = grain_grids <= grain_max
    allowed[0] = True
    weights = counts / counts.sum()

    def pick(lam: float) -> np.ndarray:
        return np.argmin(np.where(allowed, lpips_grids + lam * mse_grids, np.inf), axis=0)

    def mse(index: np.ndarray) -> float:
        return float((np.take_along_axis(mse_grids, index[None], axis=0)[0] * weights).sum())

    budget = float((mse_grids[0] * weights).sum()) * 10 ** (psnr_budget / 10)
    index = pick(0.0)
    if mse(index) > budget:
        lo, hi = 0.0, 1e-4
        while mse(pick(hi)) > budget and hi < 1e12:  # λ → ∞ picks each cell's lowest MSE: within budget
            lo, hi = hi, hi * 4
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if mse(pick(mid)) <= budget else (mid, hi)
        index = pick(hi)
    return index.astype(np.uint8)


def lpips_maps_tiled(original: np.ndarray, decodes: list[np.ndarray], *, tile: int = _LPIPS_TILE,
                     halo: int = _LPIPS_HALO) -> list[np.ndarray]:
    """LPIPS's spatial map of each decode; above `tile` px on a side, tile by tile with `halo` px of context
    around each (AlexNet's activations of a whole 48-MP image would need several GB)."""
    h, w = original.shape[:2]
    if h <= tile and w <= tile:
        return lpips_maps(original, decodes)
    out = [np.empty((h, w), np.float32) for _ in decodes]
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            t0, l0 = max(0, top - halo), max(0, left - halo)
            t1, l1 = min(h, top + tile + halo), min(w, left + tile + halo)
            parts = lpips_maps(original[t0:t1, l0:l1], [d[t0:t1, l0:l1] for d in decodes])
            for full, part in zip(out, parts):
                full[top:top + tile, left:left + tile] = part[top - t0:top - t0 + tile, left - l0:left - l0 + tile]
    return out


def lpips_map_tiled(original: np.ndarray, decoded: np.ndarray, *, tile: int = _LPIPS_TILE,
                    halo: int = _LPIPS_HALO) -> np.ndarray:
    return lpips_maps_tiled(original, [decoded], tile=tile, halo=halo)[0]


@dataclasses.dataclass
class LevelScores:
    """What the rule needs of one decode: LPIPS's spatial map and the patch energies (reused across cell
    sizes by the parameter choice)."""

    lpips_px: np.ndarray
    energies: np.ndarray
    sq_err: np.ndarray  # H×W squared error against the original, mean over RGB (the PSNR cap's MSE)
    # the patch energies of the same level through other receivers: a cell's grain is the largest of them all
    also_energies: tuple[np.ndarray, ...] = ()


def squared_error(original: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    return ((original.astype(np.float32) - decoded.astype(np.float32)) ** 2).mean(axis=2)


def level_scores(original: np.ndarray, decoded: np.ndarray) -> LevelScores:
    return LevelScores(lpips_map_tiled(original, decoded), patch_energies(decoded, patch=PATCH),
                       squared_error(original, decoded))


def hint_from_scores(scores: list[LevelScores], e_original: np.ndarray, height: int, width: int, *,
                     cell: int = CELL, sigma: int = SIGMA, grain_max: float = GRAIN_MAX,
                     psnr_drop: float | None = None, psnr_budget: float | None = PSNR_BUDGET) -> TauHint:
    """The hint from each level's scores: `psnr_budget` (dB, image-level; `choose_levels_budget`), else the
    LPIPS-and-grain rule with an optional per-cell `psnr_drop` cap (`choose_levels`)."""
    lp = np.stack([cell_means(s.lpips_px, cell) for s in scores])
    gr = np.stack([np.max([grain_cells(e_original, e, cell, height=height, width=width)
                           for e in (s.energies, *s.also_energies)], axis=0) for s in scores])
    mse = np.stack([cell_means(s.sq_err, cell) for s in scores])
    if psnr_budget is not None:
        rows, cols = np.arange(0, height, cell), np.arange(0, width, cell)
        counts = np.outer(np.diff(np.append(rows, height)), np.diff(np.append(cols, width))).astype(np.float64)
        index = choose_levels_budget(lp, gr, grain_max, mse_grids=mse, counts=counts, psnr_budget=psnr_budget)
    else:
        index = choose_levels(lp, gr, grain_max, mse_grids=mse, psnr_drop=psnr_drop)
    return TauHint.from_array(index, cell=cell, levels=len(scores), sigma=sigma)


def compute_hint(original: np.ndarray, decode_at: Callable[[float], np.ndarray], *, cell: int = CELL,
                 levels: int = LEVELS, sigma: int = SIGMA, grain_max: float = GRAIN_MAX,
                 psnr_budget: float | None = PSNR_BUDGET, max_bytes: int | None = None,
                 grain_receivers: Sequence[Callable[[float], np.ndarray]] = ()) -> TauHint | None:
    """The τ hint of `original` (H×W×3 uint8), given `decode_at(tau)`, the receiver's decode at τ as an
    H×W×3 uint8 image (any decoder family); called once per level, τ = i / (levels − 1). Each of
    `grain_receivers` (other receivers' decodes at τ) bounds the grain too: a level is chosen in a cell only
    where none of them exceeds `grain_max` there; LPIPS and PSNR are `decode_at`'s.

    With `max_bytes`, the hint must fit: the cells double (`cell`, 2·`cell`, 4·`cell`, 8·`cell`: coarser,
    fewer bytes, the same scores) until its section does, else None (a small file carries no hint)."""
    h, w = original.shape[:2]
    e_original = patch_energies(original, patch=PATCH)
    decodes = []
    also = []
    for tau in level_taus(levels):
        decodes.append(decode_at(tau))
        also.append(tuple(patch_energies(receiver(tau), patch=PATCH) for receiver in grain_receivers))
        if decodes[-1].shape != original.shape:
            raise ValueError(f"decode at τ = {tau} is {decodes[-1].shape}, the original {original.shape}")
    maps = lpips_maps_tiled(original, decodes)  # the original's features once for all levels
    scores = [LevelScores(m, patch_energies(d, patch=PATCH), squared_error(original, d), e)
              for m, d, e in zip(maps, decodes, also)]
    for size in (cell, 2 * cell, 4 * cell, 8 * cell) if max_bytes is not None else (cell,):
        hint = hint_from_scores(scores, e_original, h, w, cell=size, sigma=sigma, grain_max=grain_max,
                                psnr_budget=psnr_budget)
        if max_bytes is None or hint_section_bytes(hint) <= max_bytes:
            return hint
    return None


def synthesis_decodes(codec, y_hat, height: int, width: int, *, synthesis, taus: list[float]) -> list[np.ndarray]:
    """The perceptual synthesis's decodes of ŷ at each τ (θ_τ blended once per τ; τ = 0 is the codec's g_s)."""
    return [codec.synthesize(y_hat, height, width, g_s=synthesis.at(t)) for t in taus]


def pixel_receiver(plain: np.ndarray, full: np.ndarray) -> Callable[[float], np.ndarray]:
    """The receiver's decode at τ: x̂₀ + τ·(x̂₁ − x̂₀) in pixel space (`decoders.taumap.blend`, the τ-map path
    the synthesis family already has), from its τ = 0 and τ = 1 decodes. Chosen over decodes at θ_τ per level
    (`receiver.blend_levels`): as good on train_photos and one g_s pass fewer at each end."""
    return lambda tau: blend(plain, full, tau)


def encode_with_hint(codec, image: ImageSource, *, synthesis, cell: int = CELL, levels: int = LEVELS,
                     sigma: int = SIGMA, grain_max: float = GRAIN_MAX, psnr_budget: float | None = PSNR_BUDGET,
                     max_share: float | None = MAX_SHARE, effort: int = 0,
                     progress: Callable[[int, int], None] | None = None,
                     also_checked: Sequence[Callable[[Stream], np.ndarray]] = ()) -> bytes:
    """Encode `image` and add the τ hint computed with the perceptual `synthesis`
    (`InterpolatedSynthesis`: `synthesis.at(tau)` is the g_s at τ): a format-version-2 `.dpx`.

    The decodes are the receiver's: ŷ comes from entropy-decoding the very bytes written (the `Stream` of the
    file without a hint), x̂₀ and x̂₁ are g_s(ŷ; θ₀) and g_s(ŷ; θ₁), and a level's image their pixel blend
    (`pixel_receiver`). Each of `also_checked` maps that stream to another family's τ = 1
    decode, whose blend with x̂₀ bounds the grain as well (`compute_hint`'s `grain_receivers`). `effort` and
    `progress` go to `Codec.encode` (the hint is computed on the refined bitstream, since that is what the
    receiver decodes)."""
    img = load_image(image)
    bitstream = codec.parse(codec.encode(img, effort=effort, progress=progress))
    plain_bytes = bitstream.to_bytes()
    # the file as the receiver opens it: ŷ and x̂₀ decoded once, for θ₁'s decode and for every other check
    stream = open_stream(plain_bytes, codec)
    plain, full = stream.plain(), stream.synthesize(g_s=synthesis.at(1.0))
    others = [pixel_receiver(plain, decode(stream)) for decode in also_checked]
    # the hint may make the file at most MAX_SHARE larger than without it: a section of s bytes on a file of
    # n is a share s / n, so s ≤ MAX_SHARE · n
    hint = compute_hint(img, pixel_receiver(plain, full), cell=cell, levels=levels, sigma=sigma,
                        grain_max=grain_max, psnr_budget=psnr_budget,
                        max_bytes=None if max_share is None else int(max_share * len(plain_bytes)),
                        grain_receivers=others)
    return plain_bytes if hint is None else dataclasses.replace(bitstream, hint=hint).to_bytes()


def default_decoder_check(codec) -> list[Callable[[Stream | bytes], np.ndarray]]:
    """The app's default τ decoder (`registry.default_family`) at its own setting, raw τ = 1, as a function
    of the file (or its opened `Stream`), where it is not the synthesis (whose decode the hint is computed on) and its weights were
    trained on this codec's ŷ; else nothing."""
    from dpexplorer.decoders.registry import FAMILIES, default_family
    from dpexplorer.decoders.synthesis import SynthesisDecoder

    q = codec.cfg.quality
    family = FAMILIES[default_family(q)]
    if family is SynthesisDecoder or q not in family.qualities():
        return []
    decoder = family.load(q, codec.cfg.arch)
    if decoder.codec.latent_sha256 != codec.latent_sha256:
        return []
    options = family.default_options(use_hint=False, use_guard=False)
    return [lambda data: decoder.reconstruct(data, 1.0, options=options)]


def encode(codec, image: ImageSource, *, hint: bool = True, effort: int = 0,
           progress: Callable[[int, int], None] | None = None) -> bytes:
    """The project's encoder (the CLI's and the app's): the codec's bitstream with the sender's τ hint
    (format version 2) when `hint` is set and this codec's quality has a shipped perceptual synthesis
    trained for its ŷ to compute it with; else the plain version-1 file (`--no-hint`, CompressAI's
    published weights, a quality without a synthesis). The hint's grain rule also checks the app's default
    τ decoder (`default_decoder_check`). `effort` > 0 refines the latents first
    (`dpexplorer.codec.effort`; `progress(done, total)` follows it)."""
    from dpexplorer.decoders.synthesis import SynthesisDecoder

    if hint and codec.cfg.quality in SynthesisDecoder.qualities():
        decoder = SynthesisDecoder.load(codec.cfg.quality, codec.cfg.arch)
        if decoder.codec.latent_sha256 == codec.latent_sha256:
            return encode_with_hint(codec, image, synthesis=decoder.synthesis, effort=effort, progress=progress,
                                    also_checked=default_decoder_check(codec))
    return codec.encode(image, effort=effort, progress=progress)

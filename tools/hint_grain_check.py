"""A/B of the hint's grain rule (train_photos only): the levels' grain checked on the perceptual synthesis's
decode alone, on it and the pixel decoder's DDIM 1 decode ("max"), or with LPIPS also taken from the pixel
decoder ("pixmax"); each hint applied to both decoders' τ = 1 decodes, against τ = 0. One JSON line per image.

    python tools/hint_grain_check.py 2 choice results/hint-check/choice-q2.jsonl   # 12 photos (seed 36)
    python tools/hint_grain_check.py 2 check results/hint-check/check-q2.jsonl     # 12 others (seed 3636)
    python tools/hint_grain_check.py 2 kodak:kodim20.png out.jsonl                 # a diagnosis, not a choice
    python tools/hint_grain_check.py 2 dir:FOLDER out.jsonl                        # every image of a folder

Log: docs/log/2026-12-07-hint-checks-the-default-decoder.md.
"""

import json
import random
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch

from dpexplorer.decoders.pixel.decoder import PixelDecoder
from dpexplorer.decoders.synthesis import SynthesisDecoder
from dpexplorer.decoders.taumap import blend, hint_tau_map
from dpexplorer.hint import sender
from dpexplorer.hub.loading import get_codec
from dpexplorer.io.bitstream import hint_section_bytes
from dpexplorer.io.images import list_images, load_image
from dpexplorer.io.tauhint import TauHint
from dpexplorer.metrics.image import lpips, patch_energies, psnr, smooth_area_grain


def photos(which: str) -> list[Path]:
    if which.startswith("kodak:"):
        return [Path("../shared/kodak") / name for name in which[6:].split(",")]
    if which.startswith("dir:"):
        return list_images(Path(which[4:]))
    pool = [p for p in list_images(Path("../shared/train_photos")) if p.name != "sun-0003.png"]
    choice = random.Random(36).sample(pool, 12)
    return choice if which == "choice" else random.Random(3636).sample([p for p in pool if p not in choice], 12)


def decodes(codec, synth, pix, img):
    """The file without a hint and its decodes at raw τ: x̂₀, θ₁'s τ = 1 and the pixel decoder's DDIM 1 τ = 1."""
    raw = PixelDecoder.default_options(use_hint=False, use_guard=False)
    data = codec.encode(img)
    stream = synth.open(data)
    return data, stream.plain(), synth.reconstruct(stream, 1.0, options=raw), pix.reconstruct(pix.open(data), 1.0,
                                                                                                options=raw)


def measures(img, x) -> list[float]:
    """PSNR, LPIPS and the smooth-area grain of `x` against `img`."""
    return [psnr(img, x), lpips(img, x), smooth_area_grain(img, x)]


def levels(img, lpips_receiver, grain_receivers) -> np.ndarray:
    """The shipped rule (`choose_levels_budget`), LPIPS and MSE from one receiver, grain the largest of several."""
    h, w = img.shape[:2]
    e0 = patch_energies(img, patch=sender.PATCH)
    taus = sender.level_taus(sender.LEVELS)
    decodes = [lpips_receiver(t) for t in taus]
    lp = np.stack([sender.cell_means(m, sender.CELL) for m in sender.lpips_maps_tiled(img, decodes)])
    mse = np.stack([sender.cell_means(sender.squared_error(img, d), sender.CELL) for d in decodes])
    grain = np.max([np.stack([sender.grain_cells(e0, patch_energies(r(t), patch=sender.PATCH), sender.CELL,
                                                 height=h, width=w) for t in taus]) for r in grain_receivers], axis=0)
    rows, cols = np.arange(0, h, sender.CELL), np.arange(0, w, sender.CELL)
    counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w))).astype(np.float64)
    return sender.choose_levels_budget(lp, grain, sender.GRAIN_MAX, mse_grids=mse, counts=counts,
                                      psnr_budget=sender.PSNR_BUDGET)


def main() -> None:
    q, which, out = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    torch.set_num_threads(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    codec, synth, pix = get_codec(q), SynthesisDecoder.load(q), PixelDecoder.load(q)
    for path in photos(which):
        img = load_image(path)
        h, w = img.shape[:2]
        _, x0, xs, xp = decodes(codec, synth, pix, img)

        measure = partial(measures, img)

        row = {"image": path.name, "q": q, "set": which, "tau0": measure(x0), "synth": measure(xs), "pixel": measure(xp)}
        on_synth, on_pixel = sender.pixel_receiver(x0, xs), sender.pixel_receiver(x0, xp)
        for name, lpips_receiver, checked in (("theta1", on_synth, [on_synth]), ("max", on_synth, [on_synth, on_pixel]),
                                              ("pixmax", on_pixel, [on_synth, on_pixel])):
            index = levels(img, lpips_receiver, checked)
            hint = TauHint.from_array(index, cell=sender.CELL, levels=sender.LEVELS, sigma=sender.SIGMA)
            tau_map = hint_tau_map(hint, h, w)
            row[f"levels {name}"] = np.bincount(index.ravel(), minlength=sender.LEVELS).tolist()
            row[f"bytes {name}"] = hint_section_bytes(hint)
            for decoder, full in (("synth", xs), ("pixel", xp)):
                row[f"{decoder} {name}"] = measure(blend(x0, full, tau_map))
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(path.name, {k: v for k, v in row.items() if k.startswith(("synth ", "pixel "))}, flush=True)


if __name__ == "__main__":
    main()

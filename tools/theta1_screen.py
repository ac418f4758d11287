"""Screen θ₁ candidates of one quality: raw τ = 1 against τ = 0 on a photo set, as θ₁ is picked.

Each photo is encoded once by the shipped codec (default encoder, no hint); τ = 0 is the codec decoder, each
candidate decodes the same ŷ at τ = 1 (no hint, no guard). Printed per candidate: mean PSNR, LPIPS change
against τ = 0 (ratio of means), the share of photos better than τ = 0, and the smooth-area grain median and
worst. One JSON line per (photo, candidate) in OUT, which the run resumes from.

    python tools/theta1_screen.py 3 selection OUT.jsonl shipped=weights/synthesis-mbt2018-mean-q3.safetensors \\
        new=~/.cache/dpexplorer/train/synthesis-q3-grain0.5/theta1-739.pt

Sets: `selection` (the last 16 of train_photos by name, where θ₁ is chosen), `check` (the 16 before them),
`val` (val_photos: reports only), `kodak`, or `dir:FOLDER`. Log: docs/log/2026-12-08-theta1-against-grain.md.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from dpexplorer.decoders.synthesis import InterpolatedSynthesis, SynthesisDecoder
from dpexplorer.hub.loading import get_codec
from dpexplorer.io.images import list_images, load_image
from dpexplorer.metrics.image import hf_energy_ratio, lpips, psnr, smooth_area_grain
from dpexplorer.training.synthesis import load_theta1


def photo_set(which: str) -> list[Path]:
    if which.startswith("dir:"):
        return list_images(Path(which[4:]))
    train = sorted(list_images(Path("../shared/train_photos")), key=lambda p: p.name)
    sets = {"selection": lambda: train[-16:], "check": lambda: train[-32:-16],
            "val": lambda: list_images(Path("../shared/val_photos")), "kodak": lambda: list_images(Path("../shared/kodak"))}
    return sets[which]()


def measures(img, x) -> dict:
    return dict(psnr=psnr(img, x), lpips=lpips(img, x), grain=smooth_area_grain(img, x), hf=hf_energy_ratio(img, x))


def main(quality: int, which: str, out: Path, candidates: dict[str, str]) -> None:
    torch.set_num_threads(1)
    photos = photo_set(which)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    done = {(r["photo"], r["name"]) for r in rows}
    codec, synth = get_codec(quality), SynthesisDecoder.load(quality)
    g_s = {name: InterpolatedSynthesis(codec.model.g_s, load_theta1(os.path.expanduser(path))).at(1.0)
           for name, path in candidates.items()}
    names = ["tau0", *candidates]
    with out.open("a") as f:
        for p in photos:
            todo = [n for n in names if (p.name, n) not in done]
            if not todo:
                continue
            img = load_image(p)
            stream = synth.open(codec.encode(img))
            for n in todo:
                x = stream.plain() if n == "tau0" else stream.synthesize(g_s=g_s[n])
                row = {"photo": p.name, "name": n, "q": quality, **measures(img, x)}
                rows.append(row)
                f.write(json.dumps(row) + "\n")
                f.flush()
    by = {(r["photo"], r["name"]): r for r in rows}
    kept = [p.name for p in photos if all((p.name, n) in by for n in names)]
    base = np.mean([by[(x, "tau0")]["lpips"] for x in kept])
    print(f"q{quality} {which} n={len(kept)}")
    for n in names:
        r = [by[(x, n)] for x in kept]
        lp, grain = np.mean([a["lpips"] for a in r]), [a["grain"] for a in r]
        better = np.mean([a["lpips"] < by[(x, "tau0")]["lpips"] for a, x in zip(r, kept)])
        print(f"{n:>14} psnr {np.mean([a['psnr'] for a in r]):.2f} lpips {lp:.4f} ({100 * (lp / base - 1):+.1f} %, "
              f"better {100 * better:.0f} %) grain median {np.median(grain):.2f} worst {max(grain):.2f} "
              f"hf {np.mean([a['hf'] for a in r]):.2f}")


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), dict(a.split("=", 1) for a in sys.argv[4:]))

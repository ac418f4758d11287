"""Choose the latent decoder's residual strength κ for one quality on training photos (never Kodak or
val_photos): the rule of docs/synthesis.md, "κ re-chosen with the HF gap in the rule".

At τ = 1 (ỹ = ŷ + κ·r̃ through θ₁; 10 steps, seed 0) for κ ∈ 0…0.25 and DDIM, DDPM and DPM-Solver++, on every
73rd of the 584 training photos (8), it picks the largest κ > 0 whose mean LPIPS is within 1 % of the best
and which closes ≥ ⅓ of the high-frequency energy gap (the bar's criterion), with every sampler. Then

    dpexplorer train latent --recipe recipes/latent-qQ.toml --strength κ      # re-exports, weights unchanged

    python tools/latent_strength.py QUALITY [--photos ../shared/train_photos] [--threads 1]

Prints the table of mean LPIPS and HF gap closed (the worst sampler) and the choice.
"""

import argparse

import numpy as np
import torch

from dpexplorer.decoders.base import DecodeOptions
from dpexplorer.decoders.latent.decoder import LatentDecoder
from dpexplorer.io.images import list_images, load_image
from dpexplorer.metrics.image import hf_energy_ratio, hf_gap_closed, lpips

SAMPLERS = ("ddim", "ddpm", "dpmsolver++")
KAPPAS = (0.05, 0.1, 0.15, 0.2, 0.25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("quality", type=int)
    ap.add_argument("--photos", default="../shared/train_photos")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = LatentDecoder.load(args.quality)
    codec, theta1 = pipe.codec, pipe.g_s(1.0)
    paths = list_images(args.photos)[::73][:8]
    scores: dict[str, list] = {}  # key → [(LPIPS, HF ratio) per photo]
    for path in paths:
        img = load_image(path)
        data = codec.encode(img)
        stream = pipe.open(data)
        y_hat = stream.y_hat
        outs = {"plain": stream.plain(), "theta1": stream.synthesize(g_s=theta1)}
        for sampler in SAMPLERS:
            r = pipe.cached_sample(stream, DecodeOptions(sampler=sampler)) / pipe.denoiser.strength  # the full r̃
            for k in KAPPAS:
                outs[f"{sampler}@{k}"] = stream.synthesize(y_hat + k * r, g_s=theta1)
        for key, out in outs.items():
            scores.setdefault(key, []).append((lpips(img, out), hf_energy_ratio(img, out)))
        print(path.name, flush=True)
    lp = {k: float(np.mean([a for a, _ in v])) for k, v in scores.items()}
    hf = {k: float(np.mean([b for _, b in v])) for k, v in scores.items()}
    gap = {k: hf_gap_closed(hf[k], hf["plain"]) for k in hf}
    best = min(v for k, v in lp.items() if k != "plain")
    worst = {k: (max(lp[f"{s}@{k}"] for s in SAMPLERS), min(gap[f"{s}@{k}"] for s in SAMPLERS)) for k in KAPPAS}
    print(f"plain LPIPS {lp['plain']:.4f}; θ₁ alone {lp['theta1']:.4f}, HF gap closed {gap['theta1']:.2f}")
    for k, (l, g) in worst.items():
        print(f"κ = {k}: LPIPS {l:.4f}, HF gap closed {g:.2f}")
    fit = [k for k, (l, g) in worst.items() if l <= 1.01 * best and g >= 1 / 3]
    print(f"chosen κ = {max(fit)}" if fit else "no κ meets the rule")


if __name__ == "__main__":
    main()

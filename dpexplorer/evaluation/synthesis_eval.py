"""The τ grid of an interpolated synthesis on real bitstreams.

Each image goes through `Codec.encode` and `Codec.decode_latent` (real entropy coding), then
`InterpolatedSynthesis(ŷ, τ)` for τ in the grid: PSNR, LPIPS-alex and the high-frequency energy
ratio against the original, per image, with means per folder, the share of images where τ = 1
beats τ = 0 in LPIPS, and the issue's bar checked.

    python -m dpexplorer.evaluation.synthesis_eval --quality 1 \
        --theta1 ~/.cache/dpexplorer/train/synthesis-q1-main/theta1.pt \
        --set kodak=/work/shared/kodak --set val=/work/shared/val_photos -n 6 --out result.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from dpexplorer.decoders.synthesis import InterpolatedSynthesis
from dpexplorer.io.images import list_images, load_image, to_uint8
from dpexplorer.metrics.image import hf_energy_ratio, hf_gap_closed, lpips, psnr

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


def evaluate_images(codec, synth: InterpolatedSynthesis, paths, taus=TAUS) -> list[dict]:
    rows = []
    for path in paths:
        img = load_image(path)
        h, w = img.shape[:2]
        data = codec.encode(img)
        y_hat, _ = codec.decode_latent(data)
        row = {"image": path.name, "bpp": len(data) * 8 / (h * w)}
        for tau in taus:
            rec = to_uint8(synth(y_hat, tau)[..., :h, :w])
            row[tau] = {"psnr": psnr(img, rec), "lpips": lpips(img, rec), "hf": hf_energy_ratio(img, rec)}
        rows.append(row)
    return rows


def summarize(rows: list[dict], taus=TAUS) -> dict:
    """Means per τ, LPIPS change at τ = 1, share of images better at τ = 1, and the issue's bar."""
    mean = {t: {k: float(np.mean([r[t][k] for r in rows])) for k in ("psnr", "lpips", "hf")} for t in taus}
    t0, t1 = taus[0], taus[-1]
    lp = [mean[t]["lpips"] for t in taus]
    ps = [mean[t]["psnr"] for t in taus]
    hf0, hf1 = mean[t0]["hf"], mean[t1]["hf"]
    s = {
        "means": mean,
        "bpp": float(np.mean([r["bpp"] for r in rows])),
        "lpips_change_tau1": mean[t1]["lpips"] / mean[t0]["lpips"] - 1,
        "share_tau1_better": float(np.mean([r[t1]["lpips"] < r[t0]["lpips"] for r in rows])),
        "psnr_cost_tau1": mean[t0]["psnr"] - mean[t1]["psnr"],
        "hf_gap_closed": hf_gap_closed(hf1, hf0),
    }
    s["bar"] = {
        "lpips_-25%": s["lpips_change_tau1"] <= -0.25,
        "share_>=90%": s["share_tau1_better"] >= 0.9,
        "lpips_monotone": all(a >= b for a, b in zip(lp, lp[1:])),
        "psnr_monotone": all(a >= b for a, b in zip(ps, ps[1:])),
        "psnr_cost_<=1.5dB": s["psnr_cost_tau1"] <= 1.5,
        "hf_gap_>=1/3": s["hf_gap_closed"] >= 1 / 3,
        "hf_<=1.15": hf1 <= 1.15,
    }
    return s


def markdown_table(name: str, s: dict) -> str:
    lines = [f"{name} ({s['bpp']:.3f} bpp) | PSNR | LPIPS | HF ratio", "---|---|---|---"]
    for t, m in s["means"].items():
        lines.append(f"τ = {t:g} | {m['psnr']:.2f} | {m['lpips']:.3f} | {m['hf']:.2f}")
    lines.append(f"\nτ = 1 vs 0: LPIPS {100 * s['lpips_change_tau1']:+.0f} %, better on "
                 f"{100 * s['share_tau1_better']:.0f} % of images, PSNR −{s['psnr_cost_tau1']:.2f} dB, "
                 f"HF gap closed {s['hf_gap_closed']:.2f}. Bar: "
                 + ", ".join(f"{k} {'✓' if v else '✗'}" for k, v in s["bar"].items()))
    return "\n".join(lines)


@torch.no_grad()
def blend_cost(synth: InterpolatedSynthesis, y_hat: torch.Tensor, tau: float = 0.5, repeats: int = 3) -> dict:
    """Seconds for the weight blend alone vs one g_s pass on `y_hat` (best of `repeats`)."""
    def best(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    return {"blend_s": best(lambda: synth.params(tau)), "g_s_s": best(lambda: synth.g_s0(y_hat)),
            "interpolated_g_s_s": best(lambda: synth(y_hat, tau))}


def main(argv=None):
    from dpexplorer.hub.loading import load_codec
    from dpexplorer.training.synthesis import load_theta1

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quality", "-q", type=int, required=True)
    p.add_argument("--theta1", required=True, help="theta1.pt of a synthesis training run")
    p.add_argument("--set", action="append", required=True, help="name=folder (first -n images by name)")
    p.add_argument("-n", type=int, default=6)
    p.add_argument("--out", help="JSON with per-image rows and summaries")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = load_codec(args.quality)
    synth = InterpolatedSynthesis(codec.model.g_s, load_theta1(args.theta1))
    result = {"theta1": args.theta1, "quality": args.quality, "sets": {}}
    for spec in args.set:
        name, folder = spec.split("=", 1)
        rows = evaluate_images(codec, synth, list_images(folder, args.n))
        s = summarize(rows)
        result["sets"][name] = {"rows": rows, "summary": s}
        print(markdown_table(name, s), "\n", flush=True)
    y_hat, _ = codec.decode_latent(codec.encode(load_image(list_images(args.set[0].split("=", 1)[1], 1)[0])))
    result["blend_cost"] = blend_cost(synth, y_hat)
    print("blend cost", result["blend_cost"], "on ŷ", tuple(y_hat.shape))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()

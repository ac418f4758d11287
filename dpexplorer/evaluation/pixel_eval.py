"""`dpexplorer eval pixel`: the pixel-space diffusion decoder on real bitstreams, per quality and
sampler/steps setting, at τ = 0 (the plain decoder) and the τ grid.

Each image goes through `Codec.encode` (real entropy coding), then `PixelDecoder.reconstruct` exactly
as the CLI and the app call it: bpp, PSNR, MS-SSIM, LPIPS-alex and the high-frequency energy ratio
against the original. Slow settings (more than `--fast-steps` steps) run on the first `--slow-limit`
images only; the output says so, and compares settings on the images they share.

    dpexplorer eval pixel --set kodak=../shared/kodak --set val=../shared/val_photos -q 1
    dpexplorer eval pixel --checkpoint ~/.cache/dpexplorer/train/pixel-q1-probe/last.pt -n 4 …   (a probe)
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np

from dpexplorer.decoders.base import DecodeOptions
from dpexplorer.io.images import list_images, load_image
from dpexplorer.metrics.image import bpp, hf_energy_ratio, hf_gap_closed, lpips, ms_ssim, psnr

# what the pixel decoder offers; the first is its default (`PixelDecoder.default_steps`), which eval's hinted
# cells use
SETTINGS = ("ddim:1", "ddim:10", "ddim:50", "dpmsolver++:10")
KEYS = ("psnr", "ms_ssim", "lpips", "hf")


def parse_setting(text: str) -> tuple[str, int]:
    from dpexplorer.decoders.schedulers import SAMPLERS

    sampler, _, steps = text.partition(":")
    if sampler not in SAMPLERS or not steps.isdigit():
        raise ValueError(f"setting {text!r}: expected SAMPLER:STEPS with SAMPLER in {', '.join(SAMPLERS)}")
    return sampler, int(steps)


def _measure(ref, test) -> dict:
    return {"psnr": psnr(ref, test), "ms_ssim": ms_ssim(ref, test), "lpips": lpips(ref, test),
            "hf": hf_energy_ratio(ref, test)}


def evaluate_images(pipeline, paths, settings=SETTINGS, taus=(1.0,), *, seed: int = 0, noise_scale: float | None = None,
                    fast_steps: int = 20, slow_limit: int | None = None, log=print) -> list[dict]:
    """Per image: bpp, the plain decoder's metrics, and each setting's at each τ (and its sampling time)."""
    rows = []
    for i, path in enumerate(paths):
        img = load_image(path)
        data = pipeline.codec.encode(img)
        row = {"image": path.name, "bpp": bpp(len(data), *img.shape[:2]),
               "plain": _measure(img, pipeline.reconstruct(data, 0.0)), "settings": {}}
        stream = pipeline.open(data)
        for setting in settings:
            sampler, steps = parse_setting(setting)
            if steps > fast_steps and slow_limit is not None and i >= slow_limit:
                continue
            t0 = time.perf_counter()
            options = DecodeOptions(sampler=sampler, steps=steps, seed=seed, noise_scale=noise_scale)
            pipeline.cached_sample(stream, options)
            row["settings"][setting] = {"sample_s": time.perf_counter() - t0, **{
                f"{tau:g}": _measure(img, pipeline.reconstruct(stream, tau, options=options)) for tau in taus}}
        rows.append(row)
        log(f"{path.name}: plain LPIPS {row['plain']['lpips']:.3f} · " + " · ".join(
            f"{k} τ=1 LPIPS {v['1']['lpips']:.3f} PSNR {v['1']['psnr']:.2f}" for k, v in row["settings"].items()
            if "1" in v))
    return rows


def _mean(rows, get) -> dict:
    """Means over images; NaN where no image has the metric (MS-SSIM needs more than 160 px a side)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: float(np.nanmean([get(r)[k] for r in rows])) for k in KEYS}


def summarize(rows: list[dict], settings=SETTINGS, taus=(1.0,)) -> dict:
    """Means per setting and τ (with the plain decoder's on the same images), and the issue's bar."""
    out = {"images": len(rows), "bpp": float(np.mean([r["bpp"] for r in rows])),
           "plain": _mean(rows, lambda r: r["plain"]), "settings": {}}
    for setting in settings:
        have = [r for r in rows if setting in r["settings"]]
        if not have:
            continue
        out["settings"][setting] = {
            "images": len(have), "plain": _mean(have, lambda r: r["plain"]),
            "sample_s": float(np.mean([r["settings"][setting]["sample_s"] for r in have])),
            **{f"{tau:g}": _mean(have, lambda r, k=f"{tau:g}": r["settings"][setting][k]) for tau in taus}}
    s = out["settings"]
    bar = {}
    if "ddim:10" in s and "1" in s["ddim:10"]:
        d, p = s["ddim:10"]["1"], s["ddim:10"]["plain"]
        bar["lpips_change_ddim10"] = d["lpips"] / p["lpips"] - 1
        bar["hf_gap_closed_ddim10"] = hf_gap_closed(d["hf"], p["hf"])
        bar["lpips_-20%"] = bar["lpips_change_ddim10"] <= -0.20
        bar["hf_gap_>=1/3"] = bar["hf_gap_closed_ddim10"] >= 1 / 3
    if {"ddim:10", "ddpm:100"} <= s.keys() and "1" in s["ddim:10"]:
        shared = [r for r in rows if {"ddim:10", "ddpm:100"} <= r["settings"].keys()]
        a = _mean(shared, lambda r: r["settings"]["ddim:10"]["1"])
        b = _mean(shared, lambda r: r["settings"]["ddpm:100"]["1"])
        bar["ddim10_vs_ddpm100"] = {"images": len(shared), "psnr_db": a["psnr"] - b["psnr"],
                                    "lpips": a["lpips"] - b["lpips"]}
        bar["ddim10_ddpm100_differ"] = abs(a["psnr"] - b["psnr"]) >= 0.5 or abs(a["lpips"] - b["lpips"]) >= 0.01
    out["bar"] = bar
    return out


def markdown_table(name: str, s: dict) -> str:
    p = s["plain"]
    lines = [f"**{name}** ({s['images']} images, {s['bpp']:.3f} bpp)", "",
             "| decoder | τ | images | PSNR | MS-SSIM | LPIPS | HF ratio | sample s |", "|---|---|---|---|---|---|---|---|",
             f"| plain | 0 | {s['images']} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} | {p['lpips']:.3f} | {p['hf']:.2f} | – |"]
    for setting, v in s["settings"].items():
        for tau, m in v.items():
            if tau in ("images", "plain", "sample_s"):
                continue
            lines.append(f"| {setting} | {tau} | {v['images']} | {m['psnr']:.2f} | {m['ms_ssim']:.4f} | {m['lpips']:.3f} "
                         f"| {m['hf']:.2f} | {v['sample_s']:.1f} |")
    b = s["bar"]
    if b:
        parts = []
        if "lpips_change_ddim10" in b:
            parts.append(f"DDIM 10 τ = 1 vs plain: LPIPS {100 * b['lpips_change_ddim10']:+.1f} % "
                         f"({'✓' if b['lpips_-20%'] else '✗'} ≤ −20 %), HF gap closed {b['hf_gap_closed_ddim10']:.2f} "
                         f"({'✓' if b['hf_gap_>=1/3'] else '✗'} ≥ 1/3)")
        if "ddim10_vs_ddpm100" in b:
            d = b["ddim10_vs_ddpm100"]
            parts.append(f"DDIM 10 − DDPM 100 on {d['images']} images: {d['psnr_db']:+.2f} dB, LPIPS {d['lpips']:+.3f} "
                         f"({'✓' if b['ddim10_ddpm100_differ'] else '✗'} ≥ 0.5 dB or ≥ 0.01)")
        lines += ["", "Bar: " + "; ".join(parts)]
    return "\n".join(lines)


def _pipelines(args):
    """(label, pipeline) per quality: shipped weights, or one training checkpoint (a probe)."""
    from dpexplorer.errors import WeightsError
    from dpexplorer.decoders.pixel.decoder import PixelDecoder
    from dpexplorer.hub.loading import get_codec

    if args.checkpoint:
        from dpexplorer.decoders.synthesis import trained_synthesis
        from dpexplorer.training.pixel import load_denoiser

        den, state = load_denoiser(args.checkpoint)
        codec = get_codec(state["quality"], state["arch"])
        if not codec.fits(state):
            raise WeightsError(f"{args.checkpoint} was trained for other codec weights than the shipped "
                               f"{state['arch']} q{state['quality']}")
        synthesis = trained_synthesis({"kind": "pixel", **state})  # θ₁ of a synthesis-base run, checked
        return [(f"q{state['quality']} checkpoint step {state['step']}", PixelDecoder(codec, den, synthesis=synthesis))]
    qualities = args.qualities or PixelDecoder.qualities()
    if not qualities:
        raise WeightsError("no pixel decoder weights are shipped (train one: dpexplorer train pixel; "
                           "or evaluate a checkpoint with --checkpoint)")
    return [(f"q{q}", PixelDecoder.load(q)) for q in qualities]


def add_arguments(p) -> None:
    p.add_argument("--set", action="append", required=True, metavar="NAME=FOLDER",
                   help="an image folder to evaluate (repeatable), e.g. kodak=../shared/kodak")
    p.add_argument("-q", "--qualities", type=int, nargs="+", default=None, help="default: all with pixel weights")
    p.add_argument("--checkpoint", default=None, help="evaluate a training checkpoint instead of shipped weights")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), help="SAMPLER:STEPS each")
    p.add_argument("--taus", type=float, nargs="+", default=[0.5, 1.0], help="τ > 0 values (τ = 0 is the plain row)")
    p.add_argument("-n", "--limit", type=int, default=None, help="only the first N images of each folder")
    p.add_argument("--slow-limit", type=int, default=None,
                   help="settings with more than --fast-steps steps run on the first N images only")
    p.add_argument("--fast-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-scale", type=float, default=None,
                   help="CDC's initial-noise scale (1 = plain sampler; default: the weights' own)")
    p.add_argument("--out", default=None, help="JSON file with per-image rows and summaries")


def run_from_args(args) -> int:
    for setting in args.settings:
        parse_setting(setting)
    taus = tuple(sorted({t for t in args.taus if t > 0} | {1.0}))
    result = {"settings": args.settings, "seed": args.seed, "noise_scale": args.noise_scale,
              "slow_limit": args.slow_limit, "fast_steps": args.fast_steps, "runs": {}}
    for label, pipeline in _pipelines(args):
        for spec in args.set:
            name, sep, folder = spec.partition("=")
            if not sep:
                raise ValueError(f"--set {spec!r}: expected NAME=FOLDER")
            paths = list_images(folder, args.limit)
            rows = evaluate_images(pipeline, paths, args.settings, taus, seed=args.seed, noise_scale=args.noise_scale,
                                   fast_steps=args.fast_steps, slow_limit=args.slow_limit)
            s = summarize(rows, args.settings, taus)
            result["runs"][f"{label} {name}"] = {"rows": rows, "summary": s}
            if args.slow_limit is not None:
                print(f"(settings over {args.fast_steps} steps: first {args.slow_limit} images only)")
            print(markdown_table(f"{label} {name}", s), "\n", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0

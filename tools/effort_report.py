"""Encoder effort measured as a user runs it: `dpexplorer encode --effort N --no-hint` against the default
encoder, per image, quality and N, by real bytes and 8-bit PSNR of the codec decoder. Per-image rows go to
JSON lines (resumable). The summary gives, per N, the bits saved at equal PSNR (against the default
encoder's curve over qualities 1–3 on the same image, so effort may run at one quality only), the BD-rate
where effort ran at every quality, and the seconds per image.

    python tools/effort_report.py ../shared/kodak --efforts 0 50 100 200 --out results/effort/kodak.jsonl
    python tools/effort_report.py ../shared/train_photos --limit 4 --crop 256 --lr 0.01 --out …  # tuning
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dpexplorer.codec import effort as effort_module
from dpexplorer.codec.precision import bf16_is_fast
from dpexplorer.hub.loading import get_codec
from dpexplorer.io.images import list_images, load_image
from dpexplorer.metrics.bd import bd_rate
from dpexplorer.metrics.image import lpips, psnr


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[top:top + size, left:left + size]


def rate_at_psnr(curve: list[dict], psnr: float) -> float:
    """The default encoder's bpp at `psnr` on one image: log-bpp linear in PSNR between its qualities
    (extrapolated along the nearest segment)."""
    pts = sorted((c["psnr"], np.log(c["bpp"])) for c in curve)
    if len(pts) < 2:
        return float("nan")
    i = int(np.clip(np.searchsorted([p for p, _ in pts], psnr) - 1, 0, len(pts) - 2))
    (p0, r0), (p1, r1) = pts[i], pts[i + 1]
    return float(np.exp(r0 + (r1 - r0) * (psnr - p0) / (p1 - p0)))


def summary(rows: list[dict], peers: dict | None = None) -> str:
    """Per N: the bits saved at equal PSNR per (image, quality) measured with effort — against the
    default encoder's own curve on that image (its qualities) — and, where every quality ran with
    effort, the BD-rate of the two curves; seconds per image. With `peers` (image → AVIF's points on it,
    tools/peer_curves.py): our bits over AVIF's at the same PSNR, without and with effort."""
    by_image = defaultdict(dict)
    for r in rows:
        by_image[r["image"]][(r["quality"], r["effort"])] = r
    efforts = sorted({r["effort"] for r in rows} - {0})
    lines = ["| effort N | image × quality | bits at equal PSNR vs default: mean (range) | BD-rate (images) | Δ PSNR at q | "
             "seconds per image (mean size) | bits vs AVIF at equal PSNR: default → effort |",
             "|---|---|---|---|---|---|---|"]
    for n in efforts:
        saved, bds, dpsnr, secs, pixels, vs_avif = [], [], [], [], [], []
        for cells in by_image.values():
            default = [c for (q, e), c in cells.items() if e == 0]
            for (q, e), c in cells.items():
                if e != n or (q, 0) not in cells:
                    continue
                saved.append(100 * (1 - c["bpp"] / rate_at_psnr(default, c["psnr"])))
                dpsnr.append(c["psnr"] - cells[(q, 0)]["psnr"])
                secs.append(c["seconds"])
                pixels.append(c["size"][0] * c["size"][1])
                if peers and c["image"] in peers:
                    base = cells[(q, 0)]
                    vs_avif.append([100 * (x["bpp"] / rate_at_psnr(peers[c["image"]], x["psnr"]) - 1)
                                    for x in (base, c)])
            qualities = sorted(q for q, e in cells if e == n)
            if len(qualities) >= 2 and all((q, 0) in cells for q in qualities):
                base, test = [cells[(q, 0)] for q in qualities], [cells[(q, n)] for q in qualities]
                bds.append(bd_rate([b["bpp"] for b in base], [b["psnr"] for b in base],
                                   [t["bpp"] for t in test], [t["psnr"] for t in test]))
        if not saved:
            continue
        bd = f"{np.nanmean(bds):+.1f} % ({len(bds)})" if bds else "–"
        avif = (f"{np.mean([a for a, _ in vs_avif]):+.1f} % → {np.mean([b for _, b in vs_avif]):+.1f} %"
                if vs_avif else "–")
        lines.append(f"| {n} | {len(saved)} | {-np.mean(saved):+.1f} % ({-max(saved):+.1f} … {-min(saved):+.1f} %) | "
                     f"{bd} | {np.mean(dpsnr):+.3f} dB | {np.mean(secs):.0f} s ({np.mean(pixels) / 1e6:.2f} MP) | "
                     f"{avif} |")
    gains = defaultdict(list)  # the perceptual synthesis's LPIPS change τ = 0 → 1 on the same file, per N
    for r in rows:
        if "lpips_tau1" in r:
            gains[r["effort"]].append(100 * (r["lpips_tau1"] / r["lpips_tau0"] - 1))
    for n, g in sorted(gains.items()):
        lines.append(f"\nN = {n}: the perceptual synthesis at τ = 1 (raw) vs τ = 0 on the same file, LPIPS "
                     f"{np.mean(g):+.1f} % (range {min(g):+.1f} … {max(g):+.1f} %, {len(g)} files)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--efforts", type=int, nargs="+", default=[0, 50, 100, 200])
    ap.add_argument("--qualities", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--effort-qualities", type=int, nargs="+", default=None,
                    help="run N > 0 at these qualities only (N = 0 runs at every one: the curve to compare with)")
    ap.add_argument("--images", nargs="+", default=None, help="these file names of the folder only")
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--skip", type=int, default=0, help="skip the first N images")
    ap.add_argument("--crop", type=int, default=None, help="centre crop (tuning only)")
    ap.add_argument("--lr", type=float, default=None, help="override the schedule's learning rate (tuning)")
    ap.add_argument("--tau-start", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("--peers", default=None, help="per-image AVIF points (results/peers/<set>.jsonl of "
                                                  "tools/peer_curves.py): our bits vs AVIF's at equal PSNR")
    ap.add_argument("--summary-only", action="store_true", help="print the summary of --out and stop")
    ap.add_argument("--tau-check", action="store_true",
                    help="also decode each file with the perceptual synthesis at τ = 1 (raw τ) and record LPIPS at "
                         "τ = 0 and 1: whether the τ decoders' gain holds on refined bitstreams")
    ap.add_argument("--fp32-synthesis", action="store_true",
                    help="search with the plain fp32 g_s (EffortSchedule.fast_synthesis=False): the A/B of the fast one")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    defaults = effort_module.EffortSchedule()
    schedule = effort_module.EffortSchedule(lr=args.lr or defaults.lr, tau_start=args.tau_start or defaults.tau_start,
                                            fast_synthesis=not args.fp32_synthesis)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    rows = []
    if out.exists():
        rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        done = {(r["image"], r["quality"], r["effort"]) for r in rows}
    peers = None
    if args.peers:
        peers = defaultdict(list)
        for line in Path(args.peers).read_text().splitlines():
            point = json.loads(line)
            if point["format"] == "avif":
                peers[point["image"]].append(point)
    if args.summary_only:
        print(summary(rows, peers))
        return
    paths = list_images(Path(args.folder))[args.skip:]
    paths = paths[:args.limit] if args.limit else paths
    paths = [p for p in paths if args.images is None or p.name in args.images]
    for path in paths:
        img = load_image(path)
        if args.crop:
            img = centre_crop(img, args.crop)
        for q in args.qualities:
            codec = get_codec(q)
            for n in args.efforts:
                if (path.name, q, n) in done or (n and args.effort_qualities and q not in args.effort_qualities):
                    continue
                t0 = time.perf_counter()
                data = codec.encode(img, effort=n, schedule=schedule)  # tuning: the schedule under test
                seconds = time.perf_counter() - t0
                decoded = codec.decode(data).x_hat
                row = {"image": path.name, "quality": q, "effort": n, "bytes": len(data),
                       "bpp": len(data) * 8 / (img.shape[0] * img.shape[1]), "psnr": psnr(img, decoded),
                       "seconds": seconds, "lr": schedule.lr, "tau_start": schedule.tau_start,
                       "size": list(img.shape[:2]), "fast_synthesis": schedule.fast_synthesis,
                       "bf16": schedule.fast_synthesis and bf16_is_fast(torch.device("cpu"))}
                if args.tau_check:  # the perceptual synthesis on the same file: does its LPIPS gain hold?
                    from dpexplorer.decoders.base import DecodeOptions
                    from dpexplorer.decoders.registry import reconstruct_file

                    full = reconstruct_file(data, 1.0, decoder="synthesis", options=DecodeOptions(use_hint=False))
                    row.update(lpips_tau0=lpips(img, decoded), lpips_tau1=lpips(img, full), psnr_tau1=psnr(img, full))
                rows.append(row)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print(summary(rows, peers))


if __name__ == "__main__":
    main()

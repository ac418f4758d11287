"""The sender's τ hint and the receiver's grain guard measured end to end, as a user runs them:
`dpexplorer encode` (with the hint, the default) and `--no-hint`, then `decode --decoder D --tau 1` as is
(the hint), with `--ignore-hint` (the grain guard) and with `--ignore-hint --no-guard` (uniform τ), per
image and quality, against τ = 0. Prints one table per quality (issue bar: LPIPS change, photos better than
τ = 0, PSNR change, smooth-area grain median / worst, file size with the hint) and writes per-image rows
as JSON lines (resumable).

    python tools/hint_report.py ../shared/val_photos --out results/hint/val.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dpexplorer.decoders.base import DecodeOptions
from dpexplorer.decoders.registry import FAMILIES, open_file, reconstruct_file
from dpexplorer.hint.sender import encode
from dpexplorer.hub.loading import get_codec
from dpexplorer.io.images import list_images, load_image
from dpexplorer.metrics.image import lpips, psnr, smooth_area_grain


def measure(original: np.ndarray, image: np.ndarray) -> dict:
    return {"psnr": psnr(original, image), "lpips": lpips(original, image), "grain": smooth_area_grain(original, image)}


def rows_for(path: Path, quality: int, decoders: list[str]) -> dict:
    img = load_image(path)
    codec = get_codec(quality)
    hinted, plain = encode(codec, img), encode(codec, img, hint=False)
    stream = open_file(hinted)
    row = {"image": path.name, "quality": quality, "bytes": len(hinted), "bytes_no_hint": len(plain),
           "hint_bytes": stream.bitstream.hint_bytes, "tau0": measure(img, stream.plain())}
    for key in decoders:
        for way, options in WAYS.items():
            row[f"{key}{way}"] = measure(img, reconstruct_file(stream, 1.0, decoder=key, options=options))
    return row


# the row keys' suffixes (rows written before the guard have " raw" = uniform τ and no " uniform")
WAYS = {"": DecodeOptions(), " raw": DecodeOptions(use_hint=False),
        " uniform": DecodeOptions(use_hint=False, use_guard=False)}
LABELS = {"": "hinted", " raw": "raw τ (--ignore-hint: the grain guard)",
          " uniform": "uniform τ (--ignore-hint --no-guard)"}


def table(rows: list[dict], decoders: list[str]) -> str:
    lines = ["| decode at τ = 1 | PSNR (Δ vs τ = 0) | LPIPS (Δ vs τ = 0) | grain median / worst | better than τ = 0 |",
             "|---|---|---|---|---|"]
    base = {k: np.mean([r["tau0"][k] for r in rows]) for k in ("psnr", "lpips")}
    grain0 = [r["tau0"]["grain"] for r in rows]
    lines.append(f"| codec decoder (τ = 0) | {base['psnr']:.2f} | {base['lpips']:.4f} | "
                 f"{np.median(grain0):.2f} / {max(grain0):.2f} | – |")
    for key in decoders:
        for way in WAYS:
            name = key + way
            if not all(name in r for r in rows):
                continue
            m = [r[name] for r in rows]
            p, lp = np.mean([x["psnr"] for x in m]), np.mean([x["lpips"] for x in m])
            grains = [x["grain"] for x in m]
            better = sum(x["lpips"] < r["tau0"]["lpips"] for x, r in zip(m, rows))
            label = f"{key}, {LABELS[way]}"
            lines.append(f"| {label} | {p:.2f} ({p - base['psnr']:+.2f} dB) | {lp:.4f} "
                         f"({100 * (lp / base['lpips'] - 1):+.1f} %) | {np.median(grains):.2f} / {max(grains):.2f} | "
                         f"{better} / {len(rows)} |")
    extra = [100 * (r["bytes"] / r["bytes_no_hint"] - 1) for r in rows]
    lines.append(f"\nHint: {np.mean([r['hint_bytes'] for r in rows]):.1f} bytes on average; files "
                 f"{np.mean(extra):+.2f} % (at most {max(extra):+.2f} %) against `--no-hint`.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--qualities", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--decoders", nargs="+", default=["synthesis"], choices=list(FAMILIES))
    ap.add_argument("--out", required=True, help="per-image rows (JSON lines; resumes from what is there)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done[(r["image"], r["quality"])] = r
    paths = list_images(args.data, args.limit)
    for q in args.qualities:
        for path in paths:
            if (path.name, q) not in done:
                done[(path.name, q)] = rows_for(path, q, args.decoders)
                with open(out, "a") as f:
                    f.write(json.dumps(done[(path.name, q)]) + "\n")
                print(f"q{q} {path.name}", flush=True)
    for q in args.qualities:
        rows = [done[(p.name, q)] for p in paths]
        print(f"\n### {Path(args.data).name}, q{q} ({len(rows)} images)\n\n{table(rows, args.decoders)}")


if __name__ == "__main__":
    main()

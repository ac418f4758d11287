"""`dpexplorer eval codec`: rate and quality of the base codec on a folder, per image and mean,
next to CompressAI's published curve, with the BD-rate of ours against it.

Writes `codec_eval.json`, `codec_eval.csv` (per image) and `codec_eval.png` into `out_dir`.
"""

from __future__ import annotations

import csv
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dpexplorer import metrics
from dpexplorer.evaluation.bd import bd_quality, bd_rate
from dpexplorer.evaluation.reference import COMPRESSAI_KODAK
from dpexplorer.imageio import list_images, load_image

METRIC_KEYS = ("bpp", "psnr", "ms_ssim", "lpips")


def evaluate_codec_on(codec, images: list[Path], progress=None) -> list[dict]:
    rows = []
    for path in images:
        img = load_image(path)
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        data = codec.encode(img)
        t1 = time.perf_counter()
        x_hat = codec.decode(data).x_hat
        t2 = time.perf_counter()
        row = {"image": path.name, "quality": codec.cfg.quality, "bytes": len(data),
               "bpp": metrics.bpp(len(data), h, w), "encode_s": t1 - t0, "decode_s": t2 - t1}
        row.update(metrics.all_metrics(img, x_hat))
        rows.append(row)
        if progress:
            progress.update(1)
    return rows


def summarize(rows: list[dict]) -> dict:
    return {k: float(np.nanmean([r[k] for r in rows])) for k in (*METRIC_KEYS, "encode_s", "decode_s")}


def evaluate_codecs(data: str | Path, qualities=None, out_dir="results/codec", arch=None, pretrained=False,
                    limit=None, update_manifest: bool = False) -> dict:
    from tqdm import tqdm

    from dpexplorer.models import get_codec, shipped_qualities

    qualities = qualities or shipped_qualities()
    if not qualities:
        raise FileNotFoundError("no shipped codec weights to evaluate (train and export some first)")
    images = list_images(data, limit)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    per_image, means, codecs = [], {}, {}
    with tqdm(total=len(images) * len(qualities), desc="eval codec", disable=None) as bar:
        for q in qualities:
            codec = get_codec(q, arch, pretrained)
            codecs[q] = {"arch": codec.cfg.arch, "weights_sha256": codec.weights_sha256, "source": codec.source}
            rows = evaluate_codec_on(codec, images, bar)
            per_image += rows
            means[q] = summarize(rows)

    ref = COMPRESSAI_KODAK["bmshj2018-hyperprior"]
    ours_bpp = [means[q]["bpp"] for q in qualities]
    ours_psnr = [means[q]["psnr"] for q in qualities]
    result = {
        "data": str(data), "images": len(images), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "codecs": {str(q): codecs[q] for q in qualities},
        "mean": {str(q): means[q] for q in qualities},
        "reference": ref,
        "bd_rate_psnr_vs_compressai_hyperprior_percent": bd_rate(ref["bpp"][:4], ref["psnr"][:4], ours_bpp, ours_psnr),
        "bd_psnr_vs_compressai_hyperprior_db": bd_quality(ref["bpp"][:4], ref["psnr"][:4], ours_bpp, ours_psnr),
    }
    (out_dir / "codec_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out_dir / "codec_eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(per_image[0]))
        writer.writeheader()
        writer.writerows(per_image)
    plot_codec_eval(result, out_dir / "codec_eval.png")
    print(format_table(result))
    if update_manifest and not pretrained:
        record_in_manifest(result)
    return result


def format_table(result: dict) -> str:
    ref = result["reference"]
    lines = [f"{'q':>2} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'LPIPS':>7} | CompressAI hyperprior: {'bpp':>7} {'PSNR':>6}"]
    for q, m in result["mean"].items():
        i = int(q) - 1
        lines.append(f"{q:>2} {m['bpp']:7.4f} {m['psnr']:7.2f} {m['ms_ssim']:8.4f} {m['lpips']:7.4f} | "
                     f"{'':22s}{ref['bpp'][i]:7.4f} {ref['psnr'][i]:6.2f}")
    lines.append(f"BD-rate (PSNR) vs CompressAI bmshj2018-hyperprior: "
                 f"{result['bd_rate_psnr_vs_compressai_hyperprior_percent']:+.1f}%  "
                 f"(BD-PSNR {result['bd_psnr_vs_compressai_hyperprior_db']:+.2f} dB)")
    return "\n".join(lines)


def plot_codec_eval(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = result["reference"]
    qs = list(result["mean"])
    bpp = [result["mean"][q]["bpp"] for q in qs]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, label in zip(axes, ("psnr", "ms_ssim", "lpips"), ("PSNR (dB) ↑", "MS-SSIM ↑", "LPIPS ↓")):
        ax.plot(bpp, [result["mean"][q][key] for q in qs], "o-", label="ours (shipped weights)")
        if key in ref:
            ax.plot(ref["bpp"][:5], ref[key][:5], "s--", color="gray", label="CompressAI hyperprior (published)")
        ax.set_xlabel("bpp")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Base codec on {Path(result['data']).name} ({result['images']} images); "
                 f"BD-rate vs CompressAI: {result['bd_rate_psnr_vs_compressai_hyperprior_percent']:+.1f}%")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def record_in_manifest(result: dict) -> None:
    """Write each quality's measured means into its manifest entry (the model card reads them)."""
    from dpexplorer.weights import load_manifest, save_manifest, write_model_card

    manifest = load_manifest()
    for q, info in result["codecs"].items():
        for entry in manifest["models"].values():
            if entry.get("kind") == "codec" and entry.get("sha256") == info["weights_sha256"]:
                entry["eval"] = {"data": Path(result["data"]).name, "images": result["images"],
                                 **{k: round(v, 4) for k, v in result["mean"][q].items() if not math.isnan(v)}}
    save_manifest(manifest)
    write_model_card()

"""`dpexplorer eval codec`: rate and quality of the base codec on a folder, per image and mean,
with PSNR BD-rates against CompressAI's published Kodak curves (mbt2018-mean, our architecture,
first; bmshj2018-hyperprior), and PSNR and LPIPS BD-rates against what users would pick instead —
AVIF, JPEG XL, WebP and JPEG — from their rate curves on the same images (`peers.peer_curves`: taken
from the curves file when it has them for exactly these files, else measured here). Next to that,
each format at each of our files' size (the largest quality whose file is not larger: the app's rule).

Writes `codec_eval.json`, `codec_eval.csv` (per image), `codec_eval_baselines.csv` and
`codec_eval.png` into `out_dir`.
"""

from __future__ import annotations

import csv
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dpexplorer.evaluation import baselines as peer_formats
from dpexplorer.evaluation import peers as peer_curves_mod
from dpexplorer.evaluation.reference import COMPRESSAI_KODAK
from dpexplorer.io.images import list_images, load_image
from dpexplorer.metrics import image as metrics
from dpexplorer.metrics.bd import bd_quality, bd_rate

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


def matched_baselines(images: list[Path], rows: list[dict], formats=None) -> list[dict]:
    """Each format at the size of each of our files (same image, same quality level): the largest
    quality whose file is not larger than ours (`over`: even the lowest is larger). `formats`: default
    every peer format available here."""
    available = peer_formats.available_formats()
    formats = [f for f in (formats or peer_curves_mod.PEER_SETTINGS) if available.get(f) is None]
    by_image = {p.name: p for p in images}
    out = []
    for row in rows:
        img = load_image(by_image[row["image"]])
        for fmt in formats:
            m = peer_formats.same_size(img, fmt, row["bytes"])
            out.append({"image": row["image"], "quality": row["quality"], "format": fmt, "bytes": m["bytes"],
                        "bpp": m["bpp"], "setting": m["setting"], "over": m["over"],
                        "psnr": metrics.psnr(img, m["image"]), "lpips": metrics.lpips(img, m["image"])})
    return out


def peer_curves_for(data: str | Path, images: list[Path], out_dir: Path, limit=None) -> dict:
    """The peers' curves on these images: stored in the curves file for exactly these files, else
    measured (per-image cells in `out_dir/peer_cells.jsonl`, so an interrupted run resumes)."""
    from dpexplorer.evaluation.curves import load_curves

    stored = peer_curves_mod.stored_peer_curves(data, load_curves(), limit)
    if stored is not None:
        return {**stored, "source": "curves file"}
    return {**peer_curves_mod.peer_curves(images, cells_path=out_dir / "peer_cells.jsonl"), "source": "measured"}


def summarize(rows: list[dict]) -> dict:
    return {k: float(np.nanmean([r[k] for r in rows])) for k in (*METRIC_KEYS, "encode_s", "decode_s")}


def evaluate_codecs(data: str | Path, qualities=None, out_dir="results/codec", arch=None, *, pretrained=False,
                    limit=None, update_manifest: bool = False, with_baselines: bool = True,
                    peers: dict | None = None) -> dict:
    """`peers`: the peers' curves to compare with (default: `peer_curves_for` these images)."""
    from tqdm import tqdm

    from dpexplorer.hub.loading import get_codec, shipped_qualities

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

    baselines = matched_baselines(images, per_image) if with_baselines else []
    peers = peers if peers is not None else peer_curves_for(data, images, out_dir, limit)
    ours_bpp = [means[q]["bpp"] for q in qualities]
    ours_psnr = [means[q]["psnr"] for q in qualities]
    bd = {}
    for name, ref in COMPRESSAI_KODAK.items():  # published on Kodak: only meaningful for Kodak
        bd[f"compressai {name}"] = (bd_rate(ref["bpp"][:5], ref["psnr"][:5], ours_bpp, ours_psnr),
                                    bd_quality(ref["bpp"][:5], ref["psnr"][:5], ours_bpp, ours_psnr))
    ours = [(means[q]["bpp"], means[q]["psnr"], means[q]["lpips"]) for q in qualities]
    peer_bd = peer_curves_mod.bd_rates_against_peers(ours, peers)
    for fmt, rates in peer_bd.items():
        pts = peers["formats"][fmt]["points"]
        bd[fmt] = (rates["psnr"], bd_quality([p["bpp"] for p in pts], [p["psnr"] for p in pts], ours_bpp, ours_psnr))
    baseline_means = {}
    for fmt in dict.fromkeys(b["format"] for b in baselines):
        pts = [{k: float(np.mean([b[k] for b in baselines if b["format"] == fmt and b["quality"] == q]))
                for k in ("bpp", "psnr", "lpips")} for q in qualities]
        baseline_means[fmt] = {str(q): p for q, p in zip(qualities, pts)}
    result = {
        "data": str(data), "images": len(images), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "codecs": {str(q): codecs[q] for q in qualities},
        "mean": {str(q): means[q] for q in qualities},
        "baselines": baseline_means,  # each format at each of our files' size (mean per quality)
        "reference": COMPRESSAI_KODAK,
        "peers": peers,
        # BD-rate of ours against each reference: negative = ours needs fewer bits for the same PSNR
        "bd_rate_psnr_percent": {k: v[0] for k, v in bd.items()},
        "bd_psnr_db": {k: v[1] for k, v in bd.items()},
        # and for the same LPIPS, against the peers (CompressAI publishes no LPIPS)
        "bd_rate_lpips_percent": {fmt: rates["lpips"] for fmt, rates in peer_bd.items()},
    }
    (out_dir / "codec_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out_dir / "codec_eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(per_image[0]))
        writer.writeheader()
        writer.writerows(per_image)
    if baselines:
        with open(out_dir / "codec_eval_baselines.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(baselines[0]))
            writer.writeheader()
            writer.writerows(baselines)
    plot_codec_eval(result, out_dir / "codec_eval.png")
    print(format_table(result))
    if update_manifest and not pretrained:
        record_in_manifest(result)
    return result


def format_table(result: dict) -> str:
    ref = result["reference"]["mbt2018-mean"]
    fmts = list(result.get("baselines", {}))
    head = "".join(f" | {peer_formats.NAMES.get(f, f) + ' same size':>17} bpp  PSNR" for f in fmts)
    lines = [f"{'q':>2} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'LPIPS':>7}{head} | CompressAI mbt2018-mean bpp  PSNR"]
    for q, m in result["mean"].items():
        i = int(q) - 1
        cells = "".join(f" | {result['baselines'][f][q]['bpp']:21.4f} {result['baselines'][f][q]['psnr']:5.2f}"
                        for f in fmts)
        lines.append(f"{q:>2} {m['bpp']:7.4f} {m['psnr']:7.2f} {m['ms_ssim']:8.4f} {m['lpips']:7.4f}{cells} | "
                     f"{'':23s}{ref['bpp'][i]:6.4f} {ref['psnr'][i]:5.2f}")
    lpips_bd = result.get("bd_rate_lpips_percent", {})
    for name, rate in result["bd_rate_psnr_percent"].items():
        label = peer_formats.NAMES.get(name, name)
        if math.isnan(rate):
            text = "n/a (needs two or more qualities on overlapping rates)"
        else:
            text = f"{rate:+.1f}%  (BD-PSNR {result['bd_psnr_db'][name]:+.2f} dB)"
        if name in lpips_bd:
            lp = lpips_bd[name]
            text += "; LPIPS: " + ("n/a (the LPIPS ranges do not overlap)" if math.isnan(lp) else f"{lp:+.1f}%")
        lines.append(f"BD-rate (PSNR) of ours vs {label}: {text}")
    if result.get("peers", {}).get("formats"):
        names = ", ".join(c["name"] for c in result["peers"]["formats"].values())
        lines.append(f"({names}: rate curves of Pillow on the same {result['peers']['images']} "
                     f"images, {result['peers'].get('source', 'measured')}; negative = ours needs fewer bits)")
    for fmt, why in result.get("peers", {}).get("unavailable", {}).items():
        lines.append(f"{peer_formats.NAMES.get(fmt, fmt)}: not measured: {why}")
    if Path(result["data"]).name != "kodak":
        lines.append("(the CompressAI rows are published Kodak results: compare them on Kodak only)")
    return "\n".join(lines)


def plot_codec_eval(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = list(result["mean"])
    bpp = [result["mean"][q]["bpp"] for q in qs]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, label in zip(axes, ("psnr", "ms_ssim", "lpips"), ("PSNR (dB) ↑", "MS-SSIM ↑", "LPIPS ↓")):
        ax.plot(bpp, [result["mean"][q][key] for q in qs], "o-", label="ours")
        for name, ref in result["reference"].items():
            if key in ref:
                ax.plot(ref["bpp"][:5], ref[key][:5], "s--", alpha=0.6, label=f"CompressAI {name} (published)")
        for fmt, curve in result.get("peers", {}).get("formats", {}).items():
            pts = [p for p in curve["points"] if p.get(key) is not None]
            ax.plot([p["bpp"] for p in pts], [p[key] for p in pts], ".--", alpha=0.6, label=f"{curve['name']} (same images)")
        ax.set_xlabel("bpp")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    bd = result["bd_rate_psnr_percent"]
    fig.suptitle(f"Base codec on {Path(result['data']).name} ({result['images']} images); PSNR BD-rate vs "
                 + ", ".join(f"{k}: {v:+.1f}%" for k, v in bd.items()), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def record_in_manifest(result: dict) -> None:
    """Write each quality's measured means into its manifest entry (tools/model_card.py prints them)."""
    from dpexplorer.hub.manifest import load_manifest, save_manifest

    manifest = load_manifest()
    for q, info in result["codecs"].items():
        for entry in manifest["models"].values():
            if entry.get("kind") == "codec" and entry.get("sha256") == info["weights_sha256"]:
                entry["eval"] = {"data": Path(result["data"]).name, "images": result["images"],
                                 **{k: round(v, 4) for k, v in result["mean"][q].items() if not math.isnan(v)}}
    save_manifest(manifest)

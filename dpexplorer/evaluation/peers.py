"""The yardstick: AVIF, JPEG XL, WebP and JPEG rate curves on a folder, and BD-rates against them.

`peer_curves` encodes every image at a fixed list of quality settings per format (`PEER_SETTINGS`) and
keeps the mean bpp, PSNR, MS-SSIM and LPIPS per setting: a curve per format over the same images,
which any decoder's points on those images are read against. The settings span about 0.1 to 1–2 bpp on
Kodak, wider than the codec's range, so that the PSNR and the LPIPS BD-rates of the codec decoder and of
the τ = 1 decoders (lower LPIPS, reached by these formats only at higher rates) have an overlap.

`tools/peer_curves.py` stores the curves of Kodak and val_photos in `assets/kodak_curves.json` under
"peers"; `stored_peer_curves` finds them again for the same images (by a fingerprint of the files).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dpexplorer.evaluation import baselines
from dpexplorer.io.images import list_images, load_image
from dpexplorer.metrics import image as metrics
from dpexplorer.metrics.bd import bd_rate

# Pillow quality settings per format (see baselines.FORMATS for the other options), spanning ≈ 0.1–0.2 bpp
# to ≈ 0.75–1.1 bpp on Kodak (measured on four of its images): the codec's rates (≈ 0.18–0.41 bpp) with
# room on both sides, and high enough for these formats to reach the τ = 1 decoders' LPIPS. AVIF is
# within the 10–70 of the earlier AVIF measurement; at speed 4 it is the slow one (seconds per encode).
PEER_SETTINGS = {
    "avif": (10, 20, 30, 40, 50, 60),
    "jxl": (1, 10, 20, 30, 50, 70),
    "webp": (1, 10, 20, 30, 50, 70),
    "jpeg": (5, 10, 20, 30, 50, 70),
}
PEER_KEYS = ("bpp", "psnr", "ms_ssim", "lpips")
# how a BD-rate's quality is read: PSNR higher is better, LPIPS lower
BD_METRICS = {"psnr": True, "lpips": False}


def fingerprint(images: list[Path]) -> str:
    """What the curves depend on besides the encoders: the files' names and contents."""
    h = hashlib.sha256()
    for path in sorted(images, key=lambda p: p.name):
        h.update(path.name.encode() + b"\0" + hashlib.sha256(Path(path).read_bytes()).digest())
    return h.hexdigest()


def encoder_versions() -> dict[str, str]:
    """The libraries that made the files (a curve is only comparable to one made by the same)."""
    from importlib import metadata

    import PIL
    from PIL import features

    out = {"pillow": PIL.__version__}
    for name, feature in (("libavif", "avif"), ("libwebp", "webp"), ("libjpeg", "jpg")):
        try:
            out[name] = features.version(feature) or "?"
        except Exception:  # an old Pillow without the feature name: the Pillow version says enough
            continue
    try:
        out["pillow-jxl-plugin"] = metadata.version("pillow-jxl-plugin")
    except metadata.PackageNotFoundError:
        pass
    return out


def _cells(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    cells = {}
    for line in path.read_text().splitlines():
        if line.strip():
            c = json.loads(line)
            cells[(c["image"], c["format"], c["setting"])] = c
    return cells


def peer_curves(images: list[Path], formats=None, settings: dict | None = None, threads: int | None = None,
                *, cells_path: Path | None = None, progress=None) -> dict:
    """Mean bpp, PSNR, MS-SSIM and LPIPS of each format at each setting over `images`.

    Returns {"images": n, "fingerprint", "encoders", "formats": {fmt: {"name", "options", "points":
    [{"setting", "bpp", "psnr", "ms_ssim", "lpips"}, ...] (ascending bpp)}}, "unavailable": {fmt: why}}.
    `threads` caps the AVIF/JPEG XL encoders' threads; `cells_path` is a JSONL of per-image cells that
    an interrupted run resumes from (cells of other files are ignored through the image's digest).
    """
    available = baselines.available_formats()
    formats = list(formats or PEER_SETTINGS)
    settings = {**PEER_SETTINGS, **(settings or {})}
    usable = [f for f in formats if available.get(f) is None]
    cells = _cells(cells_path)
    per_format = {f: {q: [] for q in settings[f]} for f in usable}
    for path in images:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        img = None
        for fmt in usable:
            for q in settings[fmt]:
                key = (path.name, fmt, q)
                cell = cells.get(key)
                if cell is None or cell.get("digest") != digest:
                    if img is None:
                        img = load_image(path)
                    data = baselines.encode_at(img, fmt, q, threads)
                    m = metrics.all_metrics(img, baselines.decode(data))
                    cell = {"image": path.name, "digest": digest, "format": fmt, "setting": q,
                            "bytes": len(data), "bpp": metrics.bpp(len(data), *img.shape[:2]),
                            **{k: m[k] for k in PEER_KEYS if k != "bpp"}}
                    cells[key] = cell
                    if cells_path is not None:
                        with open(cells_path, "a") as f:
                            f.write(json.dumps(cell) + "\n")
                per_format[fmt][q].append(cell)
            if progress:
                progress.update(1)
    out_formats = {}
    for fmt in usable:
        points = []
        for q, rows in per_format[fmt].items():
            point = {"setting": q}
            for k in PEER_KEYS:
                values = [r[k] for r in rows if r.get(k) is not None and not math.isnan(r[k])]
                point[k] = round(float(np.mean(values)), 5) if values else None
            points.append(point)
        options = {k: v for k, v in baselines.FORMATS[fmt].items() if k != "format"}
        out_formats[fmt] = {"name": baselines.NAMES[fmt], "options": options,
                            "points": sorted(points, key=lambda p: p["bpp"])}
    return {"images": len(images), "fingerprint": fingerprint(images), "encoders": encoder_versions(),
            "formats": out_formats,
            "unavailable": {f: available[f] for f in formats if available.get(f) is not None}}


def peer_curves_on(data: str | Path, limit: int | None = None, threads: int | None = None, **kwargs) -> dict:
    """`peer_curves` of a folder, with its name and the date."""
    images = list_images(data, limit)
    curves = peer_curves(images, threads=threads, **kwargs)
    return {"data": Path(data).name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **curves}


def stored_peer_curves(data: str | Path, curves: dict | None, limit: int | None = None) -> dict | None:
    """The peer curves stored in a curves file (`curves["peers"]`) for exactly these images, else None."""
    if not curves:
        return None
    images = list_images(data, limit)
    want = fingerprint(images)
    for stored in curves.get("peers", {}).values():
        if stored.get("fingerprint") == want:
            return stored
    return None


def bd_rates_against_peers(points: list[tuple[float, float, float]], peer_curves: dict) -> dict:
    """BD-rates (%) of a curve given as (bpp, PSNR, LPIPS) points against each peer format's curve.

    Returns {fmt: {"psnr": %, "lpips": %}}: negative = the curve needs fewer bits than the format for
    the same PSNR (LPIPS). NaN where fewer than two points or the quality ranges do not overlap. Usable
    for the codec decoder over qualities and for any decoder's τ = 1 points over qualities.
    """
    pts = sorted(points)
    out = {}
    for fmt, curve in peer_curves.get("formats", {}).items():
        ref = [p for p in curve["points"] if p.get("bpp") is not None]
        out[fmt] = {}
        for i, (key, higher) in enumerate(BD_METRICS.items(), start=1):
            if len(pts) < 2:
                out[fmt][key] = math.nan
                continue
            usable = [p for p in ref if p.get(key) is not None]
            out[fmt][key] = bd_rate([p["bpp"] for p in usable], [p[key] for p in usable],
                                    [p[0] for p in pts], [p[i] for p in pts], higher_is_better=higher)
    return out


def decoder_series_at_tau(curves: dict, tau: float = 1.0) -> dict[str, list[tuple[float, float, float]]]:
    """From a curves file's series: the codec decoder over qualities, and each τ decoder's points at `tau`
    over qualities, one list per (family, sampler/steps) setting: label → [(bpp, PSNR, LPIPS)]. Series
    measured on a subset of the images (the pixel decoder's slow settings: "…, 4 images)") are left out:
    the peers' curves are means over all of them."""
    import re

    out: dict[str, list] = {}
    for s in curves.get("series", []):
        subset = re.search(r"(\d+) images\)", s.get("label", ""))
        if subset and curves.get("images") is not None and int(subset.group(1)) != curves["images"]:
            continue
        if s.get("kind") == "plain":
            out["codec decoder"] = [(p["bpp"], p["psnr"], p["lpips"]) for p in s["points"]]
        elif s.get("quality") is not None:
            setting = "/".join(str(x) for x in (s.get("sampler"), s.get("steps")) if x)
            label = f"{s['kind']} τ={tau:g}" + (f" ({setting})" if setting else "")
            for p in s["points"]:
                if p.get("tau") is not None and abs(p["tau"] - tau) < 1e-9:
                    out.setdefault(label, []).append((p["bpp"], p["psnr"], p["lpips"]))
    return out


def format_bd_table(bd: dict[str, dict], title: str) -> str:
    """Rows: curve; columns: each peer's PSNR and LPIPS BD-rate (%); negative = fewer bits than the peer."""
    fmts = list(next(iter(bd.values()), {}))
    head = "".join(f" | {baselines.NAMES.get(f, f) + ' PSNR':>12} {'LPIPS':>7}" for f in fmts)
    lines = [title, f"{'':34}{head}"]
    for label, row in bd.items():
        cells = "".join(" | " + f"{_pct(row[f]['psnr']):>12} {_pct(row[f]['lpips']):>7}" for f in fmts)
        lines.append(f"{label:34}{cells}")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.1f}%"

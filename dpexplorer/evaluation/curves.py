"""The distortion–perception curves file (`assets/kodak_curves.json`, written by `dpexplorer eval
--assets`) and its plot: the D–P plane with the Kodak curves, and one image's own τ curve and live
points over them (the app draws it; the bench times it)."""

from __future__ import annotations

import json
from pathlib import Path

from dpexplorer.hub.manifest import data_home

CURVES_PATH = data_home() / "assets" / "kodak_curves.json"


def load_curves(path: Path = CURVES_PATH) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


SAMPLER_STYLES = {"ddim": "-", "ddpm": "--", "dpmsolver++": ":", "euler": "-."}
FAMILY_MARKERS = {"latent": "o", "pixel": "D"}  # a τ sweep of another family (kind) is drawn with squares
QUALITY_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]


def dp_plot(curves: dict | None, live: dict | None = None, live_label: str = "this image",
            quality: int | None = None, own_curve: list[dict] | None = None, family: str | None = None):
    """Distortion–perception plane (PSNR → right is better, LPIPS ↓ is better) with the Kodak curves.

    Read in seconds: the τ sweeps of `quality` in full colour (the others faint), the sampler as line
    style, the family (series "kind") as marker, the legend outside the axes; this image's τ curve (`own_curve`: dicts with tau, psnr,
    lpips) and its live points (`live`: label → metrics) on the same axes. With `family`, only that τ
    decoder's sweeps are drawn (with the codec decoder and the baselines).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.4, 4.2), layout="constrained")
    faint_labelled = False
    if curves:
        for series in curves.get("series", []):
            pts = series["points"]
            xs, ys = [p["psnr"] for p in pts], [p["lpips"] for p in pts]
            q = series.get("quality")
            if family is not None and q is not None and series.get("kind") != family:
                continue
            if q is None:  # codec decoder, JPEG, WebP: one curve over all qualities
                ax.plot(xs, ys, series.get("style", "o-"), color="0.35", label=series["label"], alpha=0.9,
                        markersize=4, linewidth=1.2)
                continue
            style = SAMPLER_STYLES.get(series.get("sampler"), "-")
            colour = QUALITY_COLOURS[(q - 1) % len(QUALITY_COLOURS)]
            chosen = quality is None or q == quality
            label = series["label"] if chosen else (None if faint_labelled else "other qualities")
            faint_labelled = faint_labelled or not chosen
            marker = FAMILY_MARKERS.get(series.get("kind"), "s")
            if (series.get("steps") or 0) > 20:  # the pixel decoder's many-step settings: thin diamonds
                marker = "d"
            ax.plot(xs, ys, style, marker=marker, color=colour, alpha=1.0 if chosen else 0.18,
                    markersize=3.5 if chosen else 2, linewidth=1.6 if chosen else 0.8, label=label,
                    zorder=3 if chosen else 1)
        ax.set_title(f"Kodak ({curves.get('images', '?')} images)" + (f", q{quality} highlighted" if quality else ""),
                     fontsize=10)
    else:
        ax.set_title("No precomputed curves (run `dpexplorer eval`)", fontsize=10)
    if own_curve:
        pts = sorted(own_curve, key=lambda p: p["tau"])
        ax.plot([p["psnr"] for p in pts], [p["lpips"] for p in pts], "-o", color="crimson", linewidth=2.2,
                markersize=4, label=f"{live_label}: τ curve", zorder=6)
        for p in (pts[0], pts[-1]):
            ax.annotate(f"τ={p['tau']:g}", (p["psnr"], p["lpips"]), fontsize=8, color="crimson",
                        xytext=(4, 4), textcoords="offset points")
    markers = iter("*PXDs^v")
    for label, point in (live or {}).items():
        ax.plot([point["psnr"]], [point["lpips"]], next(markers, "*"), markersize=13, label=label, zorder=7,
                markeredgecolor="black", markeredgewidth=0.6)
    ax.set_xlabel("PSNR (dB) → better")
    ax.set_ylabel("LPIPS (AlexNet) ↓ better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
    plt.close(fig)
    return fig

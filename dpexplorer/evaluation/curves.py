"""The distortion–perception curves file (`assets/kodak_curves.json`, written by `dpexplorer eval
--assets`) and its plot: the D–P plane with the Kodak curves, and one image's own τ curve and live
points over them (the app draws it; the bench times it)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from dpexplorer.decoders.registry import DECODERS
from dpexplorer.hub.manifest import data_home

CURVES_PATH = data_home() / "assets" / "kodak_curves.json"


def load_curves(path: Path = CURVES_PATH) -> dict | None:
    """The curves file, parsed once per change of it (the app plots it on every render)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return _parsed(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _parsed(path: str, mtime_ns: int, size: int) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def offered(series: dict) -> bool:
    """Whether a τ decoder's series is a setting the app offers (a withheld sampler, measured before it was
    withheld, stays in the file but is not drawn as a choice)."""
    family = DECODERS.get(series.get("kind"))
    return family is None or not series.get("sampler") or series["sampler"] in family.offered_samplers()


SAMPLER_STYLES = {"ddim": "-", "ddpm": "--", "dpmsolver++": ":", "euler": "-."}
QUALITY_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
# The peers (what users would pick instead): light, dashed, one legend entry each, drawn under the decoders' curves
PEER_STYLES = {"avif": dict(color="#7b3294", linestyle="--"), "jxl": dict(color="#008837", linestyle="--"),
               "webp": dict(color="#e66101", linestyle=":"), "jpeg": dict(color="#5e3c99", linestyle="-.")}
PEER_ALPHA = 0.45


def peer_set(curves: dict | None) -> dict | None:
    """The peers' curves measured on the same images as the curves file's series (its "data")."""
    return ((curves or {}).get("peers") or {}).get((curves or {}).get("data"))


def peer_at_bpp(curve: dict, bpp: float, key: str) -> float | None:
    """A peer's `key` at `bpp`, linear in log bpp between its settings (None outside their range)."""
    import numpy as np

    pts = sorted((p["bpp"], p[key]) for p in curve["points"] if p.get(key) is not None and p.get("bpp"))
    if not pts or not pts[0][0] <= bpp <= pts[-1][0]:
        return None
    return float(np.interp(np.log(bpp), [np.log(r) for r, _ in pts], [v for _, v in pts]))


def _draw_peers(ax, curves: dict, at_bpp: float | None = None, formats=None, *, x: str = "psnr",
                y: str = "lpips") -> None:
    """The peers' curves on `ax` without moving its limits (set by the decoders' curves, which they are
    read against: the peers reach far lower LPIPS at higher rates). With `at_bpp`, a hollow marker
    where each peer is at that rate (the highlighted quality's size)."""
    peers = peer_set(curves)
    if not peers:
        return
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    for fmt, curve in peers.get("formats", {}).items():
        if formats is not None and fmt not in formats:
            continue
        style = PEER_STYLES.get(fmt, dict(color="0.5", linestyle="--"))
        pts = [p for p in curve["points"] if p.get(x) is not None and p.get(y) is not None]
        qs = [p["setting"] for p in pts]
        ax.plot([p[x] for p in pts], [p[y] for p in pts], marker=".", markersize=3, linewidth=1.0,
                alpha=PEER_ALPHA, zorder=0.5, label=f"{curve['name']} (q{min(qs)}–{max(qs)})", **style)
        if at_bpp is not None and x != "bpp":
            px, py = peer_at_bpp(curve, at_bpp, x), peer_at_bpp(curve, at_bpp, y)
            if px is not None and py is not None:
                ax.plot([px], [py], "o", markersize=6, markerfacecolor="none", alpha=0.8, zorder=0.6,
                        color=style["color"])
                ax.annotate(f"{curve['name']} @ {at_bpp:.2f} bpp", (px, py), fontsize=6, color=style["color"],
                            alpha=0.9, xytext=(3, -8), textcoords="offset points", annotation_clip=True)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)


def dp_plot(curves: dict | None, live: dict | None = None, live_label: str = "this image",
            quality: int | None = None, *, own_curve: list[dict] | None = None, family: str | None = None):
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
            if series.get("sampler") and not offered(series):
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
            marker = DECODERS[series["kind"]].marker if series.get("kind") in DECODERS else "s"
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
    if curves and ax.lines:
        codec = next((s for s in curves.get("series", []) if s.get("kind") == "plain"), None)
        at = next((p["bpp"] for p in (codec or {}).get("points", []) if p.get("quality") == quality), None)
        _draw_peers(ax, curves, at_bpp=at)
    ax.set_xlabel("PSNR (dB) → better")
    ax.set_ylabel("LPIPS (AlexNet) ↓ better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)
    plt.close(fig)
    return fig


# ---- the README figure (assets/kodak_dp_curves.png) -----------------------------------------------
# One colour per decoder, the codec's quality as the marker: a reader finds a decoder by colour and a
# rate by shape, with at most 8 legend entries (the earlier figure had 25 in repeating colours). The
# colours and names are the families' own (`colour`, `name` in the registry's table).
FAMILY_COLOURS = {key: cls.colour for key, cls in DECODERS.items()}
FAMILY_NAMES = {key: cls.name for key, cls in DECODERS.items()}
QUALITY_MARKERS = ("o", "s", "^", "D", "v", "P")
README_PEERS = ("avif", "webp")  # the reference lines: the best still-image format and the web's usual one


def representative_series(curves: dict) -> dict[tuple[str, int], dict]:
    """Per (τ decoder, quality) the one τ sweep the README figure draws: measured on every image, the
    first sampler of the run's settings (its samplers differ by < 0.01 LPIPS on Kodak), fewest steps."""
    samplers = list((curves.get("settings") or {}).get("samplers") or [])
    images = curves.get("images")

    def rank(s):
        partial = f", {images} images" not in s.get("label", "") and "images)" in s.get("label", "")
        order = samplers.index(s["sampler"]) if s.get("sampler") in samplers else len(samplers)
        return (partial, order, s.get("steps") or 0)

    chosen = {}
    for s in curves.get("series", []):
        if s.get("quality") is None or s.get("kind") not in FAMILY_COLOURS:
            continue
        key = (s["kind"], s["quality"])
        if key not in chosen or rank(s) < rank(chosen[key]):
            chosen[key] = s
    return chosen


def readme_figure(curves: dict, path: Path, reference: dict | None = None) -> None:
    """rate–PSNR, rate–LPIPS and the D–P plane: the codec decoder over qualities, each τ decoder's τ = 1
    points over qualities (rate panels) and its τ sweeps (D–P plane), AVIF and WebP light as the
    reference lines; `reference`: CompressAI's published curve ({"bpp", "psnr"}) on the rate–PSNR panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    plain = next((s for s in curves.get("series", []) if s.get("kind") == "plain"), None)
    chosen = representative_series(curves)
    qualities = sorted({q for _, q in chosen} | {p["quality"] for p in (plain or {}).get("points", [])})
    marker = {q: QUALITY_MARKERS[i % len(QUALITY_MARKERS)] for i, q in enumerate(qualities)}

    def curve(ax, pts, x, y, *, colour, **kw):
        pts = sorted(pts, key=lambda p: p[x])
        ax.plot([p[x] for p in pts], [p[y] for p in pts], "-", color=colour, linewidth=1.4, **kw)
        for p in pts:
            ax.plot([p[x]], [p[y]], marker[p["quality"]], color=colour, markersize=6, **kw)

    if plain:
        for ax, (x, y) in zip(axes, (("bpp", "psnr"), ("bpp", "lpips"), ("psnr", "lpips"))):
            curve(ax, plain["points"], x, y, colour=FAMILY_COLOURS["plain"], zorder=4)
    families = [k for k in FAMILY_COLOURS if k != "plain" and any(kind == k for kind, _ in chosen)]
    for kind in families:
        colour = FAMILY_COLOURS[kind]
        sweeps = {q: s for (k, q), s in chosen.items() if k == kind}
        at_one = [p for s in sweeps.values() for p in s["points"] if p.get("tau") == 1.0]
        for ax, y in zip(axes[:2], ("psnr", "lpips")):
            curve(ax, at_one, "bpp", y, colour=colour, zorder=3)
        for s in sweeps.values():  # the D–P plane: each quality's τ sweep, τ = 1 end marked
            pts = sorted(s["points"], key=lambda p: p.get("tau") or 0)
            axes[2].plot([p["psnr"] for p in pts], [p["lpips"] for p in pts], "-", color=colour, linewidth=1.2,
                         alpha=0.85, zorder=3)
            axes[2].plot([pts[-1]["psnr"]], [pts[-1]["lpips"]], marker[s["quality"]], color=colour, markersize=6,
                         zorder=3)
    if reference:
        axes[0].plot(reference["bpp"], reference["psnr"], ":", color="0.45", marker="x", markersize=4, zorder=2)
    for ax, (x, y) in zip(axes, (("bpp", "psnr"), ("bpp", "lpips"), ("psnr", "lpips"))):
        ax.margins(0.08)
        _draw_peers(ax, curves, formats=README_PEERS, x=x, y=y)
        ax.grid(alpha=0.3)
    for ax, (xl, yl, title) in zip(axes, (("bpp", "PSNR (dB) ↑", "rate–PSNR"), ("bpp", "LPIPS ↓", "rate–LPIPS"),
                                          ("PSNR (dB) →", "LPIPS ↓", "distortion–perception plane (τ sweeps)"))):
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(title, fontsize=10)

    handles = ([Line2D([], [], color=FAMILY_COLOURS["plain"], label=FAMILY_NAMES["plain"])] if plain else [])
    handles += [Line2D([], [], color=FAMILY_COLOURS[k], label=f"{FAMILY_NAMES[k]} (τ = 1; sweeps)") for k in families]
    peers = peer_set(curves) or {}
    handles += [Line2D([], [], alpha=PEER_ALPHA + 0.2, label=f"{peers['formats'][f]['name']} (Pillow, same images)",
                       **PEER_STYLES[f]) for f in README_PEERS if f in peers.get("formats", {})]
    if reference:
        handles.append(Line2D([], [], color="0.45", linestyle=":", marker="x", label=reference.get("label", "reference")))
    handles.append(Line2D([], [], linestyle="none", marker="None",
                          label="markers: " + ", ".join(f"{m} q{q}" for q, m in marker.items())))
    legend = fig.legend(handles=handles[:8], loc="lower center", ncol=min(len(handles), 4), fontsize=8,
                        frameon=False)
    _marker_key(legend, marker)
    shown = ", ".join(f"{FAMILY_NAMES[k]}: {chosen[(k, qualities[0])]['sampler']}"
                      for k in families if chosen.get((k, qualities[0]), {}).get("sampler"))
    fig.suptitle(f"{curves.get('data', '?')}: {curves.get('images', '?')} images; τ sweeps shown per decoder with "
                 f"one sampler ({shown})", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _marker_key(legend, marker: dict) -> None:
    """The last legend entry names the quality markers in words; show its marker symbols as text."""
    names = {"o": "●", "s": "■", "^": "▲", "D": "◆", "v": "▼", "P": "✚"}
    text = legend.get_texts()[-1]
    if text.get_text().startswith("markers: "):
        text.set_text("markers: " + ", ".join(f"{names.get(m, m)} q{q}" for q, m in marker.items()))

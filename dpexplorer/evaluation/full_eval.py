"""`dpexplorer eval`: every distortion–perception number and figure for a folder of images.

For each shipped quality and each image: the .dpx (real bytes), the plain decoder, the τ sweep of every
τ decoder family in `dpexplorer.decoders.registry.FAMILIES` that has weights for it (per sampler setting
for the families that sample) on the file without the sender's τ hint (raw τ, through the receiver's grain
guard where the quality has one, uniform with `guard=False`), the same sweep of each
family's default setting on the file with the hint (what `dpexplorer encode` writes by default: its bpp
counts the hint's bytes), and JPEG/WebP at the matched rate. Each (image,
quality, decoder, sampler, steps, τ, seed, hint, guard) cell is appended to `cells.jsonl` as soon as it is
measured, so an interrupted run resumes where it stopped. Then means, CSV, figures, and — with
`--assets` — the `assets/kodak_curves.json` the app plots.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dpexplorer.decoders.base import DecodeOptions
from dpexplorer.decoders.grainguard import shipped_guard
from dpexplorer.decoders.registry import FAMILIES
from dpexplorer.decoders.stream import open_stream
from dpexplorer.evaluation import baselines
from dpexplorer.evaluation.pixel_eval import SETTINGS as PIXEL_SETTINGS, parse_setting
from dpexplorer.evaluation.reference import COMPRESSAI_KODAK
from dpexplorer.io.images import list_images, load_image
from dpexplorer.metrics import image as metrics
from dpexplorer.metrics.bd import bd_rate

CURVES_SCHEMA = 1
# "codec" / "model": the weights' SHA-256 prefixes, so a cell measured with other weights is never reused.
CELL_KEY = ("image", "quality", "codec", "decoder", "model", "sampler", "steps", "tau", "seed", "hint", "guard")
QUALITY_KEYS = ("bpp", "psnr", "ms_ssim", "lpips", "hf_ratio", "grain", "flip", "ssimulacra2", "nlpd", "ms_gmsd")


@dataclass
class EvalSettings:
    data: str
    out_dir: str = "results/eval"
    qualities: list[int] | None = None
    decoders: list[str] = field(default_factory=lambda: ["plain", *FAMILIES, "jpeg", "webp"])
    samplers: list[str] = field(default_factory=lambda: ["ddim", "ddpm", "dpmsolver++"])
    steps: int = 10
    taus: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    seed: int = 0
    extra: bool = True
    limit: int | None = None
    assets: str | None = None  # where to write the app's curves file
    # SAMPLER:STEPS settings of a sampling family evaluated at several step counts (the others: each of
    # `samplers` at `steps`); those over `fast_steps` steps run on the first `slow_limit` images only
    # (None: all), so their means are over that subset (the summary says n)
    step_settings: dict[str, list[str]] = field(
        default_factory=lambda: {"pixel": list(PIXEL_SETTINGS)})
    slow_limit: int | None = None
    fast_steps: int = 20
    # also decode the file with the sender's τ hint (each family's first setting): "hinted" cells
    hint: bool = True
    # raw decodes (the file without a hint) follow the receiver's grain guard where the quality has one
    # ("guarded" cells); False: uniform τ, as before the guard
    guard: bool = True

    def sampler_settings(self, key: str) -> list[tuple[str | None, int | None]]:
        """(sampler, steps) pairs a family is evaluated at; (None, None) for a deterministic one."""
        family = FAMILIES[key]
        if not family.uses_sampler:
            return [(None, None)]
        if key in self.step_settings:
            settings = [parse_setting(s) for s in self.step_settings[key]]
        else:
            settings = [(smp, self.steps) for smp in self.samplers]
        return [(smp, steps) for smp, steps in settings if smp in family.offered_samplers()]  # what users can pick


def _key(cell: dict) -> tuple:
    # cells written before the hint (the guard) existed have no "hint" ("guard"): they decoded without one
    return tuple(bool(cell.get(k)) if k in ("hint", "guard") else cell.get(k) for k in CELL_KEY)


def _measure(ref: np.ndarray, test: np.ndarray, extra: bool) -> dict:
    return metrics.all_metrics(ref, test, extra=extra)


class CellStore:
    """Append-only JSONL of measured cells (resumability)."""

    def __init__(self, path: Path):
        self.path = path
        self.cells = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    cell = json.loads(line)
                    self.cells[_key(cell)] = cell

    def __contains__(self, key) -> bool:
        return key in self.cells

    def add(self, cell: dict) -> None:
        self.cells[_key(cell)] = cell
        with open(self.path, "a") as f:
            f.write(json.dumps(cell) + "\n")


def run_eval(settings: EvalSettings) -> dict:
    from tqdm import tqdm

    from dpexplorer.hub.loading import get_codec, module_qualities, shipped_qualities
    from dpexplorer.hub.manifest import find_entry

    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = list_images(settings.data, settings.limit)
    qualities = settings.qualities or shipped_qualities()
    if not qualities:
        raise FileNotFoundError("no shipped codec weights to evaluate")
    store = CellStore(out / "cells.jsonl")
    provenance, defaults, models = {}, {}, {}

    # every shipped weight's hash, at every shipped quality, evaluated here or not: curves carried over from
    # an earlier run are only kept while their weights are the shipped ones (`write_curves`)
    for q in shipped_qualities():
        codec = get_codec(q)
        provenance[f"codec-q{q}"] = codec.weights_sha256
        for kind in FAMILIES:
            if q in module_qualities(kind):
                entry = find_entry(kind, codec.cfg.arch, q)[1]
                provenance[f"{kind}-q{q}"] = entry["sha256"]
                defaults[f"{kind}-q{q}"] = decode_defaults(entry)
                models[f"{kind}-q{q}"] = model_id(entry)

    total = len(images) * len(qualities)
    with tqdm(total=total, desc="eval", disable=None) as bar:
        for q in qualities:
            codec = get_codec(q)
            modules = _modules(q, settings)
            for i, path in enumerate(images):
                slow = settings.slow_limit is None or i < settings.slow_limit
                _eval_image(path, codec, modules, slow=slow, models=models, s=settings, store=store, out=out)
                bar.update(1)

    for q in qualities:
        modules = _modules(q, settings)
        if modules:
            tau_crops_figure(images[0], get_codec(q), modules, settings, dest=out / f"tau_crops_q{q}.png")

    names = {p.name for p in images}
    cells = [c for c in store.cells.values() if c["quality"] in qualities and c["image"] in names
             and c.get("codec") == _short(provenance[f"codec-q{c['quality']}"])
             and (c["decoder"] not in FAMILIES
                  or c.get("model") == models.get(f"{c['decoder']}-q{c['quality']}"))]
    result = summarize(cells, settings, provenance, len(images))
    result["decode_defaults"] = defaults
    write_csv(cells, out / "results.csv")
    # the curves file keeps the curves of decoders this run did not evaluate (same weights): plot those too
    series = write_curves(result, Path(settings.assets))["series"] if settings.assets else curve_series(result)
    result["bd_rate_peers"] = peer_bd_rates(settings, series, images=len(images), hinted=hinted_points(result))
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_all(result, out, series)
    print(format_summary(result))
    return result


def hinted_points(result: dict) -> dict[str, list[tuple[float, float, float]]]:
    """Each family's hinted decode at τ = 1 over qualities (label → [(bpp, PSNR, LPIPS)]), for the peers'
    BD-rates: what `dpexplorer encode` and `decode --tau 1` give by default."""
    out: dict[str, list] = {}
    for m in sorted(result["means"], key=lambda m: m["bpp"]):
        if m.get("hint") and m["tau"] == 1.0 and m["n"] == result["images"]:
            out.setdefault(f"{m['decoder']} τ=1 hinted", []).append((m["bpp"], m["psnr"], m["lpips"]))
    return out


def peer_bd_rates(settings: EvalSettings, series: list[dict], *, images: int, hinted: dict | None = None) -> dict:
    """BD-rates (PSNR and LPIPS) of the codec decoder and of every τ decoder at τ = 1 against AVIF, JPEG XL,
    WebP and JPEG on the same images: their curves from the curves file where they were measured on exactly
    these files (`tools/peer_curves.py`), else measured now (cells kept in the output folder)."""
    from dpexplorer.evaluation import peers
    from dpexplorer.evaluation.curves import CURVES_PATH, load_curves

    stored = peers.stored_peer_curves(settings.data, load_curves(Path(settings.assets or CURVES_PATH)), settings.limit)
    measured = stored or peers.peer_curves_on(settings.data, settings.limit,
                                              cells_path=Path(settings.out_dir) / "peer_cells.jsonl")
    curves = {**peers.decoder_series_at_tau({"series": series, "images": images}, tau=1.0), **(hinted or {})}
    return {label: peers.bd_rates_against_peers(points, measured) for label, points in curves.items()}


def _short(sha256: str | None) -> str | None:
    return sha256[:16] if sha256 else None


# decode defaults stored with a module's weights (manifest config) and their neutral values: setting one at
# export changes the module's decodes but not its file
DECODE_DEFAULTS = {"noise_scale": 1.0, "strength": 1.0}


def decode_defaults(entry: dict) -> str:
    """The decode defaults set in a module's manifest config, as text ("strength=0.25"; "" for none)."""
    config = entry.get("config", {})
    return "/".join(f"{k}={config[k]:g}" for k, neutral in sorted(DECODE_DEFAULTS.items())
                    if config.get(k, neutral) != neutral)


def model_id(entry: dict) -> str:
    """What a module's cells are keyed by: its weights' hash, with any decode default that is set."""
    return "/".join(filter(None, [_short(entry["sha256"]), decode_defaults(entry)]))


def _modules(q: int, s: EvalSettings) -> dict:
    """The τ decoders of quality q that are shipped and among the decoders evaluated, by key, in the
    table's order (loaded once per process)."""
    return {key: cls.load(q) for key, cls in FAMILIES.items() if key in s.decoders and q in cls.qualities()}


def setting_label(cell: dict) -> str | None:
    """A τ decoder's sampler setting: the sampler, with its steps where the family is evaluated at several
    step counts ("ddim:10"), "hinted" for decodes of the file with the sender's τ hint and "guarded" for
    raw decodes through the receiver's grain guard; None for a deterministic family's uniform-τ decodes."""
    way = "hinted" if cell.get("hint") else "guarded" if cell.get("guard") else None
    if cell["sampler"] is None:
        return way
    own_steps = EvalSettings.__dataclass_fields__["step_settings"].default_factory()
    sampler = f"{cell['sampler']}:{cell['steps']}" if cell["decoder"] in own_steps else cell["sampler"]
    return " ".join(filter(None, [sampler, way]))


def _eval_image(path: Path, codec, modules: dict, *, slow: bool, models: dict, s: EvalSettings,
                store: CellStore, out: Path) -> None:
    q = codec.cfg.quality
    # JPEG/WebP cells are keyed by the codec too: their rate is matched to its bitstream.
    base_key = dict(image=path.name, quality=q, codec=_short(codec.weights_sha256), seed=s.seed, model=None,
                    hint=False, guard=False)
    guarded = s.guard and shipped_guard(codec) is not None
    plain_key = dict(base_key, decoder="plain", sampler=None, steps=None, tau=None)
    wanted = []
    if "plain" in s.decoders or "jpeg" in s.decoders or "webp" in s.decoders:
        wanted.append(plain_key)
    for key in modules:
        settings = s.sampler_settings(key)
        for smp, steps in settings:
            if slow or steps is None or steps <= s.fast_steps:
                wanted += [dict(base_key, decoder=key, model=models[f"{key}-q{q}"], sampler=smp,
                                steps=steps, tau=t, guard=guarded) for t in s.taus]
        if s.hint and settings:  # the default file, its hint followed, at the first setting
            smp, steps = settings[0]
            wanted += [dict(base_key, decoder=key, model=models[f"{key}-q{q}"], sampler=smp, steps=steps, tau=t,
                            hint=True) for t in s.taus]
    for fmt in ("jpeg", "webp"):
        if fmt in s.decoders:
            wanted.append(dict(base_key, decoder=fmt, sampler=None, steps=None, tau=None))
    todo = [c for c in wanted if _key(c) not in store]
    if not todo:
        return

    img = load_image(path)
    folder = out / "bitstreams" / f"q{q}-{_short(codec.weights_sha256)}"
    data = _bitstream(folder / (path.stem + ".dpx"), lambda: codec.encode(img))
    bpp = metrics.bpp(len(data), *img.shape[:2])
    stream = open_stream(data, codec)
    base = stream.plain()
    hinted = None
    if any(c["hint"] for c in todo):
        from dpexplorer.hint.sender import encode

        hinted = open_stream(_bitstream(folder / (path.stem + ".hinted.dpx"), lambda: encode(codec, img)), codec)

    def digest(recon: np.ndarray) -> str:
        return hashlib.sha256(repr(recon.shape).encode() + recon.tobytes()).hexdigest()

    # Identical pixels are measured once (τ = 0 is the base decoder's image bit for bit), also
    # against a plain cell measured by an earlier run.
    measured = {}
    if (plain := store.cells.get(_key(plain_key))) is not None:
        measured[digest(base)] = {k: v for k, v in plain.items() if k not in CELL_KEY and k != "bpp"}

    def measure(recon: np.ndarray) -> dict:
        d = digest(recon)
        if d not in measured:
            measured[d] = _measure(img, recon, s.extra)
        return measured[d]

    for cell in todo:
        if cell["decoder"] == "plain":
            m = {"bpp": bpp, **measure(base)}
        elif cell["hint"]:  # the default file, its τ hint followed
            if hinted.bitstream.hint is None:  # no hint fits this file's 1 % (or no synthesis): nothing to add
                continue
            recon = modules[cell["decoder"]].reconstruct(hinted, cell["tau"], options=_options(cell))
            m = {"bpp": metrics.bpp(len(hinted.data), *img.shape[:2]), "hint_bytes": hinted.bitstream.hint_bytes,
                 **measure(recon)}
        elif cell["decoder"] in modules:  # a sampling family draws one sample per setting (cached)
            recon = modules[cell["decoder"]].reconstruct(stream, cell["tau"], options=_options(cell))
            m = {"bpp": bpp, **measure(recon)}
        else:
            matched = baselines.match_rate(img, cell["decoder"], bpp)
            m = {"bpp": matched["bpp"], "setting": matched["setting"], **_measure(img, matched["image"], s.extra)}
        store.add({**cell, **m})


def _bitstream(path: Path, encode) -> bytes:
    """The bitstream kept in the output folder (a resumed run decodes the very same bytes), else encoded."""
    if path.exists():
        return path.read_bytes()
    data = encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _options(cell: dict) -> DecodeOptions:
    guard = bool(cell.get("guard"))
    if cell["sampler"] is None:
        return DecodeOptions(use_guard=guard)
    return DecodeOptions(sampler=cell["sampler"], steps=cell["steps"], seed=cell["seed"], use_guard=guard)


def tau_crops_figure(path: Path, codec, modules: dict, s: EvalSettings, *, dest: Path, size: int = 128) -> None:
    """Zoomed crops (×3, nearest) of one image across τ, a row per τ decoder family and sampler setting:
    what the numbers mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dpexplorer.io.images import zoom_crop

    img = load_image(path)
    stream = open_stream(codec.encode(img), codec)
    cols = [("original", img)] + [(f"τ={t:g}", None) for t in s.taus]
    rows = []
    for key, module in modules.items():
        for smp, steps in s.sampler_settings(key):
            cell = {"decoder": key, "sampler": smp, "steps": steps, "seed": s.seed}
            rows.append((" ".join(filter(None, [key, setting_label(cell)])),
                         lambda t, module=module, cell=cell: module.reconstruct(stream, t, options=_options(cell))))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.2 * len(cols), 2.4 * len(rows)), squeeze=False)
    for row, (name, decode) in enumerate(rows):
        for col, (title, im) in enumerate(cols):
            if im is None:
                im = decode(s.taus[col - 1])
            axes[row, col].imshow(zoom_crop(im, 0.5, 0.5, size, scale=3), interpolation="nearest")
            axes[row, col].set_title(f"{title}" + (f"\n{name}" if col else ""), fontsize=8)
            axes[row, col].axis("off")
    sampling = f", {s.steps} steps unless named, seed {s.seed}" if any(FAMILIES[k].uses_sampler for k in modules) else ""
    fig.suptitle(f"{path.name}, q{codec.cfg.quality}{sampling}", fontsize=9)
    fig.tight_layout()
    fig.savefig(dest, dpi=100)
    plt.close(fig)


def _mean(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else float("nan")


def summarize(cells: list[dict], settings: EvalSettings, provenance: dict, n_images: int) -> dict:
    groups = defaultdict(list)
    for c in cells:
        groups[(c["quality"], c["decoder"], c["sampler"], c["steps"], c["tau"], bool(c.get("hint")),
                bool(c.get("guard")))].append(c)
    means = []
    for (q, dec, smp, steps, tau, hint, guard), rows in sorted(groups.items(),
                                                              key=lambda kv: tuple(str(x) for x in kv[0])):
        entry = {"quality": q, "decoder": dec, "sampler": smp, "steps": steps, "tau": tau, "n": len(rows)}
        entry.update({k: _mean([r.get(k) for r in rows]) for k in QUALITY_KEYS})
        if hint:
            entry.update(hint=True, hint_bytes=_mean([r.get("hint_bytes") for r in rows]))
        if guard:
            entry["guard"] = True
        means.append(entry)
    result = {
        "generated_by": "dpexplorer eval", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": Path(settings.data).name, "images": n_images, "settings": asdict(settings),
        "weights": provenance, "means": means,
    }
    # CompressAI publishes Kodak numbers only: comparing another folder's curve with them means nothing
    result["bd_rate"] = bd_rates(means, against_compressai=Path(settings.data).name.lower() == "kodak")
    result["tau_bar"] = tau_bars(cells)
    return result


def tau_bars(cells: list[dict]) -> list[dict]:
    """Per (quality, τ decoder, sampler, hinted or raw): τ = 1 against τ = 0 on the same images — LPIPS
    change, share of images better at τ = 1, PSNR cost, HF gap closed, monotonicity (the τ decoders' quality
    bar, docs/synthesis.md), the smooth-area grain at τ = 1 (median and worst) and the hint's bytes."""
    from dpexplorer.evaluation.synthesis_eval import summarize as bar_summary

    groups = defaultdict(dict)
    for c in cells:
        if c["decoder"] in FAMILIES and c.get("hf_ratio") is not None:
            row = groups[(c["quality"], c["decoder"], setting_label(c))].setdefault(c["image"], {"bpp": c["bpp"]})
            row[c["tau"]] = {"psnr": c["psnr"], "lpips": c["lpips"], "hf": c["hf_ratio"], "grain": c.get("grain"),
                             "hint_bytes": c.get("hint_bytes")}
    bars = []
    for (q, dec, smp), by_image in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        taus = sorted(t for t in next(iter(by_image.values())) if t != "bpp")
        rows = [r for r in by_image.values() if all(t in r for t in taus)]
        if rows and taus[0] == 0.0 and taus[-1] == 1.0:
            summary = bar_summary(rows, tuple(taus))
            summary.pop("means")
            grains = [r[1.0]["grain"] for r in rows if r[1.0]["grain"] is not None]
            if grains:
                summary.update(grain_median_tau1=float(np.median(grains)), grain_worst_tau1=float(max(grains)))
            if rows[0][1.0]["hint_bytes"] is not None:
                summary["hint_bytes"] = float(np.mean([r[1.0]["hint_bytes"] for r in rows]))
            bars.append({"quality": q, "decoder": dec, "sampler": smp, "images": len(rows), **summary})
    return bars


def bd_rates(means: list[dict], against_compressai: bool = True) -> dict:
    """PSNR BD-rate of the plain decoder vs CompressAI (Kodak), and LPIPS BD-rate of each curve vs the
    plain decoder (NaN where the LPIPS ranges do not overlap)."""
    plain = sorted((m for m in means if m["decoder"] == "plain"), key=lambda m: m["bpp"])
    out = {}
    if len(plain) >= 2:
        for name, key in (("mbt2018-mean", "mbt2018_mean"), ("bmshj2018-hyperprior", "hyperprior")):
            if not against_compressai:
                break
            ref = COMPRESSAI_KODAK[name]  # mbt2018-mean first: our architecture
            out[f"plain_psnr_vs_compressai_{key}"] = bd_rate(ref["bpp"][:5], ref["psnr"][:5],
                                                             [m["bpp"] for m in plain], [m["psnr"] for m in plain])
        curves = defaultdict(list)
        for m in means:
            if m["decoder"] in FAMILIES:
                curves[" ".join(filter(None, [m["decoder"], setting_label(m), f"tau={m['tau']:g}"]))].append(m)
            elif m["decoder"] in ("jpeg", "webp"):
                curves[m["decoder"]].append(m)
        for name, pts in curves.items():
            pts = sorted(pts, key=lambda m: m["bpp"])
            if len(pts) >= 2:
                out[f"{name}_lpips_vs_plain"] = bd_rate([m["bpp"] for m in plain], [m["lpips"] for m in plain],
                                                        [m["bpp"] for m in pts], [m["lpips"] for m in pts],
                                                        higher_is_better=False)
    return out


def write_csv(cells: list[dict], path: Path) -> None:
    keys = list(CELL_KEY) + ["setting"] + list(QUALITY_KEYS)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for c in sorted(cells, key=lambda c: tuple(str(c.get(k)) for k in CELL_KEY)):
            w.writerow(c)


def curve_series(result: dict, *, hinted: bool = False) -> list[dict]:
    """The series the app draws: plain decoder over qualities, τ sweep per (quality, sampler), baselines.
    `hinted`: the families' decodes of the files with the sender's hint instead of the raw sweep (what
    `tools/peer_curves.py --eval-hinted` compares with the peers)."""
    means = result["means"]
    series = []
    plain = sorted((m for m in means if m["decoder"] == "plain"), key=lambda m: m["bpp"])
    if plain:
        series.append({"label": "codec decoder (q" + ",".join(str(m["quality"]) for m in plain) + ")",
                       "kind": "plain", "style": "ko-", "points": [_point(m) for m in plain]})
    for q in sorted({m["quality"] for m in means}):
        for key, cls in FAMILIES.items():
            ours = [m for m in means if m["decoder"] == key and m["quality"] == q and bool(m.get("hint")) == hinted]
            if not hinted and any(m.get("guard") for m in ours):  # the raw sweep users get: through the guard
                ours = [m for m in ours if m.get("guard")]
            for smp, steps in sorted({(m["sampler"], m["steps"]) for m in ours}, key=str):
                pts = sorted((m for m in ours if (m["sampler"], m["steps"]) == (smp, steps)), key=lambda m: m["tau"])
                setting = f" ({smp}, {steps} steps, {pts[0]['n']} images)" if smp else ""
                setting += " guarded" if pts[0].get("guard") else ""
                series.append({"label": f"q{q} {key} τ sweep{setting}", "kind": key, "quality": q, "sampler": smp,
                               "steps": steps, "style": f"{cls.marker}-", "points": [_point(m) for m in pts]})
    for fmt, style in (("jpeg", "v--"), ("webp", "^--")):
        pts = sorted((m for m in means if m["decoder"] == fmt), key=lambda m: m["bpp"])
        if pts:
            series.append({"label": f"{fmt.upper()} at matched rates", "kind": fmt, "style": style,
                           "points": [_point(m) for m in pts]})
    return series


def _point(m: dict) -> dict:
    p = {k: round(m[k], 5) for k in ("bpp", "psnr", "ms_ssim", "lpips") if not math.isnan(m[k])}
    p["quality"] = m["quality"]
    if m.get("tau") is not None:
        p["tau"] = m["tau"]
    return p


def _series_weights(series: dict, qualities) -> list[str]:
    """The provenance keys a series' numbers depend on."""
    if series["kind"] in FAMILIES:
        return [f"codec-q{series['quality']}", f"{series['kind']}-q{series['quality']}"]
    return [f"codec-q{q}" for q in qualities]


def carried_series(old: dict | None, result: dict) -> list[dict]:
    """Series of an earlier curves file for decoders (a τ decoder: at qualities) this run did not evaluate,
    kept only if the same images were used and every weight they depend on, with its decode defaults, is
    still the one evaluated/shipped now. A series over every quality (the codec decoder's) is replaced only
    by a run at every quality: a run at some keeps the earlier one whole (`write_curves` drops its part)."""
    if not old or old.get("data") != result["data"] or old.get("images") != result["images"]:
        return []
    evaluated = {m["quality"] for m in result["means"]}
    qualities = sorted(int(k.split("-q")[1]) for k in result["weights"] if k.startswith("codec-q"))
    kept = []
    for series in old.get("series", []):
        if series["kind"] in result["settings"]["decoders"] and (
                series.get("quality") in evaluated if series["kind"] in FAMILIES else set(qualities) <= evaluated):
            continue
        keys = _series_weights(series, qualities)
        same_defaults = all(old.get("decode_defaults", {}).get(k) == result.get("decode_defaults", {}).get(k)
                            for k in keys if not k.startswith("codec-"))
        if same_defaults and all(result["weights"].get(k) and old.get("weights", {}).get(k) == result["weights"][k]
                                 for k in keys):
            kept.append({**series, "measured": series.get("measured", old.get("date"))})
    return kept


def write_curves(result: dict, path: Path) -> dict:
    old = None
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = None
    carried = carried_series(old, result)
    whole = {s["kind"] for s in carried if s["kind"] not in FAMILIES}  # kept whole: this run's part of them goes
    series = [s for s in curve_series(result) if s["kind"] not in whole] + carried
    order = ("plain", *FAMILIES, "jpeg", "webp")
    series.sort(key=lambda s: (order.index(s["kind"]) if s["kind"] in order else len(order), s.get("quality") or 0))
    curves = {"schema": CURVES_SCHEMA, "generated_by": result["generated_by"], "date": result["date"],
              "data": result["data"], "images": result["images"], "weights": result["weights"],
              "decode_defaults": result.get("decode_defaults", {}),
              "settings": {k: result["settings"][k] for k in ("decoders", "samplers", "steps", "taus", "seed")},
              "series": series}
    if old and old.get("peers"):  # AVIF, JPEG XL, WebP, JPEG curves (tools/peer_curves.py): not the eval's to redo
        curves["peers"] = old["peers"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(curves, indent=2) + "\n")
    return curves


def plot_all(result: dict, out: Path, series: list[dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = curve_series(result) if series is None else series
    ref = COMPRESSAI_KODAK["mbt2018-mean"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    for s in series:
        pts = s["points"]
        if s["kind"] in ("plain", "jpeg", "webp"):
            for ax, key in zip(axes[:2], ("psnr", "lpips")):
                ax.plot([p["bpp"] for p in pts], [p[key] for p in pts], s["style"], label=s["label"])
        faint = {"alpha": 0.35, "markersize": 3} if s.get("sampler") else {"markersize": 4}
        axes[2].plot([p["psnr"] for p in pts], [p["lpips"] for p in pts], s["style"], label=s["label"], **faint)
    for q in sorted({m["quality"] for m in result["means"]}):
        taus1 = [m for m in result["means"]  # settings at many steps: in the D–P plane only (too many for these)
                 if m["decoder"] in FAMILIES and m["quality"] == q and m["tau"] == 1.0
                 and (m["steps"] or 0) <= EvalSettings.fast_steps]
        for m in taus1:
            name = " ".join(filter(None, [m["decoder"], "τ=1", m["sampler"] and f"({m['sampler']})",
                                          m.get("hint") and "hinted", m.get("guard") and "guarded"]))
            for ax, key in zip(axes[:2], ("psnr", "lpips")):
                ax.plot([m["bpp"]], [m[key]], "*", markersize=9, label=f"q{q} {name}")
    axes[0].plot(ref["bpp"][:5], ref["psnr"][:5], "s:", color="gray", label="CompressAI mbt2018-mean (published)")
    for ax, (x, y) in zip(axes, (("bpp", "PSNR (dB) ↑"), ("bpp", "LPIPS ↓"), ("PSNR (dB) →", "LPIPS ↓"))):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    axes[0].set_title("rate–PSNR")
    axes[1].set_title("rate–LPIPS")
    axes[2].set_title("distortion–perception plane")
    axes[2].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a curve
    axes[0].legend(fontsize=6)
    fig.suptitle(f"{result['data']}: {result['images']} images")
    fig.tight_layout()
    fig.savefig(out / "dp_curves.png", dpi=110)
    plt.close(fig)


def format_summary(result: dict) -> str:
    lines = [f"{'q':>2} {'decoder':9} {'sampler':12} {'τ':>5} {'bpp':>7} {'PSNR':>6} {'MS-SSIM':>8} {'LPIPS':>7} {'HF':>5} "
             f"{'grain':>5}"]
    for m in result["means"]:
        tau = "" if m["tau"] is None else f"{m['tau']:.2f}"
        lines.append(f"{m['quality']:>2} {m['decoder']:9} {setting_label(m) or '':12} {tau:>5} {m['bpp']:7.4f} "
                     f"{m['psnr']:6.2f} {m['ms_ssim']:8.4f} {m['lpips']:7.4f} {m['hf_ratio']:5.2f} {m['grain']:5.2f}")
    for k, v in result["bd_rate"].items():
        lines.append(f"BD-rate {k}: " + ("n/a (the curves' ranges do not overlap)" if math.isnan(v) else f"{v:+.1f}%"))
    if result.get("bd_rate_peers"):
        from dpexplorer.evaluation.peers import format_bd_table

        lines.append(format_bd_table(result["bd_rate_peers"], "BD-rate at τ = 1 against what users would pick "
                                                              "instead (negative = fewer bits than it):"))
    for b in result.get("tau_bar", []):
        grain = (f", grain median {b['grain_median_tau1']:.2f} worst {b['grain_worst_tau1']:.2f}"
                 if "grain_median_tau1" in b else "")
        hint = f", hint {b['hint_bytes']:.0f} bytes" if "hint_bytes" in b else ""
        lines.append(f"τ=1 vs τ=0, q{b['quality']} {b['decoder']} {b['sampler'] or 'raw'}: LPIPS "
                     f"{100 * b['lpips_change_tau1']:+.1f}%, better on {100 * b['share_tau1_better']:.0f}% of "
                     f"{b['images']} images, PSNR −{b['psnr_cost_tau1']:.2f} dB{grain}{hint}, HF gap closed "
                     f"{b['hf_gap_closed']:.2f}; bar: " + " ".join(f"{k}{'✓' if v else '✗'}" for k, v in b["bar"].items()))
    return "\n".join(lines)

"""Choose the τ hint's parameters (issue 36) on train_photos, and check the choice on other train_photos.

    python tools/hint_choice.py run --quality 1 --out /tmp/hint/choice-q1.jsonl      # one process per quality
    python tools/hint_choice.py run --stage 2 --quality 1 --out /tmp/hint/choice2-q1.jsonl
    python tools/hint_choice.py run --stage 3 --quality 1 --out /tmp/hint/choice3-q1.jsonl
    python tools/hint_choice.py pick /tmp/hint/choice-q*.jsonl                      # the table and the choice
    python tools/hint_choice.py check --quality 1 --out /tmp/hint/check-q1.jsonl    # the defaults, end to end
    python tools/hint_choice.py report /tmp/hint/check-q*.jsonl

Photos: `--n` (12) train_photos drawn with seed 36 for the choice and, for the check, `--n` more drawn
with seed 3636 from the rest (sun-0003, used while writing the code, is in neither). Never val_photos
or Kodak. Each photo is encoded at the quality, ŷ decoded from the bytes, and g_s(ŷ; θ_τ) computed at
τ ∈ {0, ⅓, ½, ⅔, 1}; the receiver's decode for a hint is `blend_levels` of the decodes at the hint's
levels with `hint_tau_map` (τ slider at 1). Grid: cell {32, 64, 96} × levels {3, 4} × σ {8, 16, 24} ×
grain threshold {1.3, 1.5}; plus, for levels 3 and σ 16, a "pixel" receiver that has only the τ = 0
and τ = 1 decodes and blends them in pixel space (½ = their mean; no extra g_s pass at either end).

Rule, fixed before any result was seen. Per quality, over the photos: the mean LPIPS change vs τ = 0
(relative change of the mean), the mean PSNR change, the median and the worst smooth-area grain, the
number of photos with LPIPS below τ = 0's. A setting is admissible when at every quality the PSNR
drop is ≤ 0.4 dB, the grain median ≤ 1.15 and the worst ≤ 1.4, and it beats τ = 0 on ≥ 11 of 12
photos (the bar is 0.5 dB, 1.2 and 1.5 on held-out photos; the margins are for the move to them).
Among admissible settings the lowest LPIPS change averaged over the qualities wins; settings within
0.2 percentage points of it count as tied and the one with the fewest hint bytes wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dpexplorer.decoders.synthesis import InterpolatedSynthesis
from dpexplorer.decoders.taumap import blend
from dpexplorer.hint import sender
from dpexplorer.hint.receiver import blend_levels, hint_tau_map
from dpexplorer.hub.files import load_weights
from dpexplorer.hub.loading import load_codec
from dpexplorer.hub.manifest import find_entry
from dpexplorer.io.bitstream import Bitstream
from dpexplorer.io.images import list_images, load_image
from dpexplorer.metrics.image import lpips, patch_energies, psnr, smooth_area_grain

TRAIN = Path("/work/shared/train_photos")
CELLS, LEVELS, SIGMAS, THRESHOLDS = (32, 64, 96), (3, 4), (8, 16, 24), (1.3, 1.5)
# Stage 2, added after stage 1's table (no setting kept the PSNR drop ≤ 0.4 dB: the LPIPS-only rule does
# not look at PSNR): the rule with a per-cell PSNR cap (`sender.choose_levels`'s psnr_drop), on the same
# photos; σ 16 and threshold 1.5 (stage 1: σ moved LPIPS by ≤ 0.3 pp, and no cell's grain came near 1.3).
CELLS_2, DROPS = (32, 64), (0.2, 0.3, 0.4)
# Stage 3, after stage 2's table (a per-cell cap of 0.4 dB cost the image only 0.1-0.2 dB and gave up
# LPIPS: −22 to −29 %): an image-level PSNR budget (`sender.choose_levels_budget`), both receivers.
BUDGETS = (0.3, 0.4)
EXCLUDED = {"sun-0003.png"}  # used while the code was written
PSNR_DROP, GRAIN_MEDIAN, GRAIN_WORST, TIE_PP = 0.4, 1.15, 1.4, 0.2


def photos(which: str, n: int) -> list[Path]:
    pool = [p for p in list_images(TRAIN) if p.name not in EXCLUDED]
    choice = random.Random(36).sample(pool, n)
    if which == "choice":
        return choice
    rest = [p for p in pool if p not in choice]
    return random.Random(3636).sample(rest, n)


def synthesis_for(codec) -> InterpolatedSynthesis:
    _, entry = find_entry("synthesis", codec.cfg.arch, codec.cfg.quality)
    return InterpolatedSynthesis(codec.model.g_s, load_weights(entry))


def measure(img: np.ndarray, out: np.ndarray) -> dict:
    return {"psnr": psnr(img, out), "lpips": lpips(img, out), "grain": smooth_area_grain(img, out)}


def run(args) -> None:
    codec = load_codec(args.quality)
    synthesis = synthesis_for(codec)
    taus = [0.0, 1 / 3, 0.5, 2 / 3, 1.0]
    with open(args.out, "a") as log:
        for path in photos("choice", args.n):
            t0 = time.time()
            img = load_image(path)
            h, w = img.shape[:2]
            data = codec.encode(img)
            bitstream = codec.parse(data)
            y_hat, _ = codec.decode_latent(bitstream)
            decodes = dict(zip(taus, sender.synthesis_decodes(codec, y_hat, h, w, synthesis=synthesis, taus=taus)))
            e_orig = patch_energies(img, patch=sender.PATCH)
            scores = {t: sender.level_scores(img, d) for t, d in decodes.items()}
            if args.stage == 1:
                pixel_half = blend(decodes[0.0], decodes[1.0], np.full((h, w), 0.5, np.float32))
                pixel_scores = [scores[0.0], sender.level_scores(img, pixel_half), scores[1.0]]
            rows = {"tau0": measure(img, decodes[0.0]), "tau1": measure(img, decodes[1.0])}
            if args.stage == 2:
                for cell, levels, drop in itertools.product(CELLS_2, LEVELS, DROPS):
                    level_taus = sender.level_taus(levels)
                    picked = [min(taus, key=lambda t: abs(t - lt)) for lt in level_taus]
                    hint = sender.hint_from_scores([scores[t] for t in picked], e_orig, h, w, cell=cell, sigma=16,
                                                   grain_max=1.5, psnr_drop=drop, psnr_budget=None)
                    tau_map = hint_tau_map(hint, h, w)
                    out = blend_levels([decodes[t] for t in picked], tau_map)
                    rows[f"weights c{cell} L{levels} s16 g1.5 d{drop}"] = {
                        **measure(img, out), "hint_bytes": dataclasses.replace(bitstream, hint=hint).hint_bytes,
                        "mean_tau": float(tau_map.mean())}
            if args.stage == 3:
                pixel_half = blend(decodes[0.0], decodes[1.0], np.full((h, w), 0.5, np.float32))
                pixel_scores = [scores[0.0], sender.level_scores(img, pixel_half), scores[1.0]]
                for receiver, cell, levels, budget in itertools.product(("weights", "pixel"), CELLS_2, LEVELS, BUDGETS):
                    if receiver == "pixel" and levels != 3:
                        continue
                    picked = [min(taus, key=lambda t: abs(t - lt)) for lt in sender.level_taus(levels)]
                    level_scores = [scores[t] for t in picked] if receiver == "weights" else pixel_scores
                    hint = sender.hint_from_scores(level_scores, e_orig, h, w, cell=cell, sigma=16, grain_max=1.5,
                                                   psnr_budget=budget)
                    tau_map = hint_tau_map(hint, h, w)
                    if receiver == "weights":
                        out = blend_levels([decodes[t] for t in picked], tau_map)
                    else:
                        out = blend(decodes[0.0], decodes[1.0], tau_map)
                    rows[f"{receiver} c{cell} L{levels} s16 g1.5 b{budget}"] = {
                        **measure(img, out), "hint_bytes": dataclasses.replace(bitstream, hint=hint).hint_bytes,
                        "mean_tau": float(tau_map.mean())}
            for cell, levels, thr in itertools.product(CELLS, LEVELS, THRESHOLDS) if args.stage == 1 else ():
                level_taus = sender.level_taus(levels)
                hint = sender.hint_from_scores([scores[min(taus, key=lambda t: abs(t - lt))] for lt in level_taus],
                                               e_orig, h, w, cell=cell, grain_max=thr, psnr_drop=None, psnr_budget=None)
                bits = dataclasses.replace(bitstream, hint=hint).hint_bytes
                for sigma in SIGMAS:
                    hint = dataclasses.replace(hint, sigma=sigma)
                    tau_map = hint_tau_map(hint, h, w)
                    out = blend_levels([decodes[min(taus, key=lambda t: abs(t - lt))] for lt in level_taus], tau_map)
                    rows[f"weights c{cell} L{levels} s{sigma} g{thr}"] = {**measure(img, out), "hint_bytes": bits,
                                                                         "mean_tau": float(tau_map.mean())}
                if levels == 3:
                    hint = sender.hint_from_scores(pixel_scores, e_orig, h, w, cell=cell, sigma=16, grain_max=thr,
                                                   psnr_drop=None, psnr_budget=None)
                    tau_map = hint_tau_map(hint, h, w)
                    out = blend(decodes[0.0], decodes[1.0], tau_map)
                    rows[f"pixel c{cell} L3 s16 g{thr}"] = {
                        **measure(img, out), "hint_bytes": dataclasses.replace(bitstream, hint=hint).hint_bytes,
                        "mean_tau": float(tau_map.mean())}
            record = {"photo": path.name, "quality": args.quality, "size": [w, h], "bytes": len(data),
                      "seconds": round(time.time() - t0, 1), "rows": rows}
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(f"q{args.quality} {path.name} {record['seconds']} s", flush=True)


def load(paths: list[str]) -> dict[int, list[dict]]:
    by_quality: dict[int, list[dict]] = {}
    for p in paths:
        for line in Path(p).read_text().splitlines():
            rec = json.loads(line)
            by_quality.setdefault(rec["quality"], []).append(rec)
    return dict(sorted(by_quality.items()))


def summary(records: list[dict], name: str) -> dict:
    base = [r["rows"]["tau0"] for r in records]
    rows = [r["rows"][name] for r in records]
    lp0, lp = np.mean([b["lpips"] for b in base]), np.mean([x["lpips"] for x in rows])
    grains = [x["grain"] for x in rows]
    return {"lpips": lp, "lpips_change": 100 * (lp / lp0 - 1),
            "psnr": np.mean([x["psnr"] for x in rows]),
            "psnr_change": np.mean([x["psnr"] - b["psnr"] for x, b in zip(rows, base)]),
            "grain_median": float(np.median(grains)), "grain_worst": float(np.max(grains)),
            "better": sum(x["lpips"] < b["lpips"] for x, b in zip(rows, base)), "n": len(rows),
            "hint_bytes": np.mean([x.get("hint_bytes", 0) for x in rows]),
            "file_share": 100 * np.mean([x.get("hint_bytes", 0) / r["bytes"] for x, r in zip(rows, records)]),
            "mean_tau": np.mean([x.get("mean_tau", np.nan) for x in rows])}


def table(by_quality: dict[int, list[dict]]) -> dict[str, dict[int, dict]]:
    names = list(next(iter(by_quality.values()))[0]["rows"])
    out = {}
    print(f"{'setting':28s} {'q':>2s} {'LPIPS':>7s} {'ΔLPIPS%':>8s} {'PSNR':>6s} {'ΔPSNR':>6s} {'grain med':>9s} "
          f"{'worst':>6s} {'better':>6s} {'hint B':>6s} {'file %':>6s} {'mean τ':>6s}")
    for name in names:
        out[name] = {}
        for q, records in by_quality.items():
            s = summary(records, name)
            out[name][q] = s
            print(f"{name:28s} {q:2d} {s['lpips']:7.4f} {s['lpips_change']:8.1f} {s['psnr']:6.2f} "
                  f"{s['psnr_change']:6.2f} {s['grain_median']:9.2f} {s['grain_worst']:6.2f} "
                  f"{s['better']:3d}/{s['n']:<2d} {s['hint_bytes']:6.1f} {s['file_share']:6.2f} {s['mean_tau']:6.2f}")
    return out


def summarise_logs(logs, seconds_format: str) -> dict:
    """The logs' records by quality, with a line per quality: the photos and their mean seconds."""
    by_quality = load(logs)
    for q, records in by_quality.items():
        seconds = seconds_format.format(np.mean([r["seconds"] for r in records]))
        print(f"q{q}: {len(records)} photos: {', '.join(r['photo'] for r in records)}; {seconds}")
    print()
    return by_quality


def pick(args) -> None:
    out = table(summarise_logs(args.logs, "mean {:.0f} s each (encode, 5 decodes, every setting)"))
    admissible = {}
    for name, per_q in out.items():
        if name in ("tau0", "tau1"):
            continue
        if all(s["psnr_change"] >= -PSNR_DROP and s["grain_median"] <= GRAIN_MEDIAN and s["grain_worst"] <= GRAIN_WORST
               and s["better"] >= s["n"] - 1 for s in per_q.values()):
            admissible[name] = np.mean([s["lpips_change"] for s in per_q.values()])
    print(f"\nrule: PSNR drop ≤ {PSNR_DROP} dB, grain median ≤ {GRAIN_MEDIAN}, worst ≤ {GRAIN_WORST}, better than "
          f"τ = 0 on ≥ n − 1 photos, at every quality; lowest mean ΔLPIPS; within {TIE_PP} pp the fewest hint bytes")
    if not admissible:
        print("no setting is admissible")
        return
    best = min(admissible.values())
    tied = [n for n, v in admissible.items() if v <= best + TIE_PP]
    chosen = min(tied, key=lambda n: (np.mean([s["hint_bytes"] for s in out[n].values()]), admissible[n]))
    print(f"{len(admissible)} admissible; best mean ΔLPIPS {best:.1f} %; tied: {', '.join(tied)}")
    print(f"chosen: {chosen} (mean ΔLPIPS {admissible[chosen]:.1f} %)")


def check(args) -> None:
    """The shipped defaults end to end: `encode_with_hint` vs the plain encode, the receiver at τ = 1
    (`blend` of its τ = 0 and τ = 1 decodes with the hint's map)."""
    codec = load_codec(args.quality)
    synthesis = synthesis_for(codec)
    with open(args.out, "a") as log:
        for path in photos("check", args.n):
            img = load_image(path)
            h, w = img.shape[:2]
            plain = codec.encode(img)
            t0 = time.time()
            data = sender.encode_with_hint(codec, img, synthesis=synthesis)
            seconds = time.time() - t0
            bs = Bitstream.from_bytes(data)
            y_hat, _ = codec.decode_latent(bs)
            decodes = sender.synthesis_decodes(codec, y_hat, h, w, synthesis=synthesis, taus=[0.0, 1.0])
            out = blend(decodes[0], decodes[1], hint_tau_map(bs.hint, h, w))  # the receiver at slider τ = 1
            rows = {"tau0": measure(img, decodes[0]), "tau1": measure(img, decodes[-1]),
                    "hint (defaults)": {**measure(img, out), "hint_bytes": len(data) - len(plain)}}
            record = {"photo": path.name, "quality": args.quality, "size": [w, h], "bytes": len(plain),
                      "seconds": round(seconds, 1), "rows": rows}
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(f"q{args.quality} {path.name} encode_with_hint {seconds:.1f} s", flush=True)


def report(args) -> None:
    table(summarise_logs(args.logs, "encode_with_hint mean {:.1f} s"))


def main(argv=None) -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "check"):
        p = sub.add_parser(name)
        if name == "run":
            p.add_argument("--stage", type=int, choices=(1, 2, 3), default=1)
        p.add_argument("--quality", type=int, required=True)
        p.add_argument("--n", type=int, default=12)
        p.add_argument("--out", required=True)
    for name in ("pick", "report"):
        sub.add_parser(name).add_argument("logs", nargs="+")
    args = parser.parse_args(argv)
    {"run": run, "pick": pick, "check": check, "report": report}[args.command](args)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Stages 4 and 5 of the hint's parameter choice (train_photos only): more τ levels and a larger PSNR budget
(stage 4, on 32-px cells with σ 16), then 16-px cells (stage 5, at stage 4's four levels). Each hint is computed
exactly as `dpexplorer encode` does (`sender.compute_hint` on θ₁'s pixel receiver, the grain also checked on
the pixel decoder's DDIM 1, the 1 % byte cap with its coarser-cell fallback) and applied to both decoders'
τ = 1 decodes. One JSON line per image; `pick` applies the rule fixed in RULE before the run.

    python tools/hint_levels_choice.py run 2 choice results/hint-levels/choice-q2.jsonl   # stage 3's 12 photos
    python tools/hint_levels_choice.py run 2 check results/hint-levels/check-q2.jsonl     # its 12 check photos
    python tools/hint_levels_choice.py run 2 dir:FOLDER out.jsonl                         # a report, not a choice
    python tools/hint_levels_choice.py pick results/hint-levels/choice-q*.jsonl
    python tools/hint_levels_choice.py run 2 choice OUT --stage 5; … pick --stage 5 OUT…

Log: docs/log/2026-12-07-hint-levels.md.
"""

import json
import sys
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from hint_grain_check import decodes, measures, photos  # the same photos and decodes (tools/ is on the path)

from dpexplorer.decoders.pixel.decoder import PixelDecoder
from dpexplorer.decoders.synthesis import SynthesisDecoder
from dpexplorer.decoders.taumap import blend, hint_tau_map
from dpexplorer.hint import sender
from dpexplorer.hub.loading import get_codec
from dpexplorer.io.bitstream import hint_section_bytes
from dpexplorer.io.images import load_image

# per stage: each setting's name → `sender.compute_hint`'s arguments, and the stage's baseline (today's hint)
STAGES = {
    4: ({f"L{levels} b{budget}": {"levels": levels, "psnr_budget": budget, "cell": 32, "sigma": 16}
         for levels in (3, 4, 5) for budget in (0.4, 0.45)}, "L3 b0.4"),
    5: ({f"c{cell} s{sigma}": {"levels": 4, "psnr_budget": 0.4, "cell": cell, "sigma": sigma}
         for cell, sigma in ((32, 16), (16, 8), (16, 16))}, "c32 s16"),
}
RULE = ("every quality, the synthesis's hinted decode against τ = 0: PSNR drop ≤ 0.45 dB on average and ≤ 0.48 on "
        "every photo, grain median ≤ 1.15 and worst ≤ 1.4 on both decoders, better on ≥ n − 1 photos; the pixel "
        "decoder's mean ΔLPIPS at most 0.3 pp worse than the stage's baseline (today's hint); then the lowest "
        "mean ΔLPIPS of the synthesis over the qualities, within 0.2 pp the fewest hint bytes")


def run(q: int, which: str, out: Path, stage: int = 4) -> None:
    torch.set_num_threads(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["image"] for line in out.open()} if out.exists() else set()
    codec, synth, pix = get_codec(q), SynthesisDecoder.load(q), PixelDecoder.load(q)
    for path in photos(which):
        if path.name in done:
            continue
        img = load_image(path)
        h, w = img.shape[:2]
        data, x0, xs, xp = decodes(codec, synth, pix, img)

        measure = partial(measures, img)

        row = {"image": path.name, "q": q, "set": which, "bytes": len(data),
               "tau0": measure(x0), "synth": measure(xs), "pixel": measure(xp)}
        for name, setting in STAGES[stage][0].items():
            hint = sender.compute_hint(img, sender.pixel_receiver(x0, xs), **setting,
                                       max_bytes=int(sender.MAX_SHARE * len(data)),
                                       grain_receivers=[sender.pixel_receiver(x0, xp)])
            if hint is None:
                row[name] = None
                continue
            tau_map = hint_tau_map(hint, h, w)
            row[name] = {"cell": hint.cell, "hint bytes": hint_section_bytes(hint),
                         "synth": measure(blend(x0, xs, tau_map)), "pixel": measure(blend(x0, xp, tau_map))}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(path.name, q, {k: (row[k]["synth"][1], row[k]["hint bytes"], row[k]["cell"]) for k in STAGES[stage][0]
                             if row[k]}, flush=True)


def summary(rows: list[dict], name: str) -> dict:
    """Against τ = 0, as the project reports it (`tools/hint_choice.py`, `dpexplorer eval`): the mean LPIPS over
    the mean at τ = 0, the mean PSNR change (a missing hint decodes as τ = 0)."""
    out = {}
    for decoder in ("synth", "pixel"):
        got = [(r["tau0"], (r[name] or {}).get(decoder, r["tau0"])) for r in rows]
        d_psnr = [x[0] - t[0] for t, x in got]
        out[decoder] = {"dpsnr": float(np.mean(d_psnr)), "dpsnr worst": float(min(d_psnr)),
                        "dlpips %": 100 * float(np.mean([x[1] for _, x in got]) / np.mean([t[1] for t, _ in got]) - 1),
                        "grain median": float(np.median([x[2] for _, x in got])),
                        "grain worst": float(max(x[2] for _, x in got)),
                        "better": sum(x[1] < t[1] for t, x in got)}
    out["hint bytes"] = float(np.mean([(r[name] or {}).get("hint bytes", 0) for r in rows]))
    out["file %"] = float(np.mean([100 * (r[name] or {}).get("hint bytes", 0) / r["bytes"] for r in rows]))
    return out


def pick(paths: list[str], stage: int = 4) -> None:
    by_q = defaultdict(list)
    for p in paths:
        for line in open(p):
            r = json.loads(line)
            by_q[r["q"]].append(r)
    names = list(STAGES[stage][0])
    table = {name: {q: summary(rows, name) for q, rows in sorted(by_q.items())} for name in names}
    print(f"{'setting':10} q  {'decoder':6} {'ΔPSNR':>6} {'worst':>6} {'ΔLPIPS%':>8} {'grain med':>9} {'worst':>6}"
          f" {'better':>6} {'hint B':>6} {'file %':>6}")
    for name in names:
        for q, s in table[name].items():
            for decoder in ("synth", "pixel"):
                d = s[decoder]
                print(f"{name:10} {q}  {decoder:6} {d['dpsnr']:+6.2f} {d['dpsnr worst']:+6.2f} {d['dlpips %']:+8.1f}"
                      f" {d['grain median']:9.2f} {d['grain worst']:6.2f} {d['better']:3}/{len(by_q[q]):<2}"
                      f" {s['hint bytes']:6.1f} {s['file %']:6.2f}")
    base = table[STAGES[stage][1]]

    def admissible(name):
        for q, s in table[name].items():
            n = len(by_q[q])
            d = s["synth"]
            if d["dpsnr"] < -0.45 or d["dpsnr worst"] < -0.48 or d["better"] < n - 1:
                return False
            if any(s[k]["grain median"] > 1.15 or s[k]["grain worst"] > 1.4 for k in ("synth", "pixel")):
                return False
            if s["pixel"]["dlpips %"] > base[q]["pixel"]["dlpips %"] + 0.3:
                return False
        return True

    ok = [name for name in names if admissible(name)]
    print("\nrule:", RULE)
    if not ok:
        print("no setting is admissible")
        return
    score = {name: np.mean([s["synth"]["dlpips %"] for s in table[name].values()]) for name in ok}
    best = min(score.values())
    tied = [name for name in ok if score[name] <= best + 0.2]
    chosen = min(tied, key=lambda name: np.mean([s["hint bytes"] for s in table[name].values()]))
    print(f"{len(ok)} admissible; best mean ΔLPIPS {best:.1f} %; tied: {', '.join(tied)}")
    print(f"chosen: {chosen} (mean ΔLPIPS {score[chosen]:.1f} %)")


if __name__ == "__main__":
    args = sys.argv[1:]
    stage = 4
    if "--stage" in args:
        i = args.index("--stage")
        stage = int(args[i + 1])
        del args[i:i + 2]
    if args[0] == "run":
        run(int(args[1]), args[2], Path(args[3]), stage)
    else:
        pick(args[1:], stage)

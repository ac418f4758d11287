"""The peers' curves (AVIF, JPEG XL, WebP, JPEG at fixed quality settings; mean bpp, PSNR, MS-SSIM, LPIPS)
on Kodak and val_photos, into the curves file the app and the README figure read (issue 31, item 2):

    python tools/peer_curves.py [--set kodak=../shared/kodak --set val_photos=../shared/val_photos]
                                [--curves assets/kodak_curves.json] [--threads 1] [--figure-only]
                                [--eval val_photos=results/val/results.json]
                                [--eval-hinted kodak=results/kodak/results.json]

Writes the top-level key "peers": {set name: peers.peer_curves_on(folder)} and leaves every other key
as it is; then redraws the README figure (assets/kodak_dp_curves.png) from the file. Per-image cells are
kept in results/peers/<set>.jsonl, so an interrupted run resumes. Prints the BD-rates of the codec
decoder and of each τ decoder at τ = 1 against the peers: from the curves file's series (Kodak's), and
from the `dpexplorer eval` runs named with --eval (e.g. val_photos), and of their hinted τ = 1 decodes
(the files with the sender's hint; the curves leave those out) with --eval-hinted.
"""

import argparse
import json
from pathlib import Path

import torch

from dpexplorer.evaluation import peers
from dpexplorer.evaluation.curves import CURVES_PATH
from dpexplorer.io.images import list_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", metavar="NAME=FOLDER",
                    help="default: kodak=../shared/kodak and val_photos=../shared/val_photos")
    ap.add_argument("--curves", default=str(CURVES_PATH))
    ap.add_argument("--cells", default="results/peers", help="folder of the per-image cells (resuming)")
    ap.add_argument("--threads", type=int, default=1, help="torch and AVIF/JPEG XL encoder threads")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    ap.add_argument("--figure", default=None, help="README figure (default: kodak_dp_curves.png beside --curves)")
    ap.add_argument("--figure-only", action="store_true", help="only redraw the figure and print the BD-rates")
    ap.add_argument("--eval", action="append", default=[], metavar="NAME=RESULTS_JSON",
                    help="also print the BD-rates of a `dpexplorer eval` run on set NAME (its results.json)")
    ap.add_argument("--eval-hinted", action="append", default=[], metavar="NAME=RESULTS_JSON",
                    help="the same for the run's hinted τ = 1 decodes")
    args = ap.parse_args()
    # one thread: the machine is shared, and these numbers do not depend on the thread count
    torch.set_num_threads(args.threads)
    sets = dict(s.split("=", 1) for s in (args.set or ["kodak=../shared/kodak", "val_photos=../shared/val_photos"]))
    curves_path = Path(args.curves)

    if not args.figure_only:
        from tqdm import tqdm

        cells_dir = Path(args.cells)
        cells_dir.mkdir(parents=True, exist_ok=True)
        for name, folder in sets.items():
            images = list_images(folder, args.limit)
            with tqdm(total=len(images) * len(peers.PEER_SETTINGS), desc=f"peers {name}", disable=None) as bar:
                result = peers.peer_curves_on(folder, args.limit, args.threads, cells_path=cells_dir / f"{name}.jsonl",
                                              progress=bar)
            # read just before writing: `dpexplorer eval --assets` may have rewritten the file meanwhile
            curves = json.loads(curves_path.read_text()) if curves_path.is_file() else {}
            curves.setdefault("peers", {})[name] = result
            curves_path.write_text(json.dumps(curves, indent=2) + "\n")
            print(f"{name}: {result['images']} images → {curves_path} (peers.{name})")
            for fmt, c in result["formats"].items():
                print(f"  {c['name']:8} " + "  ".join(f"q{p['setting']}: {p['bpp']:.3f} bpp {p['psnr']:.2f} dB "
                                                    f"LPIPS {p['lpips']:.3f}" for p in c["points"]))
            for fmt, why in result["unavailable"].items():
                print(f"  {fmt}: not measured: {why}")

    from dpexplorer.evaluation.curves import readme_figure

    curves = json.loads(curves_path.read_text())
    figure = Path(args.figure) if args.figure else curves_path.parent / "kodak_dp_curves.png"
    readme_figure(curves, figure)
    print(f"figure → {figure}")
    runs = [(curves.get("data"), curves, curves.get("data"))]  # (label, source of the series, peer set)
    from dpexplorer.evaluation.full_eval import curve_series

    for item in args.eval:  # another set's decoders: the series of its eval run, as the curves file has them
        name, path = item.split("=", 1)
        runs.append((name, {"series": curve_series(json.loads(Path(path).read_text()))}, name))
    for item in args.eval_hinted:
        name, path = item.split("=", 1)
        runs.append((f"{name}, hinted", {"series": curve_series(json.loads(Path(path).read_text()), hinted=True)},
                     name))
    for name, source, peer_set in runs:
        series = peers.decoder_series_at_tau(source, 1.0)
        if peer_set in curves.get("peers", {}) and series:
            bd = {label: peers.bd_rates_against_peers(pts, curves["peers"][peer_set]) for label, pts in series.items()}
            print(peers.format_bd_table(bd, f"BD-rate (%) on {name} against the peers (negative = fewer bits):"))


if __name__ == "__main__":
    main()

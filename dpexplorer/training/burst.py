"""A training burst on a borrowed GPU: pack the data here, train there, bring the weights back.

The GPU machine sees only the checkout (≤ 64 MiB with everything carried), so:

    python -m dpexplorer.training.burst pack --data ../shared/train_photos --out .train/pack
    # on the GPU machine, from the checkout (one process per quality, sharing the GPU):
    python -m dpexplorer.training.burst run --data .train/pack -q 3 2 1 --minutes 7.5 --out $OUT

`pack` stores every training photo downscaled by a random factor in [scale_min, scale_max]
(lossless WebP): smaller than the originals and, like the 0.5–1× downscales of the issue's recipe,
with less of the BSDS photos' JPEG artefacts. `run` starts `dpexplorer.training.codec` for each
quality with a wall-time budget (cosine schedule over it) and writes one compact safetensors file
per quality (float16 transform kernels, as shipped) whose metadata holds the step count and wall
time; `dpexplorer train codec --init-from` resumes from it on any machine. `pixel` fine-tunes each
quality's shipped pixel decoder (its recipe, `--init-from` the shipped weights, extra flags such as
`--batch 64 --lr-schedule cosine` passed on) and brings back the training checkpoints:

    python -m dpexplorer.training.burst pixel --data .train/pack -q 3 2 1 --minutes 8 --out $OUT --batch 64
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def pack(data: str, out: str, scale_min: float, scale_max: float, min_side: int, seed: int = 0) -> dict:
    from PIL import Image

    from dpexplorer.io.images import list_images, load_image

    rng = np.random.default_rng(seed)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    total_bytes = total_px = 0
    paths = list_images(data)
    for path in paths:
        img = Image.fromarray(load_image(path))
        scale = rng.uniform(scale_min, scale_max)
        w, h = img.size
        scale = max(scale, min_side / min(w, h))  # never below the training crop
        small = img.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
        target = out_dir / (path.stem + ".webp")
        small.save(target, "WEBP", lossless=True, method=4)
        total_bytes += target.stat().st_size
        total_px += small.size[0] * small.size[1]
    info = {"source": str(data), "images": len(paths), "scale": [scale_min, scale_max],
            "megapixels": round(total_px / 1e6, 2), "mib": round(total_bytes / 2**20, 2)}
    (out_dir / "PACK.json").write_text(json.dumps(info, indent=1))
    return info


def compact_weights(checkpoint: Path, target: Path) -> None:
    """Training checkpoint → safetensors with the shipped float16 kernels, step and wall time in metadata."""
    from safetensors.torch import save_file

    from dpexplorer.training.common import load_checkpoint
    from dpexplorer.training.export import _FP16_KEY

    state = load_checkpoint(checkpoint)
    tensors = {k: (v.half() if _FP16_KEY.match(k) else v).contiguous().cpu() for k, v in state["model"].items()}
    meta = {k: str(state[k]) for k in ("step", "wall_s", "arch", "quality", "N", "M", "data")}
    save_file(tensors, str(target), metadata=meta)


def run_parallel(commands: dict[int, list[str]], out_dir: Path) -> dict[int, int]:
    """Start one training process per quality (they share the GPU), each logging to out_dir/train-q{q}.log;
    their exit codes."""
    procs = {}
    for q, cmd in commands.items():
        log = open(out_dir / f"train-q{q}.log", "w")
        procs[q] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        print("started", " ".join(cmd), flush=True)
    codes = {}
    for q, (proc, log) in procs.items():
        codes[q] = proc.wait()
        log.close()
        print(f"q{q} exited {codes[q]}", flush=True)
    return codes


def run(data: str, qualities: list[int], minutes: float, out: str, init: str, workdir: str,
        batch: int, crop: int, lr: float, warmup: int, threads: int, extra: list[str]) -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    commands = {}
    for q in qualities:
        cmd = [sys.executable, "-m", "dpexplorer.training.codec", "--data", data, "-q", str(q),
               "--workdir", workdir, "--steps", str(10**7), "--batch", str(batch), "--crop", str(crop),
               "--final-crop", str(crop), "--lr", str(lr), "--lr-schedule", "cosine",
               "--warmup-steps", str(warmup), "--minutes", str(minutes), "--checkpoint-every", "120",
               "--threads", str(threads), *extra]
        commands[q] = cmd + (["--init-from", init.format(q=q)] if init else [])
    codes = run_parallel(commands, out_dir)
    for q in qualities:
        ckpt = Path(workdir).expanduser() / f"codec-mbt2018-mean-q{q}" / "last.pt"
        if ckpt.exists():
            compact_weights(ckpt, out_dir / f"codec-burst-q{q}.safetensors")
    return max(codes.values(), default=0)


def run_pixel(data: str, qualities: list[int], minutes: float, out: str, workdir: str, threads: int,
              extra: list[str]) -> int:
    """The pixel decoder of each quality, from its recipe and shipped weights, for `minutes`; the
    checkpoints (a few MB: `dpexplorer train export --kind pixel` makes weights of them) go to `out`."""
    from dpexplorer.hub.manifest import weights_dir

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    commands = {q: [sys.executable, "-m", "dpexplorer.training.pixel", "--recipe", f"recipes/pixel-q{q}.toml",
                    "--data", data, "--run-name", "burst", "--workdir", workdir, "--steps", str(10**7),
                    "--minutes", str(minutes), "--threads", str(threads), "--checkpoint-every-s", "120",
                    "--init-from", str(weights_dir() / f"pixel-mbt2018-mean-q{q}.safetensors"), *extra]
                for q in qualities}
    codes = run_parallel(commands, out_dir)
    for q in qualities:
        ckpt = Path(workdir).expanduser() / f"pixel-q{q}-burst" / "last.pt"
        if ckpt.exists():
            shutil.copy(ckpt, out_dir / f"pixel-burst-q{q}.pt")
    return max(codes.values(), default=0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="downscaled lossless copies of the training photos")
    pk.add_argument("--data", required=True)
    pk.add_argument("--out", default=".train/pack")
    pk.add_argument("--scale", type=float, nargs=2, default=(0.6, 0.7), metavar=("MIN", "MAX"))
    pk.add_argument("--min-side", type=int, default=192, help="no packed photo smaller than this")
    rn = sub.add_parser("run", help="train each quality for a wall-time budget, export compact weights")
    rn.add_argument("--data", default=".train/pack")
    rn.add_argument("--quality", "-q", type=int, nargs="+", default=[3, 2, 1])
    rn.add_argument("--minutes", type=float, required=True)
    rn.add_argument("--out", default=os.environ.get("OUT", "results/burst"))
    rn.add_argument("--init", default="weights/codec-mbt2018-mean-q3.safetensors",
                    help="weights to start from; {q} is replaced by the quality")
    rn.add_argument("--workdir", default="/tmp/dpexplorer-burst")
    rn.add_argument("--batch", type=int, default=24)
    rn.add_argument("--crop", type=int, default=192)
    rn.add_argument("--lr", type=float, default=1e-4)
    rn.add_argument("--warmup", type=int, default=300)
    rn.add_argument("--threads", type=int, default=4)
    px = sub.add_parser("pixel", help="fine-tune each quality's shipped pixel decoder for a wall-time budget; "
                                      "flags it does not know go to dpexplorer.training.pixel")
    px.add_argument("--data", default=".train/pack")
    px.add_argument("--quality", "-q", type=int, nargs="+", default=[3, 2, 1])
    px.add_argument("--minutes", type=float, required=True)
    px.add_argument("--out", default=os.environ.get("OUT", "results/burst"))
    px.add_argument("--workdir", default="/tmp/dpexplorer-burst")
    px.add_argument("--threads", type=int, default=4)
    args, extra = p.parse_known_args(argv)
    if args.cmd == "pack":
        print(json.dumps(pack(args.data, args.out, *args.scale, args.min_side)))
        return 0
    t0 = time.time()
    if args.cmd == "pixel":
        rc = run_pixel(args.data, args.quality, args.minutes, args.out, args.workdir, args.threads, extra)
    else:
        rc = run(args.data, args.quality, args.minutes, args.out, args.init, args.workdir, args.batch, args.crop,
                 args.lr, args.warmup, args.threads, extra)
    print(f"burst done in {time.time() - t0:.0f} s, rc {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())

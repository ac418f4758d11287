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

`synthesis` first refits each quality's plain decoder to the rounded ŷ (MSE only, docs/synthesis.md
"PSNR monotonicity"), then trains perceptual synthesis arms θ₁ from that refit, all sharing the GPU,
and brings back one safetensors file per quality: `refit/…`, each arm's final `ARM/…` and its first
snapshot `ARM@STEP/…` (float16 kernels, as shipped):

    python -m dpexplorer.training.burst synthesis -q 3 2 1 --refit-minutes 1.5 --minutes 4.5 \
        --arm A "" --arm B "--hf-tile 32" --out $OUT --batch 16 --crop 192 --min-scale 0.8
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


def pack(data: str, out: str, scale_min: float, scale_max: float, *, min_side: int, seed: int = 0) -> dict:
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


def run_parallel(commands: dict, log_dir: Path) -> dict:
    """Start one training process per key (they share the GPU), each logging to log_dir/train-q{key}.log;
    their exit codes."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = {}
    for key, cmd in commands.items():
        log = open(log_dir / f"train-q{key}.log", "w")
        procs[key] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        print("started", " ".join(cmd), flush=True)
    codes = {}
    for key, (proc, log) in procs.items():
        codes[key] = proc.wait()
        log.close()
        print(f"q{key} exited {codes[key]}", flush=True)
    return codes


def run(data: str, qualities: list[int], minutes: float, out: str, *, init: str, workdir: str,
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


def run_pixel(data: str, qualities: list[int], minutes: float, out: str, *, workdir: str, threads: int,
              extra: list[str], run_name: str = "burst", fresh: bool = False, log_dir: str | None = None) -> int:
    """The pixel decoder of each quality, from its recipe and shipped weights (`fresh`: from scratch, e.g.
    for another prediction type), for `minutes`; the checkpoints (a few MB: `dpexplorer train export
    --kind pixel` makes weights of them) go to `out`."""
    from dpexplorer.hub.manifest import weights_dir

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    init = {q: [] if fresh else ["--init-from", str(weights_dir() / f"pixel-mbt2018-mean-q{q}.safetensors")]
            for q in qualities}
    commands = {q: [sys.executable, "-m", "dpexplorer.training.pixel", "--recipe", f"recipes/pixel-q{q}.toml",
                    "--data", data, "--run-name", run_name, "--workdir", workdir, "--steps", str(10**7),
                    "--minutes", str(minutes), "--threads", str(threads), "--checkpoint-every-s", "120",
                    *init[q], *extra]
                for q in qualities}
    codes = run_parallel(commands, Path(log_dir or out_dir))
    for q in qualities:
        ckpt = Path(workdir).expanduser() / f"pixel-q{q}-{run_name}" / "last.pt"
        if ckpt.exists():
            shutil.copy(ckpt, out_dir / f"pixel-{run_name}-q{q}.pt")
    return max(codes.values(), default=0)


def run_synthesis(data: str, qualities: list[int], refit_minutes: float, minutes: float, *, arms: dict[str, list[str]],
                  out: str, workdir: str, threads: int, extra: list[str], log_dir: str | None = None) -> int:
    """Per quality: the plain decoder's refit (MSE on rounded ŷ), then each arm of θ₁ from it, in parallel;
    one `synthesis-burst-q{q}.safetensors` in `out` with every resulting θ under a prefix."""
    from safetensors.torch import save_file

    from dpexplorer.training.common import conv_kernels
    from dpexplorer.training.synthesis import load_theta1

    out_dir, logs, root = Path(out), Path(log_dir or out), Path(workdir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "dpexplorer.training.synthesis", "--data", data, "--workdir", workdir,
            "--steps", str(10**7), "--threads", str(threads), "--checkpoint-every-s", "120", *extra]
    refit = {q: [*base, "--quality", str(q), "--run-name", "refit", "--minutes", str(refit_minutes),
                 "--w-mse", "1", "--w-lpips", "0", "--w-adv", "0", "--w-hf", "0"] for q in qualities}
    codes = run_parallel({f"{q}-refit": cmd for q, cmd in refit.items()}, logs)
    refits = {q: root / f"synthesis-q{q}-refit" / "theta1.pt" for q in qualities}
    runs = {f"{q}-{arm}": [*base, "--quality", str(q), "--run-name", arm, "--minutes", str(minutes),
                           "--init-from", str(refits[q]), "--snapshot-every-s", str(30 * minutes), *flags]
            for q in qualities if refits[q].exists() for arm, flags in arms.items()}
    codes.update(run_parallel(runs, logs))
    for q in qualities:
        thetas = {"refit": refits[q]} if refits[q].exists() else {}
        for arm in arms:
            run_dir = root / f"synthesis-q{q}-{arm}"
            snaps = sorted(run_dir.glob("theta1-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
            if snaps:
                thetas[f"{arm}@{snaps[0].stem.split('-')[1]}"] = snaps[0]
            if (run_dir / "theta1.pt").exists():
                thetas[arm] = run_dir / "theta1.pt"
        tensors, records = {}, {}
        for name, path in thetas.items():
            state = load_theta1(path)
            half = conv_kernels(state)
            tensors.update({f"{name}/{k}": (v.half() if half(k) else v).contiguous().cpu() for k, v in state.items()})
            records[name] = run_record(path)
        if tensors:  # the records let `dpexplorer train export --kind synthesis` write a manifest entry
            save_file(tensors, str(out_dir / f"synthesis-burst-q{q}.safetensors"),
                      metadata={"runs": json.dumps(records)})
    return max(codes.values(), default=0)


def run_record(theta_path: Path) -> dict:
    """Step, wall time, config and codec keys of the θ in `theta_path` (a run's theta1.pt or a snapshot
    theta1-STEP.pt), from the run's last checkpoint; a snapshot's wall time is pro rata of its steps."""
    from dpexplorer.training.common import load_checkpoint

    last = load_checkpoint(theta_path.parent / "last.pt")
    step = int(load_checkpoint(theta_path)["step"])
    return {"step": step, "wall_s": float(last["wall_s"]) * step / max(int(last["step"]), 1),
            "config": last["config"], "codec_sha256": last["codec_sha256"], "latent_sha256": last["latent_sha256"]}


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
    px.add_argument("--run-name", default="burst")
    px.add_argument("--fresh", action="store_true", help="train from scratch, not from the shipped weights")
    px.add_argument("--log-dir", default=None, help="the processes' logs (default: --out)")
    sy = sub.add_parser("synthesis", help="refit each quality's plain decoder, then train θ₁ arms from it; "
                                          "flags it does not know go to dpexplorer.training.synthesis")
    sy.add_argument("--data", default=".train/pack")
    sy.add_argument("--quality", "-q", type=int, nargs="+", default=[3, 2, 1])
    sy.add_argument("--refit-minutes", type=float, required=True)
    sy.add_argument("--minutes", type=float, required=True, help="each arm's budget, after the refit")
    sy.add_argument("--arm", nargs=2, action="append", metavar=("NAME", "FLAGS"), required=True,
                    help="an arm of θ₁: its run name and its own flags, as one string")
    sy.add_argument("--out", default=os.environ.get("OUT", "results/burst"))
    sy.add_argument("--workdir", default="/tmp/dpexplorer-burst")
    sy.add_argument("--threads", type=int, default=2)
    sy.add_argument("--log-dir", default=None, help="the processes' logs (default: --out)")
    args, extra = p.parse_known_args(argv)
    if args.cmd == "pack":
        print(json.dumps(pack(args.data, args.out, *args.scale, args.min_side)))
        return 0
    t0 = time.time()
    if args.cmd == "pixel":
        rc = run_pixel(args.data, args.quality, args.minutes, args.out, workdir=args.workdir, threads=args.threads,
                       extra=extra, run_name=args.run_name, fresh=args.fresh, log_dir=args.log_dir)
    elif args.cmd == "synthesis":
        arms = {name: flags.split() for name, flags in args.arm}
        rc = run_synthesis(args.data, args.quality, args.refit_minutes, args.minutes, arms=arms, out=args.out,
                           workdir=args.workdir, threads=args.threads, extra=extra, log_dir=args.log_dir)
    else:
        rc = run(args.data, args.quality, args.minutes, args.out, init=args.init, workdir=args.workdir,
                 batch=args.batch, crop=args.crop, lr=args.lr, warmup=args.warmup, threads=args.threads, extra=extra)
    print(f"burst done in {time.time() - t0:.0f} s, rc {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())

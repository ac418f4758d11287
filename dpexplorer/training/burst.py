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
from dataclasses import asdict, dataclass
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
        batch: int, crop: int, lr: float, warmup: int, threads: int, extra: list[str],
        log_dir: str | None = None) -> int:
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
    codes = run_parallel(commands, Path(log_dir or out_dir))
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


@dataclass(frozen=True)
class ChainBudget:
    """Minutes of each stage of `run_chain`; their sum plus ~1.5 minutes of process starts and exports is the
    call's length (the defaults fit a 9-minute call)."""

    q3: float = 2.0  # the q3 codec, alone on the GPU
    low: float = 1.5  # q2 and q1 together, each from the new q3
    refit: float = 0.75  # each quality's plain decoder on its rounded ŷ
    theta1: float = 2.5  # each θ₁ arm, from that refit

    @property
    def total(self) -> float:
        return self.q3 + self.low + self.refit + self.theta1


def run_chain(data: str, out: str, *, budget: ChainBudget, init: str, workdir: str, arms: dict[str, list[str]],
              codec_flags: dict, synthesis_extra: list[str], log_dir: str) -> int:
    """Issue 32's GPU chain in one call: the codec at q3 from `init`, then q2 and q1 from that q3, each
    exported into a weights folder of the chain's own; then, on those codecs, each quality's plain-decoder
    refit and θ₁ arms (`run_synthesis`). The default arm T is what docs/synthesis.md left to try against the
    smooth-area grain of issue 33: the per-tile hinge of the 2026-11-27 arm B (smooth, but it held back real
    texture at weight 0.3) at half its weight. `out` gets `codec-burst-q{q}.safetensors` (compact: float16
    kernels) and `synthesis-burst-q{q}.safetensors` as each stage ends, so a call cut short still brings
    back what finished, and `chain.json` (each stage's exit code and seconds)."""
    from dpexplorer.training.export import export_codec

    out_dir, root = Path(out), Path(workdir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    chain_weights = root / "weights"
    report, t0 = {"budget_minutes": asdict(budget), "stages": {}}, time.time()
    print(f"chain: {budget.total:g} minutes of training planned", flush=True)

    def stage(name: str, rc: int) -> int:
        report["stages"][name] = {"rc": rc, "seconds": round(time.time() - t0)}
        (out_dir / "chain.json").write_text(json.dumps(report, indent=1))
        print(f"chain: {name} rc {rc} at {time.time() - t0:.0f} s", flush=True)
        return rc

    def checkpoint(q: int) -> Path:
        return root / f"codec-mbt2018-mean-q{q}" / "last.pt"

    stage("codec-q3", run(data, [3], budget.q3, out, init=init, workdir=workdir, log_dir=log_dir,
                          **codec_flags, threads=8, extra=["--channels-last"]))
    if not checkpoint(3).exists():
        return 1
    stage("codec-q2-q1", run(data, [2, 1], budget.low, out, init=str(checkpoint(3)), workdir=workdir,
                             log_dir=log_dir, **codec_flags, threads=4, extra=["--channels-last"]))
    qualities = [q for q in (3, 2, 1) if checkpoint(q).exists()]
    for q in qualities:  # the synthesis stage reads its codecs from here
        export_codec(checkpoint(q), notes="GPU chain (issue 32)", directory=chain_weights)
    previous = os.environ.get("DPEXPLORER_WEIGHTS")
    os.environ["DPEXPLORER_WEIGHTS"] = str(chain_weights)  # inherited by the synthesis processes
    try:
        stage("synthesis", run_synthesis(data, qualities, budget.refit, budget.theta1, arms=arms, out=out,
                                         workdir=workdir, threads=2, extra=synthesis_extra, log_dir=log_dir))
    finally:
        if previous is None:
            del os.environ["DPEXPLORER_WEIGHTS"]
        else:
            os.environ["DPEXPLORER_WEIGHTS"] = previous
    return max(s["rc"] for s in report["stages"].values())


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
    ch = sub.add_parser("chain", help="issue 32's GPU chain: codec q3, then q2/q1 from it, then each quality's "
                                      "refit and θ₁ arms on the new codecs, in one call")
    ch.add_argument("--data", default=".train/pack")
    ch.add_argument("--init", default="weights/candidate/codec-mbt2018-mean-q3.safetensors",
                    help="where the q3 codec starts (the campaign's candidate)")
    for name, minutes in asdict(ChainBudget()).items():
        ch.add_argument(f"--{name}-minutes", dest=f"{name}_minutes", type=float, default=minutes)
    ch.add_argument("--arm", nargs=2, action="append", metavar=("NAME", "FLAGS"),
                    help="a θ₁ arm (default: A, the shipped recipe, and T, its HF hinge per 32-px tile at half weight)")
    ch.add_argument("--batch", type=int, default=24, help="the codec's crops per step")
    ch.add_argument("--crop", type=int, default=192)
    ch.add_argument("--out", default=os.environ.get("OUT", "results/burst"))
    ch.add_argument("--workdir", default="/tmp/dpexplorer-burst")
    ch.add_argument("--log-dir", default="/tmp/dpexplorer-burst-logs", help="the processes' logs (not --out)")
    args, extra = p.parse_known_args(argv)
    if args.cmd == "pack":
        print(json.dumps(pack(args.data, args.out, *args.scale, min_side=args.min_side)))
        return 0
    t0 = time.time()
    if args.cmd == "pixel":
        rc = run_pixel(args.data, args.quality, args.minutes, args.out, workdir=args.workdir, threads=args.threads,
                       extra=extra, run_name=args.run_name, fresh=args.fresh, log_dir=args.log_dir)
    elif args.cmd == "chain":
        budget = ChainBudget(**{name: getattr(args, f"{name}_minutes") for name in asdict(ChainBudget())})
        arms = {name: flags.split() for name, flags in (args.arm or [("A", ""), ("T", "--hf-tile 32 --w-hf 0.15")])}
        rc = run_chain(args.data, args.out, budget=budget, init=args.init, workdir=args.workdir, arms=arms,
                       codec_flags={"batch": args.batch, "crop": args.crop, "lr": 1e-4, "warmup": 300},
                       synthesis_extra=extra or ["--batch", "16", "--crop", "192", "--min-scale", "0.8"],
                       log_dir=args.log_dir)
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

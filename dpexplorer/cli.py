"""`dpexplorer` command line: encode, decode, metrics, train, eval, report, bench, download-kodak.

Errors print one line (`dpexplorer: error: …`) and exit non-zero; no traceback. With several inputs
or a folder, each bad file is reported (name: reason) and skipped, the rest are written, and the
exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

EXIT_OK, EXIT_FAILED = 0, 1  # argparse itself exits 2 on usage errors


def _fail(msg: str) -> int:
    print(f"dpexplorer: error: {msg}", file=sys.stderr)
    return EXIT_FAILED


def expand_inputs(inputs: list[str], suffixes: set[str]) -> tuple[list[Path], bool]:
    """Files and folders → files (folders give their files with `suffixes`, sorted); batch mode?"""
    files, batch = [], len(inputs) > 1
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            batch = True
            files += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
        else:
            files.append(p)
    return files, batch


# ---- writing outputs without ever losing a file -------------------------------------------------
# Rules (README, "Command line"): default names never equal an input (encode: photo.png → photo.dpx,
# decode: photo.dpx → photo.dpx.png, so a decode never lands on the original photo); an output that
# is an input is refused even with --force; an existing output (a symlink too, even a dangling one)
# needs --force; two inputs wanting one output are both refused; -o DIR/ or an existing folder is a
# folder. Files are written to a temporary file beside the output and moved into place, so a
# failure never leaves a half-written file, and a symlink at the output is replaced, never followed.
class OutputError(Exception):
    """A refusal to write one output (reported as `name: reason`)."""


def default_name(src: Path, suffix: str) -> str:
    return src.stem + suffix if suffix == ".dpx" else src.name + suffix


def plan_outputs(files: list[Path], batch: bool, out: str | None, suffix: str) -> tuple[list, Path | None]:
    """[(src, dst or None, reason)] and the output folder to create (None: none)."""
    folder = None
    if out is not None:
        is_folder = out.endswith(("/", os.sep)) or Path(out).is_dir()
        if batch and not is_folder and os.path.lexists(out):
            raise OutputError(f"{out}: not a folder (several inputs need -o FOLDER)")
        if batch or is_folder:
            folder = Path(out)
    dsts = [(folder / default_name(f, suffix)) if folder else
            Path(out) if out else f.with_name(default_name(f, suffix)) for f in files]
    # Compared case-blind: on macOS/Windows X.png and x.jpg would write one file.
    claimed: dict[str, list[Path]] = {}
    for src, dst in zip(files, dsts):
        claimed.setdefault(os.path.abspath(dst).casefold(), []).append(src)
    plan = []
    for src, dst in zip(files, dsts):
        rivals = [o for o in claimed[os.path.abspath(dst).casefold()] if o != src]
        plan.append((src, None, f"{dst} would also be written from {', '.join(map(str, rivals))}; "
                     "neither is written (rename one, or use -o per file)") if rivals else (src, dst, None))
    return plan, folder


def _file_id(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)  # follows a symlink: a link to an input counts as the input
        return st.st_dev, st.st_ino
    except OSError:
        return None


def check_output(dst: Path, input_ids: set, force: bool) -> None:
    """Refuse before any work: writing onto an input, onto a folder, or onto anything without --force."""
    if _file_id(dst) in input_ids:
        raise OutputError(f"{dst} is an input; refusing to overwrite it (choose another -o)")
    if dst.is_dir() and not dst.is_symlink():
        raise OutputError(f"{dst} is a folder")
    if os.path.lexists(dst) and not force:
        raise OutputError(f"{dst} exists (use --force)")


def write_output(dst: Path, write, force: bool) -> None:
    """`write(tmp)` fills a temporary file beside `dst`, which then replaces it atomically. Without
    --force a hard link puts it in place only if nothing is there (no race with another writer)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an output should look like any new file
        if force:
            os.replace(tmp, dst)  # replaces a symlink itself, never its target
        else:
            try:
                os.link(tmp, dst)
            except FileExistsError:
                raise OutputError(f"{dst} exists (use --force)") from None
            except OSError:  # no hard links on this file system (FAT, some shares)
                if os.path.lexists(dst):
                    raise OutputError(f"{dst} exists (use --force)") from None
                os.replace(tmp, dst)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _run_batch(files: list[Path], batch: bool, args, suffix: str, work) -> int:
    """Run `work(src, dst)` per file. One file: an error is one line, exit 1. Several: each bad
    file is reported (name: reason), the rest are written, exit 1."""
    if not files:
        return _fail("no input files")
    plan, folder = plan_outputs(files, batch, args.output, suffix)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    input_ids = {i for i in map(_file_id, files) if i is not None}
    failures = 0
    for src, dst, reason in plan:
        try:
            if reason:
                raise OutputError(reason)
            check_output(dst, input_ids, args.force)
            print(work(src, dst))
        except Exception as exc:  # report and go on with the next file
            failures += 1
            reason = str(exc) if _is_user_error(exc) else f"{type(exc).__name__}: {exc}"
            if not batch:  # one line; a refusal already names the output
                return _fail(reason if isinstance(exc, OutputError) or str(src) in reason else f"{src}: {reason}")
            print(f"{src}: {reason}", file=sys.stderr)
    if failures:
        print(f"dpexplorer: {failures} of {len(files)} file(s) failed", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def _is_user_error(exc: Exception) -> bool:
    from dpexplorer.errors import DPExplorerError

    return isinstance(exc, (DPExplorerError, OSError, OutputError))


# ---- commands ---------------------------------------------------------------------------------
def cmd_encode(args) -> int:
    from dpexplorer.hub.loading import get_codec
    from dpexplorer.io.images import IMAGE_SUFFIXES, load_image

    codec = get_codec(args.quality, args.arch, pretrained=args.pretrained)
    files, batch = expand_inputs(args.inputs, IMAGE_SUFFIXES)

    def work(src: Path, dst: Path) -> str:
        img = load_image(src)
        t0 = time.perf_counter()
        data = codec.encode(img)
        dt = time.perf_counter() - t0
        write_output(dst, lambda tmp: tmp.write_bytes(data), args.force)
        h, w = img.shape[:2]
        return f"{src} -> {dst}: {w}x{h}, {len(data)} bytes, {len(data) * 8 / (h * w):.4f} bpp, {dt:.2f} s"

    return _run_batch(files, batch, args, ".dpx", work)


def cmd_decode(args) -> int:
    from dpexplorer.decoders.registry import reconstruct_file
    from dpexplorer.io.images import save_png

    files, batch = expand_inputs(args.inputs, {".dpx"})

    def work(src: Path, dst: Path) -> str:
        t0 = time.perf_counter()
        data = src.read_bytes()
        tau_map = None
        if args.tau_map:  # resized to each bitstream's image size
            from dpexplorer.decoders.taumap import load_tau_map
            from dpexplorer.io.bitstream import Bitstream

            header = Bitstream.from_bytes(data)
            tau_map = load_tau_map(args.tau_map, header.height, header.width)
        with _step_bar(src.name) as progress:
            image = reconstruct_file(data, args.tau, args.sampler, args.steps, args.seed, args.pretrained,
                                     progress=progress, decoder=args.decoder, tau_map=tau_map)
        dt = time.perf_counter() - t0
        write_output(dst, lambda tmp: save_png(image, tmp), args.force)
        return f"{src} -> {dst}: {image.shape[1]}x{image.shape[0]}, {dt:.2f} s"

    return _run_batch(files, batch, args, ".png", work)


class _step_bar:
    """A tqdm bar over diffusion steps on stderr, opened by the first step (a τ = 0 decode shows none)."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def __enter__(self):
        return self

    def __call__(self, i: int, n: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=n, desc=self.desc, unit="step", leave=False, file=sys.stderr)
        self.bar.update(i - self.bar.n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def cmd_metrics(args) -> int:
    from dpexplorer import metrics
    from dpexplorer.decoders.registry import reconstruct_file
    from dpexplorer.io.images import load_image

    ref = load_image(args.reference)
    result = {}
    test_path = Path(args.test)
    bitstream = Path(args.bitstream) if args.bitstream else (test_path if test_path.suffix == ".dpx" else None)
    if test_path.suffix == ".dpx":
        test = reconstruct_file(test_path.read_bytes(), args.tau, args.sampler, args.steps, args.seed,
                                args.pretrained, decoder=args.decoder)
    else:
        test = load_image(test_path)
    if bitstream is not None:
        result["bytes"] = bitstream.stat().st_size
        result["bpp"] = metrics.bpp(result["bytes"], *ref.shape[:2])
    result.update(metrics.all_metrics(ref, test, extra=args.extra))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:12s} {v:.4f}" if isinstance(v, float) else f"{k:12s} {v}")
    return EXIT_OK


def cmd_train_codec(args) -> int:
    from dpexplorer.training.codec import configs_from, train_codec

    for phase in configs_from(args):  # a recipe's phases resume one another
        train_codec(phase)
    return EXIT_OK


def cmd_train_latent(args) -> int:
    from dpexplorer.training.latent import configs_from, train_latent

    phases = configs_from(args)
    for i, phase in enumerate(phases):  # only the last phase exports
        result = train_latent(phase, export=not args.no_export and i == len(phases) - 1)
    print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


def cmd_train_pixel(args) -> int:
    from dpexplorer.training.common import configs_from_args
    from dpexplorer.training.pixel import PixelTrainConfig, train_pixel

    for cfg in configs_from_args(args, PixelTrainConfig):
        print(train_pixel(cfg))
    return EXIT_OK


def cmd_eval_pixel(args) -> int:
    from dpexplorer.evaluation.pixel_eval import run_from_args

    return run_from_args(args)


def cmd_train_export(args) -> int:
    from dpexplorer.training.export import export_codec

    images = None
    if args.check_data:
        from dpexplorer.io.images import list_images

        images = list_images(args.check_data, 4)
    entry = export_codec(args.checkpoint, notes=args.notes, check_images=images)
    print(json.dumps(entry, indent=2))
    return EXIT_OK


def cmd_eval_codec(args) -> int:
    from dpexplorer.evaluation.codec_eval import evaluate_codecs

    evaluate_codecs(args.data, qualities=args.qualities, out_dir=args.out, arch=args.arch,
                    pretrained=args.pretrained, limit=args.limit, update_manifest=args.update_manifest,
                    with_baselines=not args.no_baselines)
    return EXIT_OK


def cmd_eval(args) -> int:
    from dpexplorer.evaluation.full_eval import EvalSettings, run_eval

    if not args.data:
        return _fail("eval needs --data DIR")
    decoders = args.decoders or (["plain", args.what] if args.what in ("latent", "synthesis") else
                                 ["plain", "latent", "synthesis", "jpeg", "webp"])
    run_eval(EvalSettings(data=args.data, out_dir=args.out, qualities=args.qualities, decoders=decoders,
                          samplers=args.samplers, steps=args.steps, taus=args.taus, seed=args.seed,
                          extra=not args.no_extra, limit=args.limit, assets=args.assets))
    return EXIT_OK


def cmd_report(args) -> int:
    from dpexplorer.report import run_report

    run_report(args.data, out=args.out, bench_image=args.bench_image)
    return EXIT_OK


def cmd_download_kodak(args) -> int:
    from dpexplorer.kodak import download_kodak

    download_kodak(args.dest)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpexplorer", description="See and steer the distortion–perception "
                                "tradeoff of neural image compression.")
    sub = p.add_subparsers(dest="command", required=True)

    def codec_options(sp):
        sp.add_argument("--arch", default=None, help="codec architecture (default: the shipped one)")
        sp.add_argument("--pretrained", action="store_true",
                        help="use CompressAI's published weights (needs internet once) instead of weights/")

    def decoder_options(sp):
        from dpexplorer.decoders.schedulers import SAMPLERS

        sp.add_argument("--decoder", default="latent",
                        help="decoder family for τ > 0 (latent: latent diffusion + τ fusion; synthesis: network "
                        "interpolation; pixel: pixel-space diffusion + τ blend)")
        sp.add_argument("--tau", type=float, default=0.0,
                        help="0 = base decoder (best PSNR) … 1 = the decoder family's perceptual end (best realism)")
        sp.add_argument("--sampler", default="ddim", choices=list(SAMPLERS))
        sp.add_argument("--steps", type=int, default=10, help="diffusion steps")
        sp.add_argument("--seed", type=int, default=0, help="seed of the diffusion sample")

    e = sub.add_parser("encode", help="image(s) → .dpx bitstream(s)")
    e.add_argument("inputs", nargs="+", help="image files and/or folders")
    e.add_argument("-q", "--quality", type=int, required=True, help="quality level (1 = lowest rate)")
    e.add_argument("-o", "--output", help="output file, or folder (DIR/, an existing folder, or several inputs); "
                   "default: photo.png → photo.dpx beside it")
    e.add_argument("--force", action="store_true", help="replace existing outputs (never an input)")
    codec_options(e)
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help=".dpx bitstream(s) → PNG image(s)")
    d.add_argument("inputs", nargs="+", help=".dpx files and/or folders")
    d.add_argument("-o", "--output", help="output PNG, or folder (DIR/, an existing folder, or several inputs); "
                   "default: photo.dpx → photo.dpx.png beside it")
    d.add_argument("--force", action="store_true", help="replace existing outputs (never an input)")
    codec_options(d)
    decoder_options(d)
    d.add_argument("--tau-map", metavar="MASK.png",
                   help="τ per pixel from a mask image (black = 0 … white = 1, any bit depth; resized to the "
                        "image): the τ brush; --tau is then ignored")
    d.set_defaults(func=cmd_decode)

    m = sub.add_parser("metrics", help="PSNR, MS-SSIM, LPIPS of TEST against REF (bpp with a .dpx)")
    m.add_argument("reference")
    m.add_argument("test", help="an image, or a .dpx (decoded, and its bpp reported)")
    m.add_argument("--bitstream", help="the .dpx that TEST was decoded from, for bpp")
    m.add_argument("--extra", action="store_true", help="also FLIP, SSIMULACRA2, NLPD, MS-GMSD, HF ratio")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    codec_options(m)
    decoder_options(m)
    m.set_defaults(func=cmd_metrics)

    t = sub.add_parser("train", help="train models")
    tsub = t.add_subparsers(dest="what", required=True)
    tc = tsub.add_parser("codec", help="rate–distortion training of the base codec")
    from dpexplorer.training.codec import add_arguments

    add_arguments(tc)
    tc.set_defaults(func=cmd_train_codec)
    tl = tsub.add_parser("latent", help="auxiliary encoder + latent diffusion for a shipped codec quality")
    from dpexplorer.training.latent import add_arguments as latent_arguments

    latent_arguments(tl)
    tl.add_argument("--no-export", action="store_true",
                    help="leave weights/ alone (the denoiser stays in the run's checkpoint)")
    tl.set_defaults(func=cmd_train_latent)
    tp = tsub.add_parser("pixel", help="pixel-space diffusion decoder for a shipped codec quality")
    from dpexplorer.training.common import add_config_arguments
    from dpexplorer.training.pixel import PixelTrainConfig

    add_config_arguments(tp, PixelTrainConfig)
    tp.set_defaults(func=cmd_train_pixel)
    tx = tsub.add_parser("export", help="training checkpoint → weights/ (safetensors + manifest)")
    tx.add_argument("checkpoint")
    tx.add_argument("--notes", default="", help="free text for the model card")
    tx.add_argument("--check-data", default=None, help="measure fp16-vs-fp32 PSNR/bpp on 4 images of this folder")
    tx.set_defaults(func=cmd_train_export)

    def eval_options(sp, default_out):
        from dpexplorer.decoders.schedulers import SAMPLERS

        sp.add_argument("--data", help="folder of test images (e.g. ../shared/kodak)")
        sp.add_argument("--out", default=default_out, help="results folder (resumes from what is there)")
        sp.add_argument("--qualities", type=int, nargs="+", default=None, help="default: all shipped")
        sp.add_argument("--decoders", nargs="+", choices=["plain", "latent", "synthesis", "jpeg", "webp"],
                        default=None)
        sp.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), default=["ddim", "ddpm", "dpmsolver++"])
        sp.add_argument("--steps", type=int, default=10)
        sp.add_argument("--taus", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--no-extra", action="store_true", help="skip FLIP/SSIMULACRA2/NLPD/MS-GMSD/HF ratio")
        sp.add_argument("--limit", type=int, default=None, help="only the first N images")
        sp.add_argument("--assets", default=None, help="also write the app's curves file here "
                        "(assets/kodak_curves.json)")
        sp.set_defaults(func=cmd_eval)

    ev = sub.add_parser("eval", help="evaluate on a folder: every quality × decoder (see subcommands)")
    eval_options(ev, "results/eval")
    esub = ev.add_subparsers(dest="what", required=False)
    el = esub.add_parser("latent", help="τ sweep of the latent diffusion decoder per quality and sampler")
    eval_options(el, "results/latent")
    es = esub.add_parser("synthesis", help="τ sweep of the perceptual synthesis (network interpolation) per quality")
    eval_options(es, "results/synthesis")
    epx = esub.add_parser("pixel", help="pixel diffusion decoder per quality and sampler/steps setting, τ = 0 and 1")
    from dpexplorer.evaluation.pixel_eval import add_arguments as pixel_eval_arguments

    pixel_eval_arguments(epx)
    epx.set_defaults(func=cmd_eval_pixel)
    ec = esub.add_parser("codec", help="bpp/PSNR/MS-SSIM/LPIPS per quality; BD-rate vs CompressAI, WebP, JPEG")
    ec.add_argument("--data", required=True)
    ec.add_argument("--qualities", type=int, nargs="+", default=None)
    ec.add_argument("--out", default="results/codec")
    ec.add_argument("--limit", type=int, default=None, help="only the first N images")
    ec.add_argument("--update-manifest", action="store_true", help="record the means in weights/manifest.json")
    ec.add_argument("--no-baselines", action="store_true", help="skip WebP/JPEG at matched rates")
    codec_options(ec)
    ec.set_defaults(func=cmd_eval_codec)

    from dpexplorer.bench import add_arguments as bench_arguments, run_from_args as bench

    b = sub.add_parser("bench", help="speed and memory figures at 768×512, side by side in one run")
    bench_arguments(b)
    b.set_defaults(func=bench)

    r = sub.add_parser("report", help="regenerate every measured number and figure: docs/results.md, assets/")
    r.add_argument("--data", required=True, help="evaluation folder (../shared/kodak)")
    r.add_argument("--out", default="results/report")
    r.add_argument("--bench-image", default=None, help="768×512 image for the bench (default: first of --data)")
    r.set_defaults(func=cmd_report)

    k = sub.add_parser("download-kodak", help="fetch the 24 Kodak images (needs internet)")
    k.add_argument("dest", nargs="?", default="data/kodak")
    k.set_defaults(func=cmd_download_kodak)
    return p


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    args = build_parser().parse_args(argv)
    from dpexplorer.errors import DPExplorerError

    try:
        return args.func(args)
    except (DPExplorerError, OSError, ValueError, OutputError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())

"""`dpexplorer encode`, `decode` and `metrics`: images ↔ .dpx files, and their quality."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from dpexplorer.cli import EXIT_OK
from dpexplorer.cli.outputs import _run_batch, expand_inputs, write_output


def cmd_encode(args) -> int:
    from dpexplorer.hub.loading import get_codec
    from dpexplorer.io.images import IMAGE_SUFFIXES, load_image

    from dpexplorer.hint.sender import encode

    codec = get_codec(args.quality, args.arch, pretrained=args.pretrained)
    files, batch = expand_inputs(args.inputs, IMAGE_SUFFIXES)

    def work(src: Path, dst: Path) -> str:
        img = load_image(src)
        t0 = time.perf_counter()
        with _step_bar(f"{src.name} (effort)", unit="iteration") as progress:
            data = encode(codec, img, hint=not args.no_hint, effort=args.effort, progress=progress)
        dt = time.perf_counter() - t0
        write_output(dst, lambda tmp: tmp.write_bytes(data), args.force)
        h, w = img.shape[:2]
        return f"{src} -> {dst}: {w}x{h}, {len(data)} bytes, {len(data) * 8 / (h * w):.4f} bpp, {dt:.2f} s"

    return _run_batch(files, batch, args, ".dpx", work=work)


def cmd_decode(args) -> int:
    from dpexplorer.decoders.registry import open_file, reconstruct_file
    from dpexplorer.io.images import save_png

    files, batch = expand_inputs(args.inputs, {".dpx"})

    def work(src: Path, dst: Path) -> str:
        t0 = time.perf_counter()
        stream = open_file(src.read_bytes(), args.pretrained)
        tau_map = None
        if args.tau_map:  # resized to each bitstream's image size
            from dpexplorer.decoders.taumap import load_tau_map

            tau_map = load_tau_map(args.tau_map, stream.height, stream.width)
        with _step_bar(src.name) as progress:
            decoder, options = family_and_options(args, stream, tau_map=tau_map, progress=progress)
            image = reconstruct_file(stream, args.tau, decoder=decoder, pretrained=args.pretrained, options=options)
        dt = time.perf_counter() - t0
        write_output(dst, lambda tmp: save_png(image, tmp), args.force)
        return f"{src} -> {dst}: {image.shape[1]}x{image.shape[0]}, {dt:.2f} s"

    return _run_batch(files, batch, args, ".png", work=work)


class _step_bar:
    """A tqdm bar on stderr over diffusion steps or encoder-effort iterations, with the time left; opened by
    the first step (a τ = 0 decode, or an encode without effort, shows none)."""

    def __init__(self, desc: str, *, unit: str = "step"):
        self.desc, self.unit, self.bar = desc, unit, None

    def __enter__(self):
        return self

    def __call__(self, i: int, n: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=n, desc=self.desc, unit=self.unit, leave=False, file=sys.stderr)
        self.bar.update(i - self.bar.n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def cmd_metrics(args) -> int:
    from dpexplorer.decoders.registry import open_file, reconstruct_file
    from dpexplorer.io.images import load_image
    from dpexplorer.metrics import image as metrics

    ref = load_image(args.reference)
    result = {}
    test_path = Path(args.test)
    bitstream = Path(args.bitstream) if args.bitstream else (test_path if test_path.suffix == ".dpx" else None)
    if test_path.suffix == ".dpx":
        stream = open_file(test_path.read_bytes(), args.pretrained)
        decoder, options = family_and_options(args, stream)
        test = reconstruct_file(stream, args.tau, decoder=decoder, pretrained=args.pretrained, options=options)
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


def effort_iterations(text: str) -> int:
    """argparse type of --effort: 0 … MAX_EFFORT iterations."""
    import argparse

    from dpexplorer.codec.effort import MAX_EFFORT

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= n <= MAX_EFFORT:
        raise argparse.ArgumentTypeError(f"effort must be 0 … {MAX_EFFORT} iterations, got {n}")
    return n


def codec_options(sp):
    sp.add_argument("--arch", default=None, help="codec architecture (default: the shipped one)")
    sp.add_argument("--pretrained", action="store_true",
                    help="use CompressAI's published weights (needs internet once) instead of weights/")


def family_and_options(args, stream, **kwargs):
    """The family that decodes `stream` (`--decoder`, else the first with weights for its quality,
    `registry.default_family`) and its decode options (`decode_options`)."""
    from dpexplorer.decoders.registry import default_family

    decoder = args.decoder or default_family(stream.quality)
    return decoder, decode_options(args, decoder, **kwargs)


def decode_options(args, decoder: str, *, tau_map=None, progress=None):
    from dpexplorer.decoders.base import DecodeOptions, TauDecoder
    from dpexplorer.decoders.registry import FAMILIES

    family = FAMILIES.get(decoder, TauDecoder)  # an unknown one is refused where it is decoded, with the choices
    steps = args.steps if args.steps is not None else family.default_steps
    return DecodeOptions(sampler=args.sampler, steps=steps, seed=args.seed, noise_scale=args.noise_scale,
                         tau_map=tau_map, progress=progress, use_hint=not args.ignore_hint,
                         use_guard=not args.no_guard)


def decoder_options(sp):
    from dpexplorer.decoders.registry import FAMILIES
    from dpexplorer.decoders.schedulers import SAMPLERS

    sp.add_argument("--decoder", default=None,
                    help="decoder family for τ > 0: " + "; ".join(f"{k}: {c.label}" for k, c in FAMILIES.items())
                    + " (default: the first of these with weights for the file's quality)")
    sp.add_argument("--tau", type=float, default=0.0,
                    help="0 = base decoder (best PSNR) … 1 = the decoder family's perceptual end (best realism); "
                         "for a file with the sender's τ hint, 1 = the decode it recommends (τ applies where it says)")
    sp.add_argument("--ignore-hint", action="store_true",
                    help="decode raw τ, as if the file carried no τ hint (the receiver's grain guard then weights τ)")
    sp.add_argument("--no-guard", action="store_true",
                    help="without a hint, decode uniform τ: no grain guard (θ₁'s texture everywhere, smooth areas too)")
    sp.add_argument("--sampler", default="ddim", choices=list(SAMPLERS))
    sp.add_argument("--steps", type=int, default=None,
                    help="diffusion steps (default: the family's own: " + ", ".join(
                        f"{k} {c.default_steps}" for k, c in FAMILIES.items() if c.uses_sampler) + ")")
    sp.add_argument("--seed", type=int, default=0, help="seed of the diffusion sample")
    sp.add_argument("--noise-scale", type=float, default=None,
                    help="pixel decoder: scale of the initial noise (CDC's option; < 1 trades realism for fidelity; "
                         "1 = the plain sampler; default: the shipped weights' own, see weights/README.md)")


def add_parsers(sub) -> None:
    e = sub.add_parser("encode", help="image(s) → .dpx bitstream(s)")
    e.add_argument("inputs", nargs="+", help="image files and/or folders")
    e.add_argument("-q", "--quality", type=int, required=True, help="quality level (1 = lowest rate)")
    e.add_argument("-o", "--output", help="output file, or folder (DIR/, an existing folder, or several inputs); "
                   "default: photo.png → photo.dpx beside it")
    e.add_argument("--force", action="store_true", help="replace existing outputs (never an input)")
    e.add_argument("--no-hint", action="store_true",
                   help="leave out the sender's τ hint (where the perceptual decode helps, computed against the "
                        "original; about 30–140 bytes, and a few seconds per image); the file is then format version 1")
    e.add_argument("--effort", type=effort_iterations, default=0, metavar="N",
                   help="refine the latents for N iterations before coding (Stochastic Gumbel Annealing): a "
                        "smaller file at the same quality, for the same decoders; slow (about 1 s per "
                        "iteration per megapixel on a CPU with AMX, 3 s without), images up to 2.5 MP; 0 = the "
                        "fast encoder (default); docs/cli.md has the bits saved per N")
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

"""`dpexplorer eval` (and `eval latent | synthesis | pixel | codec`), `bench`, `report` and
`download-kodak`: the measured numbers and figures, and the evaluation set."""

from __future__ import annotations

from dpexplorer.cli import EXIT_OK, _fail
from dpexplorer.cli.coding import codec_options


def cmd_eval_pixel(args) -> int:
    from dpexplorer.evaluation.pixel_eval import run_from_args

    return run_from_args(args)


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
    defaults = EvalSettings(data=args.data)
    decoders = args.decoders or (["plain", args.what] if args.what else defaults.decoders)
    step_settings = {**defaults.step_settings, "pixel": args.pixel_settings}
    run_eval(EvalSettings(data=args.data, out_dir=args.out, qualities=args.qualities, decoders=decoders,
                          samplers=args.samplers, steps=args.steps, taus=args.taus, seed=args.seed,
                          extra=not args.no_extra, limit=args.limit, assets=args.assets,
                          step_settings=step_settings, slow_limit=args.slow_limit, hint=not args.no_hint,
                          guard=not args.no_guard))
    return EXIT_OK


def cmd_report(args) -> int:
    from dpexplorer.evaluation.report import run_report

    run_report(args.data, out=args.out, bench_image=args.bench_image)
    return EXIT_OK


def cmd_download_kodak(args) -> int:
    from dpexplorer.evaluation.kodak import download_kodak

    download_kodak(args.dest)
    return EXIT_OK


def eval_options(sp, default_out):
    from dpexplorer.decoders.registry import FAMILIES
    from dpexplorer.decoders.schedulers import SAMPLERS
    from dpexplorer.evaluation.pixel_eval import SETTINGS as PIXEL_SETTINGS

    sp.add_argument("--data", help="folder of test images (e.g. ../shared/kodak)")
    sp.add_argument("--out", default=default_out, help="results folder (resumes from what is there)")
    sp.add_argument("--qualities", type=int, nargs="+", default=None, help="default: all shipped")
    sp.add_argument("--decoders", nargs="+", choices=["plain", *FAMILIES, "jpeg", "webp"],
                    default=None)
    sp.add_argument("--pixel-settings", nargs="+", default=list(PIXEL_SETTINGS),
                    metavar="SAMPLER:STEPS", help="the pixel decoder's sampler/steps settings")
    sp.add_argument("--slow-limit", type=int, default=None,
                    help="pixel settings over 20 steps run on the first N images only (the output gives n)")
    sp.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), default=["ddim", "ddpm", "dpmsolver++"])
    sp.add_argument("--steps", type=int, default=10)
    sp.add_argument("--taus", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--no-extra", action="store_true", help="skip FLIP/SSIMULACRA2/NLPD/MS-GMSD/HF ratio")
    sp.add_argument("--limit", type=int, default=None, help="only the first N images")
    sp.add_argument("--no-hint", action="store_true",
                    help="skip the decodes of the file with the sender's τ hint (each family's first setting, "
                         "hinted rows); raw τ is always measured")
    sp.add_argument("--no-guard", action="store_true",
                    help="raw τ uniform, without the receiver's grain guard (rows without \"guarded\")")
    sp.add_argument("--assets", default=None, help="also write the app's curves file here "
                    "(assets/kodak_curves.json)")
    sp.set_defaults(func=cmd_eval)


def add_parsers(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate on a folder: every quality × decoder (see subcommands)")
    eval_options(ev, "results/eval")
    esub = ev.add_subparsers(dest="what", required=False)
    from dpexplorer.decoders.registry import FAMILIES
    from dpexplorer.evaluation.pixel_eval import add_arguments as pixel_eval_arguments

    # A family's own evaluation where it has one (the pixel decoder: per sampler/steps setting, or a
    # training checkpoint); every other family gets the τ sweep of `dpexplorer eval` restricted to it.
    own = {"pixel": (pixel_eval_arguments, cmd_eval_pixel,
                     "pixel diffusion decoder per quality and sampler/steps setting, τ = 0 and 1")}
    for key, cls in FAMILIES.items():
        if key in own:
            add_arguments, func, text = own[key]
            sp = esub.add_parser(key, help=text)
            add_arguments(sp)
            sp.set_defaults(func=func)
        else:
            eval_options(esub.add_parser(key, help=f"τ sweep of the {cls.label} decoder per quality and setting"),
                         f"results/{key}")
    ec = esub.add_parser("codec", help="bpp/PSNR/MS-SSIM/LPIPS per quality; BD-rate vs CompressAI, WebP, JPEG")
    ec.add_argument("--data", required=True)
    ec.add_argument("--qualities", type=int, nargs="+", default=None)
    ec.add_argument("--out", default="results/codec")
    ec.add_argument("--limit", type=int, default=None, help="only the first N images")
    ec.add_argument("--update-manifest", action="store_true", help="record the means in weights/manifest.json")
    ec.add_argument("--no-baselines", action="store_true", help="skip WebP/JPEG at matched rates")
    codec_options(ec)
    ec.set_defaults(func=cmd_eval_codec)

    from dpexplorer.evaluation.bench import add_arguments as bench_arguments, run_from_args as bench

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

"""`dpexplorer train codec | latent | latent-refine | pixel | guard | export`: the trainings, and a checkpoint → weights/."""

from __future__ import annotations

import json
from pathlib import Path

from dpexplorer.cli import EXIT_OK


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


def cmd_train_latent_refine(args) -> int:
    from dpexplorer.training.common import configs_from_args
    from dpexplorer.training.latent_refine import LatentRefineConfig, train_latent_refine

    for cfg in configs_from_args(args, LatentRefineConfig):
        print(train_latent_refine(cfg))
    return EXIT_OK


def cmd_train_pixel(args) -> int:
    from dpexplorer.training.common import configs_from_args
    from dpexplorer.training.pixel import PixelTrainConfig, train_pixel

    for cfg in configs_from_args(args, PixelTrainConfig):
        print(train_pixel(cfg))
    return EXIT_OK


def cmd_train_guard(args) -> int:
    from dpexplorer.training.common import configs_from_args
    from dpexplorer.training.guard import GuardTrainConfig, export_guard, train_guard

    for cfg in configs_from_args(args, GuardTrainConfig):
        net, record = train_guard(cfg)
        print(json.dumps(record["held_out"], indent=2))
        if not args.no_export:
            print(json.dumps({k: v for k, v in export_guard(net, record).items() if k != "training"}, indent=2))
    return EXIT_OK


def cmd_train_export(args) -> int:
    if args.kind == "refit":
        from dpexplorer.training.export import export_refit_run

        print(json.dumps(export_refit_run(args.checkpoint, notes=args.notes), indent=2))
        return EXIT_OK
    if args.kind == "synthesis" and Path(args.checkpoint).expanduser().is_dir():
        from dpexplorer.training.export import export_synthesis

        print(json.dumps(export_synthesis(args.checkpoint, notes=args.notes, snapshot=args.snapshot), indent=2))
        return EXIT_OK
    if args.kind == "synthesis":
        from dpexplorer.training.export import export_synthesis_bundle

        blend = dict(_blend_weight(b) for b in args.blend or ["A=1"])
        print(json.dumps(export_synthesis_bundle(args.checkpoint, blend, notes=args.notes), indent=2))
        return EXIT_OK
    if args.kind == "pixel":
        from dpexplorer.training.pixel import export_pixel

        print(json.dumps(export_pixel(args.checkpoint, notes=args.notes, noise_scale=args.noise_scale), indent=2))
        return EXIT_OK
    if args.kind == "latent-refine":
        from dpexplorer.training.latent_refine import export_latent_refine

        print(json.dumps(export_latent_refine(args.checkpoint, notes=args.notes), indent=2))
        return EXIT_OK
    from dpexplorer.training.export import export_codec

    images = None
    if args.check_data:
        from dpexplorer.io.images import list_images

        images = list_images(args.check_data, 4)
    entry = export_codec(args.checkpoint, notes=args.notes, check_images=images)
    print(json.dumps(entry, indent=2))
    return EXIT_OK


def _blend_weight(text: str) -> tuple[str, float]:
    arm, _, weight = text.partition("=")
    try:
        return arm, float(weight)
    except ValueError:
        raise SystemExit(f"--blend takes ARM=WEIGHT, got {text!r}") from None


def add_parsers(sub) -> None:
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
    tr = tsub.add_parser("latent-refine", help="the latent decoder's first step fine-tuned as a refiner of θ₁'s "
                                               "image, from the shipped latent weights")
    from dpexplorer.training.common import add_config_arguments
    from dpexplorer.training.latent_refine import LatentRefineConfig

    add_config_arguments(tr, LatentRefineConfig)
    tr.set_defaults(func=cmd_train_latent_refine)
    tp = tsub.add_parser("pixel", help="pixel-space diffusion decoder for a shipped codec quality")
    from dpexplorer.training.pixel import PixelTrainConfig

    add_config_arguments(tp, PixelTrainConfig)
    tp.set_defaults(func=cmd_train_pixel)
    tg = tsub.add_parser("guard", help="the receiver's grain guard for a shipped quality (codec and θ₁ frozen)")
    from dpexplorer.training.guard import GuardTrainConfig

    add_config_arguments(tg, GuardTrainConfig)
    tg.add_argument("--no-export", action="store_true", help="train and report, leave weights/ alone")
    tg.set_defaults(func=cmd_train_guard)
    tx = tsub.add_parser("export", help="training checkpoint → weights/ (safetensors + manifest)")
    tx.add_argument("checkpoint")
    tx.add_argument("--kind", choices=["codec", "latent-refine", "pixel", "refit", "synthesis"], default="codec",
                    help="what the checkpoint holds; latent-refine: a `train latent-refine` run's last.pt; refit: a "
                         "synthesis run folder trained with MSE alone, which replaces the shipped codec's g_s (the plain "
                         "decoder); synthesis: a synthesis run folder (its θ₁, or --snapshot's) or a synthesis burst's "
                         "bundle (θ₁ from its arms, --blend)")
    tx.add_argument("--snapshot", type=int, default=None, metavar="STEP",
                    help="synthesis run folder: the θ₁ it kept at this step (theta1-STEP.pt) instead of its latest")
    tx.add_argument("--blend", action="append", metavar="ARM=WEIGHT",
                    help="synthesis: an arm of the bundle and its weight (repeat to average arms; weights sum "
                         "to 1; default A=1)")
    tx.add_argument("--noise-scale", type=float, default=None,
                    help="pixel: the initial-noise scale the weights decode with by default (1 if not given)")
    tx.add_argument("--notes", default="", help="free text for the model card")
    tx.add_argument("--check-data", default=None, help="measure fp16-vs-fp32 PSNR/bpp on 4 images of this folder")
    tx.set_defaults(func=cmd_train_export)

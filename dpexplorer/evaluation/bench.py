"""`dpexplorer bench`: speed and memory on this machine, measured side by side in one run.

Prints, for one 768×512 image: encode, entropy decoding, an iteration of the encoder effort's search (fp32
and fast, side by side), one g_s pass, a τ change with a cached
sample, a fresh latent sample (10 steps), a τ change of the perceptual synthesis (weights blended, then
one g_s pass) — each also as a ratio to the g_s pass — the pixel diffusion decoder's τ change, fresh
sample and seconds per denoiser step beside the networks of Mari & Milani (2024) and of CDC (Yang & Mandt, 2023), plus the app's cold start
and peak memory. Timings are medians of `--repeat` runs. It prints figures; it asserts nothing.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from dpexplorer.decoders.base import DecodeOptions


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _test_image(path: str | None) -> np.ndarray:
    from dpexplorer.io.images import load_image

    if path:
        img = load_image(path)
    else:  # a textured synthetic 768×512 image, so the bench runs anywhere
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:512, 0:768]
        img = np.stack([128 + 60 * np.sin(xx / 17.0), 128 + 60 * np.cos(yy / 23.0), (xx + yy) % 256], 2)
        img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    if img.shape[:2] != (512, 768):
        from PIL import Image

        img = np.asarray(Image.fromarray(img).resize((768, 512), Image.LANCZOS))
    return img


def _pipeline(codec):
    """The shipped latent pipeline of this quality, else an untrained one of the shipped size (speed only)."""
    from dpexplorer.decoders.latent.decoder import LatentDecoder
    from dpexplorer.decoders.latent.denoiser import LatentDenoiser

    if codec.cfg.quality in LatentDecoder.qualities():
        return LatentDecoder.load(codec.cfg.quality), "shipped"
    return LatentDecoder(codec, LatentDenoiser(codec.cfg.M)), "untrained, default size (no latent weights shipped)"


def _app_tau_change(pipeline, data: bytes, original: np.ndarray, tau: float, *, steps: int) -> None:
    """What the app does when τ is released: reconstruct from the cached sample, measure, plot, write PNG."""
    import tempfile

    from dpexplorer.evaluation.curves import dp_plot, load_curves
    from dpexplorer.io.images import save_png
    from dpexplorer.metrics.image import all_metrics

    recon = pipeline.reconstruct(data, tau, options=DecodeOptions(sampler="ddim", steps=steps))
    dp_plot(load_curves(), {"now": all_metrics(original, recon)})
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        save_png(recon, f.name, compress_level=1)  # as the app does


def _synthesis(codec):
    """The shipped perceptual synthesis of this quality, else θ₁ = θ₀ perturbed (speed only)."""
    from dpexplorer.decoders.synthesis import InterpolatedSynthesis, SynthesisDecoder

    if codec.cfg.quality in SynthesisDecoder.qualities():
        return SynthesisDecoder.load(codec.cfg.quality).synthesis, "shipped"
    theta1 = {k: v + 0.01 for k, v in codec.model.g_s.state_dict().items()}
    return InterpolatedSynthesis(codec.model.g_s, theta1), "untrained (no synthesis weights shipped)"


def _hinted_encode_time(codec, img: np.ndarray) -> float:
    """`dpexplorer encode` as users run it (with the sender's τ hint, whose grain rule decodes with the default τ
    decoder), timed once: repeats would find that decoder's sample of the image in its cache. The decoders are
    loaded first on the image upside down (its samples are another image's)."""
    from dpexplorer.hint.sender import encode

    encode(codec, np.ascontiguousarray(img[::-1]))
    start = time.perf_counter()
    encode(codec, img)
    return time.perf_counter() - start


def _effort_iteration_times(codec, img: np.ndarray, repeat: int) -> dict:
    """Seconds per iteration of the encoder's latent refinement (`--effort`) at this size, the fp32 search
    and the fast one (channels-last g_s, bf16 where the CPU has AMX) side by side, after a warm-up each."""
    from dpexplorer.codec.effort import EffortSchedule, refine_latents
    from dpexplorer.codec.precision import bf16_is_fast
    from dpexplorer.io.images import to_tensor

    x = to_tensor(img)
    y = codec.analyze(img)
    out = {"bf16": bf16_is_fast(torch.device("cpu"))}
    for name, fast in (("fp32", False), ("fast", True)):
        schedule = EffortSchedule(fast_synthesis=fast)

        def iteration():
            refine_latents(codec.model, x, y, iterations=1, lmbda=codec.cfg.lmbda, schedule=schedule)

        iteration()
        out[name] = _median_time(iteration, repeat)
    return out


def _cold_start() -> float:
    code = "import time; t=time.perf_counter(); import app; print(time.perf_counter()-t)"
    t0 = time.perf_counter()
    from dpexplorer.hub.manifest import data_home

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=data_home())
    wall = time.perf_counter() - t0
    return wall if r.returncode == 0 else float("nan")


_LARGE = """
import resource, sys, time
import numpy as np
from PIL import Image
from dpexplorer.hub.loading import get_codec
from dpexplorer.codec.tiling import UNTILED
quality, width, height, step, path, tiled = sys.argv[1:]
codec = get_codec(int(quality))
if tiled == "0":
    codec.tiling = UNTILED  # the memory before tiling (a 16-MP photo needs ~9 GB)
t0 = time.perf_counter()
if step == "encode":
    # photo-like: smooth regions and edges (bicubic blow-up of random colours) + sensor noise, made in uint8
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (int(height) // 16, int(width) // 16, 3), dtype=np.uint8)
    img = np.array(Image.fromarray(small).resize((int(width), int(height)), Image.BICUBIC))
    for r in range(0, img.shape[0], 256):
        img[r:r + 256] = np.clip(img[r:r + 256] + rng.normal(0, 5, img[r:r + 256].shape), 0, 255)
    t0 = time.perf_counter()
    data = codec.encode(img)
    open(path, "wb").write(data)
else:
    codec.decode(open(path, "rb").read())
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

LARGE_SIZE = (8000, 6000)  # the 48-MP input limit (dpexplorer.io.images.MAX_PIXELS)


def large_image(quality: int, width: int = LARGE_SIZE[0], height: int = LARGE_SIZE[1], tiled: bool = True) -> dict:
    """Encode, then decode, a synthetic width×height photo, each in a fresh process: time and peak RSS
    (the process's whole peak: Python, torch, the weights, the image and the transforms)."""
    import tempfile

    from dpexplorer.hub.manifest import data_home

    r = {"large_size": f"{width}x{height}"}
    with tempfile.TemporaryDirectory() as tmp:
        for step in ("encode", "decode"):
            p = subprocess.run([sys.executable, "-c", _LARGE, str(quality), str(width), str(height), step,
                                f"{tmp}/large.dpx", "1" if tiled else "0"], capture_output=True, text=True,
                               cwd=data_home())
            if p.returncode != 0:
                return {}
            t, rss = (float(v) for v in p.stdout.split()[-2:])
            r[f"large_{step}_s"], r[f"large_{step}_peak_rss_mib"] = t, rss
    return r


PIXEL_SIZE = (512, 768)


def _pixel_pipeline(codec):
    """The shipped pixel decoder of this quality, else one with random weights of the shipped size (speed only)."""
    from dpexplorer.decoders.pixel.decoder import PixelDecoder
    from dpexplorer.decoders.pixel.denoiser import OURS, PixelDenoiser

    if codec.cfg.quality in PixelDecoder.qualities():
        return PixelDecoder.load(codec.cfg.quality), "shipped"
    torch.manual_seed(0)
    return PixelDecoder(codec, PixelDenoiser(codec.cfg.M, **OURS)), "random weights"


def pixel_step_times(repeat: int = 2, crop: int = 128, latent_channels: int = 192) -> dict:
    """Seconds per denoiser step at 768×512 for ours and the Mari & Milani (2024) and CDC configurations (random weights).

    Ours is timed at 768×512; the full-resolution paper networks on a crop×crop input, scaled by the
    pixel ratio (convolutions scale linearly; the Mari & Milani network's attention quadratically, so its figure is a
    lower bound). All run as the pipeline runs the denoiser (`thread_invariant`). GFLOP per step (counted by
    torch, scaled the same way) compare the networks independently of the machine's load."""
    from torch.utils.flop_counter import FlopCounterMode

    from dpexplorer.codec.codec import thread_invariant
    from dpexplorer.decoders.pixel.denoiser import CDC, OURS, MARI_MILANI, PixelDenoiser

    out = {}
    for name, cfg, (h, w) in (("ours", OURS, PIXEL_SIZE), ("mari_milani", MARI_MILANI, (crop, crop)),
                              ("cdc", CDC, (crop, crop))):
        torch.manual_seed(0)
        den = PixelDenoiser(latent_channels, **cfg).eval()
        h, w = (-(-h // den.multiple) * den.multiple, -(-w // den.multiple) * den.multiple)
        args = (torch.randn(1, 3, h, w), torch.tensor([500]), torch.rand(1, 3, h, w),
                torch.randn(1, latent_channels, h // 16, w // 16))
        with torch.inference_mode(), thread_invariant():
            with FlopCounterMode(display=False) as flops:  # also the warm-up
                den(*args)
            t = _median_time(lambda: den(*args), repeat)
        scale = PIXEL_SIZE[0] * PIXEL_SIZE[1] / (h * w)
        out[name] = {"params_m": sum(p.numel() for p in den.parameters()) / 1e6, "timed_at": f"{w}x{h}",
                     "scale": scale, "step_s": t * scale, "gflop": flops.get_total_flops() * scale / 1e9}
    return out


def run_bench(image: str | None = None, quality: int | None = None, repeat: int = 3, steps: int = 10,
              *, cold_start: bool = True, large: bool = False, pixel: bool = False, pixel_crop: int = 128) -> dict:
    from dpexplorer.decoders.latent.decoder import LatentDecoder
    from dpexplorer.hub.loading import get_codec, shipped_qualities

    quality = quality or (LatentDecoder.qualities() or shipped_qualities())[-1]  # the app's default quality
    codec = get_codec(quality)
    img = _test_image(image)
    pipeline, latent_source = _pipeline(codec)

    data = codec.encode(img)
    y_hat, bs = codec.decode_latent(data)
    r = {"threads": torch.get_num_threads(), "quality": quality, "image": image or "synthetic 768x512",
         "latent_model": latent_source, "bytes": len(data)}
    r["encode_s"] = _median_time(lambda: codec.encode(img), repeat)
    r["encode_hinted_s"] = _hinted_encode_time(codec, img)
    r["entropy_decode_s"] = _median_time(lambda: codec.decode_latent(data), repeat)
    r["effort_iteration_s"] = _effort_iteration_times(codec, img, repeat)
    r["g_s_s"] = _median_time(lambda: codec.synthesize(y_hat, bs.height, bs.width), repeat)
    ddim = DecodeOptions(sampler="ddim", steps=steps)
    pipeline.reconstruct(data, 1.0, options=ddim)  # fills the cache
    taus = iter(np.linspace(0.05, 0.95, 100))
    r["tau_change_cached_s"] = _median_time(lambda: pipeline.reconstruct(data, float(next(taus)), options=ddim),
                                            repeat)
    r["app_tau_change_s"] = _median_time(lambda: _app_tau_change(pipeline, data, img, float(next(taus)), steps=steps),
                                         repeat)
    synth, r["synthesis_model"] = _synthesis(codec)
    r["synthesis_tau_change_s"] = _median_time(
        lambda: codec.synthesize(y_hat, bs.height, bs.width, g_s=synth.at(float(next(taus)))), repeat)
    seeds = iter(range(1, 1000))
    r[f"fresh_sample_{steps}_steps_s"] = _median_time(
        lambda: pipeline.reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=steps, seed=next(seeds))),
        repeat)
    if pixel:
        pixel_pipeline, r["pixel_model"] = _pixel_pipeline(codec)
        pixel_pipeline.reconstruct(data, 1.0, options=ddim)  # warm-up, fills the cache
        r["pixel_tau_change_cached_s"] = _median_time(
            lambda: pixel_pipeline.reconstruct(data, float(next(taus)), options=ddim), repeat)
        r[f"pixel_fresh_sample_{steps}_steps_s"] = _median_time(
            lambda: pixel_pipeline.reconstruct(data, 1.0, options=DecodeOptions(sampler="ddim", steps=steps,
                                                                                 seed=next(seeds))), repeat)
        r["pixel_step_s"] = pixel_step_times(max(1, repeat - 1), pixel_crop, codec.cfg.M)
    if cold_start:
        r["app_cold_start_s"] = _cold_start()
    r["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if large:
        r.update(large_image(quality))
    return r


def format_bench(r: dict, steps: int = 10) -> str:
    g = r["g_s_s"]
    rows = [("encode", r["encode_s"]), ("encode with the τ hint (the default; once)", r["encode_hinted_s"]),
            ("entropy decoding (ŷ)", r["entropy_decode_s"]), ("g_s decode (one pass)", g),
            ("τ change, cached sample", r["tau_change_cached_s"]),
            ("app τ change (+ metrics, plot, PNG)", r["app_tau_change_s"]),
            (f"fresh latent sample ({steps} steps) + g_s", r[f"fresh_sample_{steps}_steps_s"]),
            ("synthesis τ change (blend θ_τ + g_s)", r["synthesis_tau_change_s"])]
    lines = [f"DP Explorer bench — q{r['quality']}, {r['image']}, {r['threads']} torch threads, "
             f"latent model: {r['latent_model']}, synthesis model: {r['synthesis_model']}",
             f"{'what':42s} {'seconds':>8s} {'× g_s':>7s}"]
    lines += [f"{name:42s} {t:8.3f} {t / g:7.2f}" for name, t in rows]
    e = r["effort_iteration_s"]
    lines.append(f"{'encoder effort, one iteration':42s}")
    lines.append(f"{'  fp32 search':42s} {e['fp32']:8.3f} {e['fp32'] / g:7.2f}")
    how = "channels-last, bf16 on AMX" if e["bf16"] else "channels-last (no AMX: fp32)"
    lines.append(f"{'  fast search (' + how + ')':42s} {e['fast']:8.3f} {e['fast'] / g:7.2f}  "
                 f"{e['fp32'] / e['fast']:.1f}× faster")
    if "pixel_step_s" in r:
        lines.append(f"{'pixel decoder (' + r['pixel_model'] + ')':42s}")
        lines.append(f"{'  τ change, cached sample':42s} {r['pixel_tau_change_cached_s']:8.3f} "
                     f"{r['pixel_tau_change_cached_s'] / g:7.2f}")
        fresh = r[f"pixel_fresh_sample_{steps}_steps_s"]
        lines.append(f"{f'  fresh sample (DDIM {steps} steps) + blend':42s} {fresh:8.3f} {fresh / g:7.2f}")
        lines.append("  seconds per denoiser step at 768×512, random weights, side by side:")
        for name, label in (("ours", "ours (4×4 space-to-depth)"), ("mari_milani", "Mari & Milani 2024 (128 ch, 5 levels, 3 blocks)"),
                            ("cdc", "CDC (64 ch, mults 1–6, 2 blocks)")):
            p = r["pixel_step_s"][name]
            how = "" if p["scale"] == 1 else f"  (timed at {p['timed_at'].replace('x', '×')}, × {p['scale']:.0f})"
            lines.append(f"{'    ' + label:42s} {p['step_s']:8.3f} {p['step_s'] / g:7.2f}  {p['params_m']:.1f} M params, "
                         f"{p['gflop']:.0f} GFLOP{how}")
    if "app_cold_start_s" in r:
        lines.append(f"{'app cold start (python -c import app)':42s} {r['app_cold_start_s']:8.2f}")
    lines.append(f"{'peak memory of this process (MiB)':42s} {r['peak_rss_mib']:8.0f}")
    if "large_encode_s" in r:
        size = r["large_size"].replace("x", "×")
        lines.append(f"{size + ' photo: encode / decode (s)':42s} {r['large_encode_s']:8.1f} "
                     f"{r['large_decode_s']:7.1f}")
        lines.append(f"{size + ' photo: peak MiB, encode / decode':42s} {r['large_encode_peak_rss_mib']:8.0f} "
                     f"{r['large_decode_peak_rss_mib']:7.0f}")
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("--image", help="a 768×512 image (default: synthetic)")
    p.add_argument("--quality", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--no-cold-start", action="store_true")
    p.add_argument("--large", action="store_true", help="also an 8000×6000 (48-MP) photo, encoded and decoded in fresh processes (~10 min)")
    p.add_argument("--no-pixel", action="store_true", help="skip the pixel diffusion decoder's figures")
    p.add_argument("--pixel-crop", type=int, default=128,
                   help="crop the full-resolution paper denoisers are timed on (scaled to 768×512)")
    p.add_argument("--json", help="also write the figures to this file")


def run_from_args(args) -> int:
    r = run_bench(args.image, args.quality, args.repeat, args.steps, cold_start=not args.no_cold_start, large=args.large,
                  pixel=not args.no_pixel, pixel_crop=args.pixel_crop)
    print(format_bench(r, args.steps))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0

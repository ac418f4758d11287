"""`dpexplorer report --data ../shared/kodak`: the one command that regenerates every measured number
and figure from the shipped weights.

It runs the full evaluation (resumable), writes `assets/kodak_curves.json` (what the app plots),
`assets/kodak_dp_curves.png` and the τ crops, records each codec's Kodak means in
`weights/manifest.json`, runs the benchmark, and writes `docs/results.md` (a file it owns whole).
It edits no hand-written document: the README's summary and the model card
(`python tools/model_card.py`) are refreshed by hand from these.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from dpexplorer.hub.manifest import data_home


def _fmt(v, spec):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def results_markdown(result: dict, assets: Path, page: Path) -> str:
    """The results section: figures (linked relative to `page`, the file it goes in) and every row."""
    def link(path: Path) -> str:
        return Path(os.path.relpath(path, page.parent)).as_posix()

    means = result["means"]
    lines = [f"Measured on {result['data']} ({result['images']} images) on {result['date'][:10]} with the shipped "
             f"weights; bpp counts every byte of each `.dpx` file. Regenerate with "
             f"`dpexplorer report --data ../shared/kodak`.", "",
             f"![Kodak rate–PSNR, rate–LPIPS and distortion–perception plane]({link(assets / 'kodak_dp_curves.png')})",
             "", "| q | decoder | sampler | τ | bpp | PSNR | MS-SSIM | LPIPS | HF ratio | FLIP | SSIMULACRA2 | NLPD | MS-GMSD |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {"plain": 0, "synthesis": 1, "latent": 2, "pixel": 3, "jpeg": 4, "webp": 5}  # others last

    def sampler(m) -> str:
        """The sampler; for the pixel decoder with its steps, and the image count where it ran on a subset."""
        hinted = " (file with the τ hint)" if m.get("hint") else ""
        if m["decoder"] != "pixel":
            return (m["sampler"] or "") + hinted
        return (f"{m['sampler']} {m['steps']}" + (f" (first {m['n']} images)" if m["n"] < result["images"] else "")
                + hinted)

    for m in sorted(means, key=lambda m: (m["quality"], order.get(m["decoder"], len(order)), m["sampler"] or "",
                                          m.get("steps") or 0, m["tau"] or 0)):
        lines.append(f"| {m['quality']} | {m['decoder']} | {sampler(m)} | "
                     f"{'' if m['tau'] is None else format(m['tau'], '.2f')} | {_fmt(m['bpp'], '.4f')} | "
                     f"{_fmt(m['psnr'], '.2f')} | {_fmt(m['ms_ssim'], '.4f')} | {_fmt(m['lpips'], '.4f')} | "
                     f"{_fmt(m['hf_ratio'], '.2f')} | {_fmt(m['flip'], '.4f')} | {_fmt(m['ssimulacra2'], '.2f')} | "
                     f"{_fmt(m['nlpd'], '.4f')} | {_fmt(m['ms_gmsd'], '.4f')} |")
    for crops in sorted(assets.glob("kodak_tau_crops_q*.png")):
        lines += ["", f"![zoomed crops across τ]({link(crops)})"]
    lines += ["", "JPEG/WebP rows: Pillow, quality searched per image to match the codec's bpp at that quality.",
              "CompressAI references: published Kodak results (MSE) of `mbt2018-mean`, our architecture, and "
              "`bmshj2018-hyperprior`: CompressAI's `results/image/kodak/compressai-*_mse_cuda.json`.", ""]
    for k, v in result["bd_rate"].items():
        value = "n/a: the two curves do not overlap in quality" if math.isnan(v) else f"**{v:+.1f}%**"
        lines.append(f"- BD-rate {k.replace('_', ' ')}: {value}")
    return "\n".join(lines)


def bench_markdown(r: dict) -> str:
    from dpexplorer.evaluation.bench import format_bench

    return "```\n" + format_bench(r) + "\n```"


def run_report(data: str, home: Path | None = None, out: str = "results/report", bench_image: str | None = None,
               *, extra: bool = True, slow_limit: int | None = 4) -> Path:
    """Evaluation, assets, manifest means and benchmark → `docs/results.md` of `home` (the checkout)."""
    from dpexplorer.evaluation.bench import run_bench
    from dpexplorer.evaluation.codec_eval import record_in_manifest
    from dpexplorer.evaluation.full_eval import EvalSettings, run_eval
    from dpexplorer.io.images import list_images

    home = home or data_home()
    assets, page = home / "assets", home / "docs" / "results.md"
    # the pixel decoder's many-step settings (DDIM 50, DDPM 100) on the first `slow_limit` images
    result = run_eval(EvalSettings(data=data, out_dir=out, extra=extra, assets=str(assets / "kodak_curves.json"),
                                   slow_limit=slow_limit))
    # the README's figure: one colour per decoder, the peers (AVIF, WebP) as light reference lines
    from dpexplorer.evaluation.curves import load_curves, readme_figure
    from dpexplorer.evaluation.reference import COMPRESSAI_KODAK

    ref = COMPRESSAI_KODAK["mbt2018-mean"]
    readme_figure(load_curves(assets / "kodak_curves.json"), assets / "kodak_dp_curves.png",
                  reference={"bpp": ref["bpp"][:5], "psnr": ref["psnr"][:5],
                             "label": "CompressAI mbt2018-mean (published)"})
    for crops in sorted(Path(out).glob("tau_crops_q*.png")):
        shutil.copyfile(crops, assets / f"kodak_{crops.name}")

    plain = {str(m["quality"]): m for m in result["means"] if m["decoder"] == "plain"}
    codecs = {q.removeprefix("codec-q"): {"weights_sha256": h} for q, h in result["weights"].items()
              if q.startswith("codec-")}
    record_in_manifest({"data": data, "images": result["images"], "codecs": codecs,
                        "mean": {q: {k: plain[q][k] for k in ("bpp", "psnr", "ms_ssim", "lpips")} for q in plain}})

    if bench_image is None:  # a landscape 768×512 image of the set, else the synthetic one
        from PIL import Image

        bench_image = next((str(p) for p in list_images(data) if Image.open(p).size == (768, 512)), None)
    bench = run_bench(bench_image, large=True, pixel=True)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(results_page(results_markdown(result, assets, page), bench_markdown(bench)))
    print(f"wrote {page}, {assets / 'kodak_curves.json'}, {assets / 'kodak_dp_curves.png'}; "
          "the model card: python tools/model_card.py")
    return page


def results_page(results: str, bench: str) -> str:
    return ("# Results\n\nGenerated by `dpexplorer report --data ../shared/kodak`; do not edit by hand.\n\n"
            f"## Kodak, every decoder\n\n{results}\n\n## Speed and memory\n\n{bench}\n")

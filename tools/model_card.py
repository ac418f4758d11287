"""Writes the model card, weights/README.md, from weights/manifest.json and the recipes it points to.

    python tools/model_card.py            # after an export or `dpexplorer eval codec --update-manifest`
    python tools/model_card.py --check    # is the card up to date? (the tests ask)

Documentation, not package code: the exports and the evaluation update the manifest only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dpexplorer.hub.manifest import manifest, weights_dir
from dpexplorer.training.common import load_recipe


def _ablation_table(file: str, runs: list[dict]) -> list[str]:
    """Stage-1 validations (base decoder → auxiliary latent) of the runs recorded with a latent model."""
    lines = ["", f"## {file}: stage-1 loss weights (held-out photos, g_s(ŷ) → g_s(ŷ'))", "",
             "`codec`: the codec weights the run was trained on (SHA-256 prefix); rows of earlier exports "
             "(other codec weights, or runs whose folders are gone) are kept.", "",
             "| run | codec | aux steps | w_mse | w_lpips | w_adv | rate slack | bpp | PSNR | LPIPS | FLIP | HF ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        w, b, a = r["weights"], r["holdout"]["base"], r["holdout"]["aux"]

        def pair(k, fmt):
            return f"{format(b[k], fmt)} → {format(a[k], fmt)}"

        run = r["run"] + (" (shipped)" if r.get("shipped") else "")
        codec = f"`{r['codec_sha256'][:12]}…`" if r.get("codec_sha256") else "–"
        lines.append(f"| {run} | {codec} | {r['aux_steps']} | {w['w_mse']} | {w['w_lpips']} | {w['w_adv']} | {w['rate_slack']} | "
                     f"{pair('bpp', '.3f')} | {pair('psnr', '.2f')} | {pair('lpips', '.3f')} | "
                     f"{pair('flip', '.3f')} | {pair('hf_ratio', '.2f')} |")
    return lines


def _steps(training: dict) -> str:
    """Training steps; a latent module's as stage 1 (auxiliary encoder) + stage 2 (denoiser)."""
    if "diffusion_steps" in training:
        return f"{training.get('aux_steps', '–')} + {training['diffusion_steps']}"
    return str(training.get("steps", "–"))


def recipe_line(entry: dict, home: Path) -> str:
    """`- file: recipes/x.toml — what it sets`, read from the recipe itself (its phases in order)."""
    path = home / entry["recipe"]
    if not path.is_file():
        return f"- {entry['file']}: `{entry['recipe']}` (missing)"
    recipe = load_recipe(path)

    def values(table):
        return ", ".join(f"{k} {v}" for k, v in table.items() if k not in ("data", "quality", "arch"))

    phases = " → ".join(f"({values(p)})" for p in recipe.get("phase", []))
    return (f"- {entry['file']}: `{entry['recipe']}` (`{recipe.get('command', 'dpexplorer train')} --recipe "
            f"{entry['recipe']}`): {values(recipe.get('config', {}))}" + (f"; phases {phases}" if phases else ""))


def render_model_card(directory: Path) -> str:
    """weights/README.md from the manifest (data, steps, wall time, measured metrics) and the recipes."""
    models = manifest(directory)["models"]
    lines = ["# Model card: shipped weights", "",
             "Generated from `manifest.json` and `recipes/` by `python tools/model_card.py`; the Kodak numbers "
             "are measured on the shipped files by `dpexplorer report` (or `dpexplorer eval codec "
             "--update-manifest`).", "",
             "All models were trained here (no pretrained weights were available), on the 2-core CPU except "
             "where a note below names a borrowed GPU, on "
             "`shared/train_photos/` (584 photos: BSDS500, Sun-Hays 80, 4 of Urban100; research/training use "
             "only). Kodak was used for evaluation only.", "",
             "| file | kind | arch | q | λ | steps | wall (h) | Kodak bpp | PSNR | MS-SSIM | LPIPS | SHA-256 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in sorted(models.items()):
        t, ev = e.get("training", {}), e.get("eval", {})

        def f(key, fmt):
            return format(ev[key], fmt) if key in ev else "–"

        lines.append(f"| {e['file']} | {e.get('kind')} | {e.get('arch')} | {e.get('quality')} | {e.get('lambda', '–')} | "
                     f"{_steps(t)} | {t.get('wall_hours', '–')} | {f('bpp', '.4f')} | "
                     f"{f('psnr', '.2f')} | {f('ms_ssim', '.4f')} | {f('lpips', '.4f')} | `{e['sha256'][:12]}…` |")
    if recipes := [recipe_line(e, directory.parent) for _, e in sorted(models.items()) if e.get("recipe")]:
        lines += ["", "## Recipes", "", "What each model was trained with; each phase resumes the one before.", "",
                  *recipes]
    notes = [f"- {e['file']}: {e['training']['notes']}" for e in models.values() if e.get("training", {}).get("notes")]
    notes += [f"- {e['file']}: its g_s (the plain decoder) refit to the rounded ŷ, {r['steps']} steps "
              f"(`{r['recipe']}`, {r['device']}); the bitstream is unchanged (latent SHA-256 "
              f"`{e['latent_sha256'][:12]}…`), and `.dpx` files of the replaced file `{r['replaced_sha256'][:12]}…` "
              f"still decode" for e in models.values() if (r := e.get("plain_refit"))]
    notes += [f"- {e['file']}: float16 kernels vs the float32 checkpoint on {len(c['images'])} images: "
              f"ΔPSNR {c['mean_delta_psnr_db']:+.4f} dB, Δbpp {c['mean_delta_bpp']:+.5f}"
              for e in models.values() if (c := e.get("fp16_check"))]
    if notes:
        lines += ["", "## Notes", *notes]
    for e in models.values():
        if runs := e.get("training", {}).get("ablation"):
            lines += _ablation_table(e["file"], runs)
    lines += ["", "Storage: safetensors; convolution kernels in float16, entropy-model parameters, CDF tables "
              "and GDN parameters in float32. Loading checks each file's SHA-256 against the manifest."]
    return "\n".join(lines) + "\n"


def write_model_card(directory: Path) -> Path:
    path = directory / "README.md"
    path.write_text(render_model_card(directory))
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the one the package uses)")
    p.add_argument("--check", action="store_true", help="only say whether README.md is up to date (exit 1 if not)")
    args = p.parse_args(argv)
    directory = args.weights or weights_dir()
    if args.check:
        current = (directory / "README.md").read_text() if (directory / "README.md").is_file() else ""
        if current != render_model_card(directory):
            print(f"{directory / 'README.md'} is out of date: run python tools/model_card.py", file=sys.stderr)
            return 1
        return 0
    print(f"wrote {write_model_card(directory)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

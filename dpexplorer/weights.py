"""Shipped weights: safetensors files listed in `weights/manifest.json` and verified by SHA-256.

Each manifest entry names its file, hash, kind ("codec", "latent" …), architecture, quality, λ,
training data and measured Kodak metrics. Nothing here unpickles: safetensors holds tensors only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dpexplorer.errors import WeightsError

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "manifest.json"


def weights_dir() -> Path:
    """`$DPEXPLORER_WEIGHTS` if set, else the repository's `weights/`."""
    return Path(os.environ.get("DPEXPLORER_WEIGHTS") or REPO_ROOT / "weights")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(directory: Path | None = None) -> dict:
    path = (directory or weights_dir()) / MANIFEST
    if not path.is_file():
        return {"models": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc})") from None


def save_manifest(manifest: dict, directory: Path | None = None) -> None:
    path = (directory or weights_dir()) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def model_name(kind: str, arch: str, quality: int) -> str:
    return f"{kind}-{arch}-q{quality}"


def find_entry(kind: str, arch: str | None, quality: int, directory: Path | None = None) -> tuple[str, dict]:
    """The manifest entry of (kind, arch, quality); `arch=None` takes whichever is shipped."""
    models = load_manifest(directory)["models"]
    for name, entry in sorted(models.items()):
        if entry.get("kind") == kind and entry.get("quality") == quality and arch in (None, entry.get("arch")):
            return name, entry
    shipped = sorted(f"{e.get('arch')} q{e.get('quality')}" for e in models.values() if e.get("kind") == kind)
    raise WeightsError(f"no shipped {kind} weights for {arch or 'any architecture'} q{quality} "
                       f"(shipped: {', '.join(shipped) or 'none'})")


def load_weights(entry: dict, directory: Path | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a manifest entry, checked against its SHA-256, cast back to float32."""
    path = (directory or weights_dir()) / entry["file"]
    if not path.is_file():
        raise WeightsError(f"weights file missing: {path}")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise WeightsError(f"{path.name}: SHA-256 {digest[:12]}… does not match the manifest's "
                           f"{entry['sha256'][:12]}… (corrupted or replaced file)")
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise WeightsError(f"{path.name}: not a readable safetensors file ({exc})") from None
    return {k: (v.float() if v.dtype == torch.float16 else v) for k, v in state.items()}


def save_weights(state: dict[str, torch.Tensor], name: str, meta: dict, fp16=lambda key: False,
                 directory: Path | None = None) -> dict:
    """Write `name.safetensors` (float32 tensors whose key passes `fp16` stored as float16) + manifest entry."""
    directory = directory or weights_dir()
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        if v.dtype == torch.float32 and fp16(k):
            v = v.half()
        out[k] = v
    path = directory / f"{name}.safetensors"
    save_file(out, str(path))
    path.chmod(0o644)
    manifest = load_manifest(directory)
    recipe = manifest["models"].get(name, {}).get("recipe")  # a re-export keeps the recipe it points to
    entry = {**({"recipe": recipe} if recipe else {}), **meta, "file": path.name, "sha256": sha256_file(path),
             "bytes": path.stat().st_size}
    manifest["models"][name] = entry
    save_manifest(manifest, directory)
    return entry


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


def write_model_card(directory: Path | None = None) -> Path:
    """weights/README.md, generated from the manifest (data, steps, wall time, measured metrics)."""
    directory = directory or weights_dir()
    models = load_manifest(directory)["models"]
    lines = ["# Model card: shipped weights", "",
             "Generated from `manifest.json` by `dpexplorer.weights.write_model_card()`; the Kodak numbers are "
             "measured on the shipped files by `dpexplorer report` (or `dpexplorer eval codec "
             "--update-manifest`).", "",
             "All models were trained here from scratch on CPU (no pretrained weights were available), on "
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
    notes = [f"- {e['file']}: {e['training']['notes']}" for e in models.values() if e.get("training", {}).get("notes")]
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
    path = directory / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path

"""The shipped weight files: safetensors, verified by SHA-256 against their manifest entry.

Nothing here unpickles: safetensors holds tensors only. Writing a file also writes its manifest entry
(`hub/manifest.py`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dpexplorer.errors import WeightsError
from dpexplorer.hub.manifest import load_manifest, save_manifest, weights_dir


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
                 *, directory: Path | None = None) -> dict:
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
    records = load_manifest(directory)
    recipe = records["models"].get(name, {}).get("recipe")  # a re-export keeps the recipe it points to
    entry = {**({"recipe": recipe} if recipe else {}), **meta, "file": path.name, "sha256": sha256_file(path),
             "bytes": path.stat().st_size}
    records["models"][name] = entry
    save_manifest(records, directory)
    return entry

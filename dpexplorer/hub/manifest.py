"""Where the shipped weights live, and their list: `weights/manifest.json` (the files: `hub/files.py`).

Each manifest entry names its file, hash, kind ("codec", "latent" …), architecture, quality, λ,
training data and measured Kodak metrics.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from pathlib import Path

from dpexplorer.errors import WeightsError

MANIFEST = "manifest.json"
_CHECKOUT = Path(__file__).resolve().parents[2]  # the repository, when the package runs from a clone


def data_home() -> Path:
    """The folder holding `weights/` and `assets/`: a checkout of the repository.

    `$DPEXPLORER_HOME` if set; else the checkout the package was imported from (a clone, or an
    editable install); else the current folder if it holds `weights/manifest.json` (`pip install .`,
    then commands run in the clone). The weights (~82 MB) are not package data: a non-editable install
    finds them through one of these."""
    if home := os.environ.get("DPEXPLORER_HOME"):
        return Path(home).expanduser()
    for candidate in (_CHECKOUT, Path.cwd()):
        if (candidate / "weights" / MANIFEST).is_file():
            return candidate
    return _CHECKOUT


def weights_dir() -> Path:
    """`$DPEXPLORER_WEIGHTS` if set, else `weights/` of `data_home()`."""
    return Path(os.environ.get("DPEXPLORER_WEIGHTS") or data_home() / "weights")


def manifest(directory: Path | None = None) -> dict:
    """The manifest, read once per change of the file (every load and render looks it up): shared,
    do not modify it (`load_manifest` gives a copy to edit)."""
    path = (directory or weights_dir()) / MANIFEST
    try:
        stat = path.stat()
    except OSError:
        return {"models": {}}
    return _read_manifest(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _read_manifest(path: str, mtime_ns: int, size: int) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc})") from None


def load_manifest(directory: Path | None = None) -> dict:
    """A copy of the manifest, to edit and `save_manifest`."""
    return copy.deepcopy(manifest(directory))


def save_manifest(records: dict, directory: Path | None = None) -> None:
    path = (directory or weights_dir()) / MANIFEST
    path.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    _read_manifest.cache_clear()  # another process's edit is seen by its mtime and size


def model_name(kind: str, arch: str, quality: int) -> str:
    return f"{kind}-{arch}-q{quality}"


def find_entry(kind: str, arch: str | None, quality: int, directory: Path | None = None) -> tuple[str, dict]:
    """The manifest entry of (kind, arch, quality); `arch=None` takes whichever is shipped."""
    models = manifest(directory)["models"]
    for name, entry in sorted(models.items()):
        if entry.get("kind") == kind and entry.get("quality") == quality and arch in (None, entry.get("arch")):
            return name, entry
    path = (directory or weights_dir()) / MANIFEST
    if not path.is_file():
        raise WeightsError(f"no weights found ({path} does not exist): set DPEXPLORER_HOME to a DP Explorer "
                           "checkout (the folder holding weights/), or DPEXPLORER_WEIGHTS to its weights folder")
    shipped = sorted(f"{e.get('arch')} q{e.get('quality')}" for e in models.values() if e.get("kind") == kind)
    raise WeightsError(f"no shipped {kind} weights for {arch or 'any architecture'} q{quality} "
                       f"(shipped: {', '.join(shipped) or 'none'})")

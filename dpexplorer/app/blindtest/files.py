"""Files the blind test hands to Gradio (the pair's PNGs, the CSV downloads) when the host app
does not write them itself: under <tmp>/dpexplorer-blindtest (Gradio serves the temp folder), one
folder per session, swept once idle for an hour.

Names are random: a file's name must not tell which decoder made it (the labels are hidden)."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from dpexplorer.io.images import save_png

ROOT = Path(tempfile.gettempdir()) / "dpexplorer-blindtest"
MAX_AGE_S = 3600
SWEEP_EVERY_S = 300
_last_sweep = 0.0
_lock = threading.Lock()


def session_folder(session_key: str) -> Path:
    # The key comes from the client: hashed, so it can never name a path outside ROOT.
    folder = ROOT / hashlib.sha256(session_key.encode()).hexdigest()[:24]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sweep(max_age_s: float = MAX_AGE_S, *, force: bool = False) -> int:
    """Remove session folders untouched for `max_age_s`, at most every SWEEP_EVERY_S; how many."""
    global _last_sweep
    with _lock:
        now = time.time()
        if not force and now - _last_sweep < SWEEP_EVERY_S:
            return 0
        _last_sweep, removed = now, 0
        for p in ROOT.glob("*") if ROOT.is_dir() else []:
            try:
                if now - p.stat().st_mtime > max_age_s:
                    shutil.rmtree(p)
                    removed += 1
            except OSError:  # gone meanwhile: nothing to do
                pass
        return removed


def write_png(image: np.ndarray, session_key: str) -> str:
    sweep()
    return str(save_png(image, session_folder(session_key) / f"{uuid.uuid4().hex}.png", compress_level=1))


def write_download(data: bytes, session_key: str, name: str) -> str:
    """`data` as a file called `name` (the name the browser saves), in a fresh folder of the session."""
    sweep()
    folder = session_folder(session_key) / uuid.uuid4().hex
    folder.mkdir()
    path = folder / name
    path.write_bytes(data)
    return str(path)

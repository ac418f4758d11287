"""The app's files on disk: one folder per session under OUT_DIR, removed when the tab closes and swept
once untouched for MAX_AGE_S (sessions that never say goodbye: API clients, crashed browsers)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from dpexplorer.io.images import save_png

# Every file the app writes lives in OUT_DIR/<session>/: removed when the session's tab closes
# (demo.unload) and, for sessions that never say goodbye (API clients, crashed browsers), swept once
# untouched for MAX_AGE_S, at start and then at most every SWEEP_EVERY_S.
OUT_DIR = Path(os.environ.get("DPEXPLORER_APP_TMP", Path(tempfile.gettempdir()) / "dpexplorer-app"))
MAX_AGE_S = 3600
SWEEP_EVERY_S = 300
_last_sweep = 0.0
_sweep_lock = threading.Lock()


def session_dir(request) -> Path:
    # The session hash comes from the client: hashed, so it can never name a path outside OUT_DIR.
    key = getattr(request, "session_hash", None) or "shared"
    return OUT_DIR / hashlib.sha256(key.encode()).hexdigest()[:24]


def out_path(request, suffix: str) -> Path:
    """A new file name in this session's folder (created, and marked as in use)."""
    sweep()
    d = session_dir(request)
    d.mkdir(parents=True, exist_ok=True)
    os.utime(d)  # a session in use is never swept
    return d / f"{uuid.uuid4().hex}{suffix}"


def write_png(request, image: np.ndarray) -> str:
    """`image` as a PNG of this session, fastest lossless level. Images go to Gradio as files, never
    as arrays: Gradio writes arrays to a content-named cache file in place, so two sessions showing
    the same pixels (the same example photo) could truncate the file while the other downloads it
    (found by tests/e2e/test_load.py); files it copies atomically."""
    return str(save_png(image, out_path(request, ".png"), compress_level=1))


def write_file(request, data: bytes, name: str) -> str:
    """`data` as a file called `name` (the name a browser saves it under) in a fresh folder of this session."""
    folder = out_path(request, "")
    folder.mkdir()
    path = folder / name
    path.write_bytes(data)
    return str(path)


def cached_png(enc, name: str, image: np.ndarray, request) -> str:
    """A PNG written once per bitstream (codec decoder, original, same-size baselines)."""
    path = enc._pngs.get(name)
    if path is None or not os.path.isfile(path):  # swept after an idle hour: written again
        path = enc._pngs[name] = write_png(request, image)
    return path


def sweep(max_age_s: float = MAX_AGE_S, force: bool = False) -> int:
    """Remove session folders (and stray files) of OUT_DIR untouched for `max_age_s`; how many."""
    global _last_sweep
    with _sweep_lock:
        now = time.time()
        if not force and now - _last_sweep < SWEEP_EVERY_S:
            return 0
        _last_sweep, removed = now, 0
        for p in OUT_DIR.glob("*") if OUT_DIR.is_dir() else []:
            try:
                if now - p.lstat().st_mtime > max_age_s:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                    removed += 1
            except OSError:  # gone meanwhile, or busy: the next sweep tries again
                pass
        return removed


def end_session(request):
    shutil.rmtree(session_dir(request), ignore_errors=True)

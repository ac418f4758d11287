"""Helpers shared by the three test levels (unit/, integration/, e2e/): the repository and the shared
data, skipping without them, a free port, the app served on it, and small models built the same
way in several tests. Fixtures live in conftest.py; `pythonpath = ["tests"]` makes this importable."""

import os
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DPEXPLORER_SHARED", REPO.parent / "shared"))
KODAK = SHARED / "kodak"
LPIPS_REF = SHARED / "lpips_reference"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def random_photos(folder: Path, *, height: int, width: int, count: int = 2, prefix: str = "p") -> Path:
    """`folder` holding `count` random 8-bit RGB PNGs of height × width (a training or evaluation set)."""
    import numpy as np

    from dpexplorer.io.images import save_png

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        save_png(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), folder / f"{prefix}{i}.png")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_app(mp, weights_dir: Path, out_dir: Path):
    """The app on 127.0.0.1 with `weights_dir`'s models, writing its files to `out_dir`; yields its URL."""
    mp.setenv("DPEXPLORER_WEIGHTS", str(weights_dir))
    from dpexplorer.app import handlers, housekeeping, layout

    mp.setattr(housekeeping, "OUT_DIR", out_dir)  # not the real /tmp/dpexplorer-app
    demo = layout.build_demo()
    port = free_port()
    layout.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        handlers.wait_for_work()


def decode_with_threads(codec, data, threads):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        return codec.decode(data)
    finally:
        torch.set_num_threads(before)


TINY_PIXEL = dict(space_to_depth=4, width=16, mults=(1, 2), blocks=1)


def tiny_pixel_denoiser(prediction_type="sample", seed=0):
    from dpexplorer.decoders.pixel.denoiser import PixelDenoiser

    torch.manual_seed(seed)
    den = PixelDenoiser(24, prediction_type=prediction_type, **TINY_PIXEL)
    torch.nn.init.normal_(den.out.weight, std=0.05)  # untrained but not the zero residual of a fresh init
    den.residual_scale.fill_(0.05)
    return den


def load_tool(name: str):
    """tools/NAME.py (a script, not part of the package), as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_card_tool():
    return load_tool("model_card")


def short_y_string_dpx(weights_dir, photo) -> bytes:
    """The issue's crash: a ŷ string of 12 bytes, container checksum recomputed."""
    import dataclasses

    from dpexplorer.hub.loading import load_codec
    from dpexplorer.io.bitstream import Bitstream

    bs = Bitstream.from_bytes(load_codec(1, directory=weights_dir).encode(photo))
    return dataclasses.replace(bs, strings=(bs.strings[0][:12].ljust(12, b"\x00"), bs.strings[1])).to_bytes()

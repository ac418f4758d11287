"""Pieces every training loop shares: device/DDP set-up, logging, safe checkpoints."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist


def setup_device(threads: int | None = None):
    """(device, rank, world_size). Under `torchrun` joins the process group (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if threads:  # also on a GPU: several processes with a thread per core each stall in OpenMP spin-waits
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
        if not threads:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


class TrainLogger:
    """Appends timestamped lines to a log file and echoes them to stdout."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        with open(self.path, "a") as f:
            f.write(line + "\n")
        print(line, file=sys.stdout, flush=True)


def atomic_save(obj, path: Path) -> None:
    """torch.save through a temporary file, so a kill mid-write never leaves a broken checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device="cpu"):
    """Our own training checkpoints: tensors and plain containers only (weights_only, no pickle code)."""
    return torch.load(path, map_location=device, weights_only=True)


def resume(path: Path, device, parts: dict) -> tuple[int, float]:
    """Load each of `parts` (name → module or optimiser) from the checkpoint at `path`, if there is one;
    (step, wall seconds) to go on from, (0, 0.0) for a fresh run."""
    if not Path(path).exists():
        return 0, 0.0
    state = load_checkpoint(path, device)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    return state["step"], state.get("wall_s", 0.0)  # early stage-2 checkpoints had no wall time

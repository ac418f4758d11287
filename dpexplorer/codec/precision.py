"""bf16 where it pays: on CPUs with AMX tiles, oneDNN's bf16 convolutions in channels-last layout run a
forward and backward pass of g_s 3.9× faster than fp32 at 768×512 on one core (1.35× from the layout
alone; docs/log/2026-12-07-bf16-on-amx.md). Elsewhere bf16 is emulated and slower, so callers stay fp32.

Only searches and trainings use it (the encoder's latent refinement, `--bf16` trainings); every decode, and
every number that reaches a bitstream, stays fp32."""

from __future__ import annotations

import contextlib

import torch


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast is faster than fp32 on `device`: a CPU with AMX tiles."""
    is_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x: absent means no
    return device.type == "cpu" and is_amx is not None and bool(is_amx())


def fast_autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on `device` where it is fast (`bf16_is_fast`), else a no-op context."""
    if enabled and bf16_is_fast(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

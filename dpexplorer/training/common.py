"""Pieces every training loop shares: device/DDP set-up, logging, safe checkpoints, and the flags and
recipes derived from a config dataclass."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import tomllib
import typing
from typing import ClassVar
from dataclasses import MISSING, dataclass, field, fields
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
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: let cuDNN pick its fastest kernels
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


# ---- configs as the single source of defaults, flags and recipes ----------------------------------
# Every field of a training config dataclass is a flag (`--field-name`; help, choices and short
# aliases from the field's metadata, as Hugging Face's HfArgumentParser reads them). A recipe
# (`recipes/*.toml`) holds what a shipped model was trained with: `[config]` sets fields and each
# `[[phase]]` (optional) overrides some of them for one run that resumes the previous one. The
# precedence is: dataclass default < recipe < phase < a flag given on the command line.
RECIPE_KEYS = {"model", "command", "config", "phase"}
LAUNCH_KEYS = {"ranks"}  # how a run was launched (DDP ranks), in [config] or a phase; not a config field


@dataclass
class RunConfig:
    """What every per-quality training run of a decoder module has (each field is a flag)."""

    run_kind: ClassVar[str] = "run"  # the run folder's prefix
    data: str
    quality: int = field(metadata={"aliases": ["-q"]})  # as `dpexplorer encode -q`
    run_name: str = "main"
    arch: str | None = None
    workdir: str = "~/.cache/dpexplorer/train"
    steps: int = 100000
    minutes: float | None = None  # wall-time budget of this call; ends at `steps` or here
    batch: int = 8
    crop: int = 128

    def run_dir(self) -> Path:
        return Path(os.path.expanduser(self.workdir)) / f"{self.run_kind}-q{self.quality}-{self.run_name}"

    def within_budget(self, step: int, started: float) -> bool:
        """Whether this call may take another step: below `steps`, and within `minutes` of `started`."""
        return step < self.steps and not (self.minutes and time.time() - started > 60 * self.minutes)

    def call_progress(self, step: int, first_step: int, started: float) -> float:
        """Share of this call's budget done: of the steps left at its start (`first_step`), or of its
        wall-time budget `minutes` since `started` if that ends first."""
        frac = (step - first_step) / max(1, self.steps - first_step)
        if self.minutes:
            frac = max(frac, (time.time() - started) / (60 * self.minutes))
        return min(frac, 1.0)


def cosine_lr(lr: float, lr_min: float, progress: float) -> float:
    """Cosine decay from `lr` to `lr_min` over `progress` ∈ [0, 1]."""
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * min(progress, 1.0)))


class RunningMeans:
    """Means of a training loop's losses, logged every `every` steps as `describe(means)` and the minutes
    since `t0`."""

    def __init__(self, log, describe, t0: float, every: int = 25):
        self.log, self.describe, self.t0, self.every = log, describe, t0, every
        self.sums, self.count = {}, 0

    def add(self, step: int, **values) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1
        if step % self.every == 0:
            self.flush(step)

    def flush(self, step: int) -> None:
        """Log the steps not logged yet (the end of a run)."""
        if self.count:
            means = {k: v / self.count for k, v in self.sums.items()}
            self.log(f"step {step} {self.describe(means)} {(time.time() - self.t0) / 60:.1f} min")
            self.sums, self.count = {}, 0


class Every:
    """Calls `action` once every `seconds` of wall time (the periodic checkpoint)."""

    def __init__(self, seconds: float, action):
        self.seconds, self.action, self.last = seconds, action, time.time()

    def tick(self) -> None:
        if time.time() - self.last > self.seconds:
            self.action()
            self.last = time.time()


# a run's bookkeeping, not how the model was trained: left out of an export's `training.config`
RUN_ONLY_KEYS = ("data", "workdir", "run_name", "threads", "minutes", "steps", "checkpoint_every_s",
                 "snapshot_every_s", "init_from")  # init_from: a path on the machine that ran it (recipes say what)


def training_settings(config: dict) -> dict:
    """A checkpoint's run config without the run's bookkeeping (what the manifest records of the recipe)."""
    return {k: v for k, v in config.items() if k not in RUN_ONLY_KEYS}


def training_record(state: dict, notes: str = "") -> dict:
    """What an export's manifest entry records of the run behind a checkpoint: data, steps, wall time,
    the recipe's settings and free notes."""
    cfg = state["config"]
    return {"data": cfg["data"], "steps": int(state["step"]), "wall_hours": round(float(state["wall_s"]) / 3600, 3),
            "config": training_settings(cfg), "notes": notes}


def conv_kernels(state: dict):
    """`save_weights`'s fp16 rule: convolution kernels (4-D weights) in float16, everything else float32."""
    return lambda key: key.endswith(".weight") and state[key].ndim == 4


def psnr_of(mse: float) -> float:
    return -10 * math.log10(max(mse, 1e-10))


def _field_type(config_cls, f):
    tp = typing.get_type_hints(config_cls)[f.name]
    return next((a for a in typing.get_args(tp) if a is not type(None)), tp)  # X | None → X


def add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    """One flag per field of `config_cls`, plus `--recipe`. Nothing is stored unless given, so that a
    recipe can sit between the dataclass defaults and the command line (see `configs_from_args`)."""
    parser.add_argument("--recipe", default=None,
                        help="a recipes/*.toml file: what a shipped model was trained with; a flag given here "
                             "overrides it in every phase")
    for f in fields(config_cls):
        meta, base = f.metadata, _field_type(config_cls, f)
        names = ["--" + f.name.replace("_", "-"), *meta.get("aliases", ())]
        default = "required" if f.default is MISSING else None if f.default is None else f"default {f.default}"
        text = ", ".join(filter(None, [meta.get("help"), default]))
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": text or None}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = base
            if "choices" in meta:
                kwargs["choices"] = meta["choices"]
        parser.add_argument(*names, **kwargs)


def load_recipe(path: str | Path) -> dict:
    """A recipe file, checked for unknown top-level keys (its fields are checked against a config)."""
    path = Path(os.path.expanduser(str(path)))
    try:
        recipe = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    if unknown := set(recipe) - RECIPE_KEYS:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)} (a recipe has {sorted(RECIPE_KEYS)})")
    return recipe


def recipe_configs(config_cls, recipe: dict | None = None, overrides: dict | None = None) -> list:
    """The config of each phase of `recipe` (one config without phases), with `overrides` on top.

    A phase's `ranks` (it ran under `torchrun` on that many DDP ranks, `batch` per rank) keeps its
    global batch on any number of ranks: the batch per rank becomes batch·ranks / WORLD_SIZE."""
    recipe, overrides = recipe or {}, overrides or {}
    names = {f.name: f for f in fields(config_cls)}
    base = recipe.get("config", {})
    configs = []
    for phase in recipe.get("phase") or [{}]:
        values = {**base, **phase}
        if unknown := set(values) - set(names) - LAUNCH_KEYS:
            raise ValueError(f"recipe sets {sorted(unknown)}, which {config_cls.__name__} does not have")
        ranks = values.pop("ranks", None)
        values = {k: _coerce(config_cls, names[k], v) for k, v in values.items()} | overrides
        if ranks and "batch" not in overrides:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            values["batch"] = max(1, values.get("batch", names["batch"].default) * ranks // world)
        if missing := [n for n, f in names.items() if f.default is MISSING and n not in values]:
            raise ValueError(f"missing {', '.join('--' + n.replace('_', '-') for n in missing)} "
                             "(give it as a flag or in the recipe)")
        configs.append(config_cls(**values))
    return configs


def _coerce(config_cls, f, value):
    """A TOML value as the field's type (TOML writes 1 for 1.0); anything else is an error."""
    base = _field_type(config_cls, f)
    if base is float and type(value) is int:
        return float(value)
    if value is not None and type(value) is not base:
        raise ValueError(f"recipe: {f.name} = {value!r} is not a {base.__name__}")
    return value


def configs_from_args(args: argparse.Namespace, config_cls) -> list:
    """The phases to run for parsed flags (`add_config_arguments`): recipe, then the flags given."""
    given = {f.name: getattr(args, f.name) for f in fields(config_cls) if hasattr(args, f.name)}
    recipe = load_recipe(args.recipe) if getattr(args, "recipe", None) else None
    return recipe_configs(config_cls, recipe, given)

"""Rate–distortion training of the base codec (λ·255²·MSE + bpp), resumable, CPU/GPU/DDP.

Quantization during training (`--quantization`):
- "noise": CompressAI's relaxation, ŷ = y + U(−½, ½) for both the rate and the synthesis;
- "mixed" (default): the rate keeps the noise, but g_s sees what the decoder will get,
  ŷ = round(y − μ) + μ, with a straight-through gradient (Minnen & Singh, "Channel-wise
  autoregressive entropy models for learned image compression"; CompressAI's `quantize_ste`).

Checkpoints (model + both optimizers + step + wall time) go to `--workdir`, outside the repo;
`dpexplorer train export` turns one into shipped safetensors weights.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from compressai.losses import RateDistortionLoss

from dpexplorer.codec.config import DEFAULT_ARCH, build_model, codec_config
from dpexplorer.codec.hyperprior import hyper_analysis, quantize_around_means, scales_and_means
from dpexplorer.training.common import (TrainLogger, add_config_arguments, atomic_save, configs_from_args,
                                        cosine_lr, load_checkpoint, resume, setup_device)
from dpexplorer.training.data import CropSampler


@dataclass
class CodecTrainConfig:
    data: str = field(metadata={"help": "folder of training photos"})
    quality: int = field(metadata={"help": "quality 1..8 (sets λ)", "aliases": ["-q"]})
    arch: str = field(default=DEFAULT_ARCH, metadata={"help": "bmshj2018-hyperprior or mbt2018-mean"})
    workdir: str = field(default="~/.cache/dpexplorer/train", metadata={"help": "checkpoints and log (outside the repo)"})
    steps: int = 20000
    batch: int = field(default=8, metadata={"help": "crops per step (per rank under torchrun)"})
    crop: int = 128
    final_crop: int = 256  # larger crops for the last `final_crop_frac` of training
    final_crop_frac: float = 0.2
    lr: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    aux_lr: float = 1e-3
    lr_drop_frac: float = 0.9  # "step" schedule: lr ×0.1 from this fraction of training on
    lr_schedule: str = field(default="step", metadata={  # linear warm-up, cosine decay to lr_min
        "choices": ["step", "cosine"], "help": "step: ×0.1 from lr_drop_frac; cosine: warm-up, decay to lr_min"})
    warmup_steps: int = 0
    lr_min: float = field(default=1e-6, metadata={"help": "end of the cosine schedule"})
    quantization: str = field(default="mixed", metadata={  # see the module docstring
        "choices": ["mixed", "noise"], "help": "what g_s sees in training: rounded latent (mixed) or noisy (noise)"})
    minutes: float | None = field(default=None, metadata={  # training ends at `steps` or here, whichever first
        "help": "wall-time budget of this call (the schedule follows it); a checkpoint at the end"})
    init_from: str | None = field(default=None, metadata={
        "help": "checkpoint or shipped weights/*.safetensors to start from (e.g. another quality)"})
    checkpoint_every_s: float = field(default=300.0, metadata={"help": "seconds", "aliases": ["--checkpoint-every"]})
    seed: int = 0
    threads: int | None = None
    channels_last: bool = field(default=False, metadata={  # 22.1 → 19.6 ms per step on an H100 (codec-campaign)
        "help": "channels-last convolutions (faster on a GPU)"})

    @property
    def run_dir(self) -> Path:
        return Path(os.path.expanduser(self.workdir)) / f"codec-{self.arch}-q{self.quality}"


def _optimizers(model, cfg: CodecTrainConfig):
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    return torch.optim.Adam(main, lr=cfg.lr), torch.optim.Adam(aux, lr=cfg.aux_lr)


def learning_rate(cfg: CodecTrainConfig, step: int, progress: float) -> float:
    """The main optimiser's lr at `step`; `progress` ∈ [0, 1] is the share of the run done."""
    if cfg.lr_schedule == "cosine":
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        return cosine_lr(cfg.lr, cfg.lr_min, progress)
    if cfg.lr_schedule == "step":
        return cfg.lr * (0.1 if progress >= cfg.lr_drop_frac else 1.0)
    raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}")


class MixedQuantization(torch.nn.Module):
    """The codec's training forward with g_s fed the rounded latent (straight-through gradient).

    Same outputs as CompressAI's `forward` (x_hat and likelihoods), so `RateDistortionLoss` applies
    unchanged; the likelihoods still come from the noisy relaxation, which keeps the rate term smooth.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        m = self.model
        y = m.g_a(x)
        z_hat, z_likelihoods = m.entropy_bottleneck(hyper_analysis(m, y))
        scales, means = scales_and_means(m, z_hat)
        _, y_likelihoods = m.gaussian_conditional(y, scales, means=means)
        y_hat = quantize_around_means(y, means)
        return {"x_hat": m.g_s(y_hat), "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}


def train_codec(cfg: CodecTrainConfig) -> Path:
    if cfg.quantization not in ("mixed", "noise"):
        raise ValueError(f"unknown quantization {cfg.quantization!r}")
    device, rank, world = setup_device(cfg.threads)
    if device.type == "cuda":  # TF32 convolutions; the entropy model stays in float32 (no AMP)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed + rank)
    codec_cfg = codec_config(cfg.arch, cfg.quality)
    model = build_model(codec_cfg).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    opt, aux_opt = _optimizers(model, cfg)
    run_dir = cfg.run_dir
    ckpt_path = run_dir / "last.pt"
    log = TrainLogger(run_dir / "train.log", enabled=rank == 0)

    step, wall = resume(ckpt_path, device, {"model": model, "opt": opt, "aux_opt": aux_opt})
    if ckpt_path.exists():
        log(f"resumed from {ckpt_path} at step {step} ({wall / 3600:.2f} h)")
    elif cfg.init_from:
        source = Path(os.path.expanduser(cfg.init_from))
        if source.suffix == ".safetensors":  # shipped weights: how a fresh machine resumes training
            from safetensors.torch import load_file

            model.load_state_dict({k: v.float() for k, v in load_file(str(source), device=str(device)).items()})
            log(f"initialised from shipped weights {source}, training q{cfg.quality}")
        else:
            state = load_checkpoint(source, device)
            model.load_state_dict(state["model"])
            log(f"initialised from {source} (step {state['step']}), training q{cfg.quality}")
    log(f"config {asdict(cfg)} device={device} world={world}")
    model.to(memory_format=memory_format)

    train_model = MixedQuantization(model) if cfg.quantization == "mixed" else model
    prefix = "model." if cfg.quantization == "mixed" else ""
    ddp_model = train_model
    quantiles = {n: p for n, p in model.named_parameters() if n.endswith(".quantiles")}
    if world > 1:
        # The entropy bottleneck's quantiles only get gradients from the aux loss, which runs outside
        # DDP; DDP must not wait for them (their main-loss gradient is undefined). Averaged by hand below.
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            train_model, [prefix + n for n in quantiles])
        ddp_model = DistributedDataParallel(train_model)
    criterion = RateDistortionLoss(lmbda=codec_cfg.lmbda)
    samplers = {}

    def sampler_for(crop):
        if crop not in samplers:
            # the photos live on the training device, so crops are cut there (no host copy per step)
            samplers[crop] = CropSampler(cfg.data, crop, seed=cfg.seed * 1000 + rank + step, device=device)
        return samplers[crop]

    sampler_for(cfg.crop)  # load the photos before the wall-time budget starts
    last_ckpt = time.time()
    t0 = time.time() - wall
    session_start, session_step0 = time.time(), step
    running = {}
    model.train()

    def progress() -> float:
        """Share of the run done: by steps, or by this call's wall-time budget if that ends first."""
        frac = step / cfg.steps
        if cfg.minutes:
            frac = max(frac, (time.time() - session_start) / (60 * cfg.minutes))
        return frac

    while step < cfg.steps and progress() < 1.0:
        frac = progress()
        crop = cfg.final_crop if frac >= 1 - cfg.final_crop_frac else cfg.crop
        # Same pixels per step whatever the crop, so the step time stays flat.
        batch = max(1, cfg.batch * cfg.crop**2 // crop**2)
        lr = learning_rate(cfg, step - session_step0 if cfg.minutes else step, frac)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sampler_for(crop).batch(batch).contiguous(memory_format=memory_format)

        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        out = ddp_model(x)
        losses = criterion(out, x)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        aux_loss = model.aux_loss()
        aux_loss.backward()
        if world > 1:
            for q in quantiles.values():
                dist.all_reduce(q.grad)
                q.grad /= world
        aux_opt.step()
        step += 1

        for k in ("loss", "bpp_loss", "mse_loss"):  # summed on the device: no sync every step
            running[k] = running.get(k, 0.0) + losses[k].detach()
        if step % 50 == 0:
            n = 50
            running = {k: float(v) for k, v in running.items()}
            mse = running["mse_loss"] / n
            psnr = -10 * math.log10(max(mse, 1e-10))
            log(f"step {step} loss {running['loss'] / n:.4f} bpp {running['bpp_loss'] / n:.4f} "
                f"psnr {psnr:.2f} aux {float(aux_loss):.1f} lr {lr:.1e} crop {crop} "
                f"{(time.time() - t0) / 3600:.2f} h")
            running = {}
        now = time.time()
        if rank == 0 and (now - last_ckpt > cfg.checkpoint_every_s or step == cfg.steps or progress() >= 1.0):
            atomic_save({"model": model.state_dict(), "opt": opt.state_dict(),
                         "aux_opt": aux_opt.state_dict(), "step": step, "wall_s": now - t0,
                         "arch": cfg.arch, "quality": cfg.quality, "N": codec_cfg.N, "M": codec_cfg.M,
                         "data": str(cfg.data)}, ckpt_path)
            last_ckpt = now
    log(f"done: {step} steps in {(time.time() - t0) / 3600:.2f} h")
    if world > 1:
        dist.destroy_process_group()
    return ckpt_path


def add_arguments(parser) -> None:
    add_config_arguments(parser, CodecTrainConfig)


def configs_from(args) -> list[CodecTrainConfig]:
    """The runs to make, in order: one, or each phase of `--recipe` (each resumes the one before)."""
    return configs_from_args(args, CodecTrainConfig)


if __name__ == "__main__":  # what torchrun starts (DDP)
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    for phase in configs_from(p.parse_args()):
        train_codec(phase)

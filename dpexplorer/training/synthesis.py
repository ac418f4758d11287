"""Fine-tuning a perceptual synthesis transform θ₁ on the frozen codec's ŷ.

A copy of the codec's g_s learns, from exactly the ŷ = round(y − μ) + μ the decoder gets (g_a, the
hyperprior and the entropy model frozen, so the bitstream does not change),

    w_mse·λ·255²·MSE + w_lpips·LPIPS + w_adv·(non-saturating GAN loss of a PatchGAN)

as in "High-Fidelity Generative Image Compression" (HiFiC), but starting from θ₀ so that
`dpexplorer.decoders.synthesis.InterpolatedSynthesis` can blend the weights along τ ("ESRGAN: Enhanced
Super-Resolution Generative Adversarial Networks", network interpolation).

Three choices against invented grain on smooth content (the earlier probes' τ = 1 overshot the
original's high-frequency energy on non-Kodak photos); docs/log/synthesis-probe.md measures them — the
hinge `w_hf` is what worked, the conditioned D made things worse (off by default):
- multi-scale crops: each crop comes from the photo downscaled by a random factor in
  [`min_scale`, 1] (antialiased), so smooth, low-detail content is common in training;
- `disc_cond`: the discriminator also sees g_s0(ŷ) (the plain decode, image resolution) as three
  extra channels, so it judges texture *given* what the latent says, as HiFiC's conditional D
  does with ŷ: grain on a region that ŷ says is flat is easy to call fake;
- `w_hf`: a hinge on each crop's high-frequency energy above the original's (`hf_overshoot`).

A fourth, `w_grain`, is the smooth-area grain itself as a loss (the grain guard's hinge, on each crop's
smoother half of 16-px patches): from the shipped θ₁ it removed the grain on every set while keeping
most of the LPIPS gain (docs/log/2026-12-08-theta1-against-grain.md).

With `w_lpips`, `w_adv` and `w_hf` at 0 (their networks are then skipped) the same loop refits the
*plain* decoder to the rounded ŷ: the shipped codecs' g_s was trained on the noise relaxation and is
not MSE-optimal for what it decodes (docs/synthesis.md, "PSNR monotonicity").

    python -m dpexplorer.training.synthesis --data /work/shared/train_photos --quality 1 \
        --run-name probe --minutes 35 --threads 1

Checkpoints (θ₁, D, both optimisers, step, wall time) and the log go to
~/.cache/dpexplorer/train/synthesis-q{q}-{run}/, every `checkpoint_every_s`; `theta1.pt` there
holds θ₁ alone (what the evaluation loads).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from dpexplorer.codec.precision import bf16_is_fast, fast_autocast
from dpexplorer.training.common import (Every, RunConfig, RunningMeans, TrainLogger, add_config_arguments, atomic_save,
                                        configs_from_args, load_checkpoint, psnr_of, resume, setup_device)
from dpexplorer.training.data import MultiScaleCropSampler
from dpexplorer.training.discriminator import PatchDiscriminator, discriminator_step, generator_loss
from dpexplorer.training.guard import grain_hinge
from dpexplorer.training.latent import latent_and_rate


@dataclass
class SynthesisTrainConfig(RunConfig):
    run_kind: ClassVar[str] = "synthesis"
    min_scale: float = 0.5  # crops from the photo downscaled by U[min_scale, 1]; 1 = no rescaling
    lr: float = 5e-5
    disc_lr: float = 2e-4
    w_mse: float = 0.1  # relative to the codec's own λ·255²·MSE weighting
    w_lpips: float = 1.0
    w_adv: float = 0.1
    disc_cond: bool = False  # D also sees g_s0(ŷ); hurt in the probe (docs/log/synthesis-probe.md)
    w_hf: float = 0.3  # hinge on high-frequency energy above the original's (log ratio, per crop)
    hf_tile: int = 0  # > 0: the hinge per tile of this many px (grain on a flat patch of a busy crop), 0: per crop
    # the grain guard's hinge (`training.guard.grain_hinge`): patch energy above grain_cap × the original's on the
    # crop's `grain_share` of 16-px patches where the original is smoothest — the smooth-area grain as a loss,
    # which leaves texture alone where the original has it (the tile hinge held it back: docs/synthesis.md)
    w_grain: float = 0.0
    grain_cap: float = 1.2
    grain_share: float = 0.5
    init_from: str | None = None  # a θ (theta1.pt, or g_s safetensors) to start a fresh run from, not θ₀
    snapshot_every_s: float = 0.0  # > 0: also keep θ as theta1-{step}.pt this often (to pick a checkpoint later)
    checkpoint_every_s: float = 300.0
    seed: int = 0
    threads: int | None = None
    # θ₁ and D in channels-last under bf16 autocast where the CPU has AMX (codec/precision.py): 2× faster
    # steps on this project's CPU (docs/log/2026-12-07-bf16-on-amx.md); ŷ and the losses stay fp32.
    # Elsewhere (no AMX, a GPU) it changes nothing.
    bf16: bool = False


def hf_energy(x: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Per-crop luma energy above `cutoff` cycles/pixel (Hann window), as `metrics.hf_energy_ratio`
    measures it, but differentiable and batched; mean squared amplitude (Parseval)."""
    y = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device)[:, None, None]).sum(1)
    y = y - y.mean(dim=(1, 2), keepdim=True)
    h, w = y.shape[-2:]
    win = torch.outer(torch.hann_window(h, periodic=False, device=x.device),
                      torch.hann_window(w, periodic=False, device=x.device))
    spec = torch.fft.fft2(y * win).abs().square()
    fy, fx = torch.fft.fftfreq(h, device=x.device)[:, None], torch.fft.fftfreq(w, device=x.device)[None]
    mask = (fx.square() + fy.square()).sqrt() > cutoff
    return (spec * mask).sum(dim=(1, 2)) / (h * w) ** 2


def tiles(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) → (B·n, C, size, size): the crop cut into non-overlapping tiles (edges dropped)."""
    b, c, h, w = x.shape
    x = x[:, :, :h - h % size, :w - w % size].unfold(2, size, size).unfold(3, size, size)
    return x.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, size, size)


def hf_log_ratio(fake: torch.Tensor, real: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """log(E_hf(fake) / E_hf(real)) per crop, or per tile of `tile` px when > 0. The 8-bit quantisation
    step's energy keeps flat crops' ratio finite."""
    if tile:
        fake, real = tiles(fake, tile), tiles(real, tile)
    eps = (1 / 255) ** 2 / 12
    return torch.log((hf_energy(fake) + eps) / (hf_energy(real) + eps))


def hf_overshoot(fake: torch.Tensor, real: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """relu(log(E_hf(fake) / E_hf(real))): zero up to the original's high-frequency energy, so it
    lets texture come back but penalises grain invented beyond it (the issue's HF ratio > 1).
    `tile` > 0: per tile of that many px instead of per crop (grain on a flat patch of a busy crop)."""
    return F.relu(hf_log_ratio(fake, real, tile)).mean()


def hf_shortfall(fake: torch.Tensor, real: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """relu(log(E_hf(real) / E_hf(fake))): the mirror of `hf_overshoot`, zero from the original's
    high-frequency energy up, so it penalises blur (a regression to the mean) and nothing else."""
    return F.relu(-hf_log_ratio(fake, real, tile)).mean()


def conditional_discriminator(cond: bool) -> nn.Module:
    """The PatchGAN of the latent training, with 6 input channels (image, g_s0(ŷ)) when conditioned."""
    disc = PatchDiscriminator()
    if cond:
        first = disc.net[0]
        disc.net[0] = nn.utils.spectral_norm(nn.Conv2d(6, first.out_channels, 4, 2, 1))
    return disc


def contiguous_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights in the plain layout (a `--bf16` run trains channels-last; safetensors and the
    decoders take contiguous tensors)."""
    return {k: v.contiguous() for k, v in module.state_dict().items()}


def _describe(r: dict) -> str:
    """A log line's loss means."""
    return (f"psnr {psnr_of(r['mse']):.2f} lpips {r['lpips']:.4f} adv {r['adv']:.3f} d {r['d']:.3f} hf+ {r['hf']:.3f}"
            f" grain {r['grain']:.3f}")


def train_synthesis(cfg: SynthesisTrainConfig, codec=None) -> Path:
    """Fine-tune θ₁; returns the path of `theta1.pt` (resumes from the run folder's checkpoint)."""
    from dpexplorer.hub.loading import load_codec
    from dpexplorer.metrics.image import lpips_tensor

    if cfg.w_grain and cfg.crop % 16:
        raise ValueError(f"the grain hinge works on 16-px patches: crop must be a multiple of 16, got {cfg.crop}")
    device, _, _ = setup_device(cfg.threads)
    torch.manual_seed(cfg.seed)
    codec = codec or load_codec(cfg.quality, cfg.arch)
    model = codec.model.to(device).eval().requires_grad_(False)
    run_dir = cfg.run_dir()
    log = TrainLogger(run_dir / "train.log")
    ckpt, out = run_dir / "last.pt", run_dir / "theta1.pt"

    g_s1 = copy.deepcopy(model.g_s).train().requires_grad_(True)
    disc = conditional_discriminator(cfg.disc_cond).to(device)
    # β = (0.5, 0.9): the usual GAN setting, as in the probes
    opt = torch.optim.Adam(g_s1.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
    step, wall = resume(ckpt, device, {"g_s1": g_s1, "disc": disc, "opt": opt, "opt_d": opt_d})
    if step:
        log(f"resumed from {ckpt} at step {step} ({wall / 60:.1f} min)")
    elif cfg.init_from:
        g_s1.load_state_dict(load_theta1(cfg.init_from))
        log(f"initialised from {cfg.init_from}")
    log(f"config {asdict(cfg)} codec {codec.source} {codec.weights_sha256[:12]} device={device}")
    sampler = MultiScaleCropSampler(cfg.data, cfg.crop, cfg.min_scale, seed=cfg.seed * 1000 + step)
    k_mse = cfg.w_mse * codec.cfg.lmbda * 255**2
    # θ₁ learns from ŷ alone (its start θ₀ aside): it fits any codec file with the same latent model
    keys = {"codec_sha256": codec.weights_sha256, "latent_sha256": codec.latent_sha256}

    def d_in(img, base):
        return torch.cat([img, base], 1) if cfg.disc_cond else img

    def save():
        atomic_save({"g_s1": g_s1.state_dict(), "disc": disc.state_dict(), "opt": opt.state_dict(),
                     "opt_d": opt_d.state_dict(), "step": step, "wall_s": time.time() - t0,
                     "config": asdict(cfg), **keys}, ckpt)
        atomic_save({"g_s": contiguous_state(g_s1), "step": step, "config": asdict(cfg), **keys}, out)

    fast = cfg.bf16 and bf16_is_fast(device)
    if fast:
        g_s1.to(memory_format=torch.channels_last)
        disc.to(memory_format=torch.channels_last)
    elif cfg.bf16:
        log("bf16: not faster on this device (no AMX); training in fp32")
    layout = torch.channels_last if fast else torch.contiguous_format

    t0, session = time.time() - wall, time.time()
    means = RunningMeans(log, _describe, t0)
    checkpoints = Every(cfg.checkpoint_every_s, save)
    snapshots = Every(cfg.snapshot_every_s or float("inf"),
                      lambda: atomic_save({"g_s": contiguous_state(g_s1), "step": step, "wall_s": time.time() - t0},
                                          run_dir / f"theta1-{step}.pt"))
    while cfg.within_budget(step, session):
        x = sampler.batch(cfg.batch).to(device)
        with torch.no_grad():  # ŷ exactly as the decoder gets it (fp32), and the plain decode g_s0(ŷ)
            y_hat, _ = latent_and_rate(model, model.g_a(x))
            base = model.g_s(y_hat).clamp(0, 1) if cfg.disc_cond else None
        with fast_autocast(device, fast):
            x1 = g_s1(y_hat.contiguous(memory_format=layout)).float()
        fake = x1.clamp(0, 1)

        zero = torch.zeros((), device=device)
        d_loss = zero
        if cfg.w_adv:
            with fast_autocast(device, fast):
                d_loss = discriminator_step(disc, opt_d, d_in(x, base), d_in(fake, base))

        opt.zero_grad(set_to_none=True)
        mse = F.mse_loss(x1, x)
        # a zero weight skips its network: w_mse alone is the plain decoder's refit on rounded ŷ
        with fast_autocast(device, fast):
            lp = lpips_tensor(fake, x).float().mean() if cfg.w_lpips else zero
            adv = generator_loss(disc, d_in(fake, base)).float() if cfg.w_adv else zero
        hf = hf_overshoot(fake, x, cfg.hf_tile) if cfg.w_hf else zero
        grain = (grain_hinge(fake * 255, x * 255, cap=cfg.grain_cap, share=cfg.grain_share) if cfg.w_grain
                 else zero)
        loss = k_mse * mse + cfg.w_lpips * lp + cfg.w_adv * adv + cfg.w_hf * hf + cfg.w_grain * grain
        loss.backward()
        torch.nn.utils.clip_grad_norm_(g_s1.parameters(), 1.0)
        opt.step()
        step += 1
        means.add(step, mse=mse.detach(), lpips=lp.detach(), adv=adv.detach(), d=d_loss.detach(), hf=hf.detach(),
                  grain=grain.detach())
        checkpoints.tick()
        snapshots.tick()
    means.flush(step)
    save()
    log(f"done: {step} steps in {(time.time() - t0) / 60:.1f} min → {out}")
    return out


def load_theta1(path: str | Path) -> dict[str, torch.Tensor]:
    """g_s weights from a run's theta1.pt, or from a safetensors file of them (fp16 kernels → fp32)."""
    path = Path(os.path.expanduser(str(path)))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return {k: v.float() for k, v in load_file(str(path)).items()}
    return load_checkpoint(path)["g_s"]


# ---- CLI: every config field is a flag (training/common.py), `--recipe` a recipes/*.toml ----------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, SynthesisTrainConfig)


def configs_from(args) -> list[SynthesisTrainConfig]:
    """The runs to make, in order: one, or each phase of `--recipe` (each resumes the one before)."""
    return configs_from_args(args, SynthesisTrainConfig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    for cfg in configs_from(p.parse_args(argv)):
        train_synthesis(cfg)


if __name__ == "__main__":
    main()

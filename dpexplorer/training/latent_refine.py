"""The latent decoder's first step, trained as a refiner of θ₁'s image (the realism issue's item 3).

The shipped latent module samples a residual r̃ that moves θ₁'s image by little (at τ = 1 every sampler lands
within 0.02 dB and 0.002 LPIPS of θ₁ alone on Kodak): its target, the auxiliary encoder's latent, is
only a slightly better latent for θ₁. This fine-tuning gives the first step every sampler takes from noise
(t = 999; DDIM 1 is that step alone) an image-space objective instead, as the pixel decoder's first step
got one (`training/pixel.py`, `first_step_share`):

    λ·255²·w_mse·MSE(x̂, x) + ρ·LPIPS(x̂, x) + w_grain·grain hinge(x̂, x),    x̂ = g_s(ŷ + κ·s·r̂₀; θ₁)

on `first_step_share` of each batch, r̂₀ the denoiser's prediction from unit noise at t = 999, κ the
weights' strength and s the residual's per-channel scale (exactly the τ = 1 decode). The rest of each
batch keeps the later steps what they were: x₀-prediction at t uniform over 0 … 999 towards the residual
the starting weights sample (DDIM, `distill_steps`) for the same ŷ — self-distillation, so no auxiliary
encoder (stage 1 of `training/latent.py`, never shipped) is needed to fine-tune shipped weights.

Codec and θ₁ are frozen; the run starts from the shipped latent weights of the quality (or `init_from`). It
trains through the θ₁ shipped now: where that is a newer θ₁ than the one the latent weights were trained
through, this is how the module moves to it (as the pixel decoder's `init_from` does; the export is keyed
on the new θ₁).
Its first A/B (q2, 30 CPU-minutes, 2026-12-07) gained 0.7 % LPIPS on training crops but lost 1 % on whole
photos, so nothing was shipped from it (docs/log/2026-12-07-latent-refine-and-pixel-q3.md).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from dpexplorer.training.common import (Every, RunConfig, RunningMeans, TrainLogger, atomic_save, cosine_lr,
                                        load_checkpoint, psnr_of, resume, setup_device)
from dpexplorer.training.data import MultiScaleCropSampler
from dpexplorer.training.guard import grain_hinge
from dpexplorer.training.latent import latent_and_rate


@dataclass
class LatentRefineConfig(RunConfig):
    run_kind: ClassVar[str] = "latent-refine"
    steps: int = 200000
    crop: int = 128  # a multiple of 64 (the codec's padding)
    min_scale: float = 0.5  # crops of the photo downscaled by U[min_scale, 1], as θ₁'s and the pixel decoder's
    lr: float = 1e-4
    lr_min: float = 1e-6
    first_step_share: float = field(default=0.5, metadata={
        "help": "the share of each batch trained at t = 999 from unit noise against the image (the rest: t uniform, "
                "towards the starting weights' own samples)"})
    w_mse: float = field(default=1.0, metadata={"help": "first step: MSE weight, relative to the codec's λ·255²"})
    rho: float = field(default=5.0, metadata={"help": "first step: LPIPS weight"})
    w_grain: float = field(default=0.3, metadata={"help": "first step: the grain guard's hinge (0: none)"})
    grain_cap: float = 1.2
    distill_steps: int = field(default=10, metadata={
        "help": "DDIM steps of the starting weights' sample that the later steps are kept near"})
    init_from: str | None = field(default=None, metadata={
        "help": "a latent-refine checkpoint to start from (default: the shipped latent weights of the quality)"})
    checkpoint_every_s: float = 300.0
    seed: int = 0
    threads: int | None = None


def shipped_denoiser(codec):
    """The shipped latent module's denoiser of the codec's quality, and its manifest entry."""
    from dpexplorer.decoders.latent.denoiser import LatentDenoiser
    from dpexplorer.hub.loading import module_weights

    entry, state = module_weights("latent", codec)
    denoiser = LatentDenoiser(**entry["config"])
    denoiser.load_state_dict({k: v.float() for k, v in state.items()})
    return denoiser, entry


@torch.no_grad()
def teacher_residual(teacher, y_hat: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
    """The starting weights' DDIM sample of the normalised residual for each ŷ of the batch."""
    from dpexplorer.decoders.schedulers import run_sampler

    return run_sampler(lambda r_t, t: teacher(r_t, t.reshape(1), y_hat), y_hat.shape, "ddim", steps, seed=seed)


def train_latent_refine(cfg: LatentRefineConfig, codec=None) -> Path:
    """Fine-tune (resuming from the run folder's checkpoint); returns the checkpoint's path."""
    from dpexplorer.decoders.schedulers import TRAIN_TIMESTEPS, training_scheduler
    from dpexplorer.decoders.synthesis import SynthesisDecoder
    from dpexplorer.hub.loading import load_codec
    from dpexplorer.hub.manifest import find_entry
    from dpexplorer.metrics.image import lpips_tensor

    if cfg.crop % 64:
        raise ValueError(f"crop must be a multiple of 64, got {cfg.crop}")
    if not 0.0 < cfg.first_step_share <= 1.0:
        raise ValueError(f"first_step_share must be in (0, 1], got {cfg.first_step_share}")
    device, _, _ = setup_device(cfg.threads)
    torch.manual_seed(cfg.seed)
    codec = codec or load_codec(cfg.quality, cfg.arch)
    model = codec.model.to(device).eval().requires_grad_(False)
    den, entry = shipped_denoiser(codec)
    if not entry.get("synthesis_sha256"):
        raise ValueError("the shipped latent module decodes through the codec's g_s, not θ₁: nothing to refine here")
    # the θ₁ shipped now (hash-checked by the loader), which may be newer than the one the weights were trained
    # through: the run then moves them to it
    synthesis_sha256 = find_entry("synthesis", codec.cfg.arch, codec.cfg.quality)[1]["sha256"]
    theta1 = SynthesisDecoder.load(codec.cfg.quality, codec.cfg.arch).synthesis.endpoint().to(device)
    if cfg.init_from:
        den.load_state_dict(load_checkpoint(Path(cfg.init_from).expanduser())["denoiser"])
    teacher = copy.deepcopy(den).eval().requires_grad_(False)
    den = den.to(device).train()
    opt = torch.optim.AdamW(den.parameters(), lr=cfg.lr, weight_decay=0.0)
    run_dir = cfg.run_dir()
    log = TrainLogger(run_dir / "train.log")
    ckpt = run_dir / "last.pt"
    step, wall = resume(ckpt, device, {"denoiser": den, "opt": opt})
    if step:  # the teacher is the weights the run started from, not its latest checkpoint
        teacher.load_state_dict(load_checkpoint(ckpt)["teacher"])
    sampler = MultiScaleCropSampler(cfg.data, cfg.crop, cfg.min_scale, seed=cfg.seed * 1000 + step)
    log(f"{'resumed at step ' + str(step) if step else 'started'}: config {asdict(cfg)} codec {codec.weights_sha256[:12]} "
        f"from {cfg.init_from or entry['file']} (strength κ {den.strength}) through θ₁ {synthesis_sha256[:12]}"
        + ("" if synthesis_sha256 == entry["synthesis_sha256"] else
           f" (the weights were trained through θ₁ {entry['synthesis_sha256'][:12]}: moving them)"))
    sched = training_scheduler()
    scale = den.residual_scale[None, :, None, None] * den.strength
    lmbda = codec.cfg.lmbda
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + step)

    def save():
        atomic_save({"denoiser": den.state_dict(), "teacher": teacher.state_dict(), "opt": opt.state_dict(),
                     "step": step, "wall_s": time.time() - t0, "config": asdict(cfg), "denoiser_config": den.config(),
                     "codec_sha256": codec.weights_sha256, "latent_sha256": codec.latent_sha256,
                     "synthesis_sha256": synthesis_sha256, "start": entry["sha256"],
                     "quality": codec.cfg.quality, "arch": codec.cfg.arch}, ckpt)

    t0, session, first_step = time.time() - wall, time.time(), step
    means = RunningMeans(log, _describe, t0)
    checkpoints = Every(cfg.checkpoint_every_s, save)
    while cfg.within_budget(step, session):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(cfg.lr, cfg.lr_min, cfg.call_progress(step, first_step, session))
        x = sampler.batch(cfg.batch).to(device)
        n = x.shape[0]
        first = torch.rand(n, generator=gen) < cfg.first_step_share
        first[0] = True  # every batch trains the first step on at least one crop
        first = first.to(device)
        with torch.no_grad():
            y_hat, _ = latent_and_rate(model, model.g_a(x))
            target = torch.zeros_like(y_hat)
            if (~first).any():  # the teacher samples on the CPU, as the decoder does (run_sampler's generator)
                target[~first] = teacher_residual(teacher, y_hat[~first].cpu(), cfg.distill_steps,
                                                  seed=int(torch.randint(2**31, (1,), generator=gen))).to(device)
        noise = torch.randn(y_hat.shape, generator=gen).to(device)
        t = torch.randint(0, TRAIN_TIMESTEPS, (n,), generator=gen).to(device)
        t[first] = TRAIN_TIMESTEPS - 1
        r_t = sched.add_noise(target, noise, t)
        r_t[first] = noise[first]  # the sampler's own first input: unit noise, nothing of a target
        pred = den(r_t, t, y_hat)
        distill = F.mse_loss(pred[~first], target[~first]) if (~first).any() else pred.sum() * 0
        image = theta1(y_hat[first] + scale * pred[first]).clamp(0, 1)
        mse = F.mse_loss(image, x[first])
        lp = lpips_tensor(image, x[first]).mean()
        grain = (grain_hinge(image * 255, x[first] * 255, cap=cfg.grain_cap, share=0.5) if cfg.w_grain
                 else torch.zeros((), device=device))
        loss = distill + cfg.w_mse * lmbda * 255**2 * mse + cfg.rho * lp + cfg.w_grain * grain
        with torch.no_grad():  # θ₁ alone on the same crops: what the first step must beat (the learning curve)
            alone = theta1(y_hat[first]).clamp(0, 1)
            mse_alone, lp_alone = F.mse_loss(alone, x[first]), lpips_tensor(alone, x[first]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(den.parameters(), 1.0)
        opt.step()
        step += 1
        means.add(step, loss=loss.detach(), distill=distill.detach(), mse=mse.detach(), lpips=lp.detach(),
                  grain=grain.detach(), mse_alone=mse_alone, lpips_alone=lp_alone)
        checkpoints.tick()
    means.flush(step)
    save()
    log(f"done: {step} steps in {(time.time() - t0) / 60:.1f} min → {ckpt}")
    return ckpt


def _describe(r: dict) -> str:
    return (f"loss {r['loss']:.4f} distill {r['distill']:.4f} first step: psnr {psnr_of(r['mse']):.2f} "
            f"lpips {r['lpips']:.4f} grain {r['grain']:.3f} (θ₁ alone: psnr {psnr_of(r['mse_alone']):.2f} "
            f"lpips {r['lpips_alone']:.4f})")


def export_latent_refine(checkpoint: str | Path, *, notes: str | None = None, directory: Path | None = None) -> dict:
    """A latent-refine checkpoint → weights/latent-*.safetensors and its manifest entry (the earlier
    entry's training record kept, this run's added as `refine`)."""
    from dpexplorer.hub.files import save_weights
    from dpexplorer.hub.manifest import find_entry

    state = load_checkpoint(Path(checkpoint).expanduser())
    name, previous = find_entry("latent", state["arch"], state["quality"], directory)
    _, theta1 = find_entry("synthesis", state["arch"], state["quality"], directory)
    if previous.get("latent_sha256", state["latent_sha256"]) != state["latent_sha256"] or \
            theta1["sha256"] != state["synthesis_sha256"]:
        raise ValueError(f"{Path(checkpoint).name} was trained for another latent or θ₁ than the shipped {name}'s")
    refine = {"steps": state["step"], "wall_hours": round(state["wall_s"] / 3600, 3), "started_from": state["start"],
              **{k: state["config"][k] for k in ("data", "first_step_share", "w_mse", "rho", "w_grain", "grain_cap",
                                                 "distill_steps", "lr", "crop", "min_scale", "batch")},
              **({"notes": notes} if notes else {})}
    meta = {k: v for k, v in previous.items() if k not in ("file", "sha256", "bytes", "recipe")}
    meta |= {"config": state["denoiser_config"], "codec_sha256": state["codec_sha256"],
             "latent_sha256": state["latent_sha256"], "synthesis_sha256": state["synthesis_sha256"]}
    meta["training"] = {**previous.get("training", {}), "refine": refine}
    return save_weights(state["denoiser"], name, meta, fp16=lambda k: k.endswith(".weight"), directory=directory)

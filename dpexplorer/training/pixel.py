"""Training the pixel-space diffusion decoder (dpexplorer/decoders/pixel/) on a frozen, shipped codec.

From exactly the ŷ = round(y − μ) + μ the decoder gets, and the 8-bit base image x_b (the plain decode
g_s(ŷ), or with `base` "synthesis" the shipped perceptual synthesis g_s(ŷ; θ₁)), the denoiser learns the
residual r = (x − x_b) / s (s: its standard deviation, measured on the first batches) under the noise
schedule every sampler shares, with the loss of
Mari & Milani, "Image Coding for Perceptual Enhancement with Diffusion Models" (2024) and
Yang & Mandt, "Lossy Image Compression with Conditional Diffusion Models" (CDC, NeurIPS 2023, arXiv:2209.06950)

    ‖prediction − target‖²  +  ρ · LPIPS(x_b + s·r̂₀, x)  [+ w_adv · GAN(x_b + s·r̂₀)]  [+ w_hf_floor · HF-shortfall]

where the prediction is r₀ itself (`prediction_type` "sample", CDC's x-parameterisation) or the noise
ε (Mari & Milani's choice), and r̂₀ is the clean residual the prediction implies at that timestep. The optional
adversarial term (a PatchGAN, as the perceptual synthesis's) and the hinge on high-frequency energy below
the original's (`hf_shortfall`) are A/B options, not in the shipped recipe.

    python -m dpexplorer.training.pixel --data /work/shared/train_photos --quality 1 \
        --run-name probe --minutes 25 --threads 1

Checkpoints (denoiser, optimiser, step, wall time, config, codec hash) and the log go to
~/.cache/dpexplorer/train/pixel-q{q}-{run}/, every `checkpoint_every_s` and at the end;
`export_pixel` turns a checkpoint into weights/ (safetensors + manifest entry with the codec's hash).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from dpexplorer.codec.precision import bf16_is_fast, fast_autocast
from dpexplorer.decoders.pixel.denoiser import BASES, check_noise_scale
from dpexplorer.training.common import (Every, RunConfig, RunningMeans, TrainLogger, add_config_arguments, atomic_save,
                                        configs_from_args, conv_kernels, cosine_lr, load_checkpoint, psnr_of, resume,
                                        setup_device, training_record)
from dpexplorer.training.data import CropSampler, MultiScaleCropSampler
from dpexplorer.training.discriminator import PatchDiscriminator, discriminator_step, generator_loss
from dpexplorer.training.guard import grain_hinge
from dpexplorer.training.latent import latent_and_rate
from dpexplorer.training.synthesis import hf_shortfall


@dataclass
class PixelTrainConfig(RunConfig):
    run_kind: ClassVar[str] = "pixel"
    steps: int = 200000
    crop: int = 128  # a multiple of 64 (the codec's padding), so crops need none
    min_scale: float = 0.5  # crops of the photo downscaled by U[min_scale, 1], for smooth content (as θ₁'s)
    lr: float = 2e-4
    lr_schedule: str = field(default="constant", metadata={
        "choices": ["constant", "cosine"], "help": "cosine: decay to lr_min over this call's steps or minutes"})
    lr_min: float = 1e-5
    prediction_type: str = "sample"  # "sample" (x₀, CDC) or "epsilon" (ε, Mari & Milani 2024)
    rho: float = 0.9  # weight of LPIPS on the predicted clean image (papers 001 and 002 use 0.9)
    w_adv: float = field(default=0.0, metadata={
        "help": "weight of a PatchGAN's non-saturating loss on the predicted clean image (0: none), so that "
                "x̂₀ keeps texture instead of regressing to the mean"})
    disc_lr: float = 2e-4
    w_hf_floor: float = field(default=0.0, metadata={
        "help": "weight of a hinge on the predicted clean image's high-frequency energy below the original's "
                "(0: none), so that x̂₀ does not average the base image's texture away"})
    first_step_share: float = field(default=0.0, metadata={
        "help": "the share of each batch trained at t = 999, the first step every sampler takes from noise (the "
                "rest: t uniform over 0 … 999); with the LPIPS and grain terms it makes that step, DDIM 1, a one-step "
                "refiner of the base image, while the later steps keep being trained (1: the first step alone)"})
    w_grain: float = field(default=0.0, metadata={
        "help": "weight of a hinge on the predicted clean image's patch energy above grain_cap × the original's on "
                "its smoother half of patches (the grain guard's hinge; 0: none), so that smooth areas stay smooth"})
    grain_cap: float = 1.2
    first_step_noise: float = field(default=1.0, metadata={
        "help": "at t = 999 the input is this much unit noise instead of the forward process's: what a sampler's "
                "first step sees at that initial-noise scale (the weights' --noise-scale at export); 1: the plain process"})
    width: int = 32  # denoiser: dpexplorer.decoders.pixel.denoiser.OURS unless changed here
    mults: str = "1,2,2"
    blocks: int = 1
    space_to_depth: int = 4
    base: str = field(default="synthesis", metadata={
        "choices": BASES, "help": "the image the residual is sampled over: the codec's g_s(ŷ), or the shipped "
                                  "perceptual synthesis g_s(ŷ; θ₁) (its SHA-256 goes into the weights' entry)"})
    init_from: str | None = field(default=None, metadata={
        "help": "shipped weights/pixel-*.safetensors (or a checkpoint) to start a fresh run from: how a fresh "
                "machine resumes training, or how a decoder moves to a new θ₁ (weights over an earlier θ₁ are accepted); "
                "the optimiser starts anew"})
    checkpoint_every_s: float = 300.0
    seed: int = 0
    threads: int | None = None
    bf16: bool = field(default=False, metadata={
        "help": "the denoiser, LPIPS and D channels-last under bf16 autocast where the CPU has AMX "
                "(codec/precision.py; the synthesis trainer's --bf16); ŷ, the base image and the losses stay fp32"})

    def denoiser_config(self, latent_channels: int) -> dict:
        return dict(latent_channels=latent_channels, space_to_depth=self.space_to_depth, width=self.width,
                    mults=tuple(int(m) for m in self.mults.split(",")), blocks=self.blocks, attention=(),
                    prediction_type=self.prediction_type, base=self.base)


def receiver_view(model, x: torch.Tensor, base_g_s) -> tuple[torch.Tensor, torch.Tensor]:
    """(ŷ, x_b) of a batch: the decoder's latent and the base image `base_g_s`(ŷ) as 8-bit pixels (what
    inference conditions on)."""
    y_hat, _ = latent_and_rate(model, model.g_a(x))
    return y_hat, base_g_s(y_hat).clamp(0, 1).mul(255).round().div(255)


@torch.no_grad()
def measure_scales(model, sampler: CropSampler, base_g_s, batch: int, *, device, batches: int = 4):
    """(std of x − x_b over all pixels, per-channel std of ŷ) on the first crops."""
    res, ys = [], []
    for _ in range(batches):
        x = sampler.batch(batch).to(device)
        y_hat, base = receiver_view(model, x, base_g_s)
        res.append((x - base).flatten())
        ys.append(y_hat.transpose(0, 1).flatten(1))
    return torch.cat(res).std().clamp_min(1e-3), torch.cat(ys, 1).std(1).clamp_min(1e-2)


def _describe(r: dict) -> str:
    """A log line's loss means."""
    return (f"loss {r['loss']:.4f} diffusion {r['diffusion']:.4f} lpips(x̂0) {r['lpips']:.4f} "
            f"psnr(x̂0) {psnr_of(r['mse_x0']):.2f}" + (f" adv {r['adv']:.3f}" if r.get("adv") else "")
            + (f" hf- {r['hf']:.3f}" if "hf" in r else "") + (f" grain {r['grain']:.3f}" if "grain" in r else ""))


def train_pixel(cfg: PixelTrainConfig, codec=None) -> Path:
    """Train (resuming from the run folder's checkpoint); returns the checkpoint's path."""
    from dpexplorer.decoders.pixel.denoiser import PixelDenoiser
    from dpexplorer.decoders.schedulers import TRAIN_TIMESTEPS, training_scheduler
    from dpexplorer.hub.loading import load_codec
    from dpexplorer.metrics.image import lpips_tensor

    if cfg.crop % 64:
        raise ValueError(f"crop must be a multiple of 64, got {cfg.crop}")
    if not 0.0 <= cfg.first_step_share <= 1.0:
        raise ValueError(f"first_step_share must be in [0, 1], got {cfg.first_step_share}")
    check_noise_scale(cfg.first_step_noise)
    device, _, _ = setup_device(cfg.threads)
    torch.manual_seed(cfg.seed)
    codec = codec or load_codec(cfg.quality, cfg.arch)
    arch, model = codec.cfg.arch, codec.model.to(device).eval().requires_grad_(False)
    base_g_s, synthesis_sha256 = model.g_s, None
    if cfg.base == "synthesis":  # θ₁ of the shipped perceptual synthesis, frozen
        from dpexplorer.decoders.synthesis import SynthesisDecoder
        from dpexplorer.hub.manifest import find_entry

        base_g_s = SynthesisDecoder.load(codec.cfg.quality, arch).synthesis.endpoint().to(device)
        synthesis_sha256 = find_entry("synthesis", arch, codec.cfg.quality)[1]["sha256"]
    run_dir = cfg.run_dir()
    log = TrainLogger(run_dir / "train.log")
    ckpt = run_dir / "last.pt"

    den = PixelDenoiser(**cfg.denoiser_config(codec.cfg.M)).to(device).train()
    opt = torch.optim.AdamW(den.parameters(), lr=cfg.lr, weight_decay=0.0)
    parts = {"denoiser": den, "opt": opt}
    if cfg.w_adv:  # the synthesis's adversary and optimiser settings (dpexplorer/training/synthesis.py)
        disc = PatchDiscriminator().to(device)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
        parts |= {"disc": disc, "opt_d": opt_d}
    step, wall = resume(ckpt, device, parts)
    sampler = MultiScaleCropSampler(cfg.data, cfg.crop, cfg.min_scale, seed=cfg.seed * 1000 + step)
    if step:
        log(f"resumed from {ckpt} at step {step} ({wall / 60:.1f} min)")
    elif cfg.init_from:
        den.load_state_dict(initial_weights(cfg.init_from, codec, synthesis_sha256))
        log(f"initialised from {cfg.init_from}" + (f" (base θ₁ {synthesis_sha256[:12]})" if synthesis_sha256 else ""))
    else:
        residual_scale, cond_scale = measure_scales(model, sampler, base_g_s, cfg.batch, device=device)
        den.residual_scale.copy_(residual_scale)
        den.cond_scale.copy_(cond_scale)
    log(f"config {asdict(cfg)} codec {codec.source} {codec.weights_sha256[:12]} device={device} "
        f"params {sum(p.numel() for p in den.parameters()) / 1e6:.2f} M residual scale {float(den.residual_scale):.4f}")
    sched = training_scheduler(cfg.prediction_type)
    alphas = sched.alphas_cumprod.to(device)
    s = den.residual_scale

    def save():
        atomic_save({**{name: part.state_dict() for name, part in parts.items()}, "step": step,
                     "wall_s": time.time() - t0, "config": asdict(cfg), "denoiser_config": den.config(),
                     "codec_sha256": codec.weights_sha256, "synthesis_sha256": synthesis_sha256,
                     # over θ₁ the denoiser sees ŷ and θ₁(ŷ), never the codec's g_s: keyed on ŷ's model alone
                     **({"latent_sha256": codec.latent_sha256} if synthesis_sha256 else {}),
                     "quality": codec.cfg.quality, "arch": arch}, ckpt)

    fast = cfg.bf16 and bf16_is_fast(device)
    if fast:
        den.to(memory_format=torch.channels_last)
        if cfg.w_adv:
            disc.to(memory_format=torch.channels_last)
    elif cfg.bf16:
        log("bf16: not faster on this device (no AMX); training in fp32")

    t0, session, first_step = time.time() - wall, time.time(), step
    means = RunningMeans(log, _describe, t0)
    checkpoints = Every(cfg.checkpoint_every_s, save)
    while cfg.within_budget(step, session):
        if cfg.lr_schedule == "cosine":
            for g in opt.param_groups:
                g["lr"] = cosine_lr(cfg.lr, cfg.lr_min, cfg.call_progress(step, first_step, session))
        x = sampler.batch(cfg.batch).to(device)
        with torch.no_grad():
            y_hat, base = receiver_view(model, x, base_g_s)
        r0 = (x - base) / s
        noise = torch.randn_like(r0)
        t = torch.randint(0, sched.config.num_train_timesteps, (x.shape[0],), device=device)
        if cfg.first_step_share:
            t = torch.where(torch.rand(t.shape, device=device) < cfg.first_step_share, TRAIN_TIMESTEPS - 1, t)
        r_t = sched.add_noise(r0, noise, t)
        if cfg.first_step_noise != 1.0:  # the sampler's first input: x_T = scale·z (run_sampler), nothing of r₀
            first = (t == TRAIN_TIMESTEPS - 1)[:, None, None, None]
            r_t = torch.where(first, cfg.first_step_noise * noise, r_t)
        with fast_autocast(device, fast):
            pred = den(r_t, t, base, y_hat).float()
        diffusion = F.mse_loss(pred, r0 if cfg.prediction_type == "sample" else noise)
        if cfg.prediction_type == "sample":
            r0_hat = pred
        else:  # the clean residual an ε implies at t
            a = alphas[t][:, None, None, None]
            r0_hat = (r_t - (1 - a).sqrt() * pred) / a.sqrt()
        x0_hat = (base + s * r0_hat).clamp(0, 1)
        with fast_autocast(device, fast):
            lp_each = lpips_tensor(x0_hat, x).float() if cfg.rho else torch.zeros(x.shape[0], device=device)
        lp = lp_each.mean()
        if cfg.prediction_type == "epsilon":  # an ε's implied x̂₀ carries 1/√ᾱ_t (20,000 at t = 999): weighted
            lp_loss = (lp_each * alphas[t]).mean()  # by ᾱ_t, or LPIPS shapes ε̂ at high noise (docs/pixel-decoder.md)
        else:
            lp_loss = lp
        adv = torch.zeros((), device=device)
        if cfg.w_adv:
            with fast_autocast(device, fast):
                discriminator_step(disc, opt_d, x, x0_hat)
                adv = generator_loss(disc, x0_hat).float()
        hf = hf_shortfall(x0_hat, x) if cfg.w_hf_floor else torch.zeros((), device=device)
        grain = (grain_hinge(x0_hat * 255, x * 255, cap=cfg.grain_cap, share=0.5) if cfg.w_grain
                 else torch.zeros((), device=device))
        loss = diffusion + cfg.rho * lp_loss + cfg.w_adv * adv + cfg.w_hf_floor * hf + cfg.w_grain * grain
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(den.parameters(), 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            mse_x0 = F.mse_loss(x0_hat, x)
        means.add(step, diffusion=diffusion.detach(), lpips=lp.detach(), mse_x0=mse_x0, loss=loss.detach(),
                  adv=adv.detach(), **({"hf": hf.detach()} if cfg.w_hf_floor else {}),
                  **({"grain": grain.detach()} if cfg.w_grain else {}))
        checkpoints.tick()
    means.flush(step)
    save()
    log(f"done: {step} steps in {(time.time() - t0) / 60:.1f} min → {ckpt}")
    return ckpt


def initial_weights(path: str | Path, codec, synthesis_sha256: str | None) -> dict:
    """The denoiser state of shipped pixel weights or a checkpoint, checked to be for this codec's latent
    model and the same kind of base image. Over the perceptual synthesis, weights trained on an earlier θ₁
    are accepted: a start, not a result (the run trains on today's θ₁ and its export is keyed on it)."""
    path = Path(os.path.expanduser(str(path)))
    if path.suffix == ".safetensors":
        from dpexplorer.hub.files import load_weights
        from dpexplorer.hub.manifest import manifest

        entry = next((e for e in manifest(path.parent)["models"].values() if e.get("file") == path.name), None)
        if entry is None:
            raise ValueError(f"{path.name} is not listed in {path.parent}'s manifest")
        state = load_weights(entry, path.parent)
    else:
        entry = load_checkpoint(path)
        state = entry["denoiser"]
    if not codec.fits(entry) or bool(entry.get("synthesis_sha256")) != bool(synthesis_sha256):
        raise ValueError(f"{path} was trained on another codec or kind of base image than this run's")
    return state


def load_denoiser(path: str | Path):
    """(PixelDenoiser, checkpoint dict) from a training checkpoint (tensors and plain data only)."""
    from dpexplorer.decoders.pixel.denoiser import PixelDenoiser

    state = load_checkpoint(Path(os.path.expanduser(str(path))))
    den = PixelDenoiser(**state["denoiser_config"])
    den.load_state_dict(state["denoiser"])
    return den, state


def export_pixel(path: str | Path, directory: Path | None = None, notes: str = "",
                 noise_scale: float | None = None) -> dict:
    """A training checkpoint → weights/pixel-<arch>-q<q>.safetensors + its manifest entry (with the codec's hash).
    `noise_scale`: the initial-noise scale the weights decode with by default (chosen on training photos)."""
    from dpexplorer.hub.files import save_weights
    from dpexplorer.hub.manifest import model_name

    den, state = load_denoiser(path)
    if noise_scale is not None:
        den.cfg["noise_scale"] = check_noise_scale(noise_scale)
    meta = {"kind": "pixel", "arch": state["arch"], "quality": state["quality"], "codec_sha256": state["codec_sha256"],
            **({"synthesis_sha256": state["synthesis_sha256"]} if state.get("synthesis_sha256") else {}),
            **({"latent_sha256": state["latent_sha256"]} if state.get("latent_sha256") else {}),
            "recipe": f"recipes/pixel-q{state['quality']}.toml", "exported": date.today().isoformat(),
            "config": den.config(),
            "training": training_record(state, notes)}
    weights = den.state_dict()
    # float16 kernels: the shipped decoders' samples are checked against float32 in docs/pixel-decoder.md
    return save_weights(weights, model_name("pixel", state["arch"], state["quality"]), meta,
                        fp16=conv_kernels(weights), directory=directory)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, PixelTrainConfig)
    for cfg in configs_from_args(p.parse_args(argv), PixelTrainConfig):
        train_pixel(cfg)


if __name__ == "__main__":
    main()

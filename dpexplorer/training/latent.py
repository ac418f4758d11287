"""Training the decoder-side latent module of
Zhou et al., "Controllable Distortion-Perception Tradeoff Through Latent Diffusion for Neural Image Compression" (AAAI 2025, arXiv:2412.11379), in two stages, with the codec frozen.

Stage 1 — auxiliary encoder g'_a (training only, never shipped): initialised from g_a, it learns
latents ŷ' = Q(g'_a(x)) whose *frozen* synthesis g_s(ŷ') looks better than g_s(ŷ), while their rate
under the frozen entropy model stays within `rate_slack` of ŷ's (the bound is +10% on whole photos;
the crop-level hinge needs some margin). Because LPIPS-AlexNet alone is
easy to fool through a frozen decoder, the objective combines

    w_mse·255²·MSE + w_lpips·LPIPS + w_adv·(non-saturating GAN loss of a small PatchGAN, from scratch)
    + w_rate·relu(bpp(ŷ') − (1 + rate_slack)·bpp(ŷ))

Stage 2 — latent diffusion: the denoiser learns p(r | ŷ) for the residual r = ŷ' − ŷ with x₀
(sample) prediction under the shared noise schedule. It runs at latent resolution only, so pairs
(ŷ, ŷ') are computed once per crop and training is cheap. With `rho` > 0 the loss becomes CDC's
(Yang & Mandt, "Lossy Image Compression with Conditional Diffusion Models" (CDC, NeurIPS 2023, arXiv:2209.06950)): (1 − ρ)·‖r̂₀ − r₀‖² + ρ·LPIPS(g_s(ŷ + r̂₀), x), the perceptual term on the image the
frozen g_s makes of the predicted clean latent (on `perceptual_batch` crops of each batch, since
a g_s pass costs far more than the denoiser).

With `through_synthesis`, "g_s" above is the shipped perceptual synthesis θ₁ (`dpexplorer.decoders.synthesis`,
frozen) instead of the codec's: the residual is then trained for the τ = 1 endpoint that the decoder
reaches through x̂_τ = g_s(ŷ + τ·r̃; θ_τ).

Stage 1 is validated on photos held out of training (the last `holdout` of the folder): g_s(ŷ) vs
g_s(ŷ') in PSNR, LPIPS, FLIP (not trained on), the high-frequency energy ratio and the rate. Runs with
other loss weights (`run_name`, `aux_only`) leave their validation beside the main run, and the export
records them all in the manifest: that table is the loss-weight ablation.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dpexplorer.codec.hyperprior import hyper_analysis, latent_likelihoods, quantize_around_means, scales_and_means
from dpexplorer.decoders.latent.denoiser import check_strength
from dpexplorer.training.common import (TrainLogger, add_config_arguments, atomic_save, configs_from_args,
                                        load_checkpoint, resume, setup_device)
from dpexplorer.training.data import CropSampler, split_holdout
from dpexplorer.training.discriminator import PatchDiscriminator, discriminator_step, generator_loss


@dataclass
class LatentTrainConfig:
    """Defaults are the shipped q1/q2 recipe's (recipes/latent-q*.toml hold each shipped run exactly)."""

    data: str = field(metadata={"help": "folder of training photos"})
    quality: int = field(metadata={"help": "the shipped codec quality to train for", "aliases": ["-q"]})
    arch: str | None = field(default=None, metadata={"help": "codec architecture (default: the shipped one)"})
    workdir: str = field(default="~/.cache/dpexplorer/train", metadata={"help": "checkpoints and log (outside the repo)"})
    aux_steps: int = field(default=800, metadata={"help": "stage 1: auxiliary encoder steps"})
    diffusion_steps: int = field(default=3300, metadata={"help": "stage 2: denoiser steps"})
    batch: int = 8
    crop: int = 128
    lr: float = 1e-4
    disc_lr: float = 2e-4
    w_mse: float = field(default=0.1, metadata={"help": "stage 1: fidelity weight, relative to the codec's λ·255²·MSE"})
    w_lpips: float = 1.0
    w_adv: float = field(default=0.3, metadata={"help": "stage 1: GAN weight (chosen by the ablation, weights/README.md)"})
    w_rate: float = 10.0
    rate_slack: float = field(default=0.05, metadata={  # crop-level hinge; its whole-photo rate: weights/README.md
        "help": "stage 1: the auxiliary latent's rate may exceed the base latent's by this fraction"})
    rho: float = field(default=0.5, metadata={
        "help": "stage 2: CDC's ρ, the weight of LPIPS on g_s of the predicted clean latent"})
    perceptual_batch: int = 8
    width: int = 128
    blocks: int = 6
    checkpoint_every_s: float = 300.0
    seed: int = 0
    threads: int | None = None
    holdout: int = field(default=16, metadata={"help": "photos (last in name order) kept out to validate stage 1"})
    run_name: str | None = field(default=None, metadata={
        "help": "a separate run beside the main one, e.g. for an ablation"})
    aux_only: bool = field(default=False, metadata={"help": "stage 1 and its validation only (ablations)"})
    through_synthesis: bool = field(default=False, metadata={
        "help": "both stages through the shipped perceptual synthesis θ₁ (the decoder then runs g_s(θ_τ))"})
    strength: float = field(default=1.0, metadata={
        "help": "export: the share κ of the sampled residual the weights decode with (ỹ = ŷ + τ·κ·r̃), chosen "
                "on training photos after training; re-running a finished recipe with it only re-exports"})

    def run_dir(self, arch: str) -> Path:
        name = f"latent-{arch}-q{self.quality}" + (f"-{self.run_name}" if self.run_name else "")
        return Path(os.path.expanduser(self.workdir)) / name

    def loss_weights(self) -> dict:
        return {k: getattr(self, k) for k in ("w_mse", "w_lpips", "w_adv", "w_rate", "rate_slack")}


def latent_and_rate(model, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen hyperprior on latent y: its quantized ŷ and its rate in bits, both differentiable in y.

    Quantization is the entropy coder's rounding (around the predicted means) with straight-through
    gradients, and the rate is the frozen model's likelihood of exactly those symbols.
    """
    z = hyper_analysis(model, y)
    z_q, z_lik = model.entropy_bottleneck(z, training=False)  # rounded around the medians
    z_hat = z + (z_q - z).detach()
    scales, means = scales_and_means(model, z_hat)
    y_hat = quantize_around_means(y, means)
    y_lik = latent_likelihoods(model, y_hat, scales, means)
    bits = -(torch.log2(y_lik).sum(dim=(1, 2, 3)) + torch.log2(z_lik).sum(dim=(1, 2, 3)))
    return y_hat, bits


def target_synthesis(cfg: LatentTrainConfig, codec) -> nn.Module:
    """The frozen synthesis both stages train through: the codec's g_s, or θ₁ (`through_synthesis`)."""
    if not cfg.through_synthesis:
        return codec.model.g_s.eval().requires_grad_(False)
    from dpexplorer.decoders.synthesis import SynthesisDecoder

    return SynthesisDecoder.load(cfg.quality, codec.cfg.arch).synthesis.endpoint()


def train_aux_encoder(cfg: LatentTrainConfig, codec, g_s: nn.Module, log: TrainLogger, *, device) -> nn.Module:
    """Stage 1 through the frozen `g_s`. Returns g'_a (also checkpointed, resumable)."""
    from dpexplorer.metrics.image import lpips_tensor

    model = codec.model.to(device).eval().requires_grad_(False)
    ckpt = cfg.run_dir(codec.cfg.arch) / "aux.pt"
    g_a2 = copy.deepcopy(model.g_a).train().requires_grad_(True)
    disc = PatchDiscriminator().to(device)
    opt = torch.optim.Adam(g_a2.parameters(), lr=cfg.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.999))
    step, wall = resume(ckpt, device, {"g_a2": g_a2, "disc": disc, "opt": opt, "opt_d": opt_d})
    if step:
        log(f"stage 1 resumed at step {step}")
    sampler = CropSampler(cfg.data, cfg.crop, seed=cfg.seed + step, holdout=cfg.holdout)
    lmbda = codec.cfg.lmbda
    t0, last = time.time() - wall, time.time()
    while step < cfg.aux_steps:
        x = sampler.batch(cfg.batch).to(device)
        pixels = x.shape[0] * x.shape[2] * x.shape[3]
        with torch.no_grad():
            _, bits_base = latent_and_rate(model, model.g_a(x))
            bpp_base = bits_base.sum() / pixels
        y_hat2, bits2 = latent_and_rate(model, g_a2(x))
        bpp2 = bits2.sum() / pixels
        x2 = g_s(y_hat2)

        d_loss = discriminator_step(disc, opt_d, x, x2.clamp(0, 1))

        # auxiliary-encoder step
        opt.zero_grad(set_to_none=True)
        mse = F.mse_loss(x2, x)
        lp = lpips_tensor(x2.clamp(0, 1), x).mean()
        adv = generator_loss(disc, x2.clamp(0, 1))
        rate_excess = F.relu(bpp2 - (1 + cfg.rate_slack) * bpp_base)
        loss = cfg.w_mse * lmbda * 255**2 * mse + cfg.w_lpips * lp + cfg.w_adv * adv + cfg.w_rate * rate_excess
        loss.backward()
        torch.nn.utils.clip_grad_norm_(g_a2.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            log(f"aux step {step} psnr {-10 * math.log10(max(float(mse), 1e-10)):.2f} lpips {float(lp):.4f} "
                f"adv {float(adv):.3f} d {float(d_loss):.3f} bpp' {float(bpp2):.4f} bpp {float(bpp_base):.4f}")
        if time.time() - last > cfg.checkpoint_every_s or step == cfg.aux_steps:
            atomic_save({"g_a2": g_a2.state_dict(), "disc": disc.state_dict(), "opt": opt.state_dict(),
                         "opt_d": opt_d.state_dict(), "step": step, "wall_s": time.time() - t0}, ckpt)
            last = time.time()
    return g_a2.eval().requires_grad_(False)


@torch.no_grad()
def validate_aux_encoder(codec, g_a2, g_s, paths, *, device) -> dict:
    """Mean metrics of g_s(ŷ) (the base decoder, or θ₁'s) and g_s(ŷ') (stage 1's target) on whole photos.

    The rate is the frozen entropy model's, in bits per pixel (ŷ' is never entropy coded)."""
    from dpexplorer.codec.codec import pad_to_multiple
    from dpexplorer.io.images import load_image, to_uint8
    from dpexplorer.metrics.image import all_metrics

    model = codec.model
    sums = {"base": {}, "aux": {}}
    for path in paths:
        img = load_image(path)
        h, w = img.shape[:2]
        x = pad_to_multiple(torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255)).to(device)
        for key, encoder in (("base", model.g_a), ("aux", g_a2)):
            y_hat, bits = latent_and_rate(model, encoder(x))
            rec = to_uint8(g_s(y_hat).clamp(0, 1)[..., :h, :w].cpu())
            m = all_metrics(img, rec, extra=True)
            row = {"bpp": float(bits.sum()) / (h * w), **m}
            for k, v in row.items():
                sums[key][k] = sums[key].get(k, 0.0) + v
    return {key: {k: round(v / len(paths), 4) for k, v in d.items()} for key, d in sums.items()} | {
        "images": len(paths)}


def _stage1_key(row: dict) -> str:
    """What makes two ablation rows the same stage 1: codec, steps, loss weights and its validation."""
    return json.dumps({k: row.get(k) for k in ("codec_sha256", "aux_steps", "weights", "holdout")}, sort_keys=True)


def ablation_runs(cfg: LatentTrainConfig, arch: str, codec_sha256: str) -> list[dict]:
    """Every stage-1 validation of this quality and codec: the main run's and its ablation siblings'.

    A stage 1 copied into other run folders (to try stage-2 settings on it) is listed once, under
    the exported run's name where it is one of them."""
    main = replace(cfg, run_name=None).run_dir(arch)
    runs = {}
    for path in [main / "aux_eval.json", *sorted(main.parent.glob(f"{main.name}-*/aux_eval.json"))]:
        record = json.loads(path.read_text()) if path.exists() else {}
        if record.get("codec_sha256") == codec_sha256:
            row = {"run": path.parent.name, "shipped": path.parent == cfg.run_dir(arch), "codec_sha256": codec_sha256,
                   **{k: record[k] for k in ("aux_steps", "weights", "holdout")}}
            key = _stage1_key(row)
            if key not in runs or row["shipped"]:
                runs[key] = row
    return list(runs.values())


def earlier_ablation_runs(previous: dict | None, current: list[dict]) -> list[dict]:
    """The ablation rows a previous export recorded that the current runs do not repeat (other codec
    weights, or stage-1 runs whose folders are gone), kept (not shipped) so a retrained codec or a
    fresh machine does not erase the evidence behind the chosen loss weights."""
    if not previous:
        return []
    seen = {_stage1_key(r) for r in current}
    return [{**r, "shipped": False} for r in previous.get("training", {}).get("ablation", [])
            if _stage1_key(r) not in seen]


@torch.no_grad()
def latent_pairs(codec, g_a2, sampler: CropSampler, n_batches: int, *, batch: int, device):
    """(ŷ, ŷ', x) for training crops: the decoder's latent, the auxiliary encoder's target and the
    crop itself (uint8, for the perceptual term)."""
    model = codec.model
    ys, ys2, xs = [], [], []
    for _ in range(n_batches):
        x = sampler.batch(batch).to(device)
        y_hat, _ = latent_and_rate(model, model.g_a(x))
        y_hat2, _ = latent_and_rate(model, g_a2(x))
        ys.append(y_hat.cpu())
        ys2.append(y_hat2.cpu())
        xs.append(x.mul(255).round().to(torch.uint8).cpu())
    return torch.cat(ys), torch.cat(ys2), torch.cat(xs)


def train_denoiser(cfg: LatentTrainConfig, codec, g_s: nn.Module, y_hat: torch.Tensor, *, y_hat2: torch.Tensor,
                   log: TrainLogger, device, images: torch.Tensor | None = None):
    """Stage 2: x₀-prediction diffusion on the normalised residual, conditioned on ŷ (plus CDC's
    perceptual term when `cfg.rho` > 0; `images` are then the crops the pairs came from)."""
    from dpexplorer.decoders.latent.denoiser import LatentDenoiser
    from dpexplorer.decoders.schedulers import training_scheduler
    from dpexplorer.metrics.image import lpips_tensor

    if cfg.rho > 0 and images is None:
        raise ValueError("rho > 0 needs the training crops")
    g_s = g_s.to(device).eval().requires_grad_(False)
    residual = y_hat2 - y_hat
    denoiser = LatentDenoiser(codec.cfg.M, cfg.width, cfg.blocks).to(device)
    denoiser.residual_scale.copy_(residual.std(dim=(0, 2, 3)).clamp_min(1e-3))
    denoiser.cond_scale.copy_(y_hat.std(dim=(0, 2, 3)).clamp_min(1e-3))
    scheduler = training_scheduler()
    opt = torch.optim.AdamW(denoiser.parameters(), lr=2e-4, weight_decay=1e-4)
    ckpt = cfg.run_dir(codec.cfg.arch) / "denoiser.pt"
    step, wall = resume(ckpt, device, {"denoiser": denoiser, "opt": opt})
    if step:
        log(f"stage 2 resumed at step {step}")
    gen = torch.Generator().manual_seed(cfg.seed)
    n = y_hat.shape[0]
    t0, last = time.time() - wall, time.time()
    while step < cfg.diffusion_steps:
        idx = torch.randint(n, (cfg.batch * 4,), generator=gen)
        cond = y_hat[idx].to(device)
        r0 = residual[idx].to(device) / denoiser.residual_scale[None, :, None, None]
        noise = torch.randn(r0.shape, generator=gen).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (r0.shape[0],), generator=gen).to(device)
        r_t = scheduler.add_noise(r0, noise, t)
        pred = denoiser(r_t, t, cond)
        latent_mse = F.mse_loss(pred, r0)
        loss = latent_mse
        if cfg.rho > 0:
            k = min(cfg.perceptual_batch, pred.shape[0])
            scale = denoiser.residual_scale[None, :, None, None]
            x_pred = g_s(cond[:k] + pred[:k] * scale).clamp(0, 1)
            perceptual = lpips_tensor(x_pred, images[idx[:k]].to(device).float().div(255)).mean()
            loss = (1 - cfg.rho) * latent_mse + cfg.rho * perceptual
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            log(f"diffusion step {step} loss {float(loss):.4f} latent mse {float(latent_mse):.4f}"
                + (f" lpips {float(perceptual):.4f}" if cfg.rho > 0 else ""))
        if time.time() - last > cfg.checkpoint_every_s or step == cfg.diffusion_steps:
            atomic_save({"denoiser": denoiser.state_dict(), "opt": opt.state_dict(), "step": step,
                         "wall_s": time.time() - t0}, ckpt)
            last = time.time()
    return denoiser.eval()


def finished_denoiser(cfg: LatentTrainConfig, codec, device):
    """The stage-2 network of a run that already reached `cfg.diffusion_steps` (then exporting it
    needs no latent pairs), else None."""
    from dpexplorer.decoders.latent.denoiser import LatentDenoiser

    ckpt = cfg.run_dir(codec.cfg.arch) / "denoiser.pt"
    if not ckpt.exists():
        return None
    state = load_checkpoint(ckpt, device)
    if state["step"] < cfg.diffusion_steps:
        return None
    denoiser = LatentDenoiser(codec.cfg.M, cfg.width, cfg.blocks).to(device)
    denoiser.load_state_dict(state["denoiser"])
    return denoiser.eval()


def train_latent(cfg: LatentTrainConfig, codec=None, export: bool = True) -> dict:
    """Both stages for one shipped quality, then (optionally) export to weights/."""
    from dpexplorer.hub.loading import get_codec

    device, _, _ = setup_device(cfg.threads)
    torch.manual_seed(cfg.seed)
    codec = codec or get_codec(cfg.quality, cfg.arch)
    run_dir = cfg.run_dir(codec.cfg.arch)
    log = TrainLogger(run_dir / "train.log")
    log(f"config {asdict(cfg)}")
    g_s = target_synthesis(cfg, codec).to(device)
    g_a2 = train_aux_encoder(cfg, codec, g_s, log, device=device)
    _, held_out = split_holdout(cfg.data, cfg.holdout)
    if held_out:
        record = {"codec_sha256": codec.weights_sha256, "aux_steps": cfg.aux_steps, "weights": cfg.loss_weights(),
                  "through_synthesis": cfg.through_synthesis}
        done = run_dir / "aux_eval.json"
        previous = json.loads(done.read_text()) if done.exists() else {}
        if {k: previous.get(k) for k in record} == record:  # a resumed run: stage 1 already validated
            val = previous["holdout"]
        else:
            val = validate_aux_encoder(codec, g_a2, g_s, held_out, device=device)
            done.write_text(json.dumps(record | {"holdout": val}, indent=2))
        log(f"stage 1 on {len(held_out)} held-out photos: g_s(ŷ) {val['base']} → g_s(ŷ') {val['aux']}")
    if cfg.aux_only:
        return {"aux_eval": val if held_out else None}
    denoiser = finished_denoiser(cfg, codec, device)
    if denoiser is None:
        sampler = CropSampler(cfg.data, cfg.crop, seed=cfg.seed + 12345, holdout=cfg.holdout)
        n_batches = max(1, min(4 * len(sampler) // cfg.batch, 400))
        y_hat, y_hat2, crops = latent_pairs(codec, g_a2, sampler, n_batches, batch=cfg.batch, device=device)
        log(f"{y_hat.shape[0]} latent pairs; residual std {float((y_hat2 - y_hat).std()):.4f}")
        denoiser = train_denoiser(cfg, codec, g_s, y_hat, y_hat2=y_hat2, log=log, device=device, images=crops)
    else:
        log(f"stage 2 already at step {cfg.diffusion_steps}")
    # Both training loops' time, summed over every resumed run (not this call's, which may only export).
    wall_s = sum(load_checkpoint(run_dir / f).get("wall_s", 0.0)
                 for f in ("aux.pt", "denoiser.pt") if (run_dir / f).exists())
    info = {"wall_hours": round(wall_s / 3600, 3), "aux_steps": cfg.aux_steps,
            "diffusion_steps": cfg.diffusion_steps, "rho": cfg.rho}
    if not export:
        return {"denoiser": denoiser, **info}
    denoiser.strength = check_strength(cfg.strength)
    from dpexplorer.hub.files import save_weights
    from dpexplorer.hub.manifest import find_entry, load_manifest, model_name

    name = model_name("latent", codec.cfg.arch, cfg.quality)
    previous = load_manifest()["models"].get(name)
    ablation = ablation_runs(cfg, codec.cfg.arch, codec.weights_sha256)
    ablation += earlier_ablation_runs(previous, ablation)
    meta = {"kind": "latent", "arch": codec.cfg.arch, "quality": cfg.quality, "codec_sha256": codec.weights_sha256,
            # through θ₁ the module never sees the codec's g_s: keyed on ŷ's model alone (latent_sha256)
            **({"synthesis_sha256": find_entry("synthesis", codec.cfg.arch, cfg.quality)[1]["sha256"],
                "latent_sha256": codec.latent_sha256} if cfg.through_synthesis else {}),
            "config": denoiser.config(), "training": {**info, "data": cfg.data, "weights": cfg.loss_weights(),
                                                      "ablation": ablation}}
    entry = save_weights(denoiser.state_dict(), name, meta, fp16=lambda k: k.endswith(".weight"))
    log(f"exported {entry['file']}")
    return entry


def add_arguments(parser) -> None:
    add_config_arguments(parser, LatentTrainConfig)


def configs_from(args) -> list[LatentTrainConfig]:
    """The runs to make, in order: one, or each phase of `--recipe` (each resumes the one before)."""
    return configs_from_args(args, LatentTrainConfig)

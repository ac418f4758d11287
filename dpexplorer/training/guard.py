"""Training of the receiver's grain guard (`dpexplorer.decoders.grainguard`) for one shipped quality.

The codec, its plain decoder and θ₁ are frozen: each training photo is encoded once with the shipped
codec (no hint) and decoded to x̂₀ and x̂₁, and only the guard's ~22 k weights learn, on whole photos:

    loss = LPIPS(x̂₀ + m·(x̂₁ − x̂₀), x) + w_grain · mean over the original's smoother half of patches of
           relu(log((E(x̂) + ε) / (E(x) + ε)) − log grain_cap)

E = high-pass luma energy per 16-px patch, as the smooth-area grain measures it (`metrics.image`). The
photos are train_photos in a seeded order; the last `held_out` share is never trained on: it chooses the
logit offset (`calibrate`: the most texture whose grain stays within the targets) and gives the numbers the
export records (PSNR, LPIPS, grain of uniform τ = 1 and of the guarded decode; measured on the photos that
chose the offset, so val_photos and Kodak are the independent check).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dpexplorer.decoders.grainguard import PATCH, GuardNet, entropy_view, guard_features
from dpexplorer.metrics.image import GRAIN_EPS, lpips, lpips_tensor, psnr, smooth_area_grain

_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


@dataclasses.dataclass
class GuardTrainConfig:
    quality: int = dataclasses.field(metadata={"aliases": ["-q"]})
    arch: str | None = None  # None: the shipped codec's
    data: str = "../shared/train_photos"
    out: str = "runs/guard"
    images: int = 120  # photos drawn (seeded) from `data`; the last `held_out` share only for the report
    held_out: float = 0.25
    epochs: int = 4
    lr: float = 1e-3
    w_grain: float = 0.3
    grain_cap: float = 1.2  # the hinge starts at this energy ratio to the original
    smooth_share: float = 0.5  # the share of the original's smoothest patches the hinge looks at
    # after training, the logit offset with the lowest LPIPS on the held-out photos whose grain median and
    # worst stay within these (the realism bar asks ≤ 1.3 and ≤ 2.0 on photos never seen)
    grain_median_target: float = 1.0
    grain_worst_target: float = 2.0
    seed: int = 0
    threads: int = 2


def _gaussian(sigma: float, radius: int) -> torch.Tensor:
    k = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    return k / k.sum()


_HIGH_PASS = _gaussian(1.5, 6)  # scipy's gaussian_filter(σ = 1.5, truncate 4): radius 6, as patch_energies
_SMOOTH = _gaussian(8.0, 24)  # grainguard.upsample_map: σ = 8, truncate 3


def _pad(x: torch.Tensor, r: int, dim: int, mode: str) -> torch.Tensor:
    """Pad `r` on both sides of `dim` as scipy.ndimage does: "symmetric" is its "reflect" (d c b a | a b c d,
    the edge repeated), "replicate" its "nearest"."""
    n = x.shape[dim]
    if mode == "symmetric":
        left, right = x.narrow(dim, 0, r).flip(dim), x.narrow(dim, n - r, r).flip(dim)
    else:
        left, right = (x.narrow(dim, i, 1).expand(*[r if d == dim else -1 for d in range(x.dim())])
                       for i in (0, n - 1))
    return torch.cat([left, x, right], dim)


def _separable(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    r = len(kernel) // 2
    x = F.conv2d(_pad(x, r, 3, mode), kernel.view(1, 1, 1, -1))
    return F.conv2d(_pad(x, r, 2, mode), kernel.view(1, 1, -1, 1))


def patch_energies_torch(x: torch.Tensor) -> torch.Tensor:
    """`metrics.image.patch_energies` of a 1×3×H×W image in 0…255 (H, W multiples of 16), differentiable."""
    y = (x * _LUMA).sum(1, keepdim=True)
    return F.avg_pool2d((y - _separable(y, _HIGH_PASS, "symmetric")) ** 2, PATCH)


def upsample_torch(m: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`grainguard.upsample_map`, differentiable."""
    m = m.repeat_interleave(PATCH, 2).repeat_interleave(PATCH, 3)[..., :height, :width]
    return _separable(m, _SMOOTH, "replicate")


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).float().permute(2, 0, 1)[None]


def _pixels(t: torch.Tensor) -> np.ndarray:
    """A 1×3×H×W float image as the 8-bit pixels that are shown and measured."""
    return np.clip(np.rint(t[0].permute(1, 2, 0).numpy()), 0, 255).astype(np.uint8)


def photo_order(folder: str, count: int, seed: int) -> list[Path]:
    from dpexplorer.io.images import list_images

    files = list_images(folder)
    return [files[i] for i in np.random.default_rng(seed).permutation(len(files))[:count]]


def build_cache(cfg: GuardTrainConfig, folder: Path) -> list[Path]:
    """Encode and decode each photo once (resumable: one .npz per photo), in a subfolder of `folder` named
    after the codec and θ₁ they were decoded with, so that a new θ₁ never trains on the old one's images."""
    from dpexplorer.decoders.synthesis import SynthesisDecoder
    from dpexplorer.hub.manifest import find_entry
    from dpexplorer.io.images import load_image

    decoder = SynthesisDecoder.load(cfg.quality, cfg.arch)
    codec = decoder.codec
    theta1 = find_entry("synthesis", codec.cfg.arch, codec.cfg.quality)[1]["sha256"]
    cache = folder / f"codec-{codec.weights_sha256[:12]}-theta1-{theta1[:12]}"
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for path in photo_order(cfg.data, cfg.images, cfg.seed):
        target = cache / f"{path.stem}.npz"
        if not target.exists():
            img = load_image(path)
            h, w = img.shape[0] // PATCH * PATCH, img.shape[1] // PATCH * PATCH
            img = np.ascontiguousarray(img[:h, :w])
            bitstream = codec.parse(codec.encode(img))
            y_hat, _ = codec.decode_latent(bitstream)
            plain = codec.synthesize(y_hat, h, w)
            full = codec.synthesize(y_hat, h, w, g_s=decoder.synthesis.at(1.0))
            features = guard_features(*entropy_view(codec, bitstream, y_hat), plain, full)[0].numpy()
            tmp = target.with_suffix(".tmp.npz")
            np.savez(tmp, original=img, plain=plain, full=full, features=features)
            tmp.rename(target)
        out.append(target)
    return out


class _Photo:
    def __init__(self, path: Path):
        d = np.load(path)
        self.name = path.stem
        self.original, self.plain, self.full = (_tensor(d[k]) for k in ("original", "plain", "full"))
        self.features = torch.from_numpy(d["features"])[None]


def _blend(net: GuardNet, photo: _Photo) -> tuple[torch.Tensor, torch.Tensor]:
    m = upsample_torch(net(photo.features), *photo.original.shape[-2:])
    return photo.plain + m * (photo.full - photo.plain), m


def grain_hinge(out: torch.Tensor, original: torch.Tensor, *, cap: float, share: float) -> torch.Tensor:
    """Mean over the `share` of each image's patches where the original is smoothest of
    relu(log((E(out) + ε) / (E(original) + ε)) − log cap): the grain the smooth-area grain measures, as a loss
    (N×3×H×W in 0…255, H and W multiples of 16)."""
    e_orig, e_out = patch_energies_torch(original).flatten(1), patch_energies_torch(out).flatten(1)
    smooth = torch.argsort(e_orig, dim=1)[:, :max(1, int(share * e_orig.shape[1]))]
    ratio = torch.log((e_out.gather(1, smooth) + GRAIN_EPS) / (e_orig.gather(1, smooth) + GRAIN_EPS))
    return F.relu(ratio - math.log(cap)).mean()


def _losses(photo: _Photo, out: torch.Tensor, cfg: GuardTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    lp = lpips_tensor(out / 255, photo.original / 255).mean()
    return lp, grain_hinge(out, photo.original, cap=cfg.grain_cap, share=cfg.smooth_share)


OFFSETS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)


def calibrate(net: GuardNet, photos: list[_Photo], cfg: GuardTrainConfig) -> list[dict]:
    """Set `net.logit_offset` to the offset of `OFFSETS` (up to 8: at q3 the trained guard is cautious and LPIPS
    still fell at 4 with the worst grain unmoved) with the lowest mean LPIPS on `photos` among those
    whose grain median and worst meet the config's targets (0 if none does); returns every offset's row."""
    rows = []
    for offset in OFFSETS:
        net.logit_offset.fill_(offset)
        measured = []
        with torch.no_grad():
            for p in photos:
                img, shown = _pixels(p.original), _pixels(_blend(net, p)[0])
                measured.append((lpips(img, shown), smooth_area_grain(img, shown)))
        m = np.asarray(measured)
        rows.append({"offset": offset, "lpips": float(m[:, 0].mean()), "grain_median": float(np.median(m[:, 1])),
                     "grain_worst": float(m[:, 1].max())})
        print(json.dumps(rows[-1]), flush=True)
    ok = [r for r in rows if r["grain_median"] <= cfg.grain_median_target and r["grain_worst"] <= cfg.grain_worst_target]
    net.logit_offset.fill_(min(ok, key=lambda r: r["lpips"])["offset"] if ok else 0.0)
    return rows


def held_out_report(net: GuardNet, photos: list[_Photo]) -> dict:
    """Uniform τ = 0, uniform τ = 1 and the guarded τ = 1 on the held-out photos, rounded to 8 bits as shown."""
    rows = {"tau0": [], "tau1": [], "guarded": []}
    with torch.no_grad():
        for p in photos:
            img = _pixels(p.original)
            for k, t in {"tau0": p.plain, "tau1": p.full, "guarded": _blend(net, p)[0]}.items():
                shown = _pixels(t)
                rows[k].append((psnr(img, shown), lpips(img, shown), smooth_area_grain(img, shown)))
    report = {}
    for k, v in rows.items():
        v = np.asarray(v)
        report[k] = {"psnr": float(v[:, 0].mean()), "lpips": float(v[:, 1].mean()),
                     "grain_median": float(np.median(v[:, 2])), "grain_worst": float(v[:, 2].max()),
                     "better_than_tau0": float(np.mean(v[:, 1] < np.asarray(rows["tau0"])[:, 1]))}
    report["photos"] = [p.name for p in photos]
    return report


def train_guard(cfg: GuardTrainConfig) -> tuple[GuardNet, dict]:
    """Train the guard; returns it and a record (config, learning curve, held-out report)."""
    torch.set_num_threads(cfg.threads)
    run = Path(cfg.out) / f"q{cfg.quality}"
    photos = [_Photo(p) for p in build_cache(cfg, run / "cache")]
    n_train = len(photos) - int(round(cfg.held_out * len(photos)))
    train, held = photos[:n_train], photos[n_train:]
    torch.manual_seed(cfg.seed)
    net = GuardNet.open(channels=(train[0].features.shape[1] - 3) // 2)
    stacked = torch.cat([p.features.flatten(2) for p in train], 2)[0]
    net.feature_mean.copy_(stacked.mean(1).view_as(net.feature_mean))
    net.feature_std.copy_((stacked.std(1) + 1e-3).view_as(net.feature_std))
    opt = torch.optim.Adam(net.body.parameters(), cfg.lr)
    curve, started = [], time.time()
    for epoch in range(cfg.epochs):
        sums = np.zeros(2)
        for i in np.random.default_rng(cfg.seed + epoch).permutation(len(train)):
            out, _ = _blend(net, train[i])
            lp, hinge = _losses(train[i], out, cfg)
            opt.zero_grad()
            (lp + cfg.w_grain * hinge).backward()
            opt.step()
            sums += (lp.item(), hinge.item())
        curve.append({"epoch": epoch + 1, "lpips": sums[0] / len(train), "grain_hinge": sums[1] / len(train),
                      "seconds": round(time.time() - started, 1)})
        print(json.dumps(curve[-1]), flush=True)
    calibration = calibrate(net, held, cfg)
    record = {"config": dataclasses.asdict(cfg), "train_photos": len(train), "learning_curve": curve,
              "calibration": calibration, "logit_offset": float(net.logit_offset),
              "steps": cfg.epochs * len(train), "wall_hours": round((time.time() - started) / 3600, 3),
              "held_out": held_out_report(net, held)}
    return net, record


def export_guard(net: GuardNet, record: dict, *, directory: Path | None = None) -> dict:
    """weights/guard-<arch>-q<Q>.safetensors + its manifest entry (the codec and θ₁ it was trained on)."""
    from dpexplorer.decoders.synthesis import SynthesisDecoder
    from dpexplorer.hub.files import save_weights
    from dpexplorer.hub.manifest import find_entry, model_name

    quality = record["config"]["quality"]
    codec = SynthesisDecoder.load(quality, record["config"].get("arch")).codec
    _, synthesis = find_entry("synthesis", codec.cfg.arch, quality, directory)
    meta = {"kind": "guard", "arch": codec.cfg.arch, "quality": quality, "channels": codec.cfg.M,
            "codec_sha256": codec.weights_sha256, "latent_sha256": codec.latent_sha256,
            "synthesis_sha256": synthesis["sha256"], "exported": time.strftime("%Y-%m-%d"),
            "recipe": f"recipes/guard-q{quality}.toml",
            "training": {**{k: record[k] for k in ("config", "train_photos", "learning_curve", "steps", "wall_hours",
                                                   "calibration", "logit_offset")},
                         "data": record["config"]["data"],
                         "notes": "the receiver's grain guard (docs/grain-guard.md): codec and θ₁ frozen, "
                                  f"{record['train_photos']} whole train_photos, one photo per step"},
            "held_out": record["held_out"]}
    return save_weights(net.state_dict(), model_name("guard", codec.cfg.arch, quality), meta, directory=directory)

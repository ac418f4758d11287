"""JPEG and WebP through Pillow at a matched rate: the quality setting whose file size comes closest
to a target bpp (binary search over Pillow's 1..100 quality scale; file size grows with it)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

FORMATS = {"jpeg": dict(format="JPEG", subsampling="4:2:0"), "webp": dict(format="WEBP", method=6)}


def encode_at(image: np.ndarray, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, quality=int(quality), **FORMATS[fmt])
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def match_rate(image: np.ndarray, fmt: str, target_bpp: float) -> dict:
    """Encode at the quality whose bpp is closest to `target_bpp`; returns bytes, bpp, quality, image."""
    pixels = image.shape[0] * image.shape[1]
    lo, hi = 1, 100
    cache = {}

    def bpp_at(q):
        if q not in cache:
            cache[q] = encode_at(image, fmt, q)
        return len(cache[q]) * 8 / pixels

    while lo < hi:  # smallest quality whose rate reaches the target
        mid = (lo + hi) // 2
        if bpp_at(mid) < target_bpp:
            lo = mid + 1
        else:
            hi = mid
    candidates = {lo, max(1, lo - 1)}
    best = min(candidates, key=lambda q: abs(bpp_at(q) - target_bpp))
    data = cache[best]
    return {"bytes": len(data), "bpp": len(data) * 8 / pixels, "setting": best, "image": decode(data)}

"""What users would pick instead of a learned codec: AVIF, JPEG XL, WebP and JPEG through Pillow.

- `same_size`: the largest quality setting whose file is not larger than a byte budget (the app's and
  the codec eval's comparison at this bitstream's size: the baseline never gets more bytes than ours).
- `match_rate`: the quality whose bpp comes closest to a target, above or below (kept for the full
  eval's matched-rate cells).
- `available_formats`: which encoders this installation has, and why not where one is missing (AVIF
  needs a Pillow built with libavif, 11.3+; JPEG XL the `pillow-jxl-plugin` package). Never raises.

Every search assumes the file grows with the quality setting, which holds for these encoders up to
rare one-byte wobbles; `same_size` only ever returns a setting it has measured within the budget.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, features

# Pillow save options per format. AVIF at speed 4 (libaom's usual quality/time balance, the setting the
# earlier AVIF measurement used); WebP at method 6 (its best); JPEG with 4:2:0 chroma like the others;
# JPEG XL at libjxl's default effort 7.
FORMATS = {
    "avif": dict(format="AVIF", speed=4, subsampling="4:2:0"),
    "jxl": dict(format="JXL", effort=7),
    "webp": dict(format="WEBP", method=6),
    "jpeg": dict(format="JPEG", subsampling="4:2:0"),
}
NAMES = {"avif": "AVIF", "jxl": "JPEG XL", "webp": "WebP", "jpeg": "JPEG"}
# Pillow's quality scale for all four; 0 is left out (degenerate for JPEG and AVIF), and JPEG XL stops
# at 99: its 100 is distance 0, which libjxl only accepts in lossless mode
QUALITY_MIN, QUALITY_MAX = 1, 100
QUALITY_TOP = {"jxl": 99}
# The option that caps an encoder's threads (JPEG and WebP are single-threaded in Pillow)
_THREAD_OPTION = {"avif": "max_threads", "jxl": "num_threads"}


class EncoderUnavailable(RuntimeError):
    """This installation cannot encode the format; the message says why (`available_formats`)."""


def _register(fmt: str) -> None:
    if fmt == "jxl":
        import pillow_jxl  # noqa: F401  (importing it registers the JXL plugin with Pillow)


def _probe(fmt: str) -> str | None:
    """None when `fmt` encodes and decodes a tiny image here, else the reason in one line."""
    try:
        _register(fmt)
    except ImportError:
        return "JPEG XL needs the pillow-jxl-plugin package (pip install pillow-jxl-plugin)"
    except Exception as exc:  # a broken native module: say so instead of failing later
        return f"the {NAMES[fmt]} plugin failed to load ({type(exc).__name__}: {exc})"
    if fmt == "avif" and not features.check("avif"):
        import PIL

        return f"this Pillow ({PIL.__version__}) was built without AVIF (Pillow 11.3+ wheels include it)"
    try:
        tiny = np.zeros((16, 16, 3), np.uint8)
        tiny[4:12, 4:12] = (200, 80, 30)
        out = decode(_encode(tiny, fmt, 50, None))
        if out.shape != tiny.shape:
            return f"{NAMES[fmt]} decodes to the wrong size here"
    except Exception as exc:  # whatever the encoder raises on this platform
        return f"{NAMES[fmt]} does not encode here ({type(exc).__name__}: {exc})"
    return None


@lru_cache(maxsize=1)
def _probe_all() -> tuple[tuple[str, str | None], ...]:
    return tuple((fmt, _probe(fmt)) for fmt in FORMATS)


def available_formats() -> dict[str, str | None]:
    """{format: None if it works here, else why not} for avif, jxl, webp, jpeg (probed once per process)."""
    return dict(_probe_all())


def _encode(image: np.ndarray, fmt: str, quality: int, threads: int | None) -> bytes:
    options = dict(FORMATS[fmt])
    if threads is not None and fmt in _THREAD_OPTION:
        options[_THREAD_OPTION[fmt]] = int(threads)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, quality=int(quality), **options)
    return buf.getvalue()


def encode_at(image: np.ndarray, fmt: str, quality: int, threads: int | None = None) -> bytes:
    """`image` (H×W×3 uint8) as a `fmt` file at Pillow quality `quality`; `threads` caps AVIF/JPEG XL's
    encoder threads (None: the encoder's default). Raises `EncoderUnavailable` where `fmt` is missing."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    reason = available_formats()[fmt]
    if reason is not None:
        raise EncoderUnavailable(reason)
    return _encode(image, fmt, quality, threads)


def decode(data: bytes) -> np.ndarray:
    _register_all_quietly()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _register_all_quietly() -> None:
    """Decoding a JPEG XL file needs its plugin registered, which `encode_at` may not have done yet."""
    try:
        _register("jxl")
    except Exception:  # no plugin: Pillow then says it cannot identify the file
        pass


def same_size(image: np.ndarray, fmt: str, max_bytes: int, threads: int | None = None) -> dict:
    """The largest quality whose `fmt` file is not larger than `max_bytes`.

    A bracketed search over 1..100 (JPEG XL 1..99): the bracket (largest setting measured within the budget, smallest
    measured over it) only ever shrinks, so the answer is exact, but each probe is placed where the
    file size, interpolated in log-size between the bracket's ends, meets the budget — a bisection step
    whenever that shrank the bracket by less than half. AVIF at speed 4 takes seconds per encode, and
    this needs about 4 encodes instead of bisection's 8.

    Returns bytes, bpp, setting (the quality used), image (decoded), max_bytes, encodes (how many
    were made) and over: True when even the lowest quality is larger than the budget (then that
    lowest-quality file is returned).
    """
    pixels = image.shape[0] * image.shape[1]
    files: dict[int, bytes] = {}

    def size(q: int) -> int:
        if q not in files:
            files[q] = encode_at(image, fmt, q, threads)
        return len(files[q])

    top = QUALITY_TOP.get(fmt, QUALITY_MAX)
    over = size(QUALITY_MIN) > max_bytes
    lo, hi = QUALITY_MIN, top + 1  # size(lo) <= max_bytes < size(hi); hi unmeasured: "above the top"
    bisect = True  # the first probe has only one measured end to interpolate from
    while not over and hi - lo > 1:
        if bisect or hi not in files:
            probe = (lo + hi) // 2
        else:
            a, b = np.log(size(lo)), np.log(size(hi))
            frac = (np.log(max(max_bytes, 1)) - a) / (b - a) if b > a else 0.5
            probe = int(min(max(lo + 1, np.floor(lo + frac * (hi - lo))), hi - 1))
        width = hi - lo
        if size(probe) <= max_bytes:
            lo = probe
        else:
            hi = probe
        bisect = (hi - lo) * 2 > width  # slow progress (a curved size(q)): halve the next time
    data = files[lo]
    return {"bytes": len(data), "bpp": len(data) * 8 / pixels, "setting": lo, "image": decode(data),
            "max_bytes": int(max_bytes), "over": over, "encodes": len(files)}


def match_rate(image: np.ndarray, fmt: str, target_bpp: float) -> dict:
    """Encode at the quality whose bpp is closest to `target_bpp` (above or below); returns bytes, bpp,
    setting (the quality), image. The full eval's matched-rate cells; comparisons at a file's size use
    `same_size`, which never exceeds it."""
    pixels = image.shape[0] * image.shape[1]
    lo, hi = QUALITY_MIN, QUALITY_TOP.get(fmt, QUALITY_MAX)
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
    candidates = {lo, max(QUALITY_MIN, lo - 1)}
    best = min(candidates, key=lambda q: abs(bpp_at(q) - target_bpp))
    data = cache[best]
    return {"bytes": len(data), "bpp": len(data) * 8 / pixels, "setting": best, "image": decode(data)}

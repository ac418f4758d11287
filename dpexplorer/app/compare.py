"""What a stakeholder compares against: AVIF, JPEG XL, WebP and JPEG at this bitstream's size (the
largest quality whose file is not larger than the .dpx), and one exported slide (original | codec
decoder | τ = 1, crops, bpp and metrics). A format whose encoder this installation lacks is left out
of the choices, and `unavailable_note` says why (never an error in the app)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dpexplorer.app import session
from dpexplorer.evaluation import baselines

# What users would pick instead, best first: the slider's same-size options, in this order
PEER_ORDER = ("avif", "jxl", "webp", "jpeg")


def same_size_formats() -> tuple[str, ...]:
    """The peer formats this installation can encode, best first."""
    available = baselines.available_formats()
    return tuple(f for f in PEER_ORDER if available.get(f, "unknown format") is None)


def left_choices() -> dict[str, str]:
    """The left side of the comparison slider: key → label. Codec decoder and original need no encoder."""
    return {"codec": "codec decoder", **{f: f"{fmt_name(f)}, same size" for f in same_size_formats()},
            "original": "original"}


def unavailable_note() -> str:
    """One line per missing encoder ("JPEG XL: not offered here: …"); "" when all four work."""
    available = baselines.available_formats()
    return "\n".join(f"{fmt_name(f)}: not offered here: {why}" for f in PEER_ORDER
                     if (why := available.get(f, "unknown format")) is not None)


def same_size(enc: session.Encoded, fmt: str) -> dict:
    """`fmt` (avif/jxl/webp/jpeg) of the original at the largest quality whose file is not larger than
    this bitstream, once per bitstream: bytes, bpp, setting (the quality used), image, over (True when
    even the lowest quality is larger than the .dpx), metrics."""
    if enc.original is None:
        raise ValueError(f"no original (a .dpx was uploaded): nothing to code with {fmt_name(fmt)}")
    if fmt not in enc._baselines:
        result = baselines.same_size(enc.original, fmt, len(enc.data))
        result["metrics"] = session.measure(enc.original, result["image"])
        enc._baselines[fmt] = result
    return enc._baselines[fmt]


def same_size_label(fmt: str, b: dict) -> str:
    """"AVIF q47, 12,345 bytes" (with "lowest quality, larger than the .dpx" when over the budget)."""
    over = ", lowest quality, larger than the .dpx" if b.get("over") else ""
    return f"{fmt_name(fmt)} q{b['setting']}, {b['bytes']:,} bytes{over}"


def left_image(enc: session.Encoded, choice: str) -> tuple[np.ndarray, str]:
    """The image and its caption for the slider's left side. A format not available here (or not
    known) falls back to the codec decoder, with the reason in the caption."""
    if choice == "original" and enc.original is not None:
        return enc.original, "original"
    if choice in PEER_ORDER and enc.original is not None:
        if choice in same_size_formats():
            b = same_size(enc, choice)
            return b["image"], same_size_label(choice, b)
        why = baselines.available_formats().get(choice) or "unknown format"
        return session.base_reconstruction(enc), f"codec decoder, {len(enc.data):,} bytes ({fmt_name(choice)}: {why})"
    return session.base_reconstruction(enc), f"codec decoder, {len(enc.data):,} bytes"


def fmt_name(fmt: str) -> str:
    return baselines.NAMES.get(fmt, fmt)


# Module-level names kept for the UI (probed once at import; the functions above re-probe)
SAME_SIZE_FORMATS = same_size_formats()
LEFT_CHOICES = left_choices()


# ---- the exported slide ------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # no matplotlib font: Pillow's own
        return ImageFont.load_default()


def _fit(image: np.ndarray, width: int) -> Image.Image:
    im = Image.fromarray(image)
    if im.width == width:
        return im
    return im.resize((width, max(1, round(im.height * width / im.width))), Image.LANCZOS)


def comparison_png(panels: list[tuple[np.ndarray, str]], crops: list[np.ndarray], caption: list[str],
                   panel_width: int = 600) -> np.ndarray:
    """One slide: the panels side by side (each scaled to `panel_width`), their zoomed crops below,
    a title over each panel and the caption lines at the bottom. RGB uint8."""
    pad, title_h, line_h = 16, 30, 24
    scaled = [_fit(img, panel_width) for img, _ in panels]
    crop_ims = [_fit(c, min(panel_width, c.shape[1])) for c in crops]
    ph = max(im.height for im in scaled)
    ch = max((im.height for im in crop_ims), default=0)
    width = pad + len(panels) * (panel_width + pad)
    height = pad + title_h + ph + (pad + ch if crops else 0) + pad + line_h * len(caption) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (im, (_, title)) in enumerate(zip(scaled, panels)):
        x = pad + i * (panel_width + pad)
        draw.text((x, pad), title, fill="black", font=_font(18))
        sheet.paste(im, (x, pad + title_h))
        if i < len(crop_ims):
            c = crop_ims[i]
            sheet.paste(c, (x + (panel_width - c.width) // 2, pad + title_h + ph + pad))
    y = height - pad - line_h * len(caption)
    for line in caption:
        draw.text((pad, y), line, fill="black", font=_font(15))
        y += line_h
    return np.asarray(sheet)


def metrics_line(name: str, m: dict) -> str:
    return (f"{name}: PSNR {m['psnr']:.2f} dB, MS-SSIM {m['ms_ssim']:.4f}, LPIPS {m['lpips']:.4f}"
            if m else f"{name}: (no original to measure against)")


def bpp_line(enc: session.Encoded) -> str:
    h = enc.header
    return (f"{h.width}×{h.height} px, {h.arch} q{h.quality}: {len(enc.data):,} bytes = {enc.bpp:.4f} bpp, "
            "one bitstream for every decoder shown")

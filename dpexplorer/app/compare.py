"""What a stakeholder compares against: JPEG and WebP at this bitstream's size, and one exported
slide (original | codec decoder | τ = 1, crops, bpp and metrics)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dpexplorer.app import session
from dpexplorer.evaluation.baselines import match_rate

# The left side of the comparison slider: key → label. Codec decoder and original need no work.
LEFT_CHOICES = {"codec": "codec decoder", "webp": "WebP, same size", "jpeg": "JPEG, same size",
                "original": "original"}
SAME_SIZE_FORMATS = ("webp", "jpeg")


def same_size(enc: session.Encoded, fmt: str) -> dict:
    """`fmt` (webp/jpeg) of the original at the quality setting whose size is closest to this bitstream's
    (the eval's matched-rate search), once per bitstream: bytes, bpp, setting, image, metrics."""
    if enc.original is None:
        raise ValueError("no original (a .dpx was uploaded): nothing to code with JPEG or WebP")
    if fmt not in enc._baselines:
        result = match_rate(enc.original, fmt, enc.bpp)
        result["metrics"] = session.measure(enc.original, result["image"])
        enc._baselines[fmt] = result
    return enc._baselines[fmt]


def left_image(enc: session.Encoded, choice: str) -> tuple[np.ndarray, str]:
    """The image and its caption for the slider's left side."""
    if choice == "original" and enc.original is not None:
        return enc.original, "original"
    if choice in SAME_SIZE_FORMATS and enc.original is not None:
        b = same_size(enc, choice)
        return b["image"], f"{fmt_name(choice)} q{b['setting']}, {b['bytes']:,} bytes"
    return session.base_reconstruction(enc), f"codec decoder, {len(enc.data):,} bytes"


def fmt_name(fmt: str) -> str:
    return {"webp": "WebP", "jpeg": "JPEG"}.get(fmt, fmt)


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

"""The app's event handlers: what each control does (the layout wires them, `layout.py`)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import gradio as gr
import numpy as np
from PIL import Image

from dpexplorer.app import compare, housekeeping, scrub, session
from dpexplorer.app.messages import user_error
from dpexplorer.codec.effort import DOCUMENTED_EFFORT, DOCUMENTED_GAIN
from dpexplorer.decoders import taumap
from dpexplorer.decoders.base import TauDecoder
from dpexplorer.evaluation import dominance
from dpexplorer.evaluation.curves import dp_plot, load_curves
from dpexplorer.io.images import load_image, zoom_crop

# Larger uploads are downscaled for the interactive demo (the CLI codes any size up to 48 MP):
# a 2-core CPU encodes and decodes ~2 MP in a few seconds.
APP_MAX_PIXELS = 2_000_000
# A .dpx the app would decode is at most APP_MAX_PIXELS; at 4 bpp (about 9× the highest shipped
# quality's Kodak rate, so pure noise fits too) that is 1 MB. Larger ones are refused before reading.
MAX_DPX_BYTES = APP_MAX_PIXELS * 4 // 8
# "Smaller file (slow)": the encoder effort the README reports (dpexplorer.codec.effort; tests lower it).
APP_EFFORT = DOCUMENTED_EFFORT


def _fit_for_app(img: np.ndarray) -> tuple[np.ndarray, str]:
    h, w = img.shape[:2]
    if h * w <= APP_MAX_PIXELS:
        return img, ""
    f = (APP_MAX_PIXELS / (h * w)) ** 0.5
    nw, nh = max(1, int(w * f)), max(1, int(h * f))
    small = np.asarray(Image.fromarray(img).resize((nw, nh), Image.LANCZOS))
    return small, f" · downscaled from {w}×{h} for the demo (the CLI codes full size)"


# ---- event handlers ----------------------------------------------------------------------------
def encode_upload(file, quality, state, request: gr.Request = None):
    return _encode(file, quality, state, request, effort=0)


def encode_smaller(file, quality, state, request: gr.Request = None, progress=gr.Progress()):
    """The same photo re-encoded with the encoder-effort mode (`dpexplorer.codec.effort`): a smaller file
    for the same decoders, in minutes; the progress bar shows the iterations and the time left."""
    return _encode(file, quality, state, request, effort=APP_EFFORT,
                   progress=lambda i, n: progress((i, n), desc="Smaller file: refining the latents",
                                                  unit="iterations"))


def _encode(file, quality, state, request, *, effort: int, progress=None):
    if file is None:  # the upload box was cleared: keep what is shown
        if state:
            return state, gr.skip(), gr.skip(), gr.skip()
        raise gr.Error("Upload an image first.")
    try:
        img, note = _fit_for_app(load_image(Path(file)))
        enc = session.encode(img, int(quality), effort=effort, progress=progress)
    except Exception as exc:
        raise user_error(exc) from None
    before = (state or {}).get("enc")
    if effort and before is not None and before.original is not None and not before.effort \
            and before.quality == enc.quality and np.array_equal(before.original, img):
        note += (f" · {100 * (len(enc.data) / len(before.data) - 1):+.1f} % bytes against the fast encoder's "
                 f"file ({len(before.data):,} bytes; PSNR and LPIPS in the table)")
    dpx = housekeeping.out_path(request, ".dpx")
    dpx.write_bytes(enc.data)
    return {"enc": enc}, housekeeping.write_png(request, img), enc.summary() + note, str(dpx)


def _estimate(img: np.ndarray, quality: int, effort: int) -> str:
    seconds = session.effort_estimate(*img.shape[:2], quality, effort)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def effort_note(file, quality):
    """What "Smaller file (slow)" costs and gives, before it is pressed: its time for this photo here."""
    text = f"Smaller file: {DOCUMENTED_GAIN}, the same decoders"
    if file is None:
        return text + "."
    try:
        img, _ = _fit_for_app(load_image(Path(file)))
    except Exception:  # the encode itself reports a bad file
        return text + "."
    return text + f"; about {_estimate(img, int(quality), APP_EFFORT)} for this photo at q{int(quality)} here."


def open_dpx(file, request: gr.Request = None):
    if file is None:
        raise gr.Error("Upload a .dpx file.")
    try:
        path = Path(file)
        if path.stat().st_size > MAX_DPX_BYTES:
            raise ValueError(
                f"file larger than {MAX_DPX_BYTES:,} bytes: the app decodes .dpx files of up to "
                f"{APP_MAX_PIXELS / 1e6:g} MP (the CLI decodes any)"
            )
        enc = session.open_bitstream(path.read_bytes())
        h = enc.header
        if h.width * h.height > APP_MAX_PIXELS:
            raise ValueError(f"{h.width}×{h.height} is over the app's {APP_MAX_PIXELS / 1e6:g} MP (the CLI decodes it)")
    except Exception as exc:
        raise user_error(exc) from None
    dpx = housekeeping.out_path(request, ".dpx")  # served from the session's folder, not from the upload cache
    dpx.write_bytes(enc.data)
    return (
        {"enc": enc},
        None,
        enc.summary() + " · decoded from an uploaded bitstream (no original to compare)",
        str(dpx),
    )


class _Foreground:
    """Counts renders in progress: the background τ frames wait for them between frames, so a τ
    release is never queued behind a whole sweep."""

    def __init__(self):
        self._n, self._cond = 0, threading.Condition()

    def __enter__(self):
        with self._cond:
            self._n += 1

    def __exit__(self, *exc):
        with self._cond:
            self._n -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0):
        with self._cond:
            self._cond.wait_for(lambda: self._n == 0, timeout)


_foreground = _Foreground()
_sweeps = _Foreground()  # background τ sweeps running


def end_session(request: gr.Request):
    """The tab closed (demo.unload): its files go now, and again once the work it started has drained (a
    render or τ sweep still running would write its last frames into a fresh folder)."""
    housekeeping.end_session(request)
    key = SimpleNamespace(session_hash=getattr(request, "session_hash", None))

    def again():
        for _ in range(2):  # a queued event of the closed tab may start after the first wait
            time.sleep(2.0)
            wait_for_work(timeout=120.0)
            housekeeping.end_session(key)

    threading.Thread(target=again, daemon=True).start()


def wait_for_work(timeout: float = 120.0) -> None:
    """After `demo.close()`: wait for renders and τ sweeps still running in worker threads (a process
    that exits under a running torch computation aborts)."""
    _foreground.wait_idle(timeout)
    _sweeps.wait_idle(timeout)


def _reconstruct(enc, family, tau, sampler, steps, seed, progress, request):
    """(image, PNG, label, metrics) at τ; a τ on the frame grid is the cached frame, or becomes one."""
    base = session.base_reconstruction(enc)
    if family is None:
        return (
            base,
            housekeeping.cached_png(enc, "codec", base, request),
            "codec decoder (no τ decoder for this quality)",
            None,
        )
    tau = float(tau)
    if tau == 0.0:
        return (
            base,
            housekeeping.cached_png(enc, "codec", base, request),
            f"{family.label}, τ=0.00 (= codec decoder)",
            None,
        )
    fs = scrub.frame_set(enc, scrub.setting_key(family, sampler, steps, seed, way=session.decode_way(enc)))
    grid = scrub.on_grid(tau)
    frame = fs.frames.get(grid) if grid is not None else None
    if frame is not None and os.path.isfile(frame.png):
        recon = load_image(Path(frame.png))
    else:

        def report(i, n):
            progress(i / n, desc=f"diffusion step {i}/{n}")

        recon = session.reconstruct(
            enc, family.key, tau, scrub.sampling_options(family, sampler, steps, seed, progress=report)
        )
        frame = (
            scrub.add_frame(enc, fs, grid, recon, write_png=lambda im: housekeeping.write_png(request, im))
            if grid is not None
            else None
        )
    png = frame.png if frame is not None else housekeeping.write_png(request, recon)
    m = None
    if frame is not None and enc.original is not None:  # a frame is measured once
        scrub.measure_frame(enc, frame, recon)
        m = {"psnr": frame.psnr, "ms_ssim": frame.ms_ssim, "lpips": frame.lpips, "grain": frame.grain}
    return recon, png, f"{family.label}, τ={tau:.2f}", m


def _table(enc: session.Encoded, rows: list[tuple[str, dict | None, int]]) -> str:
    """The metrics table; a row whose metrics are None is still being measured."""
    if enc.original is None:
        return "No original (a .dpx was uploaded): nothing to measure against."
    lines = ["| | bytes | PSNR (dB) ↑ | MS-SSIM ↑ | LPIPS ↓ | grain (1 = as smooth) |", "|---|---|---|---|---|---|"]
    lines += [
        (
            f"| {name} | {size:,} | {m['psnr']:.2f} | {m['ms_ssim']:.4f} | {m['lpips']:.4f} | {m['grain']:.2f} |"
            if m
            else f"| {name} | {size:,} | measuring… | | | |"
        )
        for name, m, size in rows
    ]
    return "\n".join(lines) + (
        f"\n\nCodec and τ decoders: **one bitstream**, {enc.bpp:.4f} bpp. Grain: over the smoothest 30 % of the "
        "original's 16-px patches, the decode's fine-detail energy over the original's (> 1: invented grain)."
    )


def _plot(enc: session.Encoded, family, sampler, steps, seed, live: dict):
    own = None
    if family is not None:
        own = scrub.frame_set(enc, scrub.setting_key(family, sampler, steps, seed, way=session.decode_way(enc))).curve()
    return dp_plot(
        load_curves(), live, quality=enc.quality, own_curve=own, family=family.key if family is not None else None
    )


def render(
    state,
    family_key,
    tau,
    sampler,
    steps,
    seed,
    zoom_x,
    zoom_y,
    left="codec",
    progress=gr.Progress(),
    request: gr.Request = None,
):
    """The comparison (left side ↔ τ decoder), zoomed crops, numbers and the plot with this image on it.
    Yields the images as soon as they are decoded, then the numbers and the plot once measured."""
    if not state or "enc" not in state:
        yield None, None, "Encode an image to see its reconstructions.", dp_plot(load_curves()), None
        return
    enc: session.Encoded = state["enc"]
    family = session.family_for(enc, family_key)
    with _foreground:
        try:
            recon, recon_png, label, m_rec = _reconstruct(enc, family, tau, sampler, steps, seed, progress, request)
            left_img, left_label = compare.left_image(enc, left)
        except Exception as exc:
            raise user_error(exc) from None
        base = session.base_reconstruction(enc)
        left_png = (
            housekeeping.cached_png(enc, left, left_img, request)
            if left in ("original", *compare.SAME_SIZE_FORMATS)
            else housekeeping.cached_png(enc, "codec", base, request)
        )
        crops = [
            (housekeeping.write_png(request, zoom_crop(im, zoom_x, zoom_y)), name)
            for im, name in ((enc.original, "original"), (base, "codec decoder"), (recon, label))
            if im is not None
        ]
        if left in compare.SAME_SIZE_FORMATS and enc.original is not None:
            crops.append((housekeeping.write_png(request, zoom_crop(left_img, zoom_x, zoom_y)), left_label))
    pair = (left_png, recon_png)
    if enc.original is not None and m_rec is None and recon is not base:  # show it now, measure next
        rows = [("codec decoder", enc._base_metrics, len(enc.data)), (label, None, len(enc.data))]
        yield pair, crops, _table(enc, rows), gr.skip(), recon_png
    with _foreground:
        live, rows = {}, []
        if enc.original is not None:
            try:
                baselines = {f: compare.same_size(enc, f) for f in compare.SAME_SIZE_FORMATS}
            except Exception as exc:
                raise user_error(exc) from None
            m_base = session.base_metrics(enc)
            if m_rec is None:
                m_rec = m_base if recon is base else session.measure(enc.original, recon)
            rows = [("codec decoder", m_base, len(enc.data)), (label, m_rec, len(enc.data))]
            rows += [
                (f"{compare.fmt_name(f)} q{b['setting']}, same size", b["metrics"], b["bytes"])
                for f, b in baselines.items()
            ]
            live = {"this image: codec decoder": m_base, f"this image: τ={float(tau):.2f}": m_rec}
            live.update({f"this image: {compare.fmt_name(f)} same size": b["metrics"] for f, b in baselines.items()})
        enc._live = live  # the sweep's plot shows the same points
        plot = _plot(enc, family, sampler, steps, seed, live)
    yield pair, crops, _table(enc, rows), plot, recon_png


def _frames_html(enc: session.Encoded | None, family, sampler, steps, seed) -> str:
    """Hidden <img> tags of this setting's cached τ frames: the browser preloads them, and the scrub
    script shows the nearest one while τ is dragged."""
    if enc is None or family is None:
        return ""
    fs = scrub.frame_set(enc, scrub.setting_key(family, sampler, steps, seed, way=session.decode_way(enc)))
    imgs = "".join(f'<img data-tau="{f.tau:g}" src="gradio_api/file={quote(f.png)}" alt="">' for f in fs.ready())
    return f'<div class="dp-frames" data-count="{len(fs.frames)}">{imgs}</div>'


def current_frames(state, family_key, sampler, steps, seed) -> str:
    enc = state.get("enc") if state else None
    return _frames_html(enc, session.family_for(enc, family_key) if enc else None, sampler, steps, seed)


def tau_frames(state, family_key, sampler, steps, seed, progress=gr.Progress(), request: gr.Request = None):
    """Render τ = 0, 0.1, …, 1 of this setting in the background (one synthesis pass each, the sample
    cached); yields the frames as they come, then this image's τ curve on the plot."""
    if not state or "enc" not in state:
        yield "", "Encode an image first.", gr.skip()
        return
    enc: session.Encoded = state["enc"]
    family = session.family_for(enc, family_key)
    if family is None:
        yield "", "No τ decoder is shipped for this quality.", gr.skip()
        return
    with _sweeps:
        yield from _sweep(enc, family, sampler, steps, seed, progress, request)


def _sweep(enc, family, sampler, steps, seed, progress, request):
    t0 = time.perf_counter()
    frames = scrub.render_frames(
        enc,
        family,
        sampler,
        steps,
        seed=seed,
        write_png=lambda im: housekeeping.write_png(request, im),
        base_png=housekeeping.cached_png(enc, "codec", session.base_reconstruction(enc), request),
    )
    key = scrub.setting_key(family, sampler, steps, seed, way=session.decode_way(enc))
    scrub.frame_set(enc, key)  # the latest asked for, until another setting is rendered
    total = len(scrub.FRAME_TAUS)
    ready_s = None
    while True:
        _foreground.wait_idle()  # a render (a τ release) goes first
        if scrub.latest_setting(enc) != key:  # another setting was rendered since: its own sweep follows
            yield gr.skip(), gr.skip(), gr.skip()
            return
        try:
            phase, done, total = next(frames)
        except StopIteration:
            break
        except Exception as exc:
            raise user_error(exc) from None
        if phase == "frames":
            progress(done / total, desc=f"τ frames {done}/{total}")
            if done < total:
                yield _frames_html(enc, family, sampler, steps, seed), f"τ frames: {done}/{total}…", gr.skip()
            elif ready_s is None:
                ready_s = time.perf_counter() - t0
                yield (
                    _frames_html(enc, family, sampler, steps, seed),
                    f"τ frames ready: {total} in {ready_s:.1f} s (scrub τ freely; the exact τ renders on release)"
                    + (" · measuring the τ curve…" if enc.original is not None else ""),
                    gr.skip(),
                )
        else:
            progress(done / total, desc=f"τ curve {done}/{total}")
    status = f"τ frames ready: {total} in {ready_s or 0:.1f} s (scrub τ freely; the exact τ renders on release)" + (
        f" · τ curve in {time.perf_counter() - t0:.1f} s" if enc.original is not None else ""
    )
    yield _frames_html(enc, family, sampler, steps, seed), status, _plot(enc, family, sampler, steps, seed, enc._live)


def export_comparison(state, family_key, sampler, steps, seed, zoom_x, zoom_y, request: gr.Request = None):
    """One slide PNG (original | codec decoder | τ = 1 | AVIF at the same size, crops, bpp and the metrics of
    every same-size format) and the lossless PNGs."""
    if not state or "enc" not in state:
        raise gr.Error("Encode an image first.")
    enc: session.Encoded = state["enc"]
    family = session.family_for(enc, family_key)
    with _foreground:
        try:
            base = session.base_reconstruction(enc)
            panels = ([(enc.original, "original")] if enc.original is not None else []) + [(base, "codec decoder")]
            caption = [compare.bpp_line(enc)]
            files = [housekeeping.cached_png(enc, "codec", base, request)]
            if enc.original is not None:
                caption.append(compare.metrics_line("codec decoder", session.base_metrics(enc)))
            if family is not None:
                full, full_png, label, m = _reconstruct(
                    enc, family, 1.0, sampler, steps, seed, lambda *a, **k: None, request
                )
                panels.append((full, label))
                files.append(full_png)
                if enc.original is not None:
                    caption.append(compare.metrics_line(label, m or session.measure(enc.original, full)))
                settings = (f"{scrub.offered_sampler(family, sampler)}, {steps} steps, seed {seed}"
                            if family.uses_sampler else "deterministic")
                caption.append(f"τ decoder: {family.label} ({settings}); crops ×4 around ({zoom_x:.2f}, {zoom_y:.2f})")
            if enc.original is not None:  # what users would pick instead, at the same size: the first as a panel
                for i, fmt in enumerate(compare.SAME_SIZE_FORMATS):
                    b = compare.same_size(enc, fmt)
                    label = compare.same_size_label(fmt, b)
                    if i == 0:
                        panels.append((b["image"], label))
                    caption.append(compare.metrics_line(label, b["metrics"]))
            crops = [zoom_crop(im, zoom_x, zoom_y) for im, _ in panels]
            slide = compare.comparison_png(panels, crops, caption)
        except Exception as exc:
            raise user_error(exc) from None
    slide_png = housekeeping.write_png(request, slide)
    return slide_png, [slide_png, *files]


def editor_to_mask(editor, request: gr.Request = None):
    """The painted strokes of the τ brush (any layer, any colour) → a grayscale mask PNG (white = painted),
    as the brush's input file and as a preview."""
    alphas = [a[..., 3] for a in map(np.asarray, (editor or {}).get("layers") or []) if a.ndim == 3 and a.shape[2] == 4]
    alpha = np.maximum.reduce(alphas) if alphas else None
    if alpha is None or not alpha.any():
        raise gr.Error("Paint on the image first (the brush marks where τ applies).")
    png = housekeeping.write_png(request, np.repeat(alpha[..., None], 3, axis=2))
    return png, png


def brush(state, mask_file, family_key, tau, sampler, steps, seed, mode="paint realism", request: gr.Request = None):
    """Decode the bitstream with a spatial τ: τ where the mask is white ("paint realism") or everywhere
    but there ("protect"); the same bitstream. Returns the image and its lossless PNG."""
    if not state or "enc" not in state:
        raise gr.Error("Encode an image first.")
    enc: session.Encoded = state["enc"]
    family = session.family_for(enc, family_key)
    if family is None:
        raise gr.Error("No τ decoder is shipped for this quality.")
    if mask_file is None:
        raise gr.Error("Paint or upload a mask first.")
    with _foreground:
        try:
            h = enc.header
            mask = taumap.load_tau_map(Path(mask_file), h.height, h.width)
            if mode == "protect":
                mask = 1.0 - mask
            options = scrub.sampling_options(family, sampler, steps, seed)
            image = session.reconstruct(enc, family.key, 1.0, replace(options, tau_map=float(tau) * mask))
        except Exception as exc:
            raise user_error(exc) from None
    png = housekeeping.write_png(request, image)
    return png, png


def family_choices(quality: int) -> list[tuple[str, str]]:
    return [(f.label, f.key) for f in session.families_for(quality)]


def update_families(quality):
    choices = family_choices(int(quality))
    return gr.update(choices=choices, value=choices[0][1] if choices else None)


def sampler_setting(family, sampler=None) -> tuple[list, str | None, int]:
    """(sampler choices, sampler, steps) a family's controls start from: its own samplers (the pixel decoder
    withholds DDPM), keeping `sampler` where the family offers it, else its first; its own step count (the
    pixel decoder's: its one-step refiner). `family` None: every sampler, the common step count."""
    choices = session.sampler_choices(family)
    keys = [key for _, key in choices]
    value = sampler if sampler in keys else (keys[0] if keys else None)
    return choices, value, (family or TauDecoder).default_steps


def sampler_controls(family_key, sampler=None):
    """Sampler, steps and seed apply only to families that sample; the list and the steps are the
    family's own (`sampler_setting`)."""
    family = session.FAMILIES.get(family_key)
    visible = family is None or family.uses_sampler
    choices, value, default_steps = sampler_setting(family, sampler)
    steps = gr.update(visible=visible, **({"value": default_steps} if family is not None else {}))
    return gr.update(visible=visible, choices=choices, value=value), steps, gr.update(visible=visible)


def setting_note(family_key, sampler, steps, quality) -> str:
    """Where the chosen sampler setting measured dominated on Kodak, say so next to the controls."""
    family = session.FAMILIES.get(family_key)
    if family is None or not family.uses_sampler or quality is None:
        return ""
    return dominance.setting_note(load_curves(), family.key, int(quality), sampler, int(steps))


def hint_view(state, request: gr.Request = None):
    """For a file that carries the sender's τ hint: the switch (on), the hint over the codec decoder's
    image, and the hint as the τ brush's starting mask; hidden for a file without one. The grain guard's
    switch (on) wherever the codec has a guard."""
    enc = state.get("enc") if state else None
    guard = gr.update(visible=enc is not None and session.has_guard(enc), value=True)
    if enc is not None:
        enc.use_guard = True
    if enc is None or enc.header.hint is None:
        return gr.update(visible=False, value=True), gr.update(visible=False), None, gr.skip(), gr.skip(), guard
    enc.use_hint = True
    hint = enc.stream.hint_map()
    mask = housekeeping.write_png(request, np.repeat(np.rint(hint * 255).astype(np.uint8)[..., None], 3, axis=2))
    return gr.update(visible=True, value=True), gr.update(visible=True), hint_overlay(enc, request), mask, mask, guard


def hint_overlay(enc: session.Encoded, request) -> str:
    """The codec decoder's image, tinted where the hint applies realism (τ = 1: full tint), as a PNG."""
    base = session.base_reconstruction(enc).astype(np.float32)
    h = enc.stream.hint_map()[..., None]
    tint = np.array([255, 45, 85], np.float32)  # the brush's colour: the same meaning, "realism here"
    return housekeeping.write_png(
        request, np.clip(np.rint(base * (1 - 0.55 * h) + tint * 0.55 * h), 0, 255).astype(np.uint8)
    )


def set_use_hint(state, use_hint) -> None:
    """The switch: decode through the sender's τ hint, or raw τ everywhere (the renders that follow)."""
    enc = state.get("enc") if state else None
    if enc is not None:
        enc.use_hint = bool(use_hint)


def set_use_guard(state, use_guard) -> None:
    """The switch: without a followed hint, weight τ by the receiver's grain guard, or decode uniform τ."""
    enc = state.get("enc") if state else None
    if enc is not None:
        enc.use_guard = bool(use_guard)


def editor_background(state, request: gr.Request = None):
    """The τ brush paints over the codec decoder's image of the current bitstream."""
    if not state or "enc" not in state:
        return gr.skip()
    enc = state["enc"]
    return {
        "background": housekeeping.cached_png(enc, "codec", session.base_reconstruction(enc), request),
        "layers": [],
        "composite": None,
    }


# ---- the blind test's pixels (`dpexplorer.app.blindtest`): what each side key decodes to ---------
# The sampler pair compares two settings of the first τ decoder that offers both, at τ = 1.
BLIND_SAMPLERS = {"sampler-a": ("ddim", 10), "sampler-b": ("ddpm", 10)}


def blind_render(side: str, state) -> np.ndarray | None:
    """The decode of the current bitstream for a blind-test side; None when it cannot be made here."""
    enc = state.get("enc") if state else None
    if enc is None:
        return None
    if side == "tau0":
        return session.base_reconstruction(enc)
    families = session.families_for(enc.quality)
    if side == "tau1" and families:
        return session.reconstruct(enc, families[0].key, 1.0)
    if side in BLIND_SAMPLERS:
        sampler, steps = BLIND_SAMPLERS[side]
        both = {smp for smp, _ in BLIND_SAMPLERS.values()}  # one family draws both sides
        sampling = [f for f in families if both <= set(f.offered_samplers())]
        if not sampling:
            return None
        return session.reconstruct(enc, sampling[0].key, 1.0, scrub.sampling_options(sampling[0], sampler, steps, 0))
    if side in compare.SAME_SIZE_FORMATS and enc.original is not None:
        return compare.same_size(enc, side)["image"]
    return None


def blind_current(state) -> tuple[np.ndarray | None, str, int]:
    """(original, image hash, quality) of the current bitstream, for the blind test's records."""
    enc = state.get("enc") if state else None
    if enc is None:
        return None, "", 0
    return enc.original, enc.stream.sha256[:16], enc.quality


_blind_examples: dict[tuple[int, int], session.Encoded] = {}
_blind_examples_lock = threading.Lock()


def blind_example(round_index: int, quality: int) -> dict | None:
    """The examples in turn: example `round_index` modulo their number, encoded once at `quality`."""
    examples = session.example_images()
    if not examples:
        return None
    index = round_index % len(examples)
    with _blind_examples_lock:
        if (index, quality) not in _blind_examples:
            img, _ = _fit_for_app(load_image(examples[index][1]))
            _blind_examples[(index, quality)] = session.encode(img, quality)
        return {"enc": _blind_examples[(index, quality)]}

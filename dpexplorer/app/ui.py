"""The Gradio app (the only module that imports Gradio). `app.py` builds it with `build_demo()`."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import gradio as gr
import numpy as np
from PIL import Image

from dpexplorer.app import compare, scrub, session
from dpexplorer.decoders import taumap
from dpexplorer.errors import DPExplorerError
from dpexplorer.evaluation.curves import dp_plot, load_curves
from dpexplorer.io.images import load_image, save_png, zoom_crop

MAX_UPLOAD = "25mb"
# Larger uploads are downscaled for the interactive demo (the CLI codes any size up to 48 MP):
# a 2-core CPU encodes and decodes ~2 MP in a few seconds.
APP_MAX_PIXELS = 2_000_000
# A .dpx the app would decode is at most APP_MAX_PIXELS; at 4 bpp (about 9× the highest shipped
# quality's Kodak rate, so pure noise fits too) that is 1 MB. Larger ones are refused before reading.
MAX_DPX_BYTES = APP_MAX_PIXELS * 4 // 8
# Every file the app writes lives in OUT_DIR/<session>/: removed when the session's tab closes
# (demo.unload) and, for sessions that never say goodbye (API clients, crashed browsers), swept once
# untouched for MAX_AGE_S, at start and then at most every SWEEP_EVERY_S.
OUT_DIR = Path(os.environ.get("DPEXPLORER_APP_TMP", Path(tempfile.gettempdir()) / "dpexplorer-app"))
MAX_AGE_S = 3600
SWEEP_EVERY_S = 300
# Sessions whose state (images, bitstream) is kept in memory; the least recently used beyond go.
MAX_SESSIONS = 50
# Requests waiting in the queue; beyond, a request is refused at once ("queue full") instead of
# piling up memory and minutes of waiting on a 2-core machine.
MAX_QUEUE = 32
_log = logging.getLogger("dpexplorer.app")
_last_sweep = 0.0
_sweep_lock = threading.Lock()

INTRO = """**DP Explorer** — encode once, then steer the **distortion–perception tradeoff at the receiver**:
τ = 0 is the codec's own decoder (best PSNR), τ = 1 the diffusion decoder (realistic texture); the
bitstream never changes. Upload a photo (≤ 25 MB; over 2 MP is downscaled) or pick an example."""


def _session_dir(request: gr.Request | None) -> Path:
    # The session hash comes from the client: hashed, so it can never name a path outside OUT_DIR.
    key = getattr(request, "session_hash", None) or "shared"
    return OUT_DIR / hashlib.sha256(key.encode()).hexdigest()[:24]


def _out_path(request: gr.Request | None, suffix: str) -> Path:
    sweep()
    d = _session_dir(request)
    d.mkdir(parents=True, exist_ok=True)
    os.utime(d)  # a session in use is never swept
    return d / f"{uuid.uuid4().hex}{suffix}"


def _png(request: gr.Request | None, image: np.ndarray) -> str:
    """`image` as a PNG of this session, fastest lossless level. Images go to Gradio as files, never
    as arrays: Gradio writes arrays to a content-named cache file in place, so two sessions showing
    the same pixels (the same example photo) could truncate the file while the other downloads it
    (found by tests/e2e/test_load.py); files it copies atomically."""
    return str(save_png(image, _out_path(request, ".png"), compress_level=1))


def sweep(max_age_s: float = MAX_AGE_S, force: bool = False) -> int:
    """Remove session folders (and stray files) of OUT_DIR untouched for `max_age_s`; how many."""
    global _last_sweep
    with _sweep_lock:
        now = time.time()
        if not force and now - _last_sweep < SWEEP_EVERY_S:
            return 0
        _last_sweep, removed = now, 0
        for p in OUT_DIR.glob("*") if OUT_DIR.is_dir() else []:
            try:
                if now - p.lstat().st_mtime > max_age_s:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                    removed += 1
            except OSError:  # gone meanwhile, or busy: the next sweep tries again
                pass
        return removed


def end_session(request: gr.Request):
    shutil.rmtree(_session_dir(request), ignore_errors=True)


def _fit_for_app(img: np.ndarray) -> tuple[np.ndarray, str]:
    h, w = img.shape[:2]
    if h * w <= APP_MAX_PIXELS:
        return img, ""
    f = (APP_MAX_PIXELS / (h * w)) ** 0.5
    nw, nh = max(1, int(w * f)), max(1, int(h * f))
    small = np.asarray(Image.fromarray(img).resize((nw, nh), Image.LANCZOS))
    return small, f" · downscaled from {w}×{h} for the demo (the CLI codes full size)"


# An absolute POSIX or Windows path (a run of path characters after / or X:\).
_PATH = re.compile(r"(?:[A-Za-z]:\\|(?<![\w.])/)[^\s'\"`:,;()\[\]]+")


_QUOTED_PATH = re.compile(r"""(['"])((?:[A-Za-z]:\\|/)[^'"]*)\1""")  # may hold spaces


def _last_part(path: str) -> str:
    return re.split(r"[\\/]", path.rstrip("/\\"))[-1] or "file"


def public_message(text: str) -> str:
    """`text` with every absolute path cut to its last component: messages never show server paths."""
    text = _QUOTED_PATH.sub(lambda m: m.group(1) + _last_part(m.group(2)) + m.group(1), text)
    return _PATH.sub(lambda m: _last_part(m.group(0)), text)


def _user_error(exc: Exception) -> gr.Error:
    if isinstance(exc, OSError) and not isinstance(exc, DPExplorerError):  # e.g. "[Errno 2] …: '/tmp/…'"
        return gr.Error(public_message(exc.strerror or "could not read the file"))
    if isinstance(exc, (DPExplorerError, ValueError)):
        return gr.Error(public_message(str(exc)))
    _log.exception("unexpected error")  # the details stay in the server log
    return gr.Error(f"Internal error ({type(exc).__name__}); please try again or another file.")


def _families_for(quality: int) -> list[tuple[str, str]]:
    return [(f.label, f.key) for f in session.FAMILIES.values() if quality in f.qualities()]


# ---- event handlers ----------------------------------------------------------------------------
def encode_upload(file, quality, state, request: gr.Request = None):
    if file is None:  # the upload box was cleared: keep what is shown
        if state:
            return state, gr.skip(), gr.skip(), gr.skip()
        raise gr.Error("Upload an image first.")
    try:
        img, note = _fit_for_app(load_image(Path(file)))
        enc = session.encode(img, int(quality))
    except Exception as exc:
        raise _user_error(exc) from None
    dpx = _out_path(request, ".dpx")
    dpx.write_bytes(enc.data)
    return {"enc": enc}, _png(request, img), enc.summary() + note, str(dpx)


def open_dpx(file, request: gr.Request = None):
    if file is None:
        raise gr.Error("Upload a .dpx file.")
    try:
        path = Path(file)
        if path.stat().st_size > MAX_DPX_BYTES:
            raise ValueError(f"file larger than {MAX_DPX_BYTES:,} bytes: the app decodes .dpx files of up to "
                             f"{APP_MAX_PIXELS / 1e6:g} MP (the CLI decodes any)")
        enc = session.open_bitstream(path.read_bytes())
        h = enc.header
        if h.width * h.height > APP_MAX_PIXELS:
            raise ValueError(f"{h.width}×{h.height} is over the app's {APP_MAX_PIXELS / 1e6:g} MP (the CLI decodes it)")
    except Exception as exc:
        raise _user_error(exc) from None
    dpx = _out_path(request, ".dpx")  # served from the session's folder, not from the upload cache
    dpx.write_bytes(enc.data)
    return {"enc": enc}, None, enc.summary() + " · decoded from an uploaded bitstream (no original to compare)", str(dpx)


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


def wait_for_work(timeout: float = 120.0) -> None:
    """After `demo.close()`: wait for renders and τ sweeps still running in worker threads (a process
    that exits under a running torch computation aborts)."""
    _foreground.wait_idle(timeout)
    _sweeps.wait_idle(timeout)


def _family(enc: session.Encoded, family_key) -> session.DecoderFamily | None:
    """The chosen family if it has weights for this bitstream's quality."""
    family = session.FAMILIES.get(family_key)
    return family if family is not None and enc.quality in family.qualities() else None


def _cached_png(enc: session.Encoded, name: str, image: np.ndarray, request) -> str:
    """A PNG written once per bitstream (codec decoder, original, same-size baselines)."""
    path = enc._pngs.get(name)
    if path is None or not os.path.isfile(path):  # swept after an idle hour: written again
        path = enc._pngs[name] = _png(request, image)
    return path


def _reconstruct(enc, family, tau, sampler, steps, seed, progress, request):
    """(image, PNG, label, metrics) at τ; a τ on the frame grid is the cached frame, or becomes one."""
    base = session.base_reconstruction(enc)
    if family is None:
        return base, _cached_png(enc, "codec", base, request), "codec decoder (no τ decoder for this quality)", None
    tau = float(tau)
    if tau == 0.0:
        return base, _cached_png(enc, "codec", base, request), f"{family.label}, τ=0.00 (= codec decoder)", None
    fs = scrub.frame_set(enc, scrub.setting_key(family, sampler, steps, seed))
    grid = scrub.on_grid(tau)
    frame = fs.frames.get(grid) if grid is not None else None
    if frame is not None and os.path.isfile(frame.png):
        recon = load_image(Path(frame.png))
    else:
        def report(i, n):
            progress(i / n, desc=f"diffusion step {i}/{n}")

        recon = family.reconstruct(enc.data, tau, sampler, int(steps), int(seed), report)
        frame = scrub.add_frame(enc, fs, grid, recon, lambda im: _png(request, im)) if grid is not None else None
    png = frame.png if frame is not None else _png(request, recon)
    m = None
    if frame is not None and enc.original is not None:  # a frame is measured once
        scrub.measure_frame(enc, frame, recon)
        m = {"psnr": frame.psnr, "ms_ssim": frame.ms_ssim, "lpips": frame.lpips}
    return recon, png, f"{family.label}, τ={tau:.2f}", m


def _table(enc: session.Encoded, rows: list[tuple[str, dict | None, int]]) -> str:
    """The metrics table; a row whose metrics are None is still being measured."""
    if enc.original is None:
        return "No original (a .dpx was uploaded): nothing to measure against."
    lines = ["| | bytes | PSNR (dB) ↑ | MS-SSIM ↑ | LPIPS ↓ |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {size:,} | {m['psnr']:.2f} | {m['ms_ssim']:.4f} | {m['lpips']:.4f} |" if m else
              f"| {name} | {size:,} | measuring… | | |" for name, m, size in rows]
    return "\n".join(lines) + f"\n\nCodec and τ decoders: **one bitstream**, {enc.bpp:.4f} bpp."


def _plot(enc: session.Encoded, family, sampler, steps, seed, live: dict):
    own = None
    if family is not None:
        own = scrub.frame_set(enc, scrub.setting_key(family, sampler, steps, seed)).curve()
    return dp_plot(load_curves(), live, quality=enc.quality, own_curve=own,
                   family=family.key if family is not None else None)


def render(state, family_key, tau, sampler, steps, seed, zoom_x, zoom_y, left="codec", progress=gr.Progress(),
           request: gr.Request = None):
    """The comparison (left side ↔ τ decoder), zoomed crops, numbers and the plot with this image on it.
    Yields the images as soon as they are decoded, then the numbers and the plot once measured."""
    if not state or "enc" not in state:
        yield None, None, "Encode an image to see its reconstructions.", dp_plot(load_curves()), None
        return
    enc: session.Encoded = state["enc"]
    family = _family(enc, family_key)
    with _foreground:
        try:
            recon, recon_png, label, m_rec = _reconstruct(enc, family, tau, sampler, steps, seed, progress, request)
            left_img, left_label = compare.left_image(enc, left)
        except Exception as exc:
            raise _user_error(exc) from None
        base = session.base_reconstruction(enc)
        left_png = (_cached_png(enc, left, left_img, request) if left in ("original", *compare.SAME_SIZE_FORMATS)
                    else _cached_png(enc, "codec", base, request))
        crops = [(_png(request, zoom_crop(im, zoom_x, zoom_y)), name) for im, name in
                 ((enc.original, "original"), (base, "codec decoder"), (recon, label)) if im is not None]
        if left in compare.SAME_SIZE_FORMATS and enc.original is not None:
            crops.append((_png(request, zoom_crop(left_img, zoom_x, zoom_y)), left_label))
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
                raise _user_error(exc) from None
            m_base = session.base_metrics(enc)
            if m_rec is None:
                m_rec = m_base if recon is base else session.measure(enc.original, recon)
            rows = [("codec decoder", m_base, len(enc.data)), (label, m_rec, len(enc.data))]
            rows += [(f"{compare.fmt_name(f)} q{b['setting']}, same size", b["metrics"], b["bytes"])
                     for f, b in baselines.items()]
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
    fs = scrub.frame_set(enc, scrub.setting_key(family, sampler, steps, seed))
    imgs = "".join(f'<img data-tau="{f.tau:g}" src="gradio_api/file={quote(f.png)}" alt="">' for f in fs.ready())
    return f'<div class="dp-frames" data-count="{len(fs.frames)}">{imgs}</div>'


def current_frames(state, family_key, sampler, steps, seed) -> str:
    enc = state.get("enc") if state else None
    return _frames_html(enc, _family(enc, family_key) if enc else None, sampler, steps, seed)


def tau_frames(state, family_key, sampler, steps, seed, progress=gr.Progress(), request: gr.Request = None):
    """Render τ = 0, 0.1, …, 1 of this setting in the background (one synthesis pass each, the sample
    cached); yields the frames as they come, then this image's τ curve on the plot."""
    if not state or "enc" not in state:
        yield "", "Encode an image first.", gr.skip()
        return
    enc: session.Encoded = state["enc"]
    family = _family(enc, family_key)
    if family is None:
        yield "", "No τ decoder is shipped for this quality.", gr.skip()
        return
    with _sweeps:
        yield from _sweep(enc, family, sampler, steps, seed, progress, request)


def _sweep(enc, family, sampler, steps, seed, progress, request):
    t0 = time.perf_counter()
    frames = scrub.render_frames(enc, family, sampler, steps, seed, lambda im: _png(request, im),
                                 _cached_png(enc, "codec", session.base_reconstruction(enc), request))
    key = scrub.setting_key(family, sampler, steps, seed)
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
            raise _user_error(exc) from None
        if phase == "frames":
            progress(done / total, desc=f"τ frames {done}/{total}")
            if done < total:
                yield _frames_html(enc, family, sampler, steps, seed), f"τ frames: {done}/{total}…", gr.skip()
            elif ready_s is None:
                ready_s = time.perf_counter() - t0
                yield (_frames_html(enc, family, sampler, steps, seed),
                       f"τ frames ready: {total} in {ready_s:.1f} s (scrub τ freely; the exact τ renders on release)"
                       + (" · measuring the τ curve…" if enc.original is not None else ""), gr.skip())
        else:
            progress(done / total, desc=f"τ curve {done}/{total}")
    status = (f"τ frames ready: {total} in {ready_s or 0:.1f} s (scrub τ freely; the exact τ renders on release)"
              + (f" · τ curve in {time.perf_counter() - t0:.1f} s" if enc.original is not None else ""))
    yield _frames_html(enc, family, sampler, steps, seed), status, _plot(enc, family, sampler, steps, seed, enc._live)


def export_comparison(state, family_key, sampler, steps, seed, zoom_x, zoom_y, request: gr.Request = None):
    """One slide PNG (original | codec decoder | τ = 1, crops, bpp and metrics) and the lossless PNGs."""
    if not state or "enc" not in state:
        raise gr.Error("Encode an image first.")
    enc: session.Encoded = state["enc"]
    family = _family(enc, family_key)
    with _foreground:
        try:
            base = session.base_reconstruction(enc)
            panels = ([(enc.original, "original")] if enc.original is not None else []) + [(base, "codec decoder")]
            caption = [compare.bpp_line(enc)]
            files = [_cached_png(enc, "codec", base, request)]
            if enc.original is not None:
                caption.append(compare.metrics_line("codec decoder", session.base_metrics(enc)))
            if family is not None:
                full, full_png, label, m = _reconstruct(enc, family, 1.0, sampler, steps, seed, lambda *a, **k: None,
                                                        request)
                panels.append((full, label))
                files.append(full_png)
                if enc.original is not None:
                    caption.append(compare.metrics_line(label, m or session.measure(enc.original, full)))
                settings = f"{sampler}, {steps} steps, seed {seed}" if family.uses_sampler else "deterministic"
                caption.append(f"τ decoder: {family.label} ({settings}); crops ×4 around ({zoom_x:.2f}, {zoom_y:.2f})")
            crops = [zoom_crop(im, zoom_x, zoom_y) for im, _ in panels]
            slide = compare.comparison_png(panels, crops, caption)
        except Exception as exc:
            raise _user_error(exc) from None
    slide_png = _png(request, slide)
    return slide_png, [slide_png, *files]


def editor_to_mask(editor, request: gr.Request = None):
    """The painted strokes of the τ brush (any layer, any colour) → a grayscale mask PNG (white = painted),
    as the brush's input file and as a preview."""
    alphas = [a[..., 3] for a in map(np.asarray, (editor or {}).get("layers") or []) if a.ndim == 3 and a.shape[2] == 4]
    alpha = np.maximum.reduce(alphas) if alphas else None
    if alpha is None or not alpha.any():
        raise gr.Error("Paint on the image first (the brush marks where τ applies).")
    png = _png(request, np.repeat(alpha[..., None], 3, axis=2))
    return png, png


def brush(state, mask_file, family_key, tau, sampler, steps, seed, mode="paint realism", request: gr.Request = None):
    """Decode the bitstream with a spatial τ: τ where the mask is white ("paint realism") or everywhere
    but there ("protect"); the same bitstream. Returns the image and its lossless PNG."""
    if not state or "enc" not in state:
        raise gr.Error("Encode an image first.")
    enc: session.Encoded = state["enc"]
    family = _family(enc, family_key)
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
            image = session.reconstruct_map(family, enc.data, float(tau) * mask, sampler, int(steps), int(seed))
        except Exception as exc:
            raise _user_error(exc) from None
    png = _png(request, image)
    return png, png


def update_families(quality):
    choices = _families_for(int(quality))
    return gr.update(choices=choices, value=choices[0][1] if choices else None)


def sampler_controls(family_key):
    """Sampler, steps and seed apply only to families that sample."""
    family = session.FAMILIES.get(family_key)
    visible = family is None or family.uses_sampler
    return gr.update(visible=visible), gr.update(visible=visible), gr.update(visible=visible)


def editor_background(state, request: gr.Request = None):
    """The τ brush paints over the codec decoder's image of the current bitstream."""
    if not state or "enc" not in state:
        return gr.skip()
    enc = state["enc"]
    return {"background": _cached_png(enc, "codec", session.base_reconstruction(enc), request), "layers": [],
            "composite": None}


# The scrub: while τ is dragged, the compare slider's right image becomes the nearest preloaded τ
# frame at once (no server round trip); on release the server's exact render replaces it.
SCRUB_JS = """
if (!window.__dpScrub) {
  window.__dpScrub = true;
  const show = (value) => {
    const frames = [...document.querySelectorAll('#tau-frames img[data-tau]')];
    const after = document.querySelectorAll('#compare img');
    if (!frames.length || !after.length) return;
    let best = frames[0];
    for (const f of frames) if (Math.abs(f.dataset.tau - value) < Math.abs(best.dataset.tau - value)) best = f;
    const target = after[after.length - 1];
    if (target.getAttribute('src') !== best.src) { target.src = best.src; target.dataset.scrubTau = best.dataset.tau; }
  };
  // Decode each frame as it arrives, so that showing it is a swap, not a PNG decode.
  new MutationObserver(() => document.querySelectorAll('#tau-frames img[data-tau]').forEach(
    (img) => img.decode().catch(() => null))).observe(element, {childList: true, subtree: true});
  document.addEventListener('input', (e) => {
    if (e.target.closest && e.target.closest('#tau')) show(parseFloat(e.target.value));
  }, true);
}
"""

CSS = """
#upload { min-height: 0 !important; }
#upload .wrap { min-height: 56px !important; padding: 4px !important; }
#tau-frames { display: none !important; }
#compare img { object-fit: contain; }
.dp-strip { align-items: stretch; }
footer { display: none !important; }
"""


# ---- layout ------------------------------------------------------------------------------------
def build_demo() -> gr.Blocks:
    from dpexplorer.hub.loading import latent_qualities, shipped_qualities

    qualities = shipped_qualities() or [1]
    with_diffusion = [q for q in qualities if q in latent_qualities()]
    # open on the best quality that shows both decoders: where the diffusion decoder is strongest
    default_q = (with_diffusion or qualities)[-1]
    families = _families_for(default_q)
    first = session.FAMILIES.get(families[0][1]) if families else None
    samples = first is None or first.uses_sampler
    examples = session.example_images()

    sweep(force=True)  # leftovers of an earlier run
    # delete_cache: Gradio's own copies of uploads and served files, swept by the same age.
    with gr.Blocks(title="DP Explorer", delete_cache=(SWEEP_EVERY_S, MAX_AGE_S)) as demo:
        gr.Markdown(INTRO, elem_id="intro")
        state = gr.State({}, time_to_live=MAX_AGE_S)  # an idle session's images leave memory
        # 1. a compact strip: photo, examples, quality, Encode
        with gr.Row(elem_classes="dp-strip", equal_height=False):
            upload = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="upload", height=90,
                             scale=2, min_width=200)
            with gr.Column(scale=4, min_width=280):
                if examples:
                    gr.Examples([[str(p)] for _, p in examples], inputs=[upload],
                                example_labels=[label.split(" (")[0] for label, _ in examples], label="Examples")
            with gr.Column(scale=2, min_width=200):
                with gr.Row():
                    quality = gr.Dropdown([(f"q{q}", q) for q in qualities], value=default_q, label="Quality",
                                          elem_id="quality", min_width=80)
                    encode_btn = gr.Button("Encode", variant="primary", elem_id="encode-btn", min_width=80)
                info = gr.Markdown(elem_id="encode-info")
        # 2. the comparison first, τ directly under it, the decoder controls and numbers beside it
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=320):
                slider = gr.ImageSlider(label="left side ↔ τ decoder (drag the divider)", format="png",
                                         elem_id="compare", max_height=420, buttons=["fullscreen", "download"])
                tau = gr.Slider(0, 1, value=1.0, step=0.05, label="τ: codec decoder (0) … full perception (1)",
                                elem_id="tau")
                frames_status = gr.Markdown(elem_id="frames-status")
                frames_html = gr.HTML("", elem_id="tau-frames", js_on_load=SCRUB_JS)
                numbers = gr.Markdown(elem_id="metrics")
            with gr.Column(scale=1, min_width=260):
                family = gr.Radio(families, value=families[0][1] if families else None, label="τ decoder",
                                  elem_id="family")
                left = gr.Radio([(label, key) for key, label in compare.LEFT_CHOICES.items()], value="codec",
                                label="Left side", elem_id="left")
                sampler = gr.Dropdown(session.sampler_choices(), value="ddpm", label="Sampler",  # best LPIPS on Kodak
                                      elem_id="sampler", visible=samples)
                with gr.Row():
                    # up to DDPM 100, paper 001's many-step setting (a progress bar shows slow ones)
                    steps = gr.Slider(1, 100, value=10, step=1, label="Steps", elem_id="steps", visible=samples,
                                      min_width=120)
                    seed = gr.Number(0, precision=0, label="Seed", elem_id="seed", visible=samples, min_width=80)
                original = gr.Image(label="Original", format="png", interactive=False, elem_id="original", height=180)
        # 3. details: crops, original, files, then the plot
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                zoom = gr.Gallery(label="Zoomed crops (×4, nearest)", columns=4, format="png", elem_id="zoom",
                                  height=300)
                with gr.Row():
                    zoom_x = gr.Slider(0, 1, value=0.5, step=0.01, label="Zoom x", elem_id="zoom-x")
                    zoom_y = gr.Slider(0, 1, value=0.5, step=0.01, label="Zoom y", elem_id="zoom-y")
            with gr.Column(scale=2):
                dpx_out = gr.File(label="Bitstream (.dpx) to download", interactive=False, elem_id="dpx-download")
                recon_file = gr.File(label="τ decoder's image (PNG, exactly the pixels measured)", interactive=False,
                                     elem_id="recon-download")
                dpx_in = gr.File(label="…or decode someone's .dpx", file_types=[".dpx"], type="filepath",
                                 elem_id="dpx-upload")
        dp = gr.Plot(label="Distortion–perception plane: Kodak curves and this image", elem_id="dp-plot")
        with gr.Row(equal_height=False):
            with gr.Column():
                export_btn = gr.Button("Export comparison (PNG for slides)", elem_id="export-btn")
                slide = gr.Image(label="Comparison slide", format="png", interactive=False, elem_id="export-image")
                export_files = gr.File(label="Slide and reconstructions (lossless PNG)", file_count="multiple",
                                       interactive=False, elem_id="export-files")
            with gr.Column():
                gr.Markdown("**τ brush**: paint where realism may be invented (texture, foliage) — or, with "
                            "*protect*, where it may not (faces, text). The mask is τ's spatial map; same bitstream.")
                editor = gr.ImageEditor(label="Paint the mask", type="numpy", elem_id="brush-editor",
                                        brush=gr.Brush(colors=["#ff2d55"], default_size=40), layers=False,
                                        transforms=(), sources=(), height=360)
                with gr.Row():
                    brush_mode = gr.Radio(["paint realism", "protect"], value="paint realism", label="Painted areas",
                                          elem_id="brush-mode")
                    brush_btn = gr.Button("Decode with the brush", elem_id="brush-btn")
                with gr.Row():
                    mask_preview = gr.Image(label="Painted τ map (white = τ, black = 0)", format="png",
                                            interactive=False, elem_id="brush-mask-preview", height=160)
                    mask_file = gr.File(label="τ map as an image (or upload one)", file_types=["image"],
                                        type="filepath", elem_id="brush-mask")
                brushed = gr.Image(label="Brushed decode", format="png", interactive=False, elem_id="brush-out")
                brushed_file = gr.File(label="Brushed decode (PNG)", interactive=False, elem_id="brush-download")

        controls = [state, family, tau, sampler, steps, seed, zoom_x, zoom_y, left]
        outputs = [slider, zoom, numbers, dp, recon_file]
        setting = [state, family, sampler, steps, seed]
        frames_out = [frames_html, frames_status, dp]
        heavy = dict(concurrency_id="heavy")  # one queue for everything that runs a network
        background = dict(concurrency_id="frames", concurrency_limit=1, show_progress="minimal")

        def then_frames(event, api_name=None):
            """After a render: this setting's cached frames at once, then the missing ones in the background."""
            visibility = dict(api_name=api_name) if api_name else dict(api_visibility="private")
            return event.success(current_frames, setting, frames_html, api_visibility="private", show_progress="hidden") \
                .then(tau_frames, setting, frames_out, **visibility, **background)

        # `change` also fires for an example click, not only for an upload.
        encoded = gr.on([upload.change, encode_btn.click, quality.input], encode_upload, [upload, quality, state],
                        [state, original, info, dpx_out], api_name="encode", **heavy)
        encoded.success(editor_background, state, editor, api_visibility="private", show_progress="hidden")
        then_frames(encoded.success(render, controls, outputs, api_name="render_encoded", api_visibility="private",
                                    **heavy), api_name="tau_frames")
        quality.input(update_families, quality, family, api_visibility="private")
        family.change(sampler_controls, family, [sampler, steps, seed], api_visibility="private")
        opened = dpx_in.upload(open_dpx, dpx_in, [state, original, info, dpx_out], api_name="open_dpx", **heavy)
        opened.success(editor_background, state, editor, api_visibility="private", show_progress="hidden")
        then_frames(opened.success(render, controls, outputs, api_name="render_opened", api_visibility="private",
                                   **heavy))
        # Dragging τ shows cached frames in the browser; the release renders the exact τ (the latest
        # value winning): a frame τ is a cached PNG, another τ one synthesis pass.
        gr.on([tau.release, zoom_x.release, zoom_y.release, left.input], render, controls, outputs,
              trigger_mode="always_last", api_name="render", **heavy)
        # A new setting draws a new sample: the frames of the old one stop.
        changed = gr.on([family.input, sampler.input, steps.input, seed.input], render, controls, outputs,
                          trigger_mode="always_last", api_name="render_setting", api_visibility="private", **heavy)
        then_frames(changed)
        demo.load(lambda: dp_plot(load_curves()), None, dp, api_visibility="private")
        export_btn.click(export_comparison, [state, family, sampler, steps, seed, zoom_x, zoom_y],
                         [slide, export_files], api_name="export", **heavy)
        brush_btn.click(editor_to_mask, editor, [mask_file, mask_preview], api_visibility="private") \
            .success(brush, [state, mask_file, family, tau, sampler, steps, seed, brush_mode], [brushed, brushed_file],
                     api_name="brush", **heavy)
        demo.unload(end_session)  # the tab closed: its files go now
    demo.queue(default_concurrency_limit=1, max_size=MAX_QUEUE)
    return demo


def configure_threads() -> None:
    """Use CPU_CORES (Spaces sets it) or all cores for torch."""
    import torch

    cores = int(os.environ.get("CPU_CORES", os.cpu_count() or 1))
    torch.set_num_threads(max(1, cores))


def launch(demo: gr.Blocks, **kwargs):
    kwargs.setdefault("css", CSS)
    kwargs.setdefault("max_file_size", MAX_UPLOAD)
    kwargs.setdefault("state_session_capacity", MAX_SESSIONS)
    kwargs.setdefault("allowed_paths", [str(OUT_DIR)])
    return demo.launch(**kwargs)

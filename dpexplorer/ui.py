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

import gradio as gr
import numpy as np
from PIL import Image

from dpexplorer import explorer
from dpexplorer.errors import DPExplorerError
from dpexplorer.imageio import load_image, save_png

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

INTRO = """# DP Explorer
Encode once, then steer the **distortion–perception tradeoff at the receiver**: the codec's own
decoder gives the best PSNR, a diffusion decoder gives realistic texture, and **τ** moves between them —
the bitstream never changes. Upload a photo (PNG/JPEG/…, up to 25 MB; images over 2 MP are
downscaled for this demo) or pick an example."""


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
    (found by tests/test_load.py); files it copies atomically."""
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
    return [(f.label, f.key) for f in explorer.FAMILIES.values() if quality in f.qualities()]


# ---- event handlers ----------------------------------------------------------------------------
def encode_upload(file, quality, state, request: gr.Request = None):
    if file is None:  # the upload box was cleared: keep what is shown
        if state:
            return state, gr.skip(), gr.skip(), gr.skip()
        raise gr.Error("Upload an image first.")
    try:
        img, note = _fit_for_app(load_image(Path(file)))
        enc = explorer.encode(img, int(quality))
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
        enc = explorer.open_bitstream(path.read_bytes())
        h = enc.header
        if h.width * h.height > APP_MAX_PIXELS:
            raise ValueError(f"{h.width}×{h.height} is over the app's {APP_MAX_PIXELS / 1e6:g} MP (the CLI decodes it)")
    except Exception as exc:
        raise _user_error(exc) from None
    dpx = _out_path(request, ".dpx")  # served from the session's folder, not from the upload cache
    dpx.write_bytes(enc.data)
    return {"enc": enc}, None, enc.summary() + " · decoded from an uploaded bitstream (no original to compare)", str(dpx)


def render(state, family_key, tau, sampler, steps, seed, zoom_x, zoom_y, progress=gr.Progress(),
           request: gr.Request = None):
    """Both reconstructions, zoomed crops, numbers and the live point on the Kodak curves."""
    if not state or "enc" not in state:
        return None, None, "Encode an image to see its reconstructions.", explorer.dp_plot(explorer.load_curves()), None
    enc: explorer.Encoded = state["enc"]
    family = explorer.FAMILIES.get(family_key)
    try:
        base = explorer.base_reconstruction(enc)
        if family is None or enc.quality not in family.qualities():
            recon, label = base, "codec decoder (no diffusion decoder shipped for this quality)"
        elif float(tau) == 0.0:
            recon, label = base, f"{family.label}, τ=0.00 (= codec decoder)"
        else:
            def report(i, n):
                progress(i / n, desc=f"diffusion step {i}/{n}")

            recon = family.reconstruct(enc.data, float(tau), sampler, int(steps), int(seed), report)
            label = f"{family.label}, τ={float(tau):.2f}"
    except Exception as exc:
        raise _user_error(exc) from None

    # Written once each, at the fastest lossless PNG level, and served as files: the slider and the
    # download are exactly the pixels measured below.
    if enc._base_png is None or not os.path.isfile(enc._base_png):  # swept after an idle hour
        enc._base_png = _png(request, base)
    recon_png = enc._base_png if recon is base else _png(request, recon)
    crops = [(_png(request, explorer.zoom_crop(im, zoom_x, zoom_y)), name) for im, name in
             ((enc.original, "original"), (base, "codec decoder"), (recon, label)) if im is not None]

    live, rows = {}, []
    if enc.original is not None:
        m_base = explorer.base_metrics(enc)
        m_rec = m_base if recon is base else explorer.measure(enc.original, recon)
        live = {f"codec decoder (q{enc.quality})": m_base, "diffusion decoder (now)": m_rec}
        rows = [("codec decoder", m_base), (label, m_rec)]
        table = "| | PSNR (dB) ↑ | MS-SSIM ↑ | LPIPS ↓ |\n|---|---|---|---|\n" + "\n".join(
            f"| {name} | {m['psnr']:.2f} | {m['ms_ssim']:.4f} | {m['lpips']:.4f} |" for name, m in rows)
        table += f"\n\n{enc.bpp:.4f} bpp for both: one bitstream."
    else:
        table = "No original (a .dpx was uploaded): nothing to measure against."
    plot = explorer.dp_plot(explorer.load_curves(), live)
    return (enc._base_png, recon_png), crops, table, plot, recon_png


def own_tau_curve(state, family_key, sampler, steps, seed):
    if not state or "enc" not in state or state["enc"].original is None:
        raise gr.Error("Encode an image first (a τ curve needs the original).")
    family = explorer.FAMILIES.get(family_key)
    if family is None or state["enc"].quality not in family.qualities():
        raise gr.Error("No diffusion decoder is shipped for this quality.")
    try:
        fig, _ = explorer.tau_curve(state["enc"], family, sampler, int(steps), int(seed))
    except Exception as exc:
        raise _user_error(exc) from None
    return fig


def update_families(quality):
    choices = _families_for(int(quality))
    return gr.update(choices=choices, value=choices[0][1] if choices else None)


# ---- layout ------------------------------------------------------------------------------------
def build_demo() -> gr.Blocks:
    from dpexplorer.models import latent_qualities, shipped_qualities

    qualities = shipped_qualities() or [1]
    with_diffusion = [q for q in qualities if q in latent_qualities()]
    # open on the best quality that shows both decoders: where the diffusion decoder is strongest
    default_q = (with_diffusion or qualities)[-1]
    families = _families_for(default_q)
    examples = explorer.example_images()

    sweep(force=True)  # leftovers of an earlier run
    # delete_cache: Gradio's own copies of uploads and served files, swept by the same age.
    with gr.Blocks(title="DP Explorer", delete_cache=(SWEEP_EVERY_S, MAX_AGE_S)) as demo:
        gr.Markdown(INTRO)
        state = gr.State({}, time_to_live=MAX_AGE_S)  # an idle session's images leave memory
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="upload")
                if examples:
                    gr.Examples([[str(p)] for _, p in examples], inputs=[upload],
                                example_labels=[label for label, _ in examples], label="Examples")
                quality = gr.Dropdown([(f"q{q}", q) for q in qualities], value=default_q, label="Quality",
                                      elem_id="quality")
                encode_btn = gr.Button("Encode", variant="primary", elem_id="encode-btn")
                info = gr.Markdown(elem_id="encode-info")
                dpx_out = gr.File(label="Bitstream (.dpx) to download", interactive=False, elem_id="dpx-download")
                dpx_in = gr.File(label="…or decode a .dpx", file_types=[".dpx"], type="filepath",
                                 elem_id="dpx-upload")
            with gr.Column(scale=1):
                family = gr.Radio(families, value=families[0][1] if families else None, label="Diffusion decoder",
                                  elem_id="family")
                tau = gr.Slider(0, 1, value=1.0, step=0.05, label="τ: codec decoder (0) … full perception (1)",
                                elem_id="tau")
                sampler = gr.Dropdown(explorer.sampler_choices(), value="ddpm", label="Sampler",  # best LPIPS on Kodak
                                      elem_id="sampler")
                steps = gr.Slider(1, 50, value=10, step=1, label="Diffusion steps", elem_id="steps")
                seed = gr.Number(0, precision=0, label="Seed", elem_id="seed")
                with gr.Row():
                    zoom_x = gr.Slider(0, 1, value=0.5, step=0.01, label="Zoom x", elem_id="zoom-x")
                    zoom_y = gr.Slider(0, 1, value=0.5, step=0.01, label="Zoom y", elem_id="zoom-y")
        with gr.Row():
            compare = gr.ImageSlider(label="codec decoder ↔ diffusion decoder", format="png", elem_id="compare")
            original = gr.Image(label="Original", format="png", interactive=False, elem_id="original")
        zoom = gr.Gallery(label="Zoomed crops (×4, nearest)", columns=3, format="png", elem_id="zoom")
        recon_file = gr.File(label="Diffusion reconstruction (PNG, exactly the pixels measured)",
                             interactive=False, elem_id="recon-download")
        with gr.Row():
            with gr.Column():
                numbers = gr.Markdown(elem_id="metrics")
                curve_btn = gr.Button("This image's τ curve", elem_id="tau-curve-btn")
                curve_plot = gr.Plot(label="τ curve of this image", elem_id="tau-curve")
            dp = gr.Plot(label="Distortion–perception plane", elem_id="dp-plot")

        controls = [state, family, tau, sampler, steps, seed, zoom_x, zoom_y]
        outputs = [compare, zoom, numbers, dp, recon_file]
        heavy = dict(concurrency_id="heavy")  # one queue for everything that runs a network
        # `change` also fires for an example click, not only for an upload.
        gr.on([upload.change, encode_btn.click, quality.input], encode_upload, [upload, quality, state],
              [state, original, info, dpx_out], api_name="encode", **heavy) \
            .success(render, controls, outputs, api_name="render_encoded", api_visibility="private", **heavy)
        quality.input(update_families, quality, family, api_visibility="private")
        dpx_in.upload(open_dpx, dpx_in, [state, original, info, dpx_out], api_name="open_dpx", **heavy) \
            .success(render, controls, outputs, api_name="render_opened", api_visibility="private", **heavy)
        # Dragging τ (or a zoom slider) re-renders on release only, the latest value winning; the
        # sample is cached, so this is one g_s pass.
        gr.on([tau.release, zoom_x.release, zoom_y.release, family.input, sampler.input, steps.input, seed.input],
              render, controls, outputs, trigger_mode="always_last", api_name="render", **heavy)
        curve_btn.click(own_tau_curve, [state, family, sampler, steps, seed], curve_plot, api_name="tau_curve",
                        **heavy)
        demo.load(lambda: explorer.dp_plot(explorer.load_curves()), None, dp, api_visibility="private")
        demo.unload(end_session)  # the tab closed: its files go now
    demo.queue(default_concurrency_limit=1, max_size=MAX_QUEUE)
    return demo


def configure_threads() -> None:
    """Use CPU_CORES (Spaces sets it) or all cores for torch."""
    import torch

    cores = int(os.environ.get("CPU_CORES", os.cpu_count() or 1))
    torch.set_num_threads(max(1, cores))


def launch(demo: gr.Blocks, **kwargs):
    kwargs.setdefault("max_file_size", MAX_UPLOAD)
    kwargs.setdefault("state_session_capacity", MAX_SESSIONS)
    kwargs.setdefault("allowed_paths", [str(OUT_DIR)])
    return demo.launch(**kwargs)

"""The app's page: the components, their layout and which handler each event runs (`handlers.py`).
`app.py` at the repository root builds it with `build_demo()` and serves it with `launch()`."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import gradio as gr

from dpexplorer.app import compare, handlers, housekeeping, session
from dpexplorer.app.blindtest.tab import build_blind_tab
from dpexplorer.evaluation.curves import dp_plot, load_curves

MAX_UPLOAD = "25mb"
# Sessions whose state (images, bitstream) is kept in memory; the least recently used beyond go.
MAX_SESSIONS = 50
# Requests waiting in the queue; beyond, a request is refused at once ("queue full") instead of
# piling up memory and minutes of waiting on a 2-core machine.
MAX_QUEUE = 32
STATIC = Path(__file__).parent / "static"


@cache
def _static(name: str) -> str:
    """The page's script and style sheet, kept as files of their own (static/)."""
    return (STATIC / name).read_text()


def _picture(label: str, elem_id: str, **kwargs) -> gr.Image:
    """An image the app shows (never edited): served as PNG, never Gradio's default lossy WebP."""
    return gr.Image(label=label, format="png", interactive=False, elem_id=elem_id, **kwargs)


def intro(default_family) -> str:
    """The page's one-line header, naming the τ decoder the page opens with."""
    name = default_family.name if default_family else "a perceptual decoder"
    return (f"**DP Explorer** — one bitstream, many decodes: τ = 0 is the codec's decoder (best PSNR), τ = 1 the "
            f"{name} (realistic texture), other τ decoders a click away. Upload a photo or pick an example.")


def build_demo() -> gr.Blocks:
    from dpexplorer.hub.loading import shipped_qualities

    qualities = shipped_qualities() or [1]
    # open on the best quality that has every τ decoder (else the best one with any)
    complete = [q for q in qualities if len(session.families_for(q)) == len(session.FAMILIES)]
    default_q = (complete or qualities)[-1]
    families = handlers.family_choices(default_q)
    first = session.FAMILIES.get(families[0][1]) if families else None
    samples = first is None or first.uses_sampler
    # the default family's own setting (the pixel decoder: DDIM 1); DDPM where offered (the latent decoder's best
    # LPIPS on Kodak), as the family switch keeps the choice where the next family offers it
    first_samplers, first_sampler, first_steps = handlers.sampler_setting(first, "ddpm")
    examples = session.example_images()

    housekeeping.sweep(force=True)  # leftovers of an earlier run
    # delete_cache: Gradio's own copies of uploads and served files, swept by the same age.
    with gr.Blocks(title="DP Explorer", delete_cache=(housekeeping.SWEEP_EVERY_S, housekeeping.MAX_AGE_S)) as demo:
        gr.Markdown(intro(first), elem_id="intro")
        state = gr.State({}, time_to_live=housekeeping.MAX_AGE_S)  # an idle session's images leave memory
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Explore", elem_id="explore-tab"):
                # 1. a compact strip: photo, examples, quality, Encode
                with gr.Row(elem_classes="dp-strip", equal_height=False):
                    upload = gr.File(
                        label="Photo",
                        file_types=["image"],
                        type="filepath",
                        elem_id="upload",
                        height=90,
                        scale=2,
                        min_width=200,
                    )
                    with gr.Column(scale=4, min_width=280):
                        if examples:
                            gr.Examples(
                                [[str(p)] for _, p in examples],
                                inputs=[upload],
                                example_labels=[label.split(" (")[0] for label, _ in examples],
                                label="Examples",
                            )
                        # the encoder-effort mode re-encodes the same photo: same decoders, fewer bits, minutes
                        # (here, under the examples, where the strip has room: the comparison stays on screen)
                        with gr.Row(equal_height=True):
                            smaller_btn = gr.Button("Smaller file (slow)", size="sm", elem_id="effort-btn",
                                                    scale=0, min_width=150)
                            effort_note = gr.Markdown(elem_id="effort-note")
                    with gr.Column(scale=2, min_width=200):
                        with gr.Row():
                            quality = gr.Dropdown(
                                [(f"q{q}", q) for q in qualities],
                                value=default_q,
                                label="Quality",
                                elem_id="quality",
                                min_width=80,
                            )
                            encode_btn = gr.Button("Encode", variant="primary", elem_id="encode-btn", min_width=80)
                        info = gr.Markdown(elem_id="encode-info")
                # 2. the comparison first, τ directly under it, the decoder controls and numbers beside it
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=320):
                        slider = gr.ImageSlider(
                            label="left side ↔ τ decoder (drag the divider)",
                            format="png",
                            elem_id="compare",
                            max_height=400,
                            buttons=["fullscreen", "download"],
                        )
                        tau = gr.Slider(
                            0,
                            1,
                            value=1.0,
                            step=0.05,
                            label="τ: codec decoder (0) … full perception (1)",
                            elem_id="tau",
                        )
                        frames_status = gr.Markdown(elem_id="frames-status")
                        frames_html = gr.HTML("", elem_id="tau-frames", js_on_load=_static("scrub.js"))
                        numbers = gr.Markdown(elem_id="metrics")
                    with gr.Column(scale=1, min_width=260):
                        family = gr.Radio(
                            families, value=families[0][1] if families else None, label="τ decoder", elem_id="family"
                        )
                        left = gr.Radio(
                            [(label, key) for key, label in compare.LEFT_CHOICES.items()],
                            value="codec",
                            label="Left side",
                            elem_id="left",
                        )
                        if compare.unavailable_note():  # an encoder this platform lacks: hidden, and why
                            gr.Markdown(compare.unavailable_note(), elem_id="left-note")
                        sampler = gr.Dropdown(
                            first_samplers,
                            value=first_sampler,
                            label="Sampler",
                            elem_id="sampler",
                            visible=samples,
                        )
                        with gr.Row():
                            # up to DDPM 100, Mari & Milani's many-step setting (a progress bar shows slow ones)
                            steps = gr.Slider(
                                1, 100, value=first_steps, step=1, label="Steps", elem_id="steps", visible=samples,
                                min_width=120
                            )
                            seed = gr.Number(
                                0, precision=0, label="Seed", elem_id="seed", visible=samples, min_width=80
                            )
                        # a measured warning where the chosen setting is dominated (assets/kodak_curves.json)
                        setting_note = gr.Markdown(elem_id="setting-note")
                        # files with the sender's τ hint: follow it (τ = 1 = its recommended decode) or raw τ
                        use_hint = gr.Checkbox(
                            True,
                            label="Follow the sender's τ hint (τ = 1 is the decode it recommends)",
                            elem_id="use-hint",
                            visible=False,
                        )
                        # without a hint (or with it switched off): the receiver's own grain guard, or uniform τ
                        use_guard = gr.Checkbox(
                            True,
                            label="Grain guard (without a hint: keep smooth areas smooth)",
                            elem_id="use-guard",
                            visible=False,
                        )
                        with gr.Accordion("Show the sender's τ hint", open=False, visible=False) as hint_box:
                            hint_image = _picture("Where the hint applies realism (tinted)", "hint-overlay", height=180)
                        original = _picture("Original", "original", height=180)
                # 3. details: crops, original, files, then the plot
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        zoom = gr.Gallery(
                            label="Zoomed crops (×4, nearest)", columns=4, format="png", elem_id="zoom", height=300
                        )
                        with gr.Row():
                            zoom_x = gr.Slider(0, 1, value=0.5, step=0.01, label="Zoom x", elem_id="zoom-x")
                            zoom_y = gr.Slider(0, 1, value=0.5, step=0.01, label="Zoom y", elem_id="zoom-y")
                    with gr.Column(scale=2):
                        dpx_out = gr.File(
                            label="Bitstream (.dpx) to download", interactive=False, elem_id="dpx-download"
                        )
                        recon_file = gr.File(
                            label="τ decoder's image (PNG, exactly the pixels measured)",
                            interactive=False,
                            elem_id="recon-download",
                        )
                        dpx_in = gr.File(
                            label="…or decode someone's .dpx",
                            file_types=[".dpx"],
                            type="filepath",
                            elem_id="dpx-upload",
                        )
                dp = gr.Plot(label="Distortion–perception plane: Kodak curves and this image", elem_id="dp-plot")
                with gr.Row(equal_height=False):
                    with gr.Column():
                        export_btn = gr.Button("Export comparison (PNG for slides)", elem_id="export-btn")
                        slide = _picture("Comparison slide", "export-image")
                        export_files = gr.File(
                            label="Slide and reconstructions (lossless PNG)",
                            file_count="multiple",
                            interactive=False,
                            elem_id="export-files",
                        )
                    with gr.Column():
                        gr.Markdown(
                            "**τ brush**: paint where realism may be invented (texture, foliage) — or, with "
                            "*protect*, where it may not (faces, text). The mask is τ's spatial map; same bitstream."
                        )
                        editor = gr.ImageEditor(
                            label="Paint the mask",
                            type="numpy",
                            elem_id="brush-editor",
                            brush=gr.Brush(colors=["#ff2d55"], default_size=40),
                            layers=False,
                            transforms=(),
                            sources=(),
                            height=360,
                        )
                        with gr.Row():
                            brush_mode = gr.Radio(
                                ["paint realism", "protect"],
                                value="paint realism",
                                label="Painted areas",
                                elem_id="brush-mode",
                            )
                            brush_btn = gr.Button("Decode with the brush", elem_id="brush-btn")
                        with gr.Row():
                            mask_preview = _picture(
                                "Painted τ map (white = τ, black = 0)", "brush-mask-preview", height=160
                            )
                            mask_file = gr.File(
                                label="τ map as an image (or upload one)",
                                file_types=["image"],
                                type="filepath",
                                elem_id="brush-mask",
                            )
                        brushed = _picture("Brushed decode", "brush-out")
                        brushed_file = gr.File(
                            label="Brushed decode (PNG)", interactive=False, elem_id="brush-download"
                        )
            # people, not only metrics: a blind two-alternative test on the same bitstream
            build_blind_tab(
                render=handlers.blind_render,
                current=handlers.blind_current,
                host_state=state,
                examples=lambda i: handlers.blind_example(i, default_q),
                write_png=housekeeping.write_png,
                event_kwargs=dict(concurrency_id="heavy"),
            )

        controls = [state, family, tau, sampler, steps, seed, zoom_x, zoom_y, left]
        outputs = [slider, zoom, numbers, dp, recon_file]
        setting = [state, family, sampler, steps, seed]
        frames_out = [frames_html, frames_status, dp]
        heavy = dict(concurrency_id="heavy")  # one queue for everything that runs a network
        # the sweep's progress shows on its status line only, never over the comparison or the plot
        background = dict(
            concurrency_id="frames", concurrency_limit=1, show_progress="minimal", show_progress_on=[frames_status]
        )

        def then_frames(event, api_name=None):
            """After a render: this setting's cached frames at once, then the missing ones in the background."""
            visibility = dict(api_name=api_name) if api_name else dict(api_visibility="private")
            return event.success(
                handlers.current_frames, setting, frames_html, api_visibility="private", show_progress="hidden"
            ).then(handlers.tau_frames, setting, frames_out, **visibility, **background)

        # `change` also fires for an example click, not only for an upload.
        encoded = gr.on(
            [upload.change, encode_btn.click, quality.input],
            handlers.encode_upload,
            [upload, quality, state],
            [state, original, info, dpx_out],
            api_name="encode",
            **heavy,
        )
        # minutes of refinement in a queue of their own: the other sessions' renders keep going meanwhile
        encoded_smaller = smaller_btn.click(
            handlers.encode_smaller,
            [upload, quality, state],
            [state, original, info, dpx_out],
            api_name="encode_smaller",
            concurrency_id="effort",
            concurrency_limit=1,
        )
        gr.on([upload.change, quality.input], handlers.effort_note, [upload, quality], effort_note,
              api_visibility="private", show_progress="hidden")
        hint_outputs = [use_hint, hint_box, hint_image, mask_file, mask_preview, use_guard]
        # (every render gets an explicit api_name: an unnamed one would take "render" from the public one below)
        for event, render_name, frames_name in ((encoded, "render_encoded", "tau_frames"),
                                                (encoded_smaller, "render_encoded_smaller", None)):
            event.success(handlers.editor_background, state, editor, api_visibility="private", show_progress="hidden")
            event.success(handlers.hint_view, state, hint_outputs, api_visibility="private", show_progress="hidden")
            then_frames(
                event.success(handlers.render, controls, outputs, api_name=render_name, api_visibility="private",
                              **heavy),
                api_name=frames_name,
            )
        quality.input(handlers.update_families, quality, family, api_visibility="private")
        family.change(handlers.sampler_controls, [family, sampler], [sampler, steps, seed], api_visibility="private")
        gr.on(
            [family.change, sampler.change, steps.change, quality.change],
            handlers.setting_note,
            [family, sampler, steps, quality],
            setting_note,
            api_visibility="private",
            show_progress="hidden",
        )
        opened = dpx_in.upload(
            handlers.open_dpx, dpx_in, [state, original, info, dpx_out], api_name="open_dpx", **heavy
        )
        opened.success(handlers.editor_background, state, editor, api_visibility="private", show_progress="hidden")
        opened.success(handlers.hint_view, state, hint_outputs, api_visibility="private", show_progress="hidden")
        # the hint switched off or on: the same bitstream rendered (and its τ frames swept) the other way
        then_frames(
            use_hint.input(handlers.set_use_hint, [state, use_hint], None, api_visibility="private").then(
                handlers.render, controls, outputs, api_name="render_hint_switch", api_visibility="private", **heavy
            )
        )
        then_frames(
            use_guard.input(handlers.set_use_guard, [state, use_guard], None, api_visibility="private").then(
                handlers.render, controls, outputs, api_name="render_guard_switch", api_visibility="private", **heavy
            )
        )
        then_frames(
            opened.success(
                handlers.render, controls, outputs, api_name="render_opened", api_visibility="private", **heavy
            )
        )
        # Dragging τ shows cached frames in the browser; the release renders the exact τ (the latest
        # value winning): a frame τ is a cached PNG, another τ one synthesis pass.
        latest = dict(fn=handlers.render, inputs=controls, outputs=outputs, trigger_mode="always_last", **heavy)
        gr.on([tau.release, zoom_x.release, zoom_y.release, left.input], api_name="render", **latest)
        # A new setting draws a new sample: the frames of the old one stop.
        changed = gr.on(
            [family.input, sampler.input, steps.input, seed.input],
            api_name="render_setting",
            api_visibility="private",
            **latest,
        )
        then_frames(changed)
        demo.load(lambda: dp_plot(load_curves()), None, dp, api_visibility="private")
        export_btn.click(
            handlers.export_comparison,
            [state, family, sampler, steps, seed, zoom_x, zoom_y],
            [slide, export_files],
            api_name="export",
            **heavy,
        )
        brush_btn.click(handlers.editor_to_mask, editor, [mask_file, mask_preview], api_visibility="private").success(
            handlers.brush,
            [state, mask_file, family, tau, sampler, steps, seed, brush_mode],
            [brushed, brushed_file],
            api_name="brush",
            **heavy,
        )
        demo.unload(handlers.end_session)  # the tab closed: its files go now
    demo.queue(default_concurrency_limit=1, max_size=MAX_QUEUE)
    return demo


def configure_threads() -> None:
    """Use CPU_CORES (Spaces sets it) or all cores for torch."""
    import torch

    cores = int(os.environ.get("CPU_CORES", os.cpu_count() or 1))
    torch.set_num_threads(max(1, cores))


def launch(demo: gr.Blocks, **kwargs):
    session.warm_effort_estimates()  # while nothing else runs: the "Smaller file" time is measured, not guessed
    kwargs.setdefault("css", _static("app.css"))
    kwargs.setdefault("max_file_size", MAX_UPLOAD)
    kwargs.setdefault("state_session_capacity", MAX_SESSIONS)
    kwargs.setdefault("allowed_paths", [str(housekeeping.OUT_DIR)])
    return demo.launch(**kwargs)

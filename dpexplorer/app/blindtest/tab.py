"""The 'Blind test' tab: two decodes of the same image at the same size, sides drawn at random,
labels hidden; one click answers and shows the next pair; the results reveal the labels.

Thin on purpose: the pairs and sides are `pairs`, the answers `store`, the numbers `stats`, the plot
and CSV `report`. The host app supplies the pixels through two callables (see `build_blind_tab`)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import time
from dataclasses import KW_ONLY, dataclass
from typing import Any, Callable

import gradio as gr
import numpy as np

from dpexplorer.app import housekeeping
from dpexplorer.app.blindtest import pairs, report
from dpexplorer.app.blindtest.store import Store, get_store
from dpexplorer.errors import DPExplorerError

Render = Callable[[str, Any], "np.ndarray | None"]
Current = Callable[[Any], "tuple[np.ndarray | None, str, int]"]
WritePng = Callable[["gr.Request | None", "np.ndarray"], str]  # the host's housekeeping.write_png

SCOPES = ("this session", "everyone")
IMAGES = ("current image", "examples in turn")
_CODE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_MAX_PNGS = 32  # per browser session: the PNGs of a few images' decodes, so repeated pairs are not re-written
_log = logging.getLogger("dpexplorer.app.blindtest")

INTRO = """**Blind test.** Two decodes of the same image, same file size, in random positions, labels
hidden. Click the one that answers the question; the next pair follows at once. *Closer to the
original* (the original is shown) is the distortion axis, *looks more like a real photograph* (it is
hidden) the perception axis. Results reveal the labels. Answers are stored anonymously: a random
session id, the image's hash, the quality, the pair, the positions, the choice and the response time —
no image, nothing personal. Give a room a **session code** to pool its answers (empty: this browser)."""


def session_id(code: str | None, request: gr.Request | None) -> str:
    """The stored session: the code typed (a presenter's room), else an anonymous hash of the browser
    session (Gradio's random session hash, hashed again so the stored id reveals nothing)."""
    code = (code or "").strip()
    if code:
        if not _CODE.fullmatch(code):
            raise gr.Error("A session code is 1 to 32 letters, digits, '-' or '_'.")
        return code
    key = getattr(request, "session_hash", None) or "local"
    return "anon-" + hashlib.sha256(f"dpexplorer-blind:{key}".encode()).hexdigest()[:16]


def _user_error(exc: Exception) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, (DPExplorerError, ValueError)):
        return gr.Error(str(exc))
    _log.exception("blind test: unexpected error")  # the details stay in the server log
    return gr.Error(f"Internal error ({type(exc).__name__}); please try again.")


@dataclass
class BlindTest:
    """The tab's handlers, bound to the host's callables (what `build_blind_tab` wires to the UI)."""

    render: Render
    current: Current
    _: KW_ONLY
    examples: Callable[[int], Any] | None = None
    store: Store | None = None
    write_png: WritePng | None = None

    def _store(self) -> Store:
        return self.store if self.store is not None else get_store()

    def _png(self, image: np.ndarray, request: gr.Request | None) -> str:
        # random names in the session's folder: a file's name must not tell which decoder made it
        return (self.write_png or housekeeping.write_png)(request, image)

    def _notice(self, blind: dict) -> str:
        """A database recovery this session has not been told about: a toast now, and a line to show."""
        notice = self._store().notice
        if notice is None or notice.at <= blind.get("notice_seen", 0.0):
            return ""
        blind["notice_seen"] = notice.at
        gr.Warning(notice.text)
        return f"⚠ {notice.text}\n\n"

    def _cached_png(self, blind: dict, image: np.ndarray, request) -> str:
        """`image` as a PNG, written once per session. Keyed by the pixels, not by the side: the host's
        decode of a side changes with its settings (family, sampler), and hashing is cheaper than a PNG."""
        image = np.ascontiguousarray(image)
        key = f"{image.shape}:{hashlib.sha1(image.data).hexdigest()}"
        cache = blind.setdefault("pngs", {})
        path = cache.get(key)
        if path is None or not os.path.isfile(path):  # swept after an idle hour: written again
            while len(cache) >= _MAX_PNGS:
                cache.pop(next(iter(cache)))
            path = cache[key] = self._png(image, request)
        return path

    # ---- the rounds --------------------------------------------------------------------------------
    # The handlers take their inputs positionally: Gradio calls them with the components' values in order.
    def next_pair(self, blind, host, pair_key, custom_a, custom_b, question_mode, images, code,
                  request: gr.Request = None, saved: str = ""):
        """Draw the next round: (state, prompt, original's column, original, left, right, status); the
        original (a PNG path) only for the 'closer' question, else None and its column hidden."""
        blind = blind if isinstance(blind, dict) else {}
        blind.setdefault("seed", secrets.randbits(63))
        blind.setdefault("round", 0)
        blind["current"] = None
        try:
            session_id(code, request)  # a bad code is refused before anything is shown
            pair = pairs.get_pair(pair_key, custom_a=custom_a, custom_b=custom_b)
            question = pairs.question_for(question_mode, blind["round"])
            source = host
            if images == IMAGES[1]:
                if self.examples is None:
                    raise ValueError("no example images in this app")
                source = self.examples(blind["round"])
            original, image_hash, quality = self.current(source)
            if not image_hash:
                raise ValueError("Encode an image first (or pick the examples in turn).")
            if question == "closer" and original is None:
                raise ValueError("No original to compare with (a .dpx was uploaded): ask 'which looks more "
                                 "like a real photograph?' or encode a photo.")
            seed = pairs.round_seed(blind["seed"], blind["round"])
            left, right = pairs.assign_sides(pair, seed)
            shown = {}
            for side in (left, right):
                img = self.render(side, source)
                if img is None:
                    raise ValueError(f"'{pairs.side_label(side)}' cannot be made for this image here; "
                                     "pick another pair.")
                shown[side] = img
            if shown[left].shape != shown[right].shape:
                raise ValueError("the two decodes differ in size; they cannot be compared side by side")
            pngs = {s: self._cached_png(blind, shown[s], request) for s in (left, right)}
            orig_png = self._cached_png(blind, original, request) if question == "closer" else None
        except Exception as exc:
            raise _user_error(exc) from None
        blind["current"] = {"pair": pair.key, "a": pair.a, "b": pair.b, "left": left, "right": right,
                            "question": question, "image_hash": image_hash, "quality": int(quality), "seed": seed,
                            "served": time.monotonic()}
        prompt = f"### Round {blind['round'] + 1}: {pairs.QUESTIONS[question]}"
        status = self._notice(blind) + saved
        return (blind, prompt, gr.update(visible=orig_png is not None), orig_png, pngs[left], pngs[right], status)

    def answer(self, choice, blind, host, pair_key, custom_a, custom_b, question_mode, images, code,
               request: gr.Request = None):
        """Store the answer to the pair shown ("left" or "right"), then draw the next pair."""
        current = blind.get("current") if isinstance(blind, dict) else None
        if not current:
            raise gr.Error("No pair is shown: start the blind test first.")
        if choice not in ("left", "right"):
            raise gr.Error("Answer 'left' or 'right'.")
        try:
            sid = session_id(code, request)
            self._store().record_answer(
                session_id=sid, image_hash=current["image_hash"], quality=current["quality"],
                pair=pairs.Pair(current["pair"], current["a"], current["b"]), left=current["left"],
                question=current["question"], choice=current[choice],
                response_ms=round((time.monotonic() - current["served"]) * 1000), round_seed=current["seed"])
            done = self._store().count(sid)
        except Exception as exc:
            raise _user_error(exc) from None
        blind["current"] = None  # answered once: a second click cannot answer it again
        blind["round"] += 1
        saved = f"Saved. {done} answer{'s' * (done != 1)} in this session."
        try:
            return self.next_pair(blind, host, pair_key, custom_a, custom_b, question_mode, images, code, request,
                                  saved=saved)
        except gr.Error as exc:  # the answer is kept; only the next pair could not be drawn
            return (blind, f"{saved} The next pair could not be shown: {exc.message}", gr.update(visible=False),
                    None, None, None, saved)

    # ---- results -----------------------------------------------------------------------------------
    def results(self, blind, scope, code, request: gr.Request = None):
        """(state, plot, table, [answers CSV, results CSV], status) for this session or everyone."""
        blind = blind if isinstance(blind, dict) else {}
        try:
            sid = session_id(code, request) if scope != SCOPES[1] else None
            store = self._store()
            results = store.results(sid)
            answers_csv = store.export_csv(sid)
        except Exception as exc:
            raise _user_error(exc) from None
        downloads = [housekeeping.write_file(request, answers_csv, "blindtest-answers.csv"),
                     housekeeping.write_file(request, report.results_csv(results), "blindtest-results.csv")]
        n = sum(r.n for r in results)
        status = self._notice(blind) + f"{n} answer{'s' * (n != 1)} ({'everyone' if sid is None else 'this session'})."
        return blind, report.results_figure(results), report.results_table(results), downloads, status

    def reset(self, blind, scope, code, request: gr.Request = None):
        """Delete this session's answers (only this session's), then show the results again."""
        try:
            removed = self._store().reset(session_id(code, request))
        except Exception as exc:
            raise _user_error(exc) from None
        blind, fig, table, downloads, status = self.results(blind, scope, code, request)
        return blind, fig, table, downloads, f"Removed {removed} answer{'s' * (removed != 1)} of this session. {status}"


@dataclass(kw_only=True)
class BlindTabComponents:
    tab: gr.Tab
    state: gr.State
    left: gr.Image
    right: gr.Image
    original: gr.Image
    prompt: gr.Markdown
    status: gr.Markdown
    plot: gr.Plot
    table: gr.Dataframe
    downloads: gr.File


def build_blind_tab(*, render: Render, current: Current, host_state: gr.State | None = None,
                    examples: Callable[[int], Any] | None = None, store: Store | None = None,
                    write_png: WritePng | None = None, sides: dict[str, str] | None = None,
                    event_kwargs: dict | None = None, label: str = "Blind test") -> BlindTabComponents:
    """Build the tab inside the open `gr.Blocks` (inside a `gr.Tabs` or not).

    render(side_key, host_value) → the decode of the image for a side ("tau0", "tau1", "avif", "webp",
        "jpeg", "sampler-a", "sampler-b" or any key of `sides`), uint8 H×W×3, or None when the host
        cannot make it; both sides of a pair must have the same size (the host matches the rate).
    current(host_value) → (original or None, image hash, quality) of that image; hash "" = no image.
    host_state: the host's gr.State; its value is what render and current receive (None without it).
    examples(round_index) → a host value for the examples-in-turn mode (the host picks example
        round_index % count and caches its encode); None hides that mode.
    store: the answers' Store (default: the process's store under data_dir()).
    write_png(request, image) → a PNG path Gradio may serve, e.g. the host's housekeeping.write_png
        (its session folder, removed when the tab closes); default: housekeeping.write_png.
    event_kwargs: extra keywords for the events that render (e.g. {"concurrency_id": "heavy"})."""
    handlers = BlindTest(render, current, examples=examples, store=store, write_png=write_png)
    side_choices = [(f"{lbl} ({key})", key) for key, lbl in (sides or pairs.SIDES).items()]
    heavy = dict(event_kwargs or {})
    with gr.Tab(label, elem_id="blind-tab") as tab:
        gr.Markdown(INTRO, elem_id="blind-intro")
        blind = gr.State({})
        host = host_state if host_state is not None else gr.State(None)
        with gr.Row(equal_height=False):
            pair = gr.Dropdown([(p.label, p.key) for p in pairs.PAIRS.values()] + [("Custom pair…", pairs.CUSTOM)],
                               value="tau0-vs-tau1", label="Pair", elem_id="blind-pair")
            custom_a = gr.Dropdown(side_choices, value=side_choices[0][1], label="Custom: side 1",
                                   elem_id="blind-custom-a", visible=False)
            custom_b = gr.Dropdown(side_choices, value=side_choices[1][1], label="Custom: side 2",
                                   elem_id="blind-custom-b", visible=False)
            question = gr.Radio([("closer to the original", "closer"), ("looks like a real photograph", "realism"),
                                 ("both in turn", "alternate")], value="alternate", label="Question",
                                elem_id="blind-question")
            images = gr.Radio(list(IMAGES), value=IMAGES[0], label="Images", elem_id="blind-images",
                              visible=examples is not None)
            code = gr.Textbox("", label="Session code (optional)", placeholder="empty: this browser only",
                              elem_id="blind-session", max_lines=1)
        start = gr.Button("Start (or skip this pair)", variant="primary", elem_id="blind-next")
        prompt = gr.Markdown(elem_id="blind-prompt")
        # The column, not the image, is shown and hidden: the API returns the image as a plain path.
        with gr.Column(visible=False, elem_id="blind-original-box") as original_box:
            original = gr.Image(label="Original", format="png", interactive=False, elem_id="blind-original",
                                height=320)
        with gr.Row(equal_height=True):
            with gr.Column():
                left = gr.Image(label="Left", format="png", interactive=False, elem_id="blind-left", height=420)
                left_btn = gr.Button("◀ This one", elem_id="blind-choose-left")
            with gr.Column():
                right = gr.Image(label="Right", format="png", interactive=False, elem_id="blind-right", height=420)
                right_btn = gr.Button("This one ▶", elem_id="blind-choose-right")
        status = gr.Markdown(elem_id="blind-status")
        gr.Markdown("#### Results (labels revealed)")
        with gr.Row():
            scope = gr.Radio(list(SCOPES), value=SCOPES[0], label="Whose answers", elem_id="blind-scope")
            results_btn = gr.Button("Show results", elem_id="blind-results-btn")
            reset_btn = gr.Button("Reset this session's answers", variant="stop", elem_id="blind-reset-btn")
        plot = gr.Plot(label="Share preferring each side, 95 % Wilson interval", elem_id="blind-plot")
        table = gr.Dataframe(headers=list(report.COLUMNS), interactive=False, elem_id="blind-table")
        downloads = gr.File(label="CSV: every answer, and the results", file_count="multiple", interactive=False,
                            elem_id="blind-csv")
        # The API's answer endpoint takes the side as an argument; the two buttons are that call with it fixed.
        choice = gr.Radio(["left", "right"], value="left", visible=False, elem_id="blind-choice")
        api_answer = gr.Button(visible=False, elem_id="blind-answer-api")

        setting = [pair, custom_a, custom_b, question, images, code]
        round_out = [blind, prompt, original_box, original, left, right, status]
        results_out = [blind, plot, table, downloads, status]

        # Named functions with every parameter spelled out: Gradio injects the request by position.
        def answer_left(blind_v, host_v, pair_v, a_v, b_v, question_v, images_v, code_v, request: gr.Request = None):
            return handlers.answer("left", blind_v, host_v, pair_v, a_v, b_v, question_v, images_v, code_v, request)

        def answer_right(blind_v, host_v, pair_v, a_v, b_v, question_v, images_v, code_v, request: gr.Request = None):
            return handlers.answer("right", blind_v, host_v, pair_v, a_v, b_v, question_v, images_v, code_v, request)

        pair.change(lambda key: (gr.update(visible=key == pairs.CUSTOM),) * 2, pair, [custom_a, custom_b],
                    api_visibility="private")
        start.click(handlers.next_pair, [blind, host, *setting], round_out, api_name="blind_next", **heavy)
        api_answer.click(handlers.answer, [choice, blind, host, *setting], round_out, api_name="blind_answer",
                         **heavy)
        left_btn.click(answer_left, [blind, host, *setting], round_out, api_visibility="private", **heavy)
        right_btn.click(answer_right, [blind, host, *setting], round_out, api_visibility="private", **heavy)
        results_btn.click(handlers.results, [blind, scope, code], results_out, api_name="blind_results")
        reset_btn.click(handlers.reset, [blind, scope, code], results_out, api_name="blind_reset")
    return BlindTabComponents(tab=tab, state=blind, left=left, right=right, original=original, prompt=prompt,
                              status=status, plot=plot, table=table, downloads=downloads)

"""The blind-test tab alone (issue 35), served on 127.0.0.1 with a fake host: each side is a solid
colour, so a test knows which decode it picks without seeing the hidden labels."""

import csv
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client

from dpexplorer.app import housekeeping
from dpexplorer.app.blindtest import pairs
from dpexplorer.app.blindtest.store import Store
from dpexplorer.app.blindtest.tab import build_blind_tab
from dpexplorer.io.images import load_image

from helpers import free_port

COLOURS = {"tau0": (0, 0, 255), "tau1": (255, 0, 0), "webp": (0, 160, 0), "jpeg": (200, 200, 0)}
SIZE = (24, 32, 3)


def fake_render(side, host):
    """The host's decodes; None: this side cannot be made here (no AVIF encoder, say)."""
    return np.full(SIZE, COLOURS[side], np.uint8) if side in COLOURS else None


def fake_current(host):
    return np.full(SIZE, 128, np.uint8), "c0ffee", 3


def fake_example(i):
    return i  # the host value of example i: the fake images are the same for every example


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blind")
    mp = pytest.MonkeyPatch()
    mp.setattr(housekeeping, "OUT_DIR", tmp / "files")  # downloads and PNGs not in the real temp folder
    store = Store(tmp / "data" / "blindtest.sqlite")
    with gr.Blocks() as demo:
        # answers run in parallel here, as a host's light events would: the store serialises writes itself
        build_blind_tab(render=fake_render, current=fake_current, examples=fake_example, store=store,
                        event_kwargs=dict(concurrency_limit=8))
    demo.queue(default_concurrency_limit=1)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                allowed_paths=[str(tmp / "files")])
    try:
        yield f"http://127.0.0.1:{port}/", store
    finally:
        demo.close()
        mp.undo()


def _colour(path):
    return tuple(int(v) for v in load_image(path)[0, 0])


def _setting(pair="tau0-vs-tau1", question="realism", code="", images="current image"):
    return dict(pair_key=pair, custom_a="tau0", custom_b="tau1", question_mode=question, images=images, code=code)


def _pick(shown, side):
    """'left' or 'right': where `side`'s colour is."""
    _, _, left, right, _ = shown
    assert COLOURS[side] in (_colour(left), _colour(right))
    return "left" if _colour(left) == COLOURS[side] else "right"


def test_ten_answers_then_results_with_intervals(served):
    url, store = served
    client = Client(url, verbose=False)
    setting = _setting(code="room-10")
    shown = client.predict(**setting, api_name="/blind_next")
    prompt, original, left, right, _ = shown
    assert "real photograph" in prompt and original is None  # the perception question hides the original
    positions = []
    for _ in range(10):
        choice = _pick(shown, "tau1")  # always the τ = 1 decode, wherever it was drawn
        positions.append(choice)
        shown = client.predict(choice, **setting, api_name="/blind_answer")
    assert "10 answers in this session" in shown[4]
    plot, table, downloads, status = client.predict("this session", "room-10", api_name="/blind_results")
    assert plot["type"] == "matplotlib" and "10 answers" in status
    [row] = [dict(zip(table["headers"], r)) for r in table["data"]]
    assert (row["pair"], row["question"], row["quality"], row["n"]) == ("tau0-vs-tau1", "realism", 3, 10)
    assert row["side B"] == pairs.SIDES["tau1"] and row["B share"] == 1.0
    assert (row["B 95% low"], row["B 95% high"]) == (0.722, 1.0)  # Wilson, 10 of 10
    answers = list(csv.DictReader(open(next(d for d in downloads if d.endswith("answers.csv")), encoding="utf-8")))
    assert len(answers) == 10 and {a["choice"] for a in answers} == {"tau1"}
    assert [a["chosen_position"] for a in answers] == positions  # stored as answered
    assert {a["session_id"] for a in answers} == {"room-10"} and all(int(a["response_ms"]) >= 0 for a in answers)


def test_the_closer_question_shows_the_original_and_png_files(served):
    url, _ = served
    client = Client(url, verbose=False)
    prompt, original, left, right, _ = client.predict(**_setting(question="closer"), api_name="/blind_next")
    assert "closer to the original" in prompt
    assert _colour(original) == (128, 128, 128)
    for path in (original, left, right):
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert not any(key in path for key in COLOURS)  # a file's name does not give the side away


def test_examples_in_turn_and_custom_pairs(served):
    url, store = served
    client = Client(url, verbose=False)
    setting = dict(_setting(pair="custom", code="custom-room", images="examples in turn"), custom_a="jpeg",
                   custom_b="webp")
    shown = client.predict(**setting, api_name="/blind_next")
    assert {_colour(shown[2]), _colour(shown[3])} == {COLOURS["jpeg"], COLOURS["webp"]}
    client.predict("left", **setting, api_name="/blind_answer")
    [row] = store.answers("custom-room")
    assert (row["pair"], row["side_a"], row["side_b"]) == ("jpeg-vs-webp", "jpeg", "webp")


@pytest.mark.slow  # 168 requests through Gradio: tens of seconds on a busy 2-core machine
def test_eight_concurrent_clients_twenty_answers_each(served):
    url, store = served

    def audience_member(k):
        client = Client(url, verbose=False, download_files=False)  # the pixels are not this test's subject
        setting = _setting(pair="tau1-vs-webp", code=f"load-{k}", question="alternate")
        shown = client.predict(**setting, api_name="/blind_next")
        for i in range(20):
            shown = client.predict(("left", "right")[(k + i) % 2], **setting, api_name="/blind_answer")
        return shown[4]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(audience_member, range(8)))
    assert all("20 answers in this session" in s for s in statuses)
    assert sum(store.count(f"load-{k}") for k in range(8)) == 160


def test_reset_removes_only_this_sessions_answers(served):
    url, store = served
    for code in ("keep-me", "reset-me"):
        client = Client(url, verbose=False)
        client.predict(**_setting(code=code), api_name="/blind_next")
        client.predict("left", **_setting(code=code), api_name="/blind_answer")
    _, table, _, status = client.predict("this session", "reset-me", api_name="/blind_reset")
    assert status.startswith("Removed 1 answer of this session") and table["data"] == []
    assert store.count("reset-me") == 0 and store.count("keep-me") == 1


def test_errors_are_messages_and_the_server_keeps_serving(served):
    url, store = served
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="start the blind test first"):
        client.predict("left", **_setting(), api_name="/blind_answer")
    with pytest.raises(Exception, match="cannot be made for this image"):
        client.predict(**_setting(pair="tau1-vs-avif"), api_name="/blind_next")  # the fake host has no AVIF
    with pytest.raises(Exception, match="session code"):
        client.predict(**_setting(code="no spaces, please"), api_name="/blind_next")
    assert client.predict(**_setting(), api_name="/blind_next")[2]


def test_a_corrupt_database_mid_session_is_replaced_with_a_message(served):
    url, store = served
    client = Client(url, verbose=False)
    setting = _setting(code="after-crash")
    client.predict(**setting, api_name="/blind_next")
    store.close()
    for extra in ("-wal", "-shm"):
        store.path.with_name(store.path.name + extra).unlink(missing_ok=True)
    store.path.write_bytes(b"not a database" * 500)
    status = client.predict("right", **setting, api_name="/blind_answer")[4]
    assert "kept aside" in status and "fresh" in status and "/" not in status
    assert store.count("after-crash") == 1  # the answer went to the fresh database
    assert "kept aside" not in client.predict("left", **setting, api_name="/blind_answer")[4]  # said once


@pytest.mark.browser
def test_a_browser_answers_ten_pairs_and_sees_n_10(served):
    """The buttons themselves (the API tests call the endpoint behind them): Debian's chromium."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    url, store = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1400})
            page.goto(url, wait_until="domcontentloaded")
            expect = sync_api.expect
            page.locator("#blind-session input, #blind-session textarea").first.fill("browser-room")
            page.get_by_text("looks like a real photograph").click()
            page.locator("#blind-next").click()
            expect(page.locator("#blind-prompt")).to_contain_text("Round 1", timeout=30_000)
            expect(page.locator("#blind-original-box")).to_be_hidden()  # the perception question hides it
            for i in range(10):
                page.locator("#blind-choose-left" if i % 2 else "#blind-choose-right").click()
                expect(page.locator("#blind-status")).to_contain_text(f"Saved. {i + 1} answer", timeout=30_000)
            page.locator("#blind-results-btn").click()
            expect(page.locator("#blind-status")).to_contain_text("10 answers (this session)", timeout=30_000)
            table = page.locator("#blind-table")
            expect(table).to_contain_text(pairs.SIDES["tau1"])  # the labels, revealed in the results
            expect(table.get_by_role("gridcell", name="10", exact=True)).to_be_visible()  # n
            [result] = store.results("browser-room")
            low, high = (f"{x:.3f}".rstrip("0").rstrip(".") for x in result.a_interval)
            expect(table.get_by_role("gridcell", name=low, exact=True).first).to_be_visible()  # the interval
            expect(table.get_by_role("gridcell", name=high, exact=True).first).to_be_visible()
        finally:
            browser.close()
    assert (result.n, result.question) == (10, "realism")

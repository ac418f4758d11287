"""One real-browser smoke test: Debian's chromium driven by playwright drags the τ slider."""

import shutil
import socket
from pathlib import Path

import pytest

from dpexplorer.imageio import save_png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed")]
ARTIFACTS = Path(__file__).parent / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_drag_tau_with_the_mouse(tiny_weights_dir, photo, tmp_path, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    from dpexplorer import ui
    from dpexplorer.ui import build_demo, launch

    monkeypatch.setattr(ui, "OUT_DIR", tmp_path / "app-files")  # not the real /tmp/dpexplorer-app
    demo = build_demo()
    port = _free_port()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    photo_path = save_png(photo, tmp_path / "photo.png")
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            page.locator("#upload input[type=file]").wait_for(state="attached", timeout=60_000)
            page.locator("#upload input[type=file]").set_input_files(str(photo_path))
            metrics = page.locator("#metrics")
            sync_api.expect(metrics).to_contain_text("τ=1.00", timeout=60_000)

            slider = page.locator("#tau input[type=range]")
            box = slider.bounding_box()
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + box["width"] - 2, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=8)
            page.mouse.move(box["x"] + box["width"] * 0.3, y, steps=8)
            page.mouse.up()
            value = float(slider.input_value())
            assert 0.15 <= value <= 0.45
            sync_api.expect(metrics).to_contain_text(f"τ={value:.2f}", timeout=60_000)
            assert page.locator("#compare img").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "browser_tau_drag.png"), full_page=True)

            page.get_by_text("Chelsea the cat").first.click()  # an example encodes without a button press
            sync_api.expect(page.locator("#encode-info")).to_contain_text("451×300", timeout=60_000)
            browser.close()
    finally:
        demo.close()
    assert (ARTIFACTS / "browser_tau_drag.png").stat().st_size > 10_000

"""Measure issue 19's bar on the real app: `python app.py` → first page; encode a 768×512 photo → comparison;
background τ frames; a mouse drag on τ (frame latency in the page); release on and off the frame grid.

    python tools/measure_app.py [photo.png]      # needs playwright and Debian's /usr/bin/chromium

Prints figures; asserts nothing (the browser test in tests/e2e/test_browser.py checks the behaviour).
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "tests")]
from helpers import free_port  # noqa: E402
from test_browser import ARGS, WATCH_SCRUB, drag_tau  # noqa: E402  (the browser test's own helpers)


def main(photo: str) -> None:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "DPEXPLORER_APP_TMP": tempfile.mkdtemp()}
    t_start = time.perf_counter()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            page.locator("#upload input[type=file]").wait_for(state="attached", timeout=60000)
            print(f"first page (python app.py → upload box): {time.perf_counter() - t_start:.1f} s")
            t0 = time.perf_counter()
            page.locator("#upload input[type=file]").set_input_files(photo)
            expect(page.locator("#metrics")).to_contain_text("τ=1.00", timeout=180000)
            print(f"encode → comparison and metrics shown: {time.perf_counter() - t0:.1f} s")
            box = page.locator("#compare img").last.bounding_box()
            print(f"comparison image at y = {box['y']:.0f}–{box['y'] + box['height']:.0f} px; inside the first "
                  f"1366×768 viewport: {box['y'] >= 0 and box['y'] + box['height'] <= 768}")
            expect(page.locator("#frames-status")).to_contain_text("ready", timeout=180000)
            print(f"τ frames: {page.locator('#frames-status').inner_text()} (at {time.perf_counter() - t0:.1f} s)")
            page.evaluate(WATCH_SCRUB)
            drag_tau(page, [1.0, 0.75, 0.45, 0.15, 0.6, 0.8], steps_each=6)
            page.wait_for_timeout(500)
            lat = sorted(page.evaluate("window.__scrub.latencies"))
            print(f"drag: {len(lat)} frames shown, latency median {lat[len(lat) // 2]:.0f} ms, max {lat[-1]:.0f} ms")
            for path in ([0.8, 0.5], [0.5, 0.55]):  # release on a frame τ, then off the grid
                tau = drag_tau(page, path)
                t1 = time.perf_counter()
                expect(page.locator("#metrics")).to_contain_text(f"τ={tau:.2f}", timeout=60000)
                print(f"release at τ={tau:.2f} → exact render shown: {time.perf_counter() - t1:.2f} s")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(REPO.parent / "shared" / "kodak" / "kodim23.png"))

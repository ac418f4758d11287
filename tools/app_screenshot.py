"""The README's picture of the app (assets/app.png): the app served on the shipped weights, an example
encoded at the default quality, the first 1366×768 screen once the metrics are in. Needs Debian's
chromium and playwright (the test extras).

    python tools/app_screenshot.py [--example "Chelsea the cat"] [--out assets/app.png]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="Chelsea the cat")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "assets" / "app.png"))
    ap.add_argument("--width", type=int, default=1366)
    ap.add_argument("--height", type=int, default=768)
    args = ap.parse_args()

    import pytest
    from playwright.sync_api import expect, sync_playwright

    from dpexplorer.hub.manifest import weights_dir
    from helpers import served_app

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        with served_app(mp, weights_dir(), Path(tmp)) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_text(args.example).first.click()
            expect(page.locator("#metrics")).to_contain_text("AVIF", timeout=300_000)
            expect(page.locator("#frames-status")).to_contain_text("ready", timeout=300_000)
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(1000)
            page.screenshot(path=args.out)
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

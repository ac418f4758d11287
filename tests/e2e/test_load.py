"""Load: 8 concurrent gradio_client users drive the app (encode, τ changes, sampler changes, bad
uploads) on 127.0.0.1, against a server in its own process on tiny untrained models.

Every request must be answered (a result, or the app's own error message for a bad file), nothing may
fail with a server error, the server must still answer afterwards, and its memory (RSS) must stay
within a stated bound. p50/p95 latency is printed (`pytest -s`). The short form runs in CI; the
`slow` form does more rounds on larger images.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil
import pytest
from gradio_client import Client, handle_file

from dpexplorer.io.images import save_png

from helpers import REPO, free_port

CLIENTS = 8
# Bound on the server's RSS growth over the run: the models are loaded before it starts, so what may
# grow is 8 sessions' state (a few small images each), the caches and the allocator's slack.
RSS_GROWTH_LIMIT = 1024 * 2**20
SERVER = """
import sys, torch
torch.set_num_threads(1)  # 2-core CI: leave a core to the clients
from dpexplorer.app.layout import build_demo, launch
from dpexplorer.decoders.latent.decoder import LatentDecoder
from dpexplorer.hub.loading import get_codec
get_codec(1); LatentDecoder.load(1)  # loaded before the run, so RSS growth is the run's own
launch(build_demo(), server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
"""


@pytest.fixture(scope="module")
def server(tiny_weights_dir, tmp_path_factory):
    port, files = free_port(), tmp_path_factory.mktemp("load-app")
    env = {**os.environ, "DPEXPLORER_WEIGHTS": str(tiny_weights_dir), "DPEXPLORER_APP_TMP": str(files),
           "GRADIO_TEMP_DIR": str(files / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = open(files.parent / "load-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, open(log.name).read()[-3000:]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        pytest.fail("the app did not start in 120 s")
    yield url, proc, log.name
    proc.terminate()
    proc.wait(timeout=30)


def _user(url: str, k: int, rounds: int, size: int, tmp) -> list[tuple[str, float]]:
    """One user's scripted visit; (request name, seconds) per request. Raises on anything unexpected."""
    rng = np.random.default_rng(k)
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.clip(np.stack([xx * 2, yy * 2, xx + yy], 2) + rng.normal(0, 12, (size, size, 3)), 0, 255)
    photo = save_png(img.astype(np.uint8), tmp / f"u{k}.png")
    bad_img = tmp / f"u{k}-notes.png"
    bad_img.write_text("not an image")
    bad_dpx = tmp / f"u{k}.dpx"
    bad_dpx.write_bytes(b"DPX\x89" + bytes(rng.integers(0, 256, 60, dtype=np.uint8)))
    client = Client(url, verbose=False)
    times = []

    def call(name, *args, api, error=None):
        t0 = time.perf_counter()
        if error is None:
            result = client.predict(*args, api_name=api)
        else:  # the app's own message for a bad file, not a server error
            with pytest.raises(Exception, match=error):
                client.predict(*args, api_name=api)
            result = None
        times.append((name, time.perf_counter() - t0))
        return result

    for r in range(rounds):
        original, info, dpx = call("encode", handle_file(str(photo)), 1, api="/encode")
        assert original and dpx and "bpp" in info
        for tau in (0.5, 1.0, 0.0):  # τ changes
            pair, *_ = call("render τ", "latent", tau, "ddim", 2, r, 0.5, 0.5, api="/render")
            assert pair and len(pair) == 2
        for sampler in ("ddpm", "dpmsolver++"):  # sampler changes
            pair, *_ = call("render sampler", "latent", 0.7, sampler, 2, r, 0.5, 0.5, api="/render")
            assert pair
        call("bad image", handle_file(str(bad_img)), 1, api="/encode", error="not an image")
        call("bad .dpx", handle_file(str(bad_dpx)), api="/open_dpx",
             error="corrupted|inconsistent|truncated|magic|version|unsupported")
    return times


def _drive(server, tmp_path, rounds: int, size: int, time_limit: float):
    url, proc, log = server
    ps = psutil.Process(proc.pid)
    rss0 = ps.memory_info().rss
    peak, stop = [rss0], threading.Event()

    def watch():
        while not stop.wait(0.2):
            peak.append(ps.memory_info().rss)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(_user, url, k, rounds, size, tmp_path) for k in range(CLIENTS)]
        results = [f.result(timeout=time_limit) for f in futures]  # re-raises a user's failure
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join()

    # A malformed API call is a client error, never a server error.
    r = httpx.post(url + "gradio_api/queue/join", json={"nonsense": True}, timeout=30)
    assert r.status_code < 500, r.text
    # The server is alive and still serves a real request.
    assert proc.poll() is None and httpx.get(url, timeout=30).status_code == 200
    assert Client(url, verbose=False).predict("latent", 0.5, "ddim", 2, 0, 0.5, 0.5, api_name="/render")
    server_log = open(log).read()
    assert "Internal error" not in server_log and "unexpected error" not in server_log, server_log[-3000:]

    latencies = np.array([t for times in results for _, t in times])
    assert len(latencies) == CLIENTS * rounds * 8  # every request answered
    growth = max(peak) - rss0
    p50, p95 = np.percentile(latencies, [50, 95])
    print(f"\nload: {CLIENTS} clients × {rounds} round(s) on {size}×{size} px: {len(latencies)} requests in "
          f"{wall:.1f} s; latency p50 {p50:.2f} s, p95 {p95:.2f} s, max {latencies.max():.2f} s; "
          f"server RSS {rss0 / 2**20:.0f} → peak {max(peak) / 2**20:.0f} MiB (+{growth / 2**20:.0f})")
    for name in dict.fromkeys(n for times in results for n, _ in times):
        ts = [t for times in results for n, t in times if n == name]
        print(f"  {name:15s} p50 {np.percentile(ts, 50):.2f} s  p95 {np.percentile(ts, 95):.2f} s")
    assert growth < RSS_GROWTH_LIMIT, f"server RSS grew by {growth / 2**20:.0f} MiB"


def test_load_short(server, tmp_path):
    _drive(server, tmp_path, rounds=1, size=64, time_limit=120)


@pytest.mark.slow
def test_load_long(server, tmp_path):
    _drive(server, tmp_path, rounds=5, size=128, time_limit=600)

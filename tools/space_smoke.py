"""Hugging Face Spaces smoke test: a fresh environment from requirements.txt alone, then `python app.py`.

    python tools/space_smoke.py [--venv DIR] [--keep] [--timeout S] [--json FILE]

1. A new virtual environment in a temporary folder; `pip install -r requirements.txt gradio==<sdk_version>`:
   what Spaces installs (the requirements plus the front matter's Gradio). Not the package itself: as on
   Spaces, `dpexplorer` is imported from the repository root, the working directory of `python app.py`.
   pip reads its usual configuration (here /etc/xdg/pip/pip.conf: torch from the local indexes).
2. `python app.py` from the repository root on a free port of 127.0.0.1, `CPU_CORES=2` (CPU basic).
3. Cold start: process start → first HTTP 200 on `/`.
4. The venv's `gradio_client` finds the encode endpoint by name in `view_api()`, encodes the app's first
   example photo (as the page lists it), checks that images come back; a second encode (warm) and the
   first render (the default decoder at the default τ) are timed too.
5. Peak RSS of the server's process tree, sampled every 0.1 s from start to the end.

Prints the figures (docs/deploy.md quotes them); exits non-zero on any failure. `--venv DIR` reuses (or
creates) a venv in DIR: a rerun then only adds what requirements.txt gained. Needs only the standard
library (psutil if present).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENCODE = "/encode"  # the endpoint's api_name (dpexplorer/app/layout.py); found by name, not by position

# Runs inside the fresh venv (its gradio_client matches its gradio). argv: url, quality. Prints one JSON line.
CLIENT = r'''
import json, sys, time
from pathlib import Path
from gradio_client import Client, handle_file
from PIL import Image

url, quality, encode_name, repo = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}

def images(value, found=None):
    """Every existing image file path in a (nested) endpoint result."""
    found = [] if found is None else found
    if isinstance(value, dict):
        for v in value.values():
            images(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            images(v, found)
    elif isinstance(value, str) and Path(value).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp") \
            and Path(value).is_file():
        with Image.open(value) as im:
            im.load()
            found.append([value, im.size])
    return found

def example(config, repo):
    """The page's first example photo (gr.Examples lists file names; the files lie in installed packages)."""
    names = [item.get("orig_name") or Path(item.get("path", "")).name if isinstance(item, dict) else str(item)
             for comp in config.get("components", []) if comp.get("type") == "dataset"
             for sample in comp.get("props", {}).get("samples") or [] for item in sample[:1]]
    names = [n for n in names if n]
    if not names:
        return None, None
    try:  # how the app finds them (run from the repository root, as app.py is)
        sys.path.insert(0, repo)
        from dpexplorer.app.session import example_images
        paths = {p.name: p for _, p in example_images()}
    except ImportError:
        paths = {}
    for name in names:
        if name in paths:
            return str(paths[name]), name
    for name in names:  # the split moved example_images: look for the file in the venv
        for p in Path(sys.prefix).rglob(name):
            return str(p), name
    raise SystemExit(f"example photos {names} listed by the page, not found in {sys.prefix}")

t0 = time.perf_counter()
client = Client(url, verbose=False)
api = client.view_api(return_format="dict", print_info=False)
named = sorted(api.get("named_endpoints", {}))
out["endpoints"] = named
out["client_s"] = time.perf_counter() - t0
if encode_name not in named:
    candidates = [n for n in named if "encode" in n and "render" not in n]
    if len(candidates) != 1:
        raise SystemExit(f"no encode endpoint: expected {encode_name!r} in view_api()'s named endpoints {named}")
    encode_name = candidates[0]
out["encode_endpoint"] = encode_name

source, name = example(client.config, repo)
if source is None:
    raise SystemExit("the page lists no example photo (gr.Examples): nothing to encode")
out["example"] = name

t0 = time.perf_counter()
result = client.predict(handle_file(source), quality, api_name=encode_name)
out["encode_first_s"] = time.perf_counter() - t0
got = images(result)
if not got:
    raise SystemExit(f"{encode_name} returned no image: {result!r}")
out["encode_images"] = got
out["encode_files"] = [str(v) for v in (result if isinstance(result, (list, tuple)) else [result])]
dpx = [v for v in out["encode_files"] if v.endswith(".dpx")]
if dpx:
    out["dpx_bytes"] = Path(dpx[0]).stat().st_size

t0 = time.perf_counter()
client.predict(handle_file(source), quality, api_name=encode_name)
out["encode_second_s"] = time.perf_counter() - t0

if "/render" in named:  # the first decode: the default decoder family at the default τ
    params = api["named_endpoints"]["/render"]["parameters"]
    if all(p.get("parameter_has_default") for p in params):
        args = [p.get("parameter_default") for p in params]
        t0 = time.perf_counter()
        result = client.predict(*args, api_name="/render")
        out["render_first_s"] = time.perf_counter() - t0
        out["render_args"] = args
        out["render_images"] = len(images(result))
        if not out["render_images"]:
            raise SystemExit(f"/render returned no image: {result!r}")
        # warm: another seed (another sample: not a cached image), the networks already loaded
        again = [a + 1 if p.get("parameter_name") == "seed" else a for p, a in zip(params, args)]
        t0 = time.perf_counter()
        client.predict(*again, api_name="/render")
        out["render_second_s"] = time.perf_counter() - t0
print("RESULT " + json.dumps(out))
'''


def front_matter() -> dict[str, str]:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    meta = {}
    for line in lines[1:end]:
        if ":" in line and not line.startswith((" ", "-", "#")):
            key, value = line.split(":", 1)
            meta[key.strip()] = value.split(" #", 1)[0].strip().strip("'\"")
    return meta


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (psutil, else /proc)."""
    try:
        import psutil

        root = psutil.Process(pid)
        total = 0
        for p in [root, *root.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total
    except ImportError:
        pass
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class PeakRSS(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak, self.peak_at_start = pid, every_s, 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, tree_rss(self.pid))
            except Exception:  # the process is gone
                pass
            self.stop.wait(self.every_s)


def run(cmd: list[str], log: Path, **kwargs) -> float:
    t0 = time.perf_counter()
    print("+", " ".join(cmd), flush=True)
    with open(log, "ab") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kwargs)
    if proc.returncode:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
    return time.perf_counter() - t0


def build_venv(venv: Path, gradio: str, log: Path) -> dict:
    python = venv / "bin" / "python"
    figures = {}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_USER", "PIP_TARGET", "PIP_PREFIX")}
    if python.is_file() and (venv / ".space-smoke-done").is_file():
        print(f"reusing {venv} (adding what requirements.txt gained since)", flush=True)
        figures["top_up_s"] = run([str(python), "-m", "pip", "install", "--no-input", "-r",
                                   str(REPO / "requirements.txt"), f"gradio=={gradio}"], log, cwd=REPO, env=env)
        return figures
    figures["venv_s"] = run([sys.executable, "-m", "venv", "--clear", str(venv)], log)
    figures["install_s"] = run([str(python), "-m", "pip", "install", "--no-input", "-r", str(REPO / "requirements.txt"),
                                f"gradio=={gradio}"], log, cwd=REPO, env=env)
    (venv / ".space-smoke-done").write_text("")
    return figures


def serve_and_check(venv: Path, work: Path, timeout_s: float, quality: int) -> dict:
    python = venv / "bin" / "python"
    # The venv holds no dpexplorer: only the repository root (app.py's folder) provides it, as on Spaces.
    probe = subprocess.run([str(python), "-c", "import dpexplorer"], cwd=work, capture_output=True)
    if probe.returncode == 0:
        raise SystemExit("dpexplorer is installed in the venv: the check must use requirements.txt alone")

    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DPEXPLORER_HOME", "DPEXPLORER_WEIGHTS", "DPEXPLORER_APP_TMP")}
    env.update(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False",
               CPU_CORES=os.environ.get("CPU_CORES", "2"), VIRTUAL_ENV=str(venv),
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
               DPEXPLORER_APP_TMP=str(work / "app-tmp"), GRADIO_TEMP_DIR=str(work / "gradio-tmp"))
    url = f"http://127.0.0.1:{port}/"
    server_log = work / "server.log"
    figures: dict = {"port": port}
    with open(server_log, "wb") as log:
        t0 = time.perf_counter()
        server = subprocess.Popen([str(python), "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        sampler = PeakRSS(server.pid)
        sampler.start()
        try:
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"app.py exited ({server.returncode}) before serving:\n"
                                     + "\n".join(server_log.read_text(errors="replace").splitlines()[-40:]))
                if time.perf_counter() - t0 > timeout_s:
                    raise SystemExit(f"app.py did not serve {url} within {timeout_s:.0f} s")
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                    pass
                time.sleep(0.1)
            figures["cold_start_s"] = time.perf_counter() - t0
            figures["rss_at_serve_mb"] = tree_rss(server.pid) / 2**20
            print(f"serving {url} after {figures['cold_start_s']:.1f} s", flush=True)

            client = subprocess.run([str(python), "-c", CLIENT, url, str(quality), ENCODE, str(REPO)], cwd=work, env=env,
                                    capture_output=True, text=True, timeout=timeout_s * 3)
            lines = [l for l in client.stdout.splitlines() if l.startswith("RESULT ")]
            if client.returncode or not lines:
                raise SystemExit(f"the client check failed ({client.returncode}):\n{client.stdout[-3000:]}\n"
                                 f"{client.stderr[-3000:]}\n--- server log ---\n"
                                 + "\n".join(server_log.read_text(errors="replace").splitlines()[-40:]))
            figures.update(json.loads(lines[-1][len("RESULT "):]))
            figures["rss_after_requests_mb"] = tree_rss(server.pid) / 2**20
            if server.poll() is not None:
                raise SystemExit(f"app.py exited ({server.returncode}) during the requests")
        finally:
            sampler.stop.set()
            sampler.join(timeout=5)
            figures["peak_rss_mb"] = sampler.peak / 2**20
            try:
                os.killpg(server.pid, signal.SIGTERM)  # the server's own session: app.py and any children
                server.wait(timeout=30)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, help="build (or reuse) the venv here instead of a temporary folder")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (venv, logs)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds for the app to serve (default 600)")
    ap.add_argument("--quality", type=int, default=3, help="quality to encode the example at (default 3)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    meta = front_matter()
    gradio = meta.get("sdk_version")
    if not gradio:
        print("README front matter has no sdk_version", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="space-smoke-"))
    venv = args.venv.resolve() if args.venv else work / "venv"
    install_log = work / "pip.log"
    figures: dict = {"gradio": gradio, "python_version": meta.get("python_version"),
                     "python": sys.version.split()[0], "cpus": os.cpu_count(), "work": str(work)}
    ok = False
    try:
        figures.update(build_venv(venv, gradio, install_log))
        pv = subprocess.run([str(venv / "bin" / "python"), "-c",
                             "import importlib.metadata as m, platform; print(platform.python_version(), "
                             "m.version('torch'), m.version('gradio'))"], capture_output=True, text=True, check=True)
        figures["venv_python"], figures["torch"], figures["venv_gradio"] = pv.stdout.split()
        if figures["venv_gradio"] != gradio:
            raise SystemExit(f"the venv has Gradio {figures['venv_gradio']}, the front matter pins {gradio}")
        figures["venv_mb"] = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20
        figures["loadavg_before"] = os.getloadavg()  # other work on the machine inflates every figure
        figures.update(serve_and_check(venv, work, args.timeout, args.quality))
        figures["loadavg_after"] = os.getloadavg()
        ok = True
    except SystemExit as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
    finally:
        print(json.dumps(figures, indent=1, default=str))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1, default=str) + "\n")
        if ok:
            print(f"\nOK: Gradio {gradio}, torch {figures.get('torch')}, Python {figures.get('venv_python')}, "
                  f"{figures.get('cpus')} CPUs, CPU_CORES={os.environ.get('CPU_CORES', '2')}")
            if "install_s" in figures:
                print(f"install from requirements.txt: {figures['install_s']:.0f} s ({figures['venv_mb']:.0f} MB venv)")
            print(f"cold start (python app.py → HTTP 200): {figures['cold_start_s']:.1f} s, "
                  f"RSS then {figures['rss_at_serve_mb']:.0f} MB")
            print(f"encode {figures['example']} at q{args.quality}: first {figures['encode_first_s']:.1f} s, "
                  f"second {figures['encode_second_s']:.1f} s")
            if "render_first_s" in figures:
                print(f"render {figures['render_args'][:2]} (the default decoder): first {figures['render_first_s']:.1f} s, "
                      f"second {figures['render_second_s']:.1f} s")
            print(f"peak RSS of the server's process tree: {figures['peak_rss_mb']:.0f} MB")
            print("load average (1 min) before / after: " + " / ".join(
                f"{figures[k][0]:.1f}" for k in ("loadavg_before", "loadavg_after")))
        if args.keep or not ok:
            print(f"kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

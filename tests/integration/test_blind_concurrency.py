"""The blind test's store under an audience (issue 35): many writers at once lose nothing and show no
'database is locked', and a server killed mid-session keeps every answer it acknowledged."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dpexplorer.app.blindtest import pairs
from dpexplorer.app.blindtest.store import Store

from helpers import REPO

TAU = pairs.get_pair("tau1-vs-webp")


def _answer_many(store, session, count):
    for i in range(count):
        left, _ = pairs.assign_sides(TAU, pairs.round_seed(int(session.rsplit("-", 1)[1]), i))
        store.record_answer(session_id=session, image_hash="cafe", quality=2, pair=TAU, left=left,
                            question=("closer", "realism")[i % 2], choice=TAU.a if i % 3 else TAU.b,
                            response_ms=100 + i)


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "a-store-per-thread"])
def test_eight_writers_twenty_answers_each_leave_exactly_160_rows(tmp_path, shared):
    """One Store shared by the server's threads, and one per thread (connections that only SQLite's
    locking keeps apart, as separate processes would be)."""
    path = tmp_path / "blind.sqlite"
    first = Store(path)
    start = threading.Barrier(8)

    def client(k):
        store = first if shared else Store(path)
        start.wait()  # all at once
        _answer_many(store, f"browser-{k}", 20)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client, range(8)))  # re-raises any error, 'database is locked' included
    assert first.count() == 160
    assert {first.count(f"browser-{k}") for k in range(8)} == {20}
    assert sum(r.n for r in first.results()) == 160


_WRITER = textwrap.dedent("""
    import sys, time
    from dpexplorer.app.blindtest import pairs
    from dpexplorer.app.blindtest.store import Store

    store, pair = Store(sys.argv[1]), pairs.get_pair("tau0-vs-tau1")
    for i in range(int(sys.argv[2])):
        row = store.record_answer(session_id=sys.argv[3], image_hash="beef", quality=1, pair=pair, left="tau0",
                                  question="realism", choice="tau1", response_ms=i)
        print(row, flush=True)  # printed only once committed: what a user saw acknowledged
""")


def _writer(path, count, session):
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(count), session], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "blind.sqlite"
    Store(path)
    procs = [_writer(path, 20, f"proc-{k}") for k in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert len(out.split()) == 20
    assert Store(path).count() == 80


def test_a_server_killed_mid_session_keeps_its_acknowledged_answers(tmp_path):
    path = tmp_path / "blind.sqlite"
    Store(path)
    proc = _writer(path, 100_000, "killed")
    acknowledged = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 25 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)  # mid-write, most likely: the loop never pauses
    proc.wait(timeout=30)
    assert len(acknowledged) == 25, proc.stderr.read()
    store = Store(path)  # the restart: opens and checks the file
    assert store.notice is None  # not corrupt: nothing set aside
    ids = {row["id"] for row in store.answers("killed")}
    assert set(acknowledged) <= ids
    assert len(ids) >= 25
    store.record_answer(session_id="after", image_hash="beef", quality=1, pair=pairs.PAIRS["tau0-vs-tau1"],
                        left="tau0", question="closer", choice="tau0", response_ms=1)
    assert store.count("after") == 1

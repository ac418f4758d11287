"""The blind test's answers in SQLite (the standard library's sqlite3): one row per answer, nothing
personal, no image (only its hash).

Many browsers answer at once, so: WAL mode (readers never block the writer), a busy timeout, a
connection per call (no connection is shared between threads; one more is held idle so that WAL
checkpoints stay occasional, see `_hold_open`), every write in its own
`BEGIN IMMEDIATE` transaction retried while the file is locked, and `synchronous = FULL` so that an
answer acknowledged to a user is on disk even if the server is killed the next instant. A file that is
not a readable SQLite database is set aside as `<name>.corrupt-<time>` and a fresh one started; the
message says so (without server paths) for the UI to show."""

from __future__ import annotations

import csv
import io
import os
import random
import sqlite3
import tempfile
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dpexplorer.app.blindtest.pairs import QUESTIONS, Pair, check_side
from dpexplorer.app.blindtest.stats import Result, summarize
from dpexplorer.errors import DPExplorerError

DB_NAME = "blindtest.sqlite"
SPACES_DATA = Path("/data")  # Hugging Face Spaces' persistent storage, when the Space has it
BUSY_TIMEOUT_MS = 5000
LOCK_RETRIES = 6  # × the busy timeout, with backoff: half a minute of contention before giving up
SQLITE_MAGIC = b"SQLite format 3\x00"
SCHEMA_VERSION = 1
# Version n's statements take a database at version n − 1 to n (PRAGMA user_version).
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS answers (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            session_id TEXT NOT NULL,
            image_hash TEXT NOT NULL,
            quality INTEGER NOT NULL,
            pair TEXT NOT NULL,
            side_a TEXT NOT NULL,
            side_b TEXT NOT NULL,
            question TEXT NOT NULL,
            left_side TEXT NOT NULL,
            right_side TEXT NOT NULL,
            choice TEXT NOT NULL,
            response_ms INTEGER NOT NULL,
            round_seed TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS answers_by_session ON answers (session_id)",
    ],
}
CSV_COLUMNS = ["id", "created_utc", "session_id", "image_hash", "quality", "pair", "side_a", "side_b", "question",
               "left_side", "right_side", "choice", "chosen_position", "response_ms", "round_seed"]


class StoreError(DPExplorerError):
    """The answers cannot be stored or read; the message is for the user (no server paths)."""


def app_tmp_dir() -> Path:
    """The app's temporary folder, chosen as app/ui.py chooses it ($DPEXPLORER_APP_TMP, else
    <tmp>/dpexplorer-app); read here, not imported, so that the store needs no Gradio."""
    return Path(os.environ.get("DPEXPLORER_APP_TMP", Path(tempfile.gettempdir()) / "dpexplorer-app"))


def data_dir() -> Path:
    """Where the answers live: $DPEXPLORER_DATA; else /data/dpexplorer when /data is writable (a Space
    with persistent storage, which survives restarts); else beside the app's temporary folder, not in
    it: the app sweeps that folder's idle entries every hour."""
    if os.environ.get("DPEXPLORER_DATA"):
        return Path(os.environ["DPEXPLORER_DATA"])
    if SPACES_DATA.is_dir() and os.access(SPACES_DATA, os.W_OK | os.X_OK):
        return SPACES_DATA / "dpexplorer"
    return app_tmp_dir().parent / "dpexplorer-data"


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@dataclass(frozen=True)
class Notice:
    at: float
    text: str


class Store:
    """The answers database at `path` (default: data_dir()/blindtest.sqlite), created on first use."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else data_dir() / DB_NAME
        self.notice: Notice | None = None  # the last recovery, for the UI to show once
        # Writes of this process go one at a time: SQLite serialises writers anyway, and a recovery
        # (moving the file aside) must never happen under a write in flight on the old file.
        self._write_lock = threading.RLock()
        self._created = False
        self._generation = 0  # bumped when a bad file is set aside
        self._anchor: sqlite3.Connection | None = None
        with self._write_lock:
            self._open_checked()

    # ---- opening, schema, recovery ---------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; writes say BEGIN IMMEDIATE themselves, so a
        # writer takes the lock up front instead of failing to upgrade a read lock (SQLITE_BUSY at once).
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=True)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _open_checked(self) -> None:
        """Create the folder and the database, or check the one there; set a bad file aside."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the blind-test data folder ({exc.strerror}); set DPEXPLORER_DATA "
                             "to a writable folder") from None
        reason = self._bad_header()
        if reason is None:
            try:
                conn = self._connect()
                try:
                    ok = conn.execute("PRAGMA quick_check").fetchone()[0]
                    if ok != "ok":
                        reason = f"integrity check failed: {ok}"
                    else:
                        self._migrate(conn)
                finally:
                    conn.close()
            except sqlite3.OperationalError as exc:
                if _is_locked(exc):
                    raise
                raise StoreError(f"cannot open the blind-test database ({exc})") from None
            except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
                reason = str(exc)
        if reason is not None:
            self._set_aside(reason)  # which opens the fresh one
        else:
            self._hold_open()
        self._created = True

    def _hold_open(self) -> None:
        """Keep one idle connection open for the store's life. The last connection to close a WAL database
        checkpoints it and deletes the WAL (with an fsync): with a connection per call, that would be
        every call (~10 ms each); with this one held, checkpoints happen as the WAL grows, as designed."""
        if self._anchor is not None:
            self._anchor.close()
        self._anchor = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        self._anchor.execute("PRAGMA user_version").fetchone()  # a first read opens the WAL: it now counts

    def close(self) -> None:
        """Let go of the held connection (the WAL is checkpointed into the file when it was the last)."""
        with self._write_lock:
            if self._anchor is not None:
                self._anchor.close()
                self._anchor = None

    def _bad_header(self) -> str | None:
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except FileNotFoundError:
            return None
        # An empty file is what sqlite3 itself leaves before the first write: a database, not damage.
        return None if head in (b"", SQLITE_MAGIC) else "not an SQLite file"

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(f"the blind-test database is of a newer version ({version} > {SCHEMA_VERSION}); "
                             "update the app or set DPEXPLORER_DATA to another folder")
        conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file once
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have done it
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[v]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _set_aside(self, reason: str) -> None:
        self._generation += 1
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        if self.path.exists():
            self.path.replace(aside)
        for suffix in ("-wal", "-shm"):  # a journal of the bad file must not be replayed into the new one
            extra = self.path.with_name(self.path.name + suffix)
            if extra.exists():
                extra.replace(aside.with_name(aside.name + suffix))
        conn = self._connect()
        try:
            self._migrate(conn)
        finally:
            conn.close()
        self._hold_open()
        self._note(f"The blind-test database could not be read ({reason}); it was kept aside as {aside.name} "
                   "and a fresh one started: earlier answers are not in these results.")

    def _note(self, text: str) -> None:
        self.notice = Notice(time.time(), text)

    def _run(self, work, *, write: bool):
        """`work(conn)` on a fresh connection: retried while the file is locked by another process, and
        once more on a fresh database when the file turns out corrupt or was deleted meanwhile."""
        for attempt in range(LOCK_RETRIES + 2):
            generation = self._generation
            try:
                if self._created and not self.path.exists():
                    with self._write_lock:
                        if not self.path.exists():  # another thread may have recreated it meanwhile
                            self._open_checked()
                            self._note("The blind-test database file was missing; a fresh one was started: "
                                       "earlier answers are not in these results.")
                with self._write_lock if write else nullcontext():
                    conn = self._connect()
                    try:
                        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                            self._migrate(conn)
                        return work(conn)
                    finally:
                        conn.close()
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc):
                    raise StoreError(f"the blind-test database failed ({exc})") from None
                if attempt >= LOCK_RETRIES:
                    break
            except sqlite3.DatabaseError as exc:  # corrupt: set aside (once, whoever sees it first), retry
                if attempt > LOCK_RETRIES or isinstance(exc, sqlite3.IntegrityError):
                    raise StoreError(f"the blind-test database failed ({exc})") from None
                with self._write_lock:
                    if self._generation == generation:
                        self._set_aside(str(exc))
                continue
            time.sleep(random.uniform(0.01, 0.05) * 2 ** min(attempt, 4))  # jitter: retries do not collide
        raise StoreError("the blind-test database is busy; please answer again")

    # ---- answers ---------------------------------------------------------------------------------
    def record_answer(self, *, session_id: str, image_hash: str, quality: int, pair: Pair, left: str, question: str,
                      choice: str, response_ms: int, round_seed: int | None = None) -> int:
        """Store one answer (`left`: the side shown on the left; `choice`: the side key chosen); its row id."""
        if not session_id or len(session_id) > 64:
            raise ValueError("a session id is 1 to 64 characters")
        if not image_hash or len(image_hash) > 128:
            raise ValueError("an image hash is 1 to 128 characters")
        if question not in QUESTIONS:
            raise ValueError(f"unknown question {question!r}")
        sides = (check_side(pair.a), check_side(pair.b))
        if left not in sides or choice not in sides:
            raise ValueError(f"the left side and the choice must be {pair.a!r} or {pair.b!r}")
        right = pair.b if left == pair.a else pair.a
        row = (time.time(), session_id, image_hash, int(quality), pair.key, pair.a, pair.b, question, left, right,
               choice, max(0, int(response_ms)), None if round_seed is None else str(round_seed))

        def insert(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT INTO answers (created_at, session_id, image_hash, quality, pair, side_a, side_b, "
                    "question, left_side, right_side, choice, response_ms, round_seed) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return cur.lastrowid

        return self._run(insert, write=True)

    def answers(self, session_id: str | None = None) -> list[sqlite3.Row]:
        """Every answer (or one session's), oldest first."""
        def select(conn):
            conn.row_factory = sqlite3.Row
            where, args = ("WHERE session_id = ?", (session_id,)) if session_id else ("", ())
            return conn.execute(f"SELECT * FROM answers {where} ORDER BY id", args).fetchall()

        return self._run(select, write=False)

    def count(self, session_id: str | None = None) -> int:
        return len(self.answers(session_id))

    def results(self, presenter_session: str | None = None) -> list[Result]:
        """Per pair × quality × question: n and the shares (Wilson intervals on the Result); all
        sessions, or one presenter's session."""
        return summarize((r["pair"], r["side_a"], r["side_b"], r["quality"], r["question"], r["choice"])
                         for r in self.answers(presenter_session))

    def export_csv(self, session_id: str | None = None) -> bytes:
        """The answers as UTF-8 CSV (CSV_COLUMNS), labels revealed: which side was left, which was chosen."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in self.answers(session_id):
            created = datetime.fromtimestamp(r["created_at"], timezone.utc).isoformat(timespec="milliseconds")
            position = "left" if r["choice"] == r["left_side"] else "right"
            writer.writerow([r["id"], created, r["session_id"], r["image_hash"], r["quality"], r["pair"], r["side_a"],
                             r["side_b"], r["question"], r["left_side"], r["right_side"], r["choice"], position,
                             r["response_ms"], r["round_seed"] or ""])
        return out.getvalue().encode("utf-8")

    def reset(self, session_id: str) -> int:
        """Delete one session's answers (no other session's); how many."""
        if not session_id:
            raise ValueError("reset needs a session id (the results of everyone are never deleted at once)")

        def delete(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = conn.execute("DELETE FROM answers WHERE session_id = ?", (session_id,)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return n

        return self._run(delete, write=True)


_stores: dict[Path, Store] = {}
_stores_lock = threading.Lock()


def get_store(path: str | Path | None = None) -> Store:
    """The process's Store for `path` (default: data_dir()/blindtest.sqlite), opened once."""
    path = Path(path) if path is not None else data_dir() / DB_NAME
    with _stores_lock:
        if path not in _stores:
            _stores[path] = Store(path)
        return _stores[path]

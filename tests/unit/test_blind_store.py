"""The blind test's library (issue 35): Wilson intervals, pairs and sides, the SQLite store (schema,
reset, CSV, where it lives, recovery from a corrupt or missing file) and the results report."""

import csv
import io
import sqlite3

import pytest

from dpexplorer.app.blindtest import pairs, report, store as store_mod
from dpexplorer.app.blindtest.stats import Result, summarize, wilson
from dpexplorer.app.blindtest.store import SCHEMA_VERSION, Store, StoreError

TAU = pairs.get_pair("tau0-vs-tau1")


def _answer(store, *, session="s1", choice="tau1", left="tau0", question="realism", quality=3, pair=TAU):
    return store.record_answer(session_id=session, image_hash="ab12", quality=quality, pair=pair, left=left,
                               question=question, choice=choice, response_ms=850, round_seed=7)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "blind.sqlite")


# ---- Wilson ------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, n, lo, hi", [
    (7, 10, 0.3968, 0.8922),   # the textbook example
    (0, 10, 0.0, 0.2775),      # z²/(n + z²): not the degenerate (0, 0) of the normal approximation
    (10, 10, 0.7225, 1.0),
    (50, 100, 0.4038, 0.5962),
    (1, 1, 0.2065, 1.0),
])
def test_wilson_known_values(k, n, lo, hi):
    assert wilson(k, n) == pytest.approx((lo, hi), abs=5e-4)


def test_wilson_edges():
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(3, 10)
    assert (lo, hi) == pytest.approx(tuple(1 - x for x in reversed(wilson(7, 10))))  # symmetric
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_summarize_counts_each_pair_quality_and_question():
    rows = [("tau0-vs-tau1", "tau0", "tau1", 3, "realism", "tau1")] * 7 + \
           [("tau0-vs-tau1", "tau0", "tau1", 3, "realism", "tau0")] * 3 + \
           [("tau0-vs-tau1", "tau0", "tau1", 3, "closer", "tau0")] * 2 + \
           [("tau0-vs-tau1", "tau0", "tau1", 2, "realism", "tau1")]
    results = {(r.quality, r.question): r for r in summarize(rows)}
    r = results[(3, "realism")]
    assert (r.n, r.a_count, r.b_count) == (10, 3, 7)
    assert r.b_interval == pytest.approx((0.3968, 0.8922), abs=5e-4)
    assert (results[(3, "closer")].n, results[(2, "realism")].n) == (2, 1)


# ---- pairs and sides ---------------------------------------------------------------------------
def test_pair_catalogue_and_custom_pairs():
    assert set(pairs.PAIRS) == {"tau0-vs-tau1", "tau1-vs-avif", "tau1-vs-webp", "sampler-a-vs-b"}
    assert pairs.get_pair("tau1-vs-webp") == pairs.Pair("tau1-vs-webp", "tau1", "webp")
    custom = pairs.get_pair("custom", custom_a="jpeg", custom_b="tau1")
    assert (custom.key, custom.a, custom.b) == ("jpeg-vs-tau1", "jpeg", "tau1")
    assert pairs.get_pair("custom", custom_a="tau0", custom_b="tau1") is pairs.PAIRS["tau0-vs-tau1"]
    for bad in (dict(custom_a="tau1", custom_b="tau1"), dict(custom_a="Tau 1", custom_b="tau0"),
                dict(custom_a=None, custom_b="tau0")):
        with pytest.raises(ValueError):
            pairs.get_pair("custom", **bad)
    with pytest.raises(ValueError, match="unknown pair"):
        pairs.get_pair("tau0-vs-nothing")


def test_sides_are_a_fair_seeded_coin():
    seeds = [pairs.round_seed(1234, i) for i in range(2000)]
    assert len(set(seeds)) == 2000  # a new draw every round
    draws = [pairs.assign_sides(TAU, s) for s in seeds]
    assert draws == [pairs.assign_sides(TAU, s) for s in seeds]  # replayable
    assert set(draws) == {("tau0", "tau1"), ("tau1", "tau0")}
    share = sum(d[0] == "tau0" for d in draws) / len(draws)
    assert 0.45 < share < 0.55  # 2000 fair flips: 0.5 ± 0.022 at 95 %
    assert pairs.round_seed(1, 0) != pairs.round_seed(2, 0)


def test_questions():
    assert [pairs.question_for("alternate", i) for i in range(4)] == ["closer", "realism"] * 2
    assert pairs.question_for("realism", 5) == "realism"
    with pytest.raises(ValueError):
        pairs.question_for("prettier", 0)


# ---- the store ---------------------------------------------------------------------------------
def test_schema_is_versioned_and_in_wal_mode(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = {r[1] for r in conn.execute("PRAGMA table_info(answers)")}
    assert {"session_id", "image_hash", "quality", "pair", "left_side", "right_side", "choice",
            "response_ms"} <= columns
    conn.close()
    Store(store.path)  # reopening an up-to-date database changes nothing
    assert sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_newer_schema_is_refused_clearly(tmp_path):
    path = tmp_path / "new.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer version"):
        Store(path)


def test_record_and_results(store):
    for i in range(10):
        _answer(store, choice="tau1" if i < 7 else "tau0", left=("tau0", "tau1")[i % 2])
    _answer(store, session="s2", choice="tau0")
    [everyone] = store.results()
    assert (everyone.n, everyone.b_count) == (11, 7)
    [mine] = store.results("s1")
    assert (mine.pair, mine.quality, mine.question, mine.n, mine.b_count) == ("tau0-vs-tau1", 3, "realism", 10, 7)
    row = store.answers("s1")[0]
    assert (row["left_side"], row["right_side"], row["choice"], row["response_ms"]) == ("tau0", "tau1", "tau1", 850)


def test_answers_are_checked(store):
    with pytest.raises(ValueError):
        _answer(store, choice="webp")  # not a side of the pair
    with pytest.raises(ValueError):
        _answer(store, left="avif")
    with pytest.raises(ValueError):
        _answer(store, question="prettier")
    with pytest.raises(ValueError):
        _answer(store, session="")
    assert store.count() == 0


def test_reset_deletes_only_that_session(store):
    for session in ("talk-a", "talk-a", "talk-b"):
        _answer(store, session=session)
    assert store.reset("talk-a") == 2
    assert store.count("talk-a") == 0 and store.count("talk-b") == 1 and store.count() == 1
    assert store.reset("nobody") == 0
    with pytest.raises(ValueError):
        store.reset("")  # never everyone's answers at once


def test_csv_export(store):
    _answer(store, choice="tau1", left="tau0")
    _answer(store, choice="tau1", left="tau1", question="closer")
    _answer(store, session="other")
    rows = list(csv.DictReader(io.StringIO(store.export_csv("s1").decode("utf-8"))))
    assert list(rows[0]) == store_mod.CSV_COLUMNS
    assert len(rows) == 2 and [r["chosen_position"] for r in rows] == ["right", "left"]
    assert rows[1]["question"] == "closer" and rows[0]["quality"] == "3" and rows[0]["round_seed"] == "7"
    assert rows[0]["created_utc"].endswith("+00:00")
    assert len(store.export_csv().decode().splitlines()) == 4  # header + everyone's 3


def test_missing_folders_are_created(tmp_path):
    s = Store(tmp_path / "a" / "b" / "c.sqlite")
    _answer(s)
    assert s.count() == 1 and (tmp_path / "a" / "b" / "c.sqlite").is_file()


def test_a_corrupt_file_is_set_aside_and_a_fresh_one_started(tmp_path):
    path = tmp_path / "blind.sqlite"
    path.write_bytes(b"these are not the answers you are looking for" * 50)
    s = Store(path)
    aside = list(tmp_path.glob("blind.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"these are not")
    assert s.count() == 0 and _answer(s) == 1
    text = s.notice.text
    assert aside[0].name in text and "fresh" in text and str(tmp_path) not in text and "/" not in text


def test_a_damaged_database_is_caught_by_its_integrity_check(tmp_path):
    path = tmp_path / "blind.sqlite"
    s = Store(path)
    for _ in range(50):
        _answer(s)
    s.close()  # its answers are checkpointed from the WAL into the file
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # the header survives, the pages do not
    path.write_bytes(bytes(data))
    s2 = Store(path)
    assert s2.notice is not None and s2.count() == 0
    assert len(list(tmp_path.glob("blind.sqlite.corrupt-*"))) == 1


def test_corruption_while_running_keeps_the_answer(store):
    _answer(store)
    for extra in ("-wal", "-shm"):
        store.path.with_name(store.path.name + extra).unlink(missing_ok=True)
    store.path.write_bytes(b"\x00garbage" * 600)
    assert _answer(store) == 1  # written to the fresh database, not lost
    assert store.count() == 1 and "kept aside" in store.notice.text


def test_a_deleted_file_is_recreated_with_a_message(store):
    _answer(store)
    store.path.unlink()
    assert store.count() == 0
    assert "missing" in store.notice.text
    _answer(store)
    assert store.count() == 1


def test_where_the_data_lives(tmp_path, monkeypatch):
    monkeypatch.setenv("DPEXPLORER_DATA", str(tmp_path / "chosen"))
    assert store_mod.data_dir() == tmp_path / "chosen"
    monkeypatch.delenv("DPEXPLORER_DATA")
    spaces = tmp_path / "data"
    spaces.mkdir()
    monkeypatch.setattr(store_mod, "SPACES_DATA", spaces)
    assert store_mod.data_dir() == spaces / "dpexplorer"  # Spaces' persistent storage
    monkeypatch.setattr(store_mod, "SPACES_DATA", tmp_path / "no-data")
    monkeypatch.setenv("DPEXPLORER_APP_TMP", str(tmp_path / "tmp" / "dpexplorer-app"))
    # beside the app's temporary folder, not inside it: the app sweeps that one
    assert store_mod.data_dir() == tmp_path / "tmp" / "dpexplorer-data"
    assert store_mod.get_store() is store_mod.get_store()
    assert store_mod.get_store().path == tmp_path / "tmp" / "dpexplorer-data" / store_mod.DB_NAME


def test_an_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="DPEXPLORER_DATA"):
        Store(blocker / "sub" / "blind.sqlite")


# ---- the report --------------------------------------------------------------------------------
def test_results_table_csv_and_plot():
    results = [Result("tau0-vs-tau1", "tau0", "tau1", 3, question="realism", n=10, a_count=3)]
    table = report.results_table(results)
    row = dict(zip(table["headers"], table["data"][0]))
    assert row["n"] == 10 and row["B share"] == 0.7 and (row["B 95% low"], row["B 95% high"]) == (0.397, 0.892)
    assert row["side B"] == pairs.SIDES["tau1"]  # labels revealed in the results
    lines = report.results_csv(results).decode().splitlines()
    assert lines[0].startswith("pair,question,quality") and len(lines) == 2
    fig = report.results_figure(results)
    assert len(fig.axes) == 1 and fig.axes[0].get_xlim() == (0, 1)
    assert report.results_figure([]).axes  # an empty plot says so, does not fail

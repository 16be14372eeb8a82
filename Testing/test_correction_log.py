"""The correction log: durable events (a writer killed mid-case loses nothing committed), the
schema migrations, the keyed pseudonyms and the site key."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap

import pytest

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.monitoring.correction_log import (
    SCHEMA_VERSION,
    CTProperties,
    StructureResult,
    open_log,
    read_only_copy,
)
from DKOARSegmentationLib.monitoring.pseudonym import SiteKey, key_is_private, key_path_from, load_site_key

KEY = SiteKey(b"k" * 32)

WRITER = textwrap.dedent("""
    import sys
    from DKOARSegmentationLib.monitoring.correction_log import open_log
    log = open_log(sys.argv[1])
    case = log.start_case(site="Aalborg", model_name="DK-OAR", model_version="1.0", source="test")
    print("case", case, flush=True)
    i = 0
    while True:  # events as fast as it can: the parent kills it somewhere in the middle
        event = log.record_event(case, "Parotid_L", "edit", timestamp=1000.0 + i, detail={"stroke": i})
        print(event, flush=True)  # printed only after record_event returned, i.e. committed
        i += 1
""")


def test_killed_writer_loses_no_committed_event(tmp_path):
    db = tmp_path / "log.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    process = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True)
    try:
        header = process.stdout.readline().split()
        assert header[0] == "case", header
        case_id = int(header[1])
        committed = [int(process.stdout.readline()) for _ in range(200)]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert (tmp_path / "log.sqlite-wal").exists()  # killed: nothing checkpointed the WAL away
    with open_log(db) as log:
        recorded = {e["event_id"]: e for e in log.events(case_id)}
        assert set(committed) <= set(recorded)
        assert recorded[committed[-1]]["detail"] == '{"stroke": 199}'
        assert log.cases()[0]["finished_at"] is None  # the case was never finished
        assert log.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# The schema as version 1 shipped it: kept here verbatim so that a migration that breaks old logs fails.
VERSION_1 = """
CREATE TABLE cases (case_id INTEGER PRIMARY KEY, case_uid TEXT NOT NULL UNIQUE, site TEXT NOT NULL DEFAULT '',
    patient_key TEXT, study_key TEXT, model_name TEXT NOT NULL DEFAULT '', model_version TEXT NOT NULL DEFAULT '',
    model_hash TEXT NOT NULL DEFAULT '', started_at TEXT NOT NULL, finished_at TEXT, ai_contours_sha256 TEXT,
    final_contours_sha256 TEXT);
CREATE TABLE events (event_id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL REFERENCES cases(case_id),
    structure TEXT, kind TEXT NOT NULL, timestamp REAL NOT NULL, detail TEXT);
CREATE TABLE structure_results (case_id INTEGER NOT NULL REFERENCES cases(case_id), structure TEXT NOT NULL,
    active_s REAL, wall_s REAL, edits INTEGER, unchanged INTEGER, dice REAL, hd95_mm REAL, surface_dice REAL,
    tolerance_mm REAL, volume_ai_ml REAL, volume_final_ml REAL, PRIMARY KEY (case_id, structure));
PRAGMA user_version = 1;
"""


def _version_1_log(path):
    connection = sqlite3.connect(path)
    connection.executescript(VERSION_1)
    connection.execute("INSERT INTO cases (case_uid, site, model_name, model_version, started_at, finished_at) "
                       "VALUES ('abc', 'Vejle', 'DK-OAR', '0.9', '2025-02-03T10:00:00Z', '2025-02-03T10:40:00Z')")
    connection.execute("INSERT INTO structure_results (case_id, structure, active_s, wall_s, edits, unchanged, dice, "
                       "hd95_mm, surface_dice, tolerance_mm) VALUES (1, 'Parotid_L', 60, 90, 4, 0, 0.9, 3.1, 0.8, 2.85)")
    connection.execute("INSERT INTO events (case_id, structure, kind, timestamp) VALUES (1, 'Parotid_L', 'edit', 5.0)")
    connection.commit()
    connection.close()


def test_a_version_1_log_is_migrated_and_keeps_its_data(tmp_path):
    db = tmp_path / "old.sqlite"
    _version_1_log(db)
    # reading for a report upgrades a copy in memory, never the file
    memory = read_only_copy(db)
    assert memory.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 1
    with open_log(db) as log:
        assert log.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        old = log.structure_results(1)["Parotid_L"]
        assert (old["active_s"], old["edits"], old["surface_dice"], old["apl_mm"], old["msd_mm"]) == (60, 4, 0.8, None, None)
        assert log.cases()[0]["scanner_model"] is None and log.cases()[0]["site"] == "Vejle"
        assert len(log.events(1)) == 1
        new = log.start_case(site="Vejle", ct=CTProperties("GE Revolution", "STANDARD", 2.5, True),
                             patient_key=KEY.pseudonym("patient", "x"))
        log.finish_case(new, {"Parotid_L": StructureResult(active_s=10, apl_mm=12.5, msd_mm=0.4, unchanged=False)})
        assert log.structure_results(new)["Parotid_L"]["apl_mm"] == 12.5
        assert log.cases()[1]["contrast"] == 1 and log.cases()[1]["convolution_kernel"] == "STANDARD"
    with open_log(db) as log:  # opening again migrates nothing more
        assert len(log.cases()) == 2


def test_a_log_from_a_newer_dkoar_is_refused(tmp_path):
    db = tmp_path / "new.sqlite"
    with open_log(db):
        pass
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA user_version = 99")
    connection.commit()
    connection.close()
    with pytest.raises(DKOARError, match="newer"):
        open_log(db)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all, " * 100)
    with pytest.raises(DKOARError, match="not a correction log"):
        open_log(tmp_path / "junk.sqlite")


def test_case_life_cycle(tmp_path):
    with open_log(tmp_path / "log.sqlite") as log:
        case = log.start_case(site="Herlev", model_name="DK-OAR", model_version="1.1", model_hash="ab" * 32,
                              patient_key=KEY.pseudonym("patient", "p"), study_key=KEY.pseudonym("study", "s"),
                              ct=CTProperties("Siemens go.Open Pro", "Br40", 2.0, False), started_at="2026-03-01T09:00:00+01:00")
        log.record_event(case, "Brainstem", "select", timestamp=10.0)
        log.record_event(case, "Brainstem", "edit", timestamp=12.5, detail={"tool": "paint"})
        log.finish_case(case, {"Brainstem": {"active_s": 2.5, "wall_s": 3.0, "edits": 1, "unchanged": False, "dice": 0.97},
                               "Lips": StructureResult(active_s=0.0, edits=0, unchanged=True)},
                        final_contours_sha256="cd" * 32)
        row = log.cases()[0]
        assert row["started_at"] == "2026-03-01T08:00:00Z" and row["finished_at"] and row["slice_thickness_mm"] == 2.0
        results = log.structure_results(case)
        assert results["Brainstem"]["dice"] == 0.97 and results["Lips"]["unchanged"] == 1
        assert [e["kind"] for e in log.events(case)] == ["select", "edit"]
        with pytest.raises(ValueError, match="pseudonym"):
            log.start_case(site="Herlev", patient_key="010203-1234")  # an identifier in clear is refused
        with pytest.raises(DKOARError, match="no case"):
            log.finish_case(999, {})


def test_site_key_file_is_created_private_and_reused(tmp_path, monkeypatch):
    path = tmp_path / "keys" / "site.key"
    key = load_site_key(path)
    assert key.created and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and key_is_private(path)
    again = load_site_key(path)
    assert not again.created and again.secret == key.secret
    assert again.pseudonym("patient", "010203-1234") == key.pseudonym("patient", "010203-1234")
    assert KEY.pseudonym("patient", "010203-1234") != key.pseudonym("patient", "010203-1234")
    assert key.pseudonym("patient", "010203-1234") != key.pseudonym("study", "010203-1234")
    assert len(key.pseudonym("patient", "x")) == 64 and "010203" not in key.pseudonym("patient", "010203-1234")
    monkeypatch.delenv("DKOAR_SITE_KEY", raising=False)
    with pytest.raises(DKOARError, match="DKOAR_SITE_KEY"):
        key_path_from(None)
    monkeypatch.setenv("DKOAR_SITE_KEY", str(path))
    assert key_path_from(None) == path
    (tmp_path / "bad.key").write_text("not hex")
    with pytest.raises(DKOARError, match="not a site key"):
        load_site_key(tmp_path / "bad.key")


def test_a_log_refuses_another_site_key(tmp_path):
    with open_log(tmp_path / "log.sqlite") as log:
        log.check_site_key(KEY.fingerprint)
        log.check_site_key(KEY.fingerprint)
        with pytest.raises(DKOARError, match="another site key"):
            log.check_site_key(SiteKey(b"z" * 32).fingerprint)


def test_several_writers_can_open_a_new_log_at_once(tmp_path):
    db = tmp_path / "shared.sqlite"
    script = tmp_path / "one_case.py"
    script.write_text(textwrap.dedent("""
        import sys
        from DKOARSegmentationLib.monitoring.correction_log import open_log
        with open_log(sys.argv[1]) as log:
            case = log.start_case(site="Odense", source="test")
            log.record_event(case, None, "start")
            log.finish_case(case, {"Lips": {"active_s": 1.0, "unchanged": True}})
    """))
    processes = [subprocess.Popen([sys.executable, str(script), str(db)], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, errors
    with open_log(db) as log:
        assert len(log.cases()) == 4 and all(c["finished_at"] for c in log.cases())

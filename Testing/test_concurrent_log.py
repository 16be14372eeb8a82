"""Many processes writing one correction log at once lose nothing: a new site key is made once and
read whole by all, the first key is the log's, and `dkoar log add` from several processes on one new
log adds every case. A refused `log add` writes nothing (no key, no log)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from DKOARSegmentationLib.cli import main
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.monitoring.correction_log import open_log
from DKOARSegmentationLib.monitoring.pseudonym import SiteKey, load_site_key
from Testing.tiny_case import write_tiny_case


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_case(tmp_path_factory.mktemp("tiny"))


def _spawn_ready(script: str, args_per_process: list[list[str]], work: Path, timeout: float = 300):
    """One process running ``script`` per argument list, returned once each has imported what it
    needs (it says so with a file ready.PID) and waits for its go file (its first argument)."""
    (work / "worker.py").write_text(textwrap.dedent(script))
    processes = [subprocess.Popen([sys.executable, str(work / "worker.py"), *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=work) for args in args_per_process]
    for process in processes:
        deadline = time.monotonic() + timeout
        while not (work / f"ready.{process.pid}").exists():
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.02)
    return processes


def _start_together(script: str, args_per_process: list[list[str]], work: Path, timeout: float = 300):
    """Run ``script`` in one process per argument list, all released at the same moment; returns
    (return codes, stdouts, stderrs)."""
    processes = _spawn_ready(script, [[str(work / "go"), *args] for args in args_per_process], work, timeout)
    (work / "go").touch()
    outputs = [p.communicate(timeout=timeout) for p in processes]
    return [p.returncode for p in processes], [o for o, _ in outputs], [e for _, e in outputs]


_PREAMBLE = """
    import os, sys, time
    from pathlib import Path
    go = Path(sys.argv[1])
    {imports}
    Path(f"ready.{{os.getpid()}}").touch()
    while not go.exists():
        time.sleep(0.001)
"""


def test_processes_making_one_new_site_key_at_once_all_read_the_same_whole_key(tmp_path):
    script = _PREAMBLE.format(imports="from DKOARSegmentationLib.monitoring.pseudonym import load_site_key") + """
    key = load_site_key(sys.argv[2])
    print(key.fingerprint, key.created)
    """
    key_path = tmp_path / "keys" / "site.key"
    codes, outs, errors = _start_together(script, [[str(key_path)]] * 8, tmp_path)
    assert codes == [0] * 8, errors
    fingerprints = {out.split()[0] for out in outs}
    assert fingerprints == {load_site_key(key_path, create=False).fingerprint}
    assert sum(out.split()[1] == "True" for out in outs) == 1  # made once, by one of them
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    assert not [p for p in key_path.parent.iterdir() if p != key_path]  # no temporary file left


def test_a_key_still_being_written_is_waited_for_and_an_old_short_one_refused(tmp_path):
    key_path = tmp_path / "site.key"
    key_path.write_text("")  # another program has created the file and not yet written it
    secret = bytes(range(32))
    writer = threading.Timer(0.3, lambda: key_path.write_text(secret.hex() + "\n"))
    writer.start()
    try:
        assert load_site_key(key_path).secret == secret
    finally:
        writer.join()
    key_path.write_text("abcd\n")
    old = time.time() - 3600
    os.utime(key_path, (old, old))
    start = time.monotonic()
    with pytest.raises(DKOARError, match="too short"):
        load_site_key(key_path)
    assert time.monotonic() - start < 0.5  # an old file is not waited for


def test_processes_starting_one_new_log_at_once_keep_the_first_site_key(tmp_path):
    script = _PREAMBLE.format(imports="from DKOARSegmentationLib.monitoring.correction_log import open_log") + """
    with open_log(sys.argv[2]) as log:
        log.check_site_key("f" * 16)
        log.start_case(site="Odense", source="test")
    """
    db = tmp_path / "log.sqlite"
    codes, _, errors = _start_together(script, [[str(db)]] * 6, tmp_path)
    assert codes == [0] * 6, errors
    with open_log(db) as log:
        assert len(log.cases()) == 6
        log.check_site_key("f" * 16)
        with pytest.raises(DKOARError, match="another site key"):
            log.check_site_key("0" * 16)


def _log_add(tiny, log: Path, key: Path, *extra) -> list[str]:
    return ["log", "add", "--log", str(log), "--ai", str(tiny.ai), "--final", str(tiny.final), "--ct",
            str(tiny.ct_dir), "--site-key", str(key), "--site", "Odense", *map(str, extra)]


def test_a_refused_log_add_leaves_neither_key_nor_log(tiny, tmp_path, capsys):
    log, key = tmp_path / "new" / "log.sqlite", tmp_path / "keys" / "site.key"
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    for args in (["--ai", broken], ["--date", "0001-01-01T00:00"], ["--times", tmp_path / "missing.json"],
                 ["--ct", tmp_path]):
        cli = _log_add(tiny, log, key)
        flag = str(args[0])
        if flag in cli:
            cli[cli.index(flag) + 1] = str(args[1])
        else:
            cli += [str(a) for a in args]
        assert main(cli) == 2, args
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        assert not log.exists() and not key.exists() and not log.parent.exists() and not key.parent.exists(), args

    # a log started with one key refuses a new one before the work, and no new key file is made
    assert main(_log_add(tiny, log, key)) == 0
    other = tmp_path / "other.key"
    size = log.stat().st_size
    assert main(_log_add(tiny, log, other)) == 2
    assert "another site key" in capsys.readouterr().err
    assert not other.exists() and log.stat().st_size == size


def test_a_log_another_process_is_creating_counts_as_new(tiny, tmp_path, capsys):
    """Between a new log's file appearing and its tables being committed, another `log add` finds it."""
    log = tmp_path / "log.sqlite"
    log.write_bytes(b"")  # what sqlite makes first
    assert main(_log_add(tiny, log, tmp_path / "site.key")) == 0, capsys.readouterr().err
    creating = sqlite3.connect(tmp_path / "other.sqlite", isolation_level=None)
    creating.execute("PRAGMA journal_mode=WAL")  # the first step of open_log, before the schema
    assert main(_log_add(tiny, tmp_path / "other.sqlite", tmp_path / "site.key")) == 0, capsys.readouterr().err
    creating.close()


def _count(db: Path) -> tuple[int, int]:
    connection = sqlite3.connect(db)
    try:
        cases = connection.execute("SELECT COUNT(*), COUNT(DISTINCT patient_key) FROM cases "
                                   "WHERE finished_at IS NOT NULL").fetchone()
        return int(cases[0]), int(cases[1])
    finally:
        connection.close()


STRESS_PROCESSES, STRESS_ADDS, STRESS_TRIALS = 4, 25, 5


@pytest.mark.slow
def test_four_processes_adding_25_cases_each_to_one_new_log_lose_none(tiny, tmp_path):
    """The stress test: 4 processes x 25 `dkoar log add` (the command's own entry point, called 25
    times in each process) on one new log with a new site key, released at the same moment; 100
    cases and no error, in each of 5 trials. The 4 processes run all 5 trials (Python starts 4
    times, not 100 or 20), each trial on a new log and key, after a barrier."""
    script = _PREAMBLE.format(imports="import contextlib, io\n    from DKOARSegmentationLib.cli import main") + """
    trials, adds, template = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    failures = []
    for trial in range(trials):
        while not Path(f"go.{trial}").exists():
            time.sleep(0.001)
        args = [a.replace("TRIAL", str(trial)) for a in template]
        for _ in range(adds):
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                if main(args) != 0:
                    failures.append(f"trial {trial}: {err.getvalue().strip()}")
        Path(f"done.{trial}.{os.getpid()}").touch()
    print("\\n".join(failures), file=sys.stderr)
    sys.exit(1 if failures else 0)
    """
    logs = tmp_path / "TRIAL" / "logs" / "cases.sqlite"
    arguments = [str(tmp_path / "go.0"), str(STRESS_TRIALS), str(STRESS_ADDS),
                 *_log_add(tiny, logs, tmp_path / "TRIAL" / "keys" / "site.key")]
    processes = _spawn_ready(script, [arguments] * STRESS_PROCESSES, tmp_path)
    figures = []
    try:
        for trial in range(STRESS_TRIALS):
            start = time.perf_counter()
            (tmp_path / f"go.{trial}").touch()
            while len(list(tmp_path.glob(f"done.{trial}.*"))) < STRESS_PROCESSES:
                # A process that finished its last trial exits 0; any other exit is a crash.
                assert all(p.poll() in (None, 0) for p in processes), [p.communicate() for p in processes]
                time.sleep(0.01)
            figures.append(time.perf_counter() - start)
            log = Path(str(logs).replace("TRIAL", str(trial)))
            assert _count(log) == (STRESS_PROCESSES * STRESS_ADDS, 1), trial  # every case, one patient, one key
    finally:
        outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0] * STRESS_PROCESSES, [e for _, e in outputs]
    print(f"\nstress: {STRESS_TRIALS} trials of {STRESS_PROCESSES} processes x {STRESS_ADDS} log add: "
          f"{STRESS_PROCESSES * STRESS_ADDS} cases each, none lost; "
          f"{', '.join(f'{s:.1f}' for s in figures)} s per trial")


def test_a_key_from_another_site_is_still_refused_in_the_transaction(tmp_path):
    with open_log(tmp_path / "log.sqlite") as log:
        log.check_site_key(SiteKey(b"a" * 32).fingerprint)
        with pytest.raises(DKOARError, match="another site key"), log.transaction():
            log.start_case(site="x")
            log.check_site_key(SiteKey(b"b" * 32).fingerprint)
        assert log.cases() == []  # the case of the refused transaction is not kept

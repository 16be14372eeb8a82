"""The node's queue on disk: one SQLite database in WAL mode, the single record of every series
and every delivery, so that a node killed at any moment resumes where it was.

A series goes ``receiving`` (slices arriving) -> ``received`` (no slice for idle_seconds: complete,
waiting) -> ``running`` (being contoured) -> ``sending`` (results written, deliveries pending) ->
``sent``; or ``failed`` with its reason. A series is known by (SeriesInstanceUID, model identity):
the same series sent again after its structure set went out is not contoured or delivered a
second time, and the same series under a new model version is a new piece of work.

Each change is one transaction; what must survive a kill is on disk before the peer is told it
succeeded (a slice's file and row before its C-STORE response, results before their deliveries).
The one window no protocol closes: a result stored by a peer whose response was lost to the kill
is stored again on restart. It is the same file (same SOPInstanceUID), which PACS, Orthanc and
planning systems keep once.

Each thread opens its own connection (SQLite connections are not shared between threads).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

STATES = ("receiving", "received", "running", "sending", "sent", "failed")
WAITING = ("receiving", "received", "running", "sending")
CRASHES_BEFORE_GIVING_UP = 3  # a series that kills the node while contoured is not tried forever

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    series_uid TEXT NOT NULL,
    model TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    key TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    status TEXT NOT NULL,
    files INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    first_slice_at REAL NOT NULL,
    last_slice_at REAL NOT NULL,
    completed_at REAL,
    started_at REAL,
    finished_at REAL,
    runs INTEGER NOT NULL DEFAULT 0,
    seconds REAL,
    reason TEXT NOT NULL DEFAULT '',
    refusing INTEGER NOT NULL DEFAULT 0,
    UNIQUE (series_uid, model)
);
CREATE INDEX IF NOT EXISTS series_status ON series (status);
CREATE INDEX IF NOT EXISTS series_study ON series (study_uid, model);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL REFERENCES series (id),
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    file TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    sent_at REAL,
    reason TEXT NOT NULL DEFAULT '',
    UNIQUE (series_id, destination, kind)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    level TEXT NOT NULL,
    series_key TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL,
    repeated INTEGER NOT NULL DEFAULT 1
);
"""


@dataclass
class SeriesRow:
    id: int
    series_uid: str
    model: str
    study_uid: str
    key: str
    calling_ae: str
    status: str
    files: int
    bytes: int
    first_slice_at: float
    last_slice_at: float
    completed_at: float | None
    started_at: float | None
    finished_at: float | None
    runs: int
    seconds: float | None
    reason: str
    refusing: int  # 1: further slices are refused with the reason (a limit was exceeded)


@dataclass
class DeliveryRow:
    id: int
    series_id: int
    destination: str
    kind: str
    file: str
    status: str
    attempts: int
    next_at: float
    sent_at: float | None
    reason: str


@dataclass(frozen=True)
class Arrival:
    """What to do with an arriving slice: ``store`` it under the series' key, or not, and why."""

    action: str  # "store", "ignore" (acknowledged, not kept), "refuse" (failure status to the caller)
    key: str = ""
    reason: str = ""


class NodeQueue:
    def __init__(self, path: Path | str, timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._db().executescript(_SCHEMA)  # each statement idempotent; executescript commits by itself

    # -- connections -------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def _transaction(self):
        queue = self

        class _Tx:
            def __enter__(self):
                self.db = queue._db()
                self.db.execute("BEGIN IMMEDIATE")
                return self.db

            def __exit__(self, kind, value, tb):
                self.db.execute("COMMIT" if kind is None else "ROLLBACK")
                return False

        return _Tx()

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- receiving ---------------------------------------------------------------------------

    def slice_arrives(self, series_uid: str, study_uid: str, model: str, key: str, calling_ae: str, size: int,
                      max_study_bytes: float) -> Arrival:
        """Decide, and record, an arriving slice of ``size`` bytes (its file is stored after this)."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT id, status, reason, refusing FROM series WHERE series_uid=? AND model=?",
                             (series_uid, model)).fetchone()
            if row is not None and row[1] in ("running", "sending", "sent"):
                return Arrival("ignore", key, f"the series was already taken for contouring ({row[1]}) with {model}")
            if row is not None and row[3]:
                return Arrival("refuse", key, row[2])
            study = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM series WHERE study_uid=? AND model=? "
                               "AND status IN ('receiving', 'received')", (study_uid, model)).fetchone()[0]
            if study + size > max_study_bytes:
                reason = (f"the study is larger than the node's limit of {max_study_bytes / 1e6:g} MB "
                          "(max_study_mb); it was not contoured")
                if row is None:
                    db.execute("INSERT INTO series (series_uid, model, study_uid, key, calling_ae, status, "
                               "first_slice_at, last_slice_at, finished_at, reason, refusing) "
                               "VALUES (?,?,?,?,?,'failed',?,?,?,?,1)",
                               (series_uid, model, study_uid, key, calling_ae, now, now, now, reason))
                db.execute("UPDATE series SET status='failed', finished_at=?, reason=?, refusing=1 WHERE study_uid=? "
                           "AND model=? AND status IN ('receiving', 'received', 'failed')",
                           (now, reason, study_uid, model))
                return Arrival("refuse", key, reason)
            if row is None:
                db.execute("INSERT INTO series (series_uid, model, study_uid, key, calling_ae, status, files, bytes, "
                           "first_slice_at, last_slice_at) VALUES (?,?,?,?,?,'receiving',1,?,?,?)",
                           (series_uid, model, study_uid, key, calling_ae, size, now, now))
            else:  # receiving, received and not yet started, or failed and sent again: the series goes on
                db.execute("UPDATE series SET status='receiving', files=files+1, bytes=bytes+?, last_slice_at=?, "
                           "completed_at=NULL, finished_at=NULL, reason='' WHERE id=?", (size, now, row[0]))
            return Arrival("store", key)

    def complete_idle(self, idle_seconds: float) -> list[SeriesRow]:
        """Series with no slice for ``idle_seconds``: now complete and waiting."""
        now = time.time()
        with self._transaction() as db:
            rows = self._series(db, "WHERE status='receiving' AND last_slice_at <= ?", (now - idle_seconds,))
            db.execute("UPDATE series SET status='received', completed_at=? WHERE status='receiving' "
                       "AND last_slice_at <= ?", (now, now - idle_seconds))
        return rows

    # -- contouring --------------------------------------------------------------------------

    def take_next(self, priority_callers: list[str], order: str) -> SeriesRow | None:
        """The waiting series to contour next, marked running; None when nothing waits."""
        with self._transaction() as db:
            waiting = self._series(db, "WHERE status='received'")
            if not waiting:
                return None
            rank = {ae: n for n, ae in enumerate(priority_callers)}
            keys = {"oldest": lambda s: s.completed_at or 0, "newest": lambda s: -(s.completed_at or 0),
                    "smallest": lambda s: s.bytes}
            chosen = min(waiting, key=lambda s: (rank.get(s.calling_ae, len(rank)), keys[order](s), s.id))
            now = time.time()
            db.execute("UPDATE series SET status='running', started_at=?, runs=runs+1 WHERE id=?", (now, chosen.id))
            chosen.status, chosen.started_at, chosen.runs = "running", now, chosen.runs + 1
            return chosen

    def contoured(self, series_id: int, deliveries: list[tuple[str, str, str]], seconds: float,
                  reason: str = "") -> None:
        """Results are on disk: queue (destination, kind, file) deliveries; ``reason`` marks a failure."""
        now = time.time()
        with self._transaction() as db:
            for destination, kind, file in deliveries:
                db.execute("INSERT OR IGNORE INTO deliveries (series_id, destination, kind, file, next_at) "
                           "VALUES (?,?,?,?,?)", (series_id, destination, kind, file, now))
            if reason:
                db.execute("UPDATE series SET status='failed', seconds=?, finished_at=?, reason=? WHERE id=?",
                           (seconds, now, reason, series_id))
            elif deliveries:
                db.execute("UPDATE series SET status='sending', seconds=? WHERE id=?", (seconds, series_id))
            else:
                db.execute("UPDATE series SET status='sent', seconds=?, finished_at=?, reason=? WHERE id=?",
                           (seconds, now, "no destination configured", series_id))

    # -- delivering --------------------------------------------------------------------------

    def due_deliveries(self) -> list[DeliveryRow]:
        db = self._db()
        rows = db.execute("SELECT * FROM deliveries WHERE status='pending' AND next_at <= ? ORDER BY next_at, id",
                          (time.time(),)).fetchall()
        return [DeliveryRow(*r) for r in rows]

    def delivery_done(self, delivery: DeliveryRow, ok: bool, reason: str = "", retry_in: float | None = None) -> None:
        """Record an attempt: sent, retried after ``retry_in`` seconds, or (retry_in None) given up."""
        now = time.time()
        with self._transaction() as db:
            if ok:
                db.execute("UPDATE deliveries SET status='sent', attempts=attempts+1, sent_at=?, reason='' WHERE id=?",
                           (now, delivery.id))
            elif retry_in is not None:
                db.execute("UPDATE deliveries SET attempts=attempts+1, next_at=?, reason=? WHERE id=?",
                           (now + retry_in, reason, delivery.id))
            else:
                db.execute("UPDATE deliveries SET status='failed', attempts=attempts+1, reason=? WHERE id=?",
                           (reason, delivery.id))
                db.execute("UPDATE series SET status='failed', finished_at=?, reason=? WHERE id=? AND status='sending'",
                           (now, f"delivery to {delivery.destination} failed: {reason}", delivery.series_id))
            pending = db.execute("SELECT COUNT(*) FROM deliveries WHERE series_id=? AND status='pending'",
                                 (delivery.series_id,)).fetchone()[0]
            if not pending:
                db.execute("UPDATE series SET status='sent', finished_at=? WHERE id=? AND status='sending'",
                           (now, delivery.series_id))

    # -- after a restart ---------------------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Put unfinished work back where it resumes: a series being contoured waits again (given up
        after it was taken CRASHES_BEFORE_GIVING_UP times), one being received gets idle_seconds
        again from now, deliveries go out now."""
        now = time.time()
        with self._transaction() as db:
            gave_up = db.execute("UPDATE series SET status='failed', finished_at=?, reason=? WHERE status='running' "
                                 "AND runs >= ?", (now, f"contouring stopped {CRASHES_BEFORE_GIVING_UP} times without "
                                                   "finishing (the node was killed or crashed)",
                                                   CRASHES_BEFORE_GIVING_UP, )).rowcount
            resumed = db.execute("UPDATE series SET status='received' WHERE status='running'").rowcount
            receiving = db.execute("UPDATE series SET last_slice_at=? WHERE status='receiving'", (now,)).rowcount
            db.execute("UPDATE deliveries SET next_at=? WHERE status='pending'", (now,))
            pending = db.execute("SELECT COUNT(*) FROM deliveries WHERE status='pending'").fetchone()[0]
        return {"contouring resumed": resumed, "receiving resumed": receiving, "deliveries resumed": pending,
                "given up": gave_up}

    # -- reading -----------------------------------------------------------------------------

    @staticmethod
    def _series(db, where: str = "", args: tuple = ()) -> list[SeriesRow]:
        return [SeriesRow(*r) for r in db.execute(f"SELECT * FROM series {where}", args).fetchall()]

    def series(self, where: str = "", args: tuple = ()) -> list[SeriesRow]:
        return self._series(self._db(), where, args)

    def series_by_id(self, series_id: int) -> SeriesRow:
        return self.series("WHERE id=?", (series_id,))[0]

    def deliveries(self, where: str = "", args: tuple = ()) -> list[DeliveryRow]:
        return [DeliveryRow(*r) for r in self._db().execute(f"SELECT * FROM deliveries {where}", args).fetchall()]

    def counts(self) -> dict[str, int]:
        found = dict(self._db().execute("SELECT status, COUNT(*) FROM series GROUP BY status").fetchall())
        return {state: found.get(state, 0) for state in STATES}

    def event(self, level: str, message: str, series_key: str = "") -> None:
        """Record an event for ``serve status``; the same event again within a minute (every slice
        of a refused series) counts on the one row."""
        now = time.time()
        with self._transaction() as db:
            last = db.execute("SELECT id, at, level, series_key, message FROM events ORDER BY id DESC "
                              "LIMIT 1").fetchone()
            if last is not None and last[2:] == (level, series_key, message) and now - last[1] < 60:
                db.execute("UPDATE events SET repeated=repeated+1, at=? WHERE id=?", (now, last[0]))
            else:
                db.execute("INSERT INTO events (at, level, series_key, message) VALUES (?,?,?,?)",
                           (now, level, series_key, message))

    def events(self, limit: int = 10) -> list[tuple[float, str, str, str, int]]:
        rows = self._db().execute("SELECT at, level, series_key, message, repeated FROM events ORDER BY id DESC "
                                  "LIMIT ?", (limit,)).fetchall()
        return [tuple(r) for r in rows]

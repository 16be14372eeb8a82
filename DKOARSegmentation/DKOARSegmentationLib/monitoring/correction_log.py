"""The correction log: what the clinician changed in the AI contours, and how long it took.

One SQLite file per site (or per workstation), in WAL mode, every event committed as it comes,
so that killing the program loses nothing already recorded. The schema is versioned with
``PRAGMA user_version`` and upgraded in place by the migrations below when a log is opened
(never downgraded: a log written by a newer dkoar is refused with a message).

Tables (version 3):

- ``cases``: one correction session. Site, model (name, version, sha256), CT properties that
  matter for monitoring (scanner model, convolution kernel, slice thickness, contrast flag), when
  it started and finished, the SHA-256 of the AI and final contour files (not their paths, which
  often carry patient identifiers), and keyed pseudonyms of the patient and the study
  (``pseudonym.py``) - never a name, CPR number, birth date or UID in clear.
- ``events``: what happened when (structure, kind such as "select", "edit", "accept", "idle"),
  one row per event, committed at once.
- ``structure_results``: per structure of a finished case, the active correction time, the wall
  time, the number of edits, whether it was accepted unchanged, and the metrics of
  ``comparison.py``.
- ``meta``: the fingerprint of the site key the pseudonyms were made with.
- ``flags``, ``review_regions``, ``structure_uncertainty``: the review guidance of the AI result
  (``guidance_log.py``): its plausibility flags, its ranked review list, each structure's uncertainty.

The API is what the Slicer module uses: ``open_log``, ``start_case``, ``record_event``,
``finish_case``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sqlite3
import uuid
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from pathlib import Path

from .. import __version__
from ..errors import DKOARError
from .comparison import StructureComparison
from .sqlite_log import SQLiteLog, closed_on_error, connect, open_database
from .sqlite_log import read_only_copy as _read_only_copy

# Each entry takes a log from the previous version to its own; never edit a released one.
MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE cases (
            case_id INTEGER PRIMARY KEY,
            case_uid TEXT NOT NULL UNIQUE,
            site TEXT NOT NULL DEFAULT '',
            patient_key TEXT,
            study_key TEXT,
            model_name TEXT NOT NULL DEFAULT '',
            model_version TEXT NOT NULL DEFAULT '',
            model_hash TEXT NOT NULL DEFAULT '',
            started_at TEXT NOT NULL,
            finished_at TEXT,
            ai_contours_sha256 TEXT,
            final_contours_sha256 TEXT
        );
        CREATE TABLE events (
            event_id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL REFERENCES cases(case_id),
            structure TEXT,
            kind TEXT NOT NULL,
            timestamp REAL NOT NULL,
            detail TEXT
        );
        CREATE TABLE structure_results (
            case_id INTEGER NOT NULL REFERENCES cases(case_id),
            structure TEXT NOT NULL,
            active_s REAL,
            wall_s REAL,
            edits INTEGER,
            unchanged INTEGER,
            dice REAL,
            hd95_mm REAL,
            surface_dice REAL,
            tolerance_mm REAL,
            volume_ai_ml REAL,
            volume_final_ml REAL,
            PRIMARY KEY (case_id, structure)
        );
    """,
    2: """
        ALTER TABLE cases ADD COLUMN scanner_model TEXT;
        ALTER TABLE cases ADD COLUMN convolution_kernel TEXT;
        ALTER TABLE cases ADD COLUMN slice_thickness_mm REAL;
        ALTER TABLE cases ADD COLUMN contrast INTEGER;
        ALTER TABLE cases ADD COLUMN source TEXT NOT NULL DEFAULT '';
        ALTER TABLE cases ADD COLUMN dkoar_version TEXT NOT NULL DEFAULT '';
        ALTER TABLE structure_results ADD COLUMN msd_mm REAL;
        ALTER TABLE structure_results ADD COLUMN apl_mm REAL;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE INDEX events_by_case ON events(case_id);
        CREATE INDEX cases_by_start ON cases(started_at);
    """,
    # the review guidance the AI result came with (review.guidance): its plausibility flags, and the
    # structures and slices its uncertainty put first (monitoring/guidance_log.py)
    3: """
        CREATE TABLE flags (
            case_id INTEGER NOT NULL REFERENCES cases(case_id),
            structure TEXT NOT NULL,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            message TEXT NOT NULL
        );
        CREATE TABLE review_regions (
            case_id INTEGER NOT NULL REFERENCES cases(case_id),
            rank INTEGER NOT NULL,
            structure TEXT NOT NULL,
            first_slice INTEGER,
            last_slice INTEGER,
            score REAL,
            uncertain_ml REAL,
            PRIMARY KEY (case_id, rank)
        );
        CREATE TABLE structure_uncertainty (
            case_id INTEGER NOT NULL REFERENCES cases(case_id),
            structure TEXT NOT NULL,
            score REAL,
            uncertain_ml REAL,
            PRIMARY KEY (case_id, structure)
        );
        CREATE INDEX flags_by_case ON flags(case_id);
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)

_KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")
YEARS = (1990, 2100)  # the years a correction can be dated in


@dataclass(frozen=True)
class CTProperties:
    """What of the CT matters for monitoring (a drift after a scanner or protocol change)."""

    scanner_model: str | None = None
    convolution_kernel: str | None = None
    slice_thickness_mm: float | None = None
    contrast: bool | None = None  # None: not recorded


EFFORT_FIELDS = ("active_s", "wall_s", "edits")  # correction_timing: seconds without idle pauses, first to last touch


def _from_parts(cls, comparison=None, timing: dict | None = None):
    """A result from a comparison.StructureComparison and a timing dict (either may be missing)."""
    values = comparison.as_dict() if comparison is not None else {}
    values.update({k: v for k, v in (timing or {}).items() if k in EFFORT_FIELDS})
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


# One structure of a finished case: the clinician's effort, then every metric of the AI-versus-final
# comparison (comparison.StructureComparison: Dice, distances, APL, volumes, unchanged), each
# optional: a case logged from files may lack the times, a structure nobody drew lacks metrics.
StructureResult = make_dataclass(
    "StructureResult",
    [("active_s", "float | None", field(default=None)), ("wall_s", "float | None", field(default=None)),
     ("edits", "int | None", field(default=None))]
    + [(f.name, f"{f.type} | None", field(default=None)) for f in fields(StructureComparison)],
    namespace={"from_parts": classmethod(_from_parts), "__module__": __name__})


RESULT_COLUMNS = tuple(f.name for f in fields(StructureResult))


def _utc_text(when: _dt.datetime | str | None) -> str:
    if when is None:
        when = _dt.datetime.now(_dt.timezone.utc)
    given = when
    if isinstance(when, str):
        try:
            when = _dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise DKOARError(f"{when!r} is not a date and time (use ISO 8601, e.g. 2026-03-01T09:30)") from None
    # a correction happens in this era; checking before converting also keeps the first and last
    # representable days (year 1, year 9999) from overflowing in the time-zone conversion
    if not YEARS[0] <= when.year <= YEARS[1]:
        raise DKOARError(f"{given!s} is not a time a correction was made at "
                         f"(give a date between {YEARS[0]} and {YEARS[1]})")
    if when.tzinfo is None:
        when = when.astimezone()  # a naive time is the computer's local time
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_when(when: _dt.datetime | str | None) -> str:
    """The time as the log stores it (UTC text); refuses what is not a plausible time of a
    correction, so that a command can refuse it before any work."""
    return _utc_text(when)


def _check_key(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not _KEY_PATTERN.match(value):
        raise ValueError(f"{what} must be a keyed pseudonym (64 hexadecimal characters from pseudonym.SiteKey), "
                         "never an identifier in clear")
    return value


class CorrectionLog(SQLiteLog):
    """An open correction log. Use ``open_log`` to get one."""

    # -- writing ---------------------------------------------------------------------------
    def start_case(self, *, site: str = "", model_name: str = "", model_version: str = "", model_hash: str = "",
                   patient_key: str | None = None, study_key: str | None = None, ct: CTProperties | None = None,
                   ai_contours_sha256: str | None = None, started_at: _dt.datetime | str | None = None,
                   source: str = "slicer") -> int:
        """Open a case and return its id. ``patient_key`` and ``study_key`` are pseudonyms from
        ``SiteKey.pseudonym`` (anything else is refused)."""
        ct = ct or CTProperties()
        cursor = self.connection.execute(
            "INSERT INTO cases (case_uid, site, patient_key, study_key, model_name, model_version, model_hash, "
            "started_at, ai_contours_sha256, scanner_model, convolution_kernel, slice_thickness_mm, contrast, "
            "source, dkoar_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, site, _check_key(patient_key, "patient_key"), _check_key(study_key, "study_key"),
             model_name, model_version, model_hash, _utc_text(started_at), ai_contours_sha256, ct.scanner_model,
             ct.convolution_kernel, ct.slice_thickness_mm, None if ct.contrast is None else int(ct.contrast),
             source, __version__),
        )
        return int(cursor.lastrowid)

    def record_event(self, case_id: int, structure: str | None, kind: str, timestamp: float | None = None,
                     detail: dict | None = None) -> int:
        """Record one event (committed before returning). ``timestamp``: seconds since the epoch."""
        if timestamp is None:
            timestamp = _dt.datetime.now(_dt.timezone.utc).timestamp()
        cursor = self.connection.execute(
            "INSERT INTO events (case_id, structure, kind, timestamp, detail) VALUES (?, ?, ?, ?, ?)",
            (int(case_id), structure, str(kind), float(timestamp), json.dumps(detail) if detail else None),
        )
        return int(cursor.lastrowid)

    def finish_case(self, case_id: int, per_structure_results: dict[str, StructureResult | dict],
                    final_contours_sha256: str | None = None, finished_at: _dt.datetime | str | None = None) -> None:
        """Store the per-structure results and close the case, all in one transaction."""
        rows = []
        for name, result in per_structure_results.items():
            if isinstance(result, dict):
                result = StructureResult(**{k: v for k, v in result.items() if k in RESULT_COLUMNS})
            values = asdict(result)
            if values["unchanged"] is not None:
                values["unchanged"] = int(values["unchanged"])
            rows.append((int(case_id), name, *(values[c] for c in RESULT_COLUMNS)))
        placeholders = ", ".join("?" * (2 + len(RESULT_COLUMNS)))
        with self._transaction():
            found = self.connection.execute("SELECT finished_at FROM cases WHERE case_id = ?", (int(case_id),)).fetchone()
            if found is None:
                raise DKOARError(f"{self.path}: no case {case_id} in the log")
            self.connection.executemany(
                f"INSERT OR REPLACE INTO structure_results (case_id, structure, {', '.join(RESULT_COLUMNS)}) "
                f"VALUES ({placeholders})", rows)
            self.connection.execute(
                "UPDATE cases SET finished_at = ?, final_contours_sha256 = COALESCE(?, final_contours_sha256) "
                "WHERE case_id = ?", (_utc_text(finished_at), final_contours_sha256, int(case_id)))

    # -- reading ---------------------------------------------------------------------------
    def cases(self) -> list[dict]:
        cursor = self.connection.execute("SELECT * FROM cases ORDER BY case_id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def events(self, case_id: int | None = None) -> list[dict]:
        query = "SELECT * FROM events" + (" WHERE case_id = ?" if case_id is not None else "") + " ORDER BY event_id"
        cursor = self.connection.execute(query, () if case_id is None else (int(case_id),))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def structure_results(self, case_id: int) -> dict[str, dict]:
        cursor = self.connection.execute("SELECT * FROM structure_results WHERE case_id = ?", (int(case_id),))
        names = [d[0] for d in cursor.description]
        return {row[1]: dict(zip(names, row)) for row in cursor}


KIND = "correction log"


def site_key_fingerprint(path: Path | str) -> str | None:
    """The fingerprint of the site key an existing log was started with (None: not yet), read
    without writing, after checking the log; for refusing a command before it does its work. A log
    another process is creating right now (no tables yet) is not started."""
    path = Path(path)
    connection = connect(path, KIND)
    try:
        with closed_on_error(connection, path, KIND):
            if connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
                return None
    finally:
        connection.close()
    memory = read_only_copy(path)
    try:
        row = memory.execute("SELECT value FROM meta WHERE key = 'site_key_fingerprint'").fetchone()
    finally:
        memory.close()
    return None if row is None else str(row[0])


def open_log(path: Path | str, durable: bool = True) -> CorrectionLog:
    """Open (creating or upgrading) the correction log at ``path``.

    Every statement outside ``finish_case`` commits by itself. ``durable`` keeps each commit on
    disk before returning (synchronous=FULL); False is for bulk imports that can be redone.
    """
    return CorrectionLog(open_database(path, MIGRATIONS, KIND, durable), Path(path), KIND)


def read_only_copy(path: Path | str) -> sqlite3.Connection:
    """The correction log at ``path`` as an in-memory database of the current schema, for reports:
    the file itself is neither written nor upgraded."""
    return _read_only_copy(path, MIGRATIONS, KIND, table="cases")

"""The practice history: every scored attempt of every trainee, in one SQLite file.

In the style of the correction log (``monitoring.sqlite_log`` is the machinery both share):
WAL, each attempt committed as it is stored, the schema versioned with ``PRAGMA user_version``
and upgraded in place (never downgraded). Trainees and real cases are stored only as keyed
pseudonyms made with the site key (``monitoring.pseudonym``: HMAC-SHA256, "trainee:" + the
trainee's name or login, "study:" + the CT's StudyInstanceUID as in the correction log), so the
history holds no name and no UID in clear; the key's fingerprint is kept to refuse another key.
A synthetic case (a phantom) keeps a readable label beside its key ("phantom seed 3 HFS").

Tables (version 1):

- ``attempts``: one scored attempt at one structure: trainee key, site, structure, case key
  and label, where the reference came from, when the attempt started and was submitted, the time
  spent (active seconds without idle pauses, wall seconds, edits), the scores of
  ``practice.scoring`` and the six border differences (mm, + beyond the reference).
- ``meta``: the site key's fingerprint.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..monitoring.correction_log import _check_key, _utc_text
from ..monitoring.pseudonym import SiteKey
from ..monitoring.sqlite_log import SQLiteLog, open_database, read_only_copy
from .borders import DIRECTIONS
from .scoring import PracticeScore

MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE attempts (
            attempt_id INTEGER PRIMARY KEY,
            attempt_uid TEXT NOT NULL UNIQUE,
            trainee_key TEXT NOT NULL,
            site TEXT NOT NULL DEFAULT '',
            structure TEXT NOT NULL,
            laterality TEXT NOT NULL DEFAULT '',
            case_key TEXT NOT NULL,
            case_label TEXT NOT NULL DEFAULT '',
            reference_kind TEXT NOT NULL DEFAULT '',
            started_at TEXT,
            submitted_at TEXT NOT NULL,
            active_s REAL,
            wall_s REAL,
            edits INTEGER,
            dice REAL,
            surface_dice REAL,
            tolerance_mm REAL,
            hd95_mm REAL,
            msd_mm REAL,
            apl_mm REAL,
            volume_reference_ml REAL,
            volume_attempt_ml REAL,
            border_cranial_mm REAL,
            border_caudal_mm REAL,
            border_anterior_mm REAL,
            border_posterior_mm REAL,
            border_left_mm REAL,
            border_right_mm REAL,
            dkoar_version TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX attempts_by_trainee ON attempts(trainee_key, structure, submitted_at);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)
KIND = "practice history"
SCORE_COLUMNS = ("dice", "surface_dice", "tolerance_mm", "hd95_mm", "msd_mm", "apl_mm", "volume_reference_ml",
                 "volume_attempt_ml")
BORDER_COLUMNS = tuple(f"border_{d}_mm" for d in DIRECTIONS)


@dataclass(frozen=True)
class PracticeCase:
    """What the history keeps of a case: its keyed pseudonym, a label for synthetic cases only,
    and where the reference came from ("phantom", "rtstruct", "labelmap", "segmentation")."""

    key: str
    label: str = ""
    reference_kind: str = ""

    @classmethod
    def of_phantom(cls, key: SiteKey, seed: int, position: str) -> "PracticeCase":
        label = f"phantom seed {int(seed)} {position}"
        return cls(key.pseudonym("case", label), label, "phantom")

    @classmethod
    def of_study(cls, key: SiteKey, study_instance_uid: str, reference_kind: str) -> "PracticeCase":
        """A real CT: keyed by its study, as the correction log keys studies."""
        return cls(key.pseudonym("study", study_instance_uid), "", reference_kind)


def trainee_key(key: SiteKey, trainee: str) -> str:
    """The trainee's keyed pseudonym (the same name gives the same key at the same site)."""
    trainee = str(trainee).strip()
    if not trainee:
        raise ValueError("a trainee needs a name or login to be keyed")
    return key.pseudonym("trainee", trainee)


class PracticeHistory(SQLiteLog):
    """An open practice history. Use ``open_history`` to get one."""

    def add_attempt(self, *, trainee_key: str, case: PracticeCase, score: PracticeScore, site: str = "",
                    active_s: float | None = None, wall_s: float | None = None, edits: int | None = None,
                    started_at: _dt.datetime | str | None = None,
                    submitted_at: _dt.datetime | str | None = None) -> int:
        """Store one scored attempt (committed before returning); returns its id. ``trainee_key``
        and ``case.key`` are pseudonyms (anything else is refused)."""
        values = {
            "attempt_uid": uuid.uuid4().hex, "trainee_key": _check_key(trainee_key, "trainee_key"), "site": site,
            "structure": score.structure, "laterality": score.laterality, "case_key": _check_key(case.key, "case_key"),
            "case_label": case.label, "reference_kind": case.reference_kind,
            "started_at": None if started_at is None else _utc_text(started_at),
            "submitted_at": _utc_text(submitted_at),
            "active_s": active_s, "wall_s": wall_s, "edits": edits,
            **{c: getattr(score, c) for c in SCORE_COLUMNS},
            **{c: score.borders_mm[d] for c, d in zip(BORDER_COLUMNS, DIRECTIONS)},
            "dkoar_version": __version__,
        }
        columns, marks = ", ".join(values), ", ".join("?" * len(values))
        cursor = self.connection.execute(f"INSERT INTO attempts ({columns}) VALUES ({marks})", tuple(values.values()))
        return int(cursor.lastrowid)

    def attempts(self) -> list[dict]:
        return attempt_rows(self.connection)


def attempt_rows(connection) -> list[dict]:
    """Every attempt, oldest first, as dicts of the ``attempts`` columns."""
    cursor = connection.execute("SELECT * FROM attempts ORDER BY submitted_at, attempt_id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def open_history(path: Path | str, durable: bool = True) -> PracticeHistory:
    """Open (creating or upgrading) the practice history at ``path``."""
    return PracticeHistory(open_database(path, MIGRATIONS, KIND, durable, example="practice.sqlite"), Path(path),
                           KIND)


def read_history(paths: list[Path | str]) -> list[dict]:
    """The attempts of one or more histories, read without writing or upgrading the files; an
    attempt found in several (a copied file) is counted once."""
    seen, rows = set(), []
    for path in paths:
        connection = read_only_copy(path, MIGRATIONS, KIND, table="attempts")
        try:
            for row in attempt_rows(connection):
                if row["attempt_uid"] not in seen:
                    seen.add(row["attempt_uid"])
                    rows.append(row)
        finally:
            connection.close()
    rows.sort(key=lambda r: (r["submitted_at"], r["attempt_id"], r["attempt_uid"]))
    return rows

"""A log (the correction log, the practice history) checked before it is used, and SQLite's
complaints about it as one line.

A log lives for years on a department's disk: it may be damaged (pages overwritten, a copy cut
short), edited by hand (a table changed, text typed into a number column) or busy with another
writer. Each shows as one message naming the log and what to do, never as SQLite's exception.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import DKOARError

BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another one (many processes may add cases at once)


def log_error(path: Path, exc: sqlite3.Error, kind: str = "correction log") -> DKOARError:
    """What SQLite says about a log, as one line saying what to do."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return DKOARError(f"{path}: the {kind} is busy (another program kept it locked for more than "
                          f"{BUSY_TIMEOUT_S:g} s); try again")
    if "not a database" in lowered:
        return DKOARError(f"{path}: not a {kind}, or one damaged at its start ({text}); give the log file, "
                          "or restore it from the site's backup")
    if "malformed" in lowered or "corrupt" in lowered or "disk i/o" in lowered:
        return DKOARError(f"{path}: the {kind} is damaged ({text}); restore it from the site's backup")
    if isinstance(exc, sqlite3.IntegrityError) or "no such" in lowered or "has no column" in lowered:
        return _edited(path, text, kind)
    if "readonly" in lowered or "read-only" in lowered:
        return DKOARError(f"{path}: cannot write to the {kind} ({text})")
    return DKOARError(f"{path}: cannot use the {kind} ({text})")


def _edited(path: Path, what: str, kind: str = "correction log") -> DKOARError:
    return DKOARError(f"{path}: the {kind}'s tables are not as dkoar writes them ({what}); it was changed "
                      "by hand or by another program: restore it from the site's backup")


class WriteTransaction:
    """``with WriteTransaction(connection, path):`` a write transaction, begun IMMEDIATE (the write
    lock now, waiting out other writers, not at the first write, where two readers turning writers
    would deadlock); committed when the block succeeds, rolled back when it fails. Inside another
    transaction it joins that one."""

    def __init__(self, connection: sqlite3.Connection, path: Path, kind: str = "correction log"):
        self.connection, self.path, self.kind, self.outer = connection, path, kind, False

    def __enter__(self):
        if self.connection.in_transaction:
            return
        self.outer = True
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise log_error(self.path, exc, self.kind) from None

    def __exit__(self, exc_type, exc, tb):
        if not self.outer:
            return False
        try:
            self.connection.execute("COMMIT" if exc_type is None else "ROLLBACK")
        except sqlite3.DatabaseError as error:
            if exc_type is None:
                raise log_error(self.path, error, self.kind) from None
        if exc_type is not None and issubclass(exc_type, sqlite3.DatabaseError):
            raise log_error(self.path, exc, self.kind) from None
        return False


def table_columns(connection: sqlite3.Connection) -> dict[str, list[tuple[str, str]]]:
    """Table -> (column, declared type), as the database says."""
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: [(str(r[1]), str(r[2]).upper()) for r in connection.execute(f"PRAGMA table_info(\"{t}\")")]
            for t in tables}


def check_log(connection: sqlite3.Connection, path: Path, expected: dict[str, list[tuple[str, str]]],
              kind: str = "correction log") -> None:
    """Refuse a log whose pages are damaged or whose tables are not ``expected`` (edited by hand):
    one clear line now rather than a failure in the middle of a write or a report."""
    try:
        verdict = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
        if verdict != "ok":
            raise DKOARError(f"{path}: the {kind} is damaged ({' '.join(str(verdict).split())}); "
                             "restore it from the site's backup")
        found = table_columns(connection)
    except sqlite3.DatabaseError as exc:
        raise log_error(path, exc, kind) from None
    for table, columns in expected.items():
        have = dict(found.get(table, []))
        wrong = [f"{name} {declared}".strip() for name, declared in columns if have.get(name) != declared]
        if table not in found:
            raise _edited(path, f"no table {table}", kind)
        if wrong:
            raise _edited(path, f"table {table} lacks or changed {', '.join(wrong)}", kind)


def number(path: Path, value, where: str) -> float:
    """A value of a number column as a float (None: NaN); text typed into it is refused, naming it."""
    if value is None:
        return float("nan")
    if isinstance(value, (int, float)):
        return float(value)
    raise _edited(path, f"{where} holds {str(value)[:40]!r}, not a number")

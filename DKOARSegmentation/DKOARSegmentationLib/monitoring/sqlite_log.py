"""The SQLite machinery of this project's logs (the correction log, the practice history).

A log is one SQLite file in WAL mode, autocommit, its schema versioned with ``PRAGMA user_version``
and upgraded in place by its migrations when it is opened (never downgraded). It is checked on
every opening (``log_integrity``), written in IMMEDIATE transactions that many processes can
share, and remembers the fingerprint of the site key its pseudonyms were made with.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from pathlib import Path

from ..errors import DKOARError
from .log_integrity import BUSY_TIMEOUT_S, WriteTransaction, check_log, log_error, table_columns


def migrate(connection: sqlite3.Connection, migrations: dict[int, str], target: int | None = None) -> int:
    """Bring the schema up to ``target`` (default the latest of ``migrations``); returns the version found."""
    latest = max(migrations)
    target = latest if target is None else target
    found = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if found > latest:
        raise DKOARError(f"the log has schema version {found}, newer than this dkoar knows ({latest}); "
                         "upgrade dkoar to use it")
    for version in range(found + 1, target + 1):
        # one transaction per step, its version number included; a second process opening the
        # same new log waits for the lock and then finds the step done
        connection.execute("BEGIN IMMEDIATE")
        try:
            if int(connection.execute("PRAGMA user_version").fetchone()[0]) < version:
                for statement in migrations[version].split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {version}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return found


class SQLiteLog:
    """An open log (``open_database``): a context manager with write transactions, which
    remembers the site key its pseudonyms were made with."""

    def __init__(self, connection: sqlite3.Connection, path: Path, kind: str = "correction log"):
        self.connection = connection
        self.path = path
        self.kind = kind

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def check_site_key(self, fingerprint: str) -> None:
        """Remember the site key's fingerprint; refuse a log whose pseudonyms came from another key.

        The first key wins: the insert and the check are one write transaction, so that two
        processes starting a new log at once cannot both find no key and both insert theirs."""
        with self._transaction():
            self.connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('site_key_fingerprint', ?)",
                                    (fingerprint,))
            row = self.connection.execute("SELECT value FROM meta WHERE key = 'site_key_fingerprint'").fetchone()
        if row[0] != fingerprint:
            raise DKOARError(f"{self.path}: this log's pseudonyms were made with another site key; "
                             "give the site key it was started with (--site-key or DKOAR_SITE_KEY)")

    def transaction(self):
        """A write transaction for several calls (``with log.transaction(): ...``): all of them are
        stored, or none. Calls that open their own transaction join an enclosing one."""
        return self._transaction()

    def _transaction(self):
        return WriteTransaction(self.connection, self.path, self.kind)


@functools.lru_cache(maxsize=8)
def _expected_columns(migrations: tuple[tuple[int, str], ...]) -> dict[str, list[tuple[str, str]]]:
    """Table -> (column, declared type) of a log made by ``migrations``."""
    memory = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(memory, dict(migrations))
        return table_columns(memory)
    finally:
        memory.close()


def check_schema(connection: sqlite3.Connection, path: Path, migrations: dict[int, str], kind: str) -> None:
    """See ``log_integrity.check_log``: undamaged, and the tables of ``migrations``."""
    check_log(connection, path, _expected_columns(tuple(sorted(migrations.items()))), kind)


def connect(path: Path, kind: str) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
        connection.execute("PRAGMA user_version").fetchone()
    except sqlite3.OperationalError as exc:  # no such folder, no permission, locked
        raise DKOARError(f"{path}: cannot open the {kind} ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise log_error(path, exc, kind) from None
    return connection


@contextlib.contextmanager
def closed_on_error(connection: sqlite3.Connection, path: Path, kind: str):
    """Close ``connection`` when the block fails, SQLite's complaint turned into one line naming the log."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise log_error(path, exc, kind) from None
    except BaseException:
        connection.close()
        raise


def open_database(path: Path | str, migrations: dict[int, str], kind: str, durable: bool = True,
                  example: str = "corrections.sqlite") -> sqlite3.Connection:
    """Open (creating or upgrading, then checking) a log at ``path``. ``kind`` names it in
    messages ("correction log"); ``durable`` keeps each commit on disk before returning
    (synchronous=FULL); False is for bulk imports that can be redone."""
    path = Path(path)
    if path.is_dir():
        raise DKOARError(f"{path}: a folder; the {kind} is a file (e.g. {example})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DKOARError(f"{path.parent}: cannot make the {kind}'s folder ({exc.strerror}); choose another place "
                         f"for the {kind}") from None
    connection = connect(path, kind)
    with closed_on_error(connection, path, kind):
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise DKOARError(f"{path}: cannot use write-ahead logging here (journal mode {mode}); put the {kind} on a "
                             "local disk")
        connection.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        connection.execute("PRAGMA foreign_keys=ON")
        migrate(connection, migrations)
        check_schema(connection, path, migrations, kind)
    return connection


def read_only_copy(path: Path | str, migrations: dict[int, str], kind: str, table: str) -> sqlite3.Connection:
    """The log at ``path`` as an in-memory database of the current schema, for reports: the file
    itself is neither written nor upgraded. ``table``: one the log must have (checked when the
    file has no schema version)."""
    path = Path(path)
    if not path.is_file():
        raise DKOARError(f"{path}: no such {kind}")
    source = connect(path, kind)
    memory = sqlite3.connect(":memory:", isolation_level=None)
    try:
        with closed_on_error(memory, path, kind):
            source.backup(memory)
            version = int(memory.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                if not memory.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
                    raise DKOARError(f"{path}: not a {kind} (no {table} table)")
            migrate(memory, migrations)
            check_schema(memory, path, migrations, kind)
    finally:
        source.close()
    return memory

"""``dkoar serve status``: the queue and the last deliveries, read from the node's database while
the node runs (WAL lets a reader in beside the writer). Series are shown by their keyed
pseudonym and calling AE title, never by a DICOM UID."""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

from ..errors import DKOARError
from .queue import STATES, WAITING, NodeQueue


def _when(t: float | None) -> str:
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _age(t: float | None, now: float) -> str:
    if not t:
        return "-"
    s = max(0.0, now - t)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def status_lines(database: Path | str, deliveries: int = 10, events: int = 10) -> list[str]:
    database = Path(database)
    if not database.is_file():
        raise DKOARError(f"{database}: no node queue here; give the node's --work folder (or its --config)")
    queue = NodeQueue(database)
    try:
        now = time.time()
        counts = queue.counts()
        lines = ["queue: " + ", ".join(f"{state} {counts[state]}" for state in STATES)]
        placeholders = ",".join("?" * len(WAITING))
        waiting = queue.series(f"WHERE status IN ({placeholders}) ORDER BY id", WAITING)
        if waiting:
            lines.append(f"{'series':<14} {'from':<16} {'status':<10} {'slices':>6} {'MB':>8}  since")
            for s in waiting:
                since = {"receiving": s.first_slice_at, "received": s.completed_at, "running": s.started_at}.get(
                    s.status, s.started_at)
                lines.append(f"{s.key:<14} {s.calling_ae:<16} {s.status:<10} {s.files:>6} {s.bytes / 1e6:>8.1f}  "
                             f"{_age(since, now)}")
        else:
            lines.append("nothing waiting")
        done = queue.deliveries("WHERE status != 'pending' ORDER BY COALESCE(sent_at, next_at) DESC, id DESC LIMIT ?",
                                (deliveries,))
        pending = queue.deliveries("WHERE status = 'pending' ORDER BY next_at")
        lines.append(f"last deliveries ({len(pending)} pending):")
        for d in pending[:deliveries]:
            series = queue.series_by_id(d.series_id)
            lines.append(f"  pending  {series.key:<14} {d.kind:<8} to {d.destination}: attempt {d.attempts + 1} "
                         f"in {_age(now, d.next_at) if d.next_at > now else '0 s'}"
                         + (f" (last: {d.reason})" if d.reason else ""))
        for d in done:
            series = queue.series_by_id(d.series_id)
            took = f", {series.seconds:.1f} s contouring" if series.seconds is not None else ""
            lines.append(f"  {_when(d.sent_at) if d.status == 'sent' else d.status:<19} {series.key:<14} "
                         f"{d.kind:<8} to {d.destination} (from {series.calling_ae}{took})"
                         + (f": {d.reason}" if d.status != "sent" and d.reason else ""))
        if not pending and not done:
            lines.append("  none yet")
        failed = queue.series("WHERE status='failed' ORDER BY finished_at DESC LIMIT ?", (events,))
        if failed:
            lines.append("last failures:")
            lines += [f"  {_when(s.finished_at)} {s.key:<14} from {s.calling_ae}: {s.reason}" for s in failed]
        recent = queue.events(events)
        if recent:
            lines.append("last events:")
            lines += [f"  {_when(at)} {level:<8} {(key + ' ') if key else ''}{message}"
                      + (f" ({repeated} times)" if repeated > 1 else "")
                      for at, level, key, message, repeated in recent]
        return lines
    finally:
        queue.close()

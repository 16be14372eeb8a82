"""Progress reporting and cancellation for long work, independent of who shows it.

The command line draws a bar, the Slicer module a progress bar, a background process writes JSON
lines; all of them pass a ``Progress`` to the core.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Callable, TextIO

from .errors import DKOARError


class Cancelled(DKOARError):
    """The user cancelled the run."""


class Progress:
    """Receives (fraction within the stage, message) updates; ``cancel()`` stops the work at the
    next check."""

    def __init__(self, callback: Callable[[str, float, str], None] | None = None):
        self._callback = callback
        self._cancel = threading.Event()
        self.stage = ""

    def begin(self, stage: str) -> None:
        self.stage = stage
        self.update(0.0, stage)

    def update(self, fraction: float, message: str = "") -> None:
        if self._callback is not None:
            self._callback(self.stage, min(max(fraction, 0.0), 1.0), message)
        self.check()

    def cancel(self) -> None:
        self._cancel.set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled by the user")


class TerminalProgress(Progress):
    """A one-line bar on stderr, with an estimate of the time left in the stage. Drawn only on a
    terminal: a log file or a calling program gets clean output (and errors stay one line)."""

    def __init__(self, stream: TextIO = sys.stderr):
        super().__init__(self._draw if stream.isatty() else None)
        self.stream = stream
        self._stage_start = time.monotonic()
        self._last_stage = None

    def _draw(self, stage: str, fraction: float, message: str) -> None:
        if stage != self._last_stage:
            if self._last_stage is not None:
                self.stream.write("\n")
            self._last_stage = stage
            self._stage_start = time.monotonic()
        elapsed = time.monotonic() - self._stage_start
        eta = f" {elapsed / fraction - elapsed:4.0f}s left" if 0.05 < fraction < 1 else ""
        bar = "#" * int(fraction * 24)
        self.stream.write(f"\r{stage:<14} [{bar:<24}] {fraction * 100:5.1f}%{eta} {message[:40]:<40}")
        self.stream.flush()

    def finish(self) -> None:
        if self._last_stage is not None:
            self.stream.write("\n")
            self.stream.flush()


class JsonLinesProgress(Progress):
    """One JSON object a line on a stream, for a parent process (the Slicer module) to read."""

    def __init__(self, stream: TextIO = sys.stdout):
        super().__init__(lambda stage, fraction, message: (stream.write(json.dumps(
            {"stage": stage, "progress": round(fraction, 4), "message": message}) + "\n"), stream.flush()))

"""The parent's side of a run in a separate process (``json_run``): the command that starts it,
reading its JSON lines, and ending its whole process tree on Cancel.

A front end (the Slicer panel, the browser station) starts the child with its own process
launcher, passes every output line to ``parse_line`` and, to cancel, calls ``end_process_tree``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CHILD_MODULE = "DKOARSegmentationLib.pipeline.json_run"


def child_command(input_path: Path | str, out_dir: Path | str, model_path: Path | str | None = None,
                  device: str = "auto", structures: str | None = None, python: str | None = None) -> list[str]:
    """The argument list that runs the pipeline as a child process writing JSON lines."""
    args = [python or sys.executable, "-m", CHILD_MODULE, str(input_path), "--out", str(out_dir), "--device", device]
    if model_path:
        args += ["--model", str(model_path)]
    if structures:
        args += ["--structures", structures]
    return args


def parse_line(line: str) -> dict | None:
    """One line of the child's output as its JSON object; None for any other line."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def end_process_tree(pid: int, grace_s: float = 0.5) -> None:
    """Stop a process and every process it started (killing a launcher such as PythonSlicer alone
    would leave the Python doing the work running): terminate all, give them ``grace_s`` to exit,
    kill what is left. Returns within about ``grace_s``: a GUI calls it on Cancel."""
    import psutil

    try:
        parent = psutil.Process(pid)
        processes = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()  # SIGKILL: immediate, nothing to wait for
        except psutil.NoSuchProcess:
            pass


class ChildProcess:
    """A child process whose output lines and exit a reader thread queues; ``poll()`` hands them
    to the callbacks on the caller's thread (as Slicer's ``launchConsoleProcess`` does with a Qt
    timer), so a front end without Qt (the browser station, the tests) runs the child alike.

    ``launch_child(args, updateEnvironment=..., logCallback=..., completedCallback=...)`` takes
    the arguments of ``slicer.util.launchConsoleProcess(..., blocking=False)``."""

    def __init__(self, args: list[str], environment: dict | None = None, on_line=None, on_done=None):
        import os
        import queue
        import subprocess
        import threading

        env = dict(os.environ)
        env.update(environment or {})
        self._queue: queue.Queue = queue.Queue()
        self._on_line, self._on_done = on_line, on_done
        self.returncode: int | None = None
        self._process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         bufsize=1)
        self.pid = self._process.pid
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._process.stdout:
            self._queue.put(("line", line.rstrip("\n")))
        self._queue.put(("done", self._process.wait()))

    def poll(self) -> bool:
        """Deliver what has arrived; True while the process is still running."""
        import queue

        while self.returncode is None:
            try:
                kind, value = self._queue.get_nowait()
            except queue.Empty:
                return True
            if kind == "line":
                if self._on_line is not None:
                    self._on_line(value)
            else:
                self.returncode = value
                if self._on_done is not None:
                    self._on_done(value)
        return False

    def wait(self, timeout_s: float | None = None, interval_s: float = 0.05) -> int | None:
        """Poll until the process has ended (and its callbacks have run); its exit code, or None
        after ``timeout_s``."""
        import time

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(interval_s)
        return self.returncode


def launch_child(args: list[str], updateEnvironment: dict | None = None, blocking: bool = False,
                 logCallback=None, completedCallback=None) -> ChildProcess:
    """``slicer.util.launchConsoleProcess``'s non-blocking form, without Qt (see ``ChildProcess``)."""
    if blocking:
        raise ValueError("launch_child runs the child in the background; call wait() to block")
    return ChildProcess(args, updateEnvironment, logCallback, completedCallback)

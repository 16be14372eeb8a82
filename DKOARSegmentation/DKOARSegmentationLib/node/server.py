"""The node: the receiver, the worker and the sender on one queue, each on its own thread.

    intake thread   series idle for idle_seconds -> received; inputs of finished series removed
    worker thread   one series at a time through the pipeline (the CPU or GPU is the limit)
    sender thread   due deliveries, with retry and back-off
    pynetdicom      one thread per association, at most max_associations

``start()`` first recovers what a previous run left unfinished (``NodeQueue.recover``).
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from ..errors import DKOARError
from ..model.bundle import load_bundle
from ..resources import demo_model_dir
from .config import NodeConfig
from .queue import NodeQueue
from .receiver import Receiver
from .sender import Sender
from .worker import Worker

log = logging.getLogger("DKOARSegmentationLib.node")
POLL_S = 0.2


def series_pseudonym(config: NodeConfig):
    """series UID -> "S" + 12 hex digits of its keyed hash (the site key: ``site_key``, else
    DKOAR_SITE_KEY, else ``work/site.key``, created when missing)."""
    import os

    from ..monitoring.pseudonym import ENV_VARIABLE, load_site_key

    path = config.site_key or (os.environ.get(ENV_VARIABLE) or None) or config.work / "site.key"
    key = load_site_key(path)
    return lambda uid: "S" + key.pseudonym("series", uid)[:12]


def _one_node_per_work_folder(work: Path):
    """Hold an exclusive lock on ``work/node.lock`` while the node runs (the system drops it when
    the process ends, however it ends): two nodes on one queue would contour series twice."""
    import fcntl

    handle = open(work / "node.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DKOARError(f"{work}: another dkoar node is running with this work folder") from None
    return handle


class Node:
    def __init__(self, config: NodeConfig):
        try:
            import pynetdicom  # noqa: F401
        except ImportError:
            raise DKOARError("dkoar serve needs pynetdicom: pip install 'dkoar-segmentation[node]'") from None
        self.config = config
        config.work.mkdir(parents=True, exist_ok=True)
        self._lock = _one_node_per_work_folder(config.work)
        self.bundle = load_bundle(config.model or demo_model_dir())  # a bad model stops the start, not a patient
        self.queue = NodeQueue(config.database)
        self.receiver = Receiver(config, self.queue, self.bundle.identity, series_pseudonym(config))
        self.worker = Worker(config, self.queue, self.bundle)
        self.sender = Sender(config, self.queue)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        recovered = self.queue.recover()
        if any(recovered.values()):
            log.info("resuming after a restart: %s", ", ".join(f"{k} {v}" for k, v in recovered.items() if v))
        self.receiver.start()
        steps = (("intake", self._intake), ("worker", self.worker.run_next), ("sender", self.sender.send_due))
        for name, step in steps:
            thread = threading.Thread(target=self._loop, args=(name, step), name=f"dkoar-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("node %s ready: model %s, %d caller(s) allowed, results to %s", self.config.ae_title,
                 self.bundle.identity, len(self.config.allow),
                 ", ".join(map(str, self.config.send_to)) or "nowhere (no --send-to)")

    def _loop(self, name: str, step) -> None:
        while not self._stop.is_set():
            try:
                busy = step()
            except Exception:  # a thread that dies silently would stop the node's work unseen
                log.exception("%s: unexpected error; going on", name)
                busy = False
            if not busy:
                self._stop.wait(POLL_S)

    def _intake(self) -> bool:
        for row in self.queue.complete_idle(self.config.idle_seconds):
            log.info("series %s from %s complete: %d slices, %.1f MB", row.key, row.calling_ae, row.files,
                     row.bytes / 1e6)
        if not self.config.keep_input:
            self._remove_finished_inputs()
        return False

    def _remove_finished_inputs(self) -> None:
        incoming = self.config.work / "incoming"
        present = [p.name for p in incoming.iterdir() if p.is_dir()] if incoming.is_dir() else []
        for key in present:
            if not self._finished(key):
                continue
            with self.receiver.files_lock:  # a slice arriving now would have set the series receiving again
                if self._finished(key):
                    shutil.rmtree(incoming / key, ignore_errors=True)

    def _finished(self, key: str) -> bool:
        """Every row of the series (one per model version) sent or failed, nothing left to deliver."""
        rows = self.queue.series("WHERE key=?", (key,))
        return bool(rows) and all(r.status in ("sent", "failed") for r in rows) and not any(
            self.queue.deliveries("WHERE series_id=? AND status='pending'", (r.id,)) for r in rows)

    def request_stop(self) -> None:
        """Ask ``wait()`` to return (safe in a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self.receiver.stop()
        for thread in self._threads:
            thread.join(timeout=30)
        self.queue.close()
        self._lock.close()

    def wait(self) -> None:
        """Block until ``stop()`` (from a signal handler) or an interrupt."""
        while not self._stop.wait(1.0):
            pass

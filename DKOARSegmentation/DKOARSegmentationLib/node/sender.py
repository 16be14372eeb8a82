"""Delivering results: C-STORE (pynetdicom) of each queued file to its destination, retried with
back-off while the destination is down or refuses, given up (and the series marked failed with
the reason) after ``max_attempts``.
"""

from __future__ import annotations

import logging

from .config import NodeConfig, parse_destination
from .queue import DeliveryRow, NodeQueue

log = logging.getLogger(__name__)

# success, and the storage warnings (coercion, elements discarded, data set does not match): stored
STORED = {0x0000, 0xB000, 0xB006, 0xB007}


def store_file(path, destination, calling_ae: str, timeout_s: float = 60.0) -> tuple[bool, str]:
    """C-STORE one DICOM file to ``destination``: (stored, why not)."""
    import pydicom
    from pynetdicom import AE

    try:
        sop_class = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).SOPClassUID)
    except (OSError, AttributeError, ValueError) as exc:
        return False, f"the result file cannot be read ({exc})"
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(sop_class)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        return False, f"no association with {destination} (not reachable, or it refused {calling_ae})"
    try:
        status = assoc.send_c_store(path)
    finally:
        if assoc.is_established:
            assoc.release()
    code = int(getattr(status, "Status", -1)) if status else -1
    if code in STORED:
        return True, ""
    if code < 0:
        return False, f"{destination} did not answer the C-STORE"
    comment = str(getattr(status, "ErrorComment", "") or "")
    return False, f"{destination} answered status 0x{code:04X}{': ' + comment if comment else ''}"


class Sender:
    def __init__(self, config: NodeConfig, queue: NodeQueue):
        self.config = config
        self.queue = queue

    def retry_in(self, attempts_before: int) -> float | None:
        """Seconds to the next attempt after ``attempts_before + 1`` failed ones; None: give up."""
        if attempts_before + 1 >= self.config.max_attempts:
            return None
        return min(self.config.retry_max_seconds, self.config.retry_seconds * 2 ** attempts_before)

    def send_due(self) -> int:
        """Attempt every delivery that is due; the number attempted."""
        due = self.queue.due_deliveries()
        for delivery in due:
            self._attempt(delivery)
        return len(due)

    def _attempt(self, delivery: DeliveryRow) -> None:
        series = self.queue.series_by_id(delivery.series_id)
        path = self.config.work / "results" / series.key / delivery.file
        try:
            destination = parse_destination(delivery.destination, "destination")
            ok, reason = store_file(path, destination, self.config.ae_title)
        except Exception as exc:  # the sender thread must survive whatever a peer does
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.queue.delivery_done(delivery, True)
            log.info("series %s: %s stored to %s", series.key, delivery.kind, delivery.destination)
            return
        retry = self.retry_in(delivery.attempts)
        self.queue.delivery_done(delivery, False, reason, retry)
        if retry is None:
            log.error("series %s: %s to %s given up after %d attempts: %s", series.key, delivery.kind,
                      delivery.destination, delivery.attempts + 1, reason)
            self.queue.event("failed", f"{delivery.kind} to {delivery.destination} given up: {reason}", series.key)
        else:
            log.warning("series %s: %s to %s failed (%s); next attempt in %.0f s", series.key, delivery.kind,
                        delivery.destination, reason, retry)

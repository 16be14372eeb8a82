"""The node's DICOM side that listens: a Storage SCP (pynetdicom) with Verification (C-ECHO).

Who may call: the AE titles on the allow-list (any, with "*"), calling this node's AE title;
others are rejected at association. What is kept: CT images only. Each C-STORE is answered only
after its slice is on disk under its series' folder (written under a temporary name, synced and
renamed) and recorded in the queue, so a success the caller sees is never lost. Refused, each
with a failure status and a comment the caller logs, and an event the node's status shows:

- an image that is not CT (MR, an RTSTRUCT sent along with a study, ...): the node contours CT;
- a file that cannot be read or ends before its pixel data (a truncated transfer or export);
- a slice that would make its study larger than ``max_study_mb`` (the whole study then fails);
- any slice while the work folder's disk has less than ``min_free_mb`` free.
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import tempfile
import threading
from pathlib import Path

from ..errors import DKOARError
from .config import NodeConfig
from .queue import NodeQueue

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
NOT_CT = 0xC001
CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"}  # CT, Enhanced CT Image Storage


def _status(code: int, comment: str = ""):
    from pydicom.dataset import Dataset

    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]  # LO
    return status


class Receiver:
    """The SCP: ``start()`` listens in the background, ``stop()`` closes it."""

    def __init__(self, config: NodeConfig, queue: NodeQueue, model_identity: str, pseudonym):
        self.config = config
        self.queue = queue
        self.model_identity = model_identity
        self.pseudonym = pseudonym  # series UID -> short keyed name (no UID in clear in logs)
        self.incoming = config.work / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)
        for partial in self.incoming.glob(".slice-*"):  # a slice a kill interrupted: never acknowledged
            partial.unlink()
        self._server = None
        # a slice's queue row and its file move together: the intake thread removes a finished
        # series' folder only under this lock, never between the two
        self.files_lock = threading.Lock()

    # -- association --------------------------------------------------------------------------

    def application_entity(self):
        from pynetdicom import AE, AllStoragePresentationContexts
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_associations = self.config.max_associations
        ae.require_called_aet = True
        if not self.config.accepts_any_caller():
            ae.require_calling_aet = list(self.config.allow)
        ae.network_timeout = 60
        ae.dimse_timeout = 60
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax)
        return ae

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.config.tls_certificate is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(self.config.tls_certificate), str(self.config.tls_key))
            if self.config.tls_ca is not None:
                context.load_verify_locations(cafile=str(self.config.tls_ca))
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise DKOARError(f"TLS: cannot load the certificate, key or CA ({exc}); check tls_certificate, tls_key "
                             "and tls_ca") from None
        return context

    def start(self) -> None:
        from pynetdicom import evt

        handlers = [(evt.EVT_C_ECHO, self._on_echo), (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_REJECTED, self._on_rejected)]
        try:
            self._server = self.application_entity().start_server(
                (self.config.host, self.config.port), block=False, ssl_context=self.ssl_context(),
                evt_handlers=handlers)
        except OSError as exc:
            raise DKOARError(f"cannot listen on {self.config.host}:{self.config.port} ({exc.strerror or exc}); "
                             "is another node or program using the port?") from None
        log.info("listening as %s on %s:%d%s", self.config.ae_title, self.config.host, self.config.port,
                 " (TLS)" if self.config.tls_certificate else "")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @staticmethod
    def _caller(event) -> str:
        return str(event.assoc.requestor.ae_title).strip()

    def _on_echo(self, event) -> int:
        log.info("C-ECHO from %s", self._caller(event))
        return SUCCESS

    def _on_rejected(self, event) -> None:
        caller = self._caller(event)
        message = f"association from {caller} ({event.assoc.requestor.address}) rejected: not on the allow-list"
        if str(event.assoc.requestor.ae_title).strip() in self.config.allow or self.config.accepts_any_caller():
            message = f"association from {caller} rejected (called AE title or association limit)"
        log.warning(message)
        self.queue.event("warning", message)

    # -- storing ------------------------------------------------------------------------------

    def _refuse(self, code: int, reason: str, caller: str, key: str = ""):
        log.warning("slice from %s refused%s: %s", caller, f" (series {key})" if key else "", reason)
        self.queue.event("refused", f"slice from {caller} refused: {reason}", key)
        return _status(code, reason)

    def _on_store(self, event):
        caller = self._caller(event)
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # a dataset pynetdicom cannot even frame
            return self._refuse(CANNOT_UNDERSTAND, f"cannot read the dataset ({exc})", caller)
        free = shutil.disk_usage(self.incoming).free
        if free - len(data) < self.config.min_free_mb * 1e6:
            return self._refuse(OUT_OF_RESOURCES, f"disk nearly full ({free / 1e6:.0f} MB free, keeps "
                                                  f"{self.config.min_free_mb:g} MB)", caller)
        tmp = self._write_temporary(data)
        try:
            problem, uids = self._check(tmp, event.context.abstract_syntax)
            if problem is not None:
                return self._refuse(*problem, caller, self.pseudonym(uids[0]) if uids and uids[0] else "")
            series_uid, study_uid, sop_uid = uids
            key = self.pseudonym(series_uid)
            with self.files_lock:
                arrival = self.queue.slice_arrives(series_uid, study_uid, self.model_identity, key, caller,
                                                   len(data), self.config.max_study_mb * 1e6)
                if arrival.action == "store":
                    folder = self.incoming / key
                    folder.mkdir(exist_ok=True)
                    os.replace(tmp, folder / _file_name(sop_uid))
                    return SUCCESS
            if arrival.action == "refuse":
                return self._refuse(OUT_OF_RESOURCES, arrival.reason, caller, key)
            log.info("slice of series %s from %s not kept: %s", key, caller, arrival.reason)
            return SUCCESS
        finally:
            if tmp.exists():
                tmp.unlink()

    def _write_temporary(self, data: bytes) -> Path:
        fd, name = tempfile.mkstemp(prefix=".slice-", suffix=".dcm", dir=self.incoming)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return Path(name)

    def _check(self, file: Path, abstract_syntax: str):
        """(None, (series UID, study UID, SOP instance UID)) for a CT slice worth keeping, else
        ((status, reason), the UIDs as far as they could be read, or None)."""
        from ..input.dicom_headers import read_header

        try:
            found = read_header(file)
        except (OSError, DKOARError) as exc:
            return (CANNOT_UNDERSTAND, f"cannot be read: {str(exc).split(': ', 1)[-1]}"), None
        if found is None:
            return (CANNOT_UNDERSTAND, "not a DICOM dataset"), None
        ds, store = found
        uids = tuple(str(ds.get(name, "") or "")
                     for name in ("SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID"))
        modality = str(ds.get("Modality", "") or "?")
        sop_class = str(ds.get("SOPClassUID", "") or abstract_syntax)
        if modality != "CT" or sop_class not in CT_SOP_CLASSES:
            return (NOT_CT, f"{modality} is not CT; the node contours CT series only"), uids
        if not store.has_pixels:
            return (CANNOT_UNDERSTAND, "the file ends before its pixel data (truncated)"), uids
        if store.native and store.value_offset is not None and store.bits_allocated:
            rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            expected = rows * columns * store.frames * store.samples_per_pixel * store.bits_allocated // 8
            present = min(store.value_length, store.file_size - store.value_offset)
            if present < expected:
                return (CANNOT_UNDERSTAND, f"pixel data {present} bytes of {expected} (truncated)"), uids
        if not all(uids):
            return (CANNOT_UNDERSTAND, "no series, study or SOP instance UID"), uids
        return None, uids


def _file_name(sop_uid: str) -> str:
    """A slice's file name: the same for the same SOP instance (a slice sent twice is kept once),
    and no UID in clear in the messages that name a file."""
    import hashlib

    return hashlib.sha256(sop_uid.encode()).hexdigest()[:24] + ".dcm"

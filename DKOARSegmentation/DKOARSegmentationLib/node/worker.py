"""Contouring one waiting series with the pipeline of ``dkoar segment``, and queuing what goes out.

The results of a series go to ``work/results/<key>/``: the same files as ``dkoar segment``
(RTSTRUCT, .seg.nrrd, NIfTI, overview, run.json), the DICOM SEG when configured, or the failure
RTSTRUCT. Results already complete for this model (the node was killed after writing them and
before recording it) are delivered as they are, not contoured again, so the RTSTRUCT that goes
out keeps its SOPInstanceUID.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DKOARError
from ..pipeline.segment import OUTPUT_NAMES, segment
from .config import NodeConfig
from .failure_report import write_failure_rtstruct
from .queue import NodeQueue, SeriesRow

log = logging.getLogger(__name__)

SEG_NAME = "seg.dcm"
FAILURE_NAME = "failure_rtstruct.dcm"


@dataclass
class Failure(Exception):
    title: str  # short, for the ROI name: "not CT", "missing slices", ...
    reason: str  # the whole story, for the log and the RTSTRUCT's description
    series: object = None  # the loaded CT's DicomSeriesInfo, when the failure came after loading it


def missing_slices(ct) -> str | None:
    """Why a loaded CT series has a gap along its slice normal, or None when it has none."""
    if ct.dicom is None or len(ct.dicom.slices) < 3:
        return None
    normal = ct.direction[:, 2]
    positions = np.sort([float(np.dot(s.position, normal)) for s in ct.dicom.slices])
    gaps = np.diff(positions)
    spacing = float(np.median(gaps))
    wide = gaps > 1.5 * spacing
    if not np.any(wide):
        return None
    count = int(sum(round(g / spacing) - 1 for g in gaps[wide]))
    k = int(np.argmax(wide))
    return (f"{count} slice{'s' if count != 1 else ''} missing (first gap of {gaps[k]:.1f} mm after the slice at "
            f"{positions[k]:.1f} mm, spacing {spacing:.1f} mm); send the whole series again")


class Worker:
    def __init__(self, config: NodeConfig, queue: NodeQueue, bundle):
        self.config = config
        self.queue = queue
        self.bundle = bundle

    def run_next(self) -> bool:
        """Contour the next waiting series; False when none waits."""
        row = self.queue.take_next(self.config.priority_callers, self.config.order)
        if row is None:
            return False
        start = time.perf_counter()
        results = self.config.work / "results" / row.key
        try:
            deliveries = self._contour(row, results)
            reason = ""
        except Failure as failure:
            reason = failure.reason
            log.warning("series %s from %s failed: %s", row.key, row.calling_ae, reason)
            deliveries = self._failure_deliveries(row, results, failure)
        seconds = time.perf_counter() - start
        self.queue.contoured(row.id, deliveries, seconds, reason)
        if reason:
            self.queue.event("failed", reason, row.key)
        else:
            log.info("series %s from %s contoured in %.1f s; %d deliveries queued", row.key, row.calling_ae, seconds,
                     len(deliveries))
        return True

    def _done_before(self, results: Path) -> bool:
        try:
            run = json.loads((results / OUTPUT_NAMES["run_json"]).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        same_model = run.get("model", {}).get("manifest_sha256") == self.bundle.manifest_sha256
        return same_model and (results / OUTPUT_NAMES["rtstruct"]).is_file() and (
            not self.config.send_seg or (results / SEG_NAME).is_file())

    def _contour(self, row: SeriesRow, results: Path) -> list[tuple[str, str, str]]:
        folder = self.config.work / "incoming" / row.key
        if self._done_before(results):
            log.info("series %s: results found complete from before a restart; delivering them", row.key)
        else:
            shutil.rmtree(results, ignore_errors=True)
            try:
                result = segment(folder, results, model_path=self.bundle.folder, device=self.config.device,
                                 series_uid=row.series_uid)
            except DKOARError as exc:
                raise Failure(_title(str(exc)), str(exc).replace(str(folder), "the received series")) from None
            except Exception as exc:  # a bug or the machine: the series fails, the node goes on
                log.exception("series %s: contouring stopped by an unexpected error", row.key)
                raise Failure("internal error", f"internal error while contouring: {exc}") from None
            gap = missing_slices(result.ct)
            if gap and self.config.missing_slices == "fail":
                raise Failure("missing slices", gap, result.ct.dicom)
            if "rtstruct" not in result.outputs:
                raise Failure("no RTSTRUCT", "no RTSTRUCT could be written for the series")
            if self.config.send_seg:
                self._write_seg(result, folder, results)
        files = [("rtstruct", OUTPUT_NAMES["rtstruct"])]
        if (results / SEG_NAME).is_file():
            files.append(("seg", SEG_NAME))
        return [(str(d), kind, name) for d in self.config.send_to for kind, name in files]

    def _write_seg(self, result, folder: Path, results: Path) -> None:
        from ..output.dicom_seg import read_source_datasets, write_dicom_seg

        try:
            write_dicom_seg(result.ct, read_source_datasets(folder, result.ct), result.segmentation,
                            results / SEG_NAME, self.bundle.name, self.bundle.version)
        except DKOARError as exc:  # no structure found: the RTSTRUCT still says which were looked for
            log.warning("series %s: no DICOM SEG (%s)", results.name, exc)

    def _failure_deliveries(self, row: SeriesRow, results: Path, failure: Failure) -> list[tuple[str, str, str]]:
        if not self.config.failure_rtstruct or not self.config.send_to:
            return []
        shutil.rmtree(results, ignore_errors=True)
        try:
            written = write_failure_rtstruct(results / FAILURE_NAME, failure.title, failure.reason, self.bundle.name,
                                             self.bundle.version, self.config.work / "incoming" / row.key,
                                             row.series_uid, failure.series)
        except (DKOARError, OSError, ValueError) as exc:
            log.warning("series %s: no failure RTSTRUCT could be written (%s)", row.key, exc)
            return []
        if written is None:
            log.warning("series %s: no failure RTSTRUCT (no readable slice header to reference)", row.key)
            return []
        return [(str(d), "failure", FAILURE_NAME) for d in self.config.send_to]


def _title(message: str) -> str:
    """A few words for the ROI name from a DKOARError's message."""
    text = message.lower()
    for needle, title in (("not ct", "not CT"), ("no ct series", "not CT"), ("truncated", "damaged slice"),
                          ("ends before", "damaged slice"), ("damaged", "damaged slice"),
                          ("cannot be read", "unreadable slice"), ("tilt", "tilted slices"),
                          ("two different images", "conflicting slices"), ("at least two slices", "too few slices"),
                          ("memory", "not enough memory")):
        if needle in text:
            return title
    return "see node log"

"""What a run records in ``run.json``: provenance (software, model and its hashes), the input's
kind and grid (never its path, which may name the patient), device, seconds per stage, structures
and their volumes, and every warning, so that a department running unattended finds in the file
what would otherwise be only in a log."""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import platform
from pathlib import Path

from .. import __version__
from ..model.bundle import ModelBundle
from ..volume import Segmentation, Volume


class _WarningCollector(logging.Handler):
    def __init__(self, into: list[str]):
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@contextlib.contextmanager
def warnings_logged_by(logger_name: str, into: list[str]):
    """Also keep the warnings that ``logger_name``'s loggers log (they still reach the log), so
    that run.json says what a department running unattended would otherwise only find in a log."""
    collector = _WarningCollector(into)
    logger = logging.getLogger(logger_name)
    logger.addHandler(collector)
    try:
        yield
    finally:
        logger.removeHandler(collector)


def _without_input_path(text: str, input_path) -> str:
    """A warning with the input's path replaced by "<input>": the path of a CT often holds the
    patient's name or number, and run.json travels further than the CT."""
    for form in sorted({str(input_path), str(Path(input_path).resolve())}, key=len, reverse=True):
        text = text.replace(form, "<input>")
    return text


def run_record(input_path, ct: Volume, bundle: ModelBundle, segmentation: Segmentation, mapping, device: str,
                seconds: dict[str, float], warnings: list[str]) -> dict:
    volumes = segmentation.volumes_ml()
    return {
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "software": {"name": "DKOARSegmentation", "version": __version__, "python": platform.python_version()},
        "model": {
            "name": bundle.name,
            "version": bundle.version,
            "manifest_sha256": bundle.manifest_sha256,
            "files_sha256": bundle.files,
            "intended_use": bundle.intended_use,
            "clinical_use": bundle.clinical_use,
        },
        "input": {
            "kind": "dicom" if ct.dicom is not None else "image file",
            "shape_kji": list(ct.shape),
            "spacing_ijk_mm": [round(v, 4) for v in ct.spacing],
        },
        "device": device,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "structures": {
            s.name: {"label": s.label, "volume_ml": volumes[s.name], "present": volumes[s.name] > 0}
            for s in segmentation.structures
        },
        "structures_not_provided_by_model": [s.name for s in mapping.missing],
        "unmapped_model_labels": {str(k): v for k, v in mapping.unmapped.items()},
        "warnings": [_without_input_path(w, input_path) for w in warnings],
    }

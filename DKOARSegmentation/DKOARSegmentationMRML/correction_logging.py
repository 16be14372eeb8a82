"""Opening the correction log for a case corrected in the scene.

The case is started in the SQLite log with the model that made the segmentation, its review
guidance (flags, review list, uncertainty: what the clinician was told), the CT's monitored
properties and, when a site key is configured (a file given, or the environment
variable DKOAR_SITE_KEY), the keyed pseudonyms of its patient and study, never the identifiers.
Without a site key the case is logged without pseudonyms and a warning says why.
"""

from __future__ import annotations

import logging

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.monitoring.case_properties import case_keys, ct_properties
from DKOARSegmentationLib.monitoring.correction_log import CorrectionLog, open_log
from DKOARSegmentationLib.monitoring.guidance_log import record_guidance
from DKOARSegmentationLib.monitoring.pseudonym import key_path_from, load_site_key

from .correction_log_sink import CorrectionLogSink
from .dicom_source import DicomFileLookup, header_volume
from .review_guidance import guidance_of
from .segmentation_run import model_identity

log = logging.getLogger(__name__)


def open_case(log_path: str, segmentation_node, volume_node, site: str = "", site_key_path: str = "",
              database: DicomFileLookup | None = None) -> tuple[CorrectionLog, CorrectionLogSink]:
    """Open (create) the log, start the case; returns the open log and the sink for the session's
    events. The caller closes the log when the case is finished."""
    ct = header_volume(volume_node, database)
    correction_log = open_log(log_path)
    try:
        patient_key = study_key = None
        try:
            key = load_site_key(key_path_from(site_key_path or None))
        except DKOARError as exc:
            log.warning("the case is logged without patient and study pseudonyms: %s", exc)
        else:
            correction_log.check_site_key(key.fingerprint)
            patient_key, study_key = case_keys(ct, key)
        name, version, model_hash = model_identity(segmentation_node)
        case_id = correction_log.start_case(site=site, model_name=name, model_version=version, model_hash=model_hash,
                                            patient_key=patient_key, study_key=study_key, ct=ct_properties(ct))
        guidance = guidance_of(segmentation_node)
        if guidance.flags or guidance.review or guidance.uncertainty:
            record_guidance(correction_log, case_id, guidance)
    except BaseException:
        correction_log.close()
        raise
    return correction_log, CorrectionLogSink(correction_log, case_id)

"""What the log records of a case's CT: the properties monitored (scanner, kernel, slice
thickness, contrast) and the keyed pseudonyms of its patient and study (never the identifiers)."""

from __future__ import annotations

from ..volume import Volume
from .correction_log import CTProperties
from .pseudonym import SiteKey

MAX_TEXT = 64  # a DICOM LO value's length; longer text in these fields is not the scanner's


def free_text(value) -> str | None:
    """A free-text header value (scanner model, kernel) as the log keeps it: printable characters
    only, white space collapsed, at most 64 characters; the report escapes it again where it shows it."""
    text = "".join(c if c.isprintable() else " " for c in str(value))
    return " ".join(text.split())[:MAX_TEXT] or None


def ct_properties(ct: Volume) -> CTProperties:
    """Scanner model, convolution kernel, slice thickness and contrast flag of a DICOM CT."""
    header = ct.dicom.header if ct.dicom is not None else None
    if header is None:
        return CTProperties(slice_thickness_mm=round(ct.spacing[2], 3))

    def text(name):
        value = header.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str) and hasattr(value, "__iter__"):
            value = "\\".join(str(v) for v in value)
        return free_text(value)

    thickness = header.get("SliceThickness")
    try:
        thickness = float(thickness) if thickness not in (None, "") else round(ct.spacing[2], 3)
    except (TypeError, ValueError):
        thickness = round(ct.spacing[2], 3)
    scanner = " ".join(v for v in (text("Manufacturer"), text("ManufacturerModelName")) if v) or None
    # ContrastBolusAgent (0018,0010) is present when the contrast module is: empty means none given
    contrast = None
    if "ContrastBolusAgent" in header:
        contrast = bool(str(header.ContrastBolusAgent or "").strip())
    return CTProperties(scanner_model=scanner, convolution_kernel=text("ConvolutionKernel"),
                        slice_thickness_mm=thickness, contrast=contrast)


def case_keys(ct: Volume, key: SiteKey) -> tuple[str | None, str | None]:
    """Keyed pseudonyms of the CT's patient (PatientID) and study (StudyInstanceUID)."""
    if ct.dicom is None:
        return None, None
    header = ct.dicom.header
    patient_id = str(header.get("PatientID", "") or "").strip()
    study_uid = str(header.get("StudyInstanceUID", "") or "").strip()
    return (key.pseudonym("patient", patient_id) if patient_id else None,
            key.pseudonym("study", study_uid) if study_uid else None)


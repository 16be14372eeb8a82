"""Finding the DICOM series in a folder as a hospital exports it, and choosing the planning CT.

A folder from a scanner, a PACS or a planning system mixes series (the planning CT, localisers,
an RTSTRUCT, a plan, a dose, sometimes an MR), names files without extension and holds other
files (DICOMDIR, notes, thumbnails). This module reads every file's header once, without its pixel
data, and keeps a small record per image (per frame for enhanced multi-frame objects) with
everything the loader needs afterwards: geometry, rescale, how and where the pixels are stored.
The loader then never parses a header twice and can check the whole series before it allocates
the volume.

Choosing: one CT series beside localisers (ImageType LOCALIZER or a single slice), RTSTRUCT,
RTPLAN or RTDOSE is taken by itself; several candidate CT series need the user's choice
(``--series``); another modality is read only when the user allows it (``--allow-modality``).
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DKOARError

log = logging.getLogger(__name__)

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
NATIVE_SYNTAXES = (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE)
PIXEL_DATA_TAG = (0x7FE0, 0x0010)
# explicit VR elements whose length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2)
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
# never an image to contour, whatever the user allows
NOT_IMAGES = {"RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "RTIMAGE", "SEG", "SR", "KO", "PR", "REG", "RWV",
              "DOC", "PLAN", "FID", "RESP", "ECG", "AU"}


@dataclass(frozen=True)
class PixelStore:
    """How one file stores its pixels, read from its header.

    ``value_offset``/``value_length`` locate native (uncompressed) pixel data in the file so that
    the loader reads those bytes straight into its array; they are None for compressed
    (encapsulated) or deflated data, which pydicom's decoders read instead.
    """

    transfer_syntax: str
    bits_allocated: int
    bits_stored: int
    signed: bool
    samples_per_pixel: int
    photometric: str
    frames: int
    value_offset: int | None
    value_length: int | None
    file_size: int
    has_pixels: bool

    @property
    def native(self) -> bool:
        return self.transfer_syntax in NATIVE_SYNTAXES

    @property
    def big_endian(self) -> bool:
        return self.transfer_syntax == EXPLICIT_BE


@dataclass(frozen=True)
class DicomImage:
    """One image of a series: a single-frame file, or one frame of an enhanced multi-frame file.

    Geometry values are None when the header lacks them: the scan records, the loader refuses.
    """

    file: Path
    frame: int | None  # 0-based frame of a multi-frame file; None for a single-frame file
    sop_class_uid: str
    sop_instance_uid: str
    rows: int
    columns: int
    position: tuple[float, float, float] | None  # ImagePositionPatient, LPS mm
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (row direction, column direction)
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    slope: float
    intercept: float
    localizer: bool
    store: PixelStore

    @property
    def label(self) -> str:
        """How messages name this image: its file, and its frame when it is one of several."""
        return f"{self.file} (frame {self.frame + 1})" if self.frame is not None else str(self.file)


@dataclass
class SeriesSummary:
    """One series found in a folder: identity for the listing, images for the loader."""

    uid: str
    modality: str
    description: str
    files: list[Path] = field(default_factory=list)
    images: list[DicomImage] = field(default_factory=list)
    slice_thickness: float | None = None
    number: str = ""

    @property
    def slices(self) -> int:
        return len(self.images)

    @property
    def is_image(self) -> bool:
        return self.modality not in NOT_IMAGES and any(im.store.has_pixels for im in self.images)

    @property
    def is_localizer(self) -> bool:
        """ImageType LOCALIZER on every image, or a single slice: a scout, never the planning CT."""
        return all(im.localizer for im in self.images) or self.slices < 2

    def describe(self) -> str:
        thickness = f", {self.slice_thickness:g} mm" if self.slice_thickness else ""
        return (f"{self.uid} ({self.modality or '?'}, {self.description or 'no description'}, "
                f"{self.slices} slice{'s' if self.slices != 1 else ''}{thickness})")


@dataclass
class FolderScan:
    """Everything found under a folder: series by UID, and what was set aside."""

    folder: Path
    series: dict[str, SeriesSummary]
    not_dicom: int = 0  # files that are not DICOM (no DICM prefix)
    without_series: int = 0  # DICOM files that belong to no series (DICOMDIR, damaged headers)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (file, why): cannot be opened or parsed


def one_line(exc: BaseException) -> str:
    """An exception's text on one line: decoders and parsers write several, the command line prints one."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _floats(ds, name: str, count: int) -> tuple[float, ...] | None:
    """A multi-valued numeric attribute as floats; None when absent or empty; an error when malformed."""
    value = ds.get(name)
    if value is None or value == "":
        return None
    items = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
    try:
        values = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise DKOARError(f"{name} is not a list of numbers ({value!r})") from None
    if len(values) != count:
        raise DKOARError(f"{name} has {len(values)} values instead of {count}")
    return values


def _float(ds, name: str, default: float) -> float:
    value = ds.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DKOARError(f"{name} is not a number ({value!r})") from None


def _pixel_element(fp, transfer_syntax: str, file_size: int) -> tuple[bool, int | None, int | None]:
    """(has pixel data, value offset, value length) of the Pixel Data element at fp's position.

    pydicom's ``stop_before_pixels`` leaves the file positioned at the start of that element;
    its header is 8 (implicit VR) or 12 bytes (explicit VR, OB/OW). The length is None for
    encapsulated (compressed) data, whose length is undefined.
    """
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return False, None, None
    endian = ">" if transfer_syntax == EXPLICIT_BE else "<"
    group, element = struct.unpack(endian + "HH", head[:4])
    if (group, element) != PIXEL_DATA_TAG:
        return False, None, None
    if transfer_syntax == IMPLICIT_LE:
        (length,) = struct.unpack("<I", head[4:8])
        offset = start + 8
    elif head[4:6] in LONG_VRS and len(head) == 12:
        (length,) = struct.unpack(endian + "I", head[8:12])
        offset = start + 12
    else:
        return True, None, None
    if length == 0xFFFFFFFF or transfer_syntax not in NATIVE_SYNTAXES:
        return True, None, None
    return True, offset, length


def _item(sequence_owner, name: str):
    seq = sequence_owner.get(name) if sequence_owner is not None else None
    return seq[0] if seq else None


def _macro(per_frame, shared, name: str):
    """A functional group macro of one frame: its own if present, else the shared one (PS3.3 C.7.6.16)."""
    return _item(per_frame, name) or _item(shared, name)


def _images_of(file: Path, ds, store: PixelStore) -> list[DicomImage]:
    """The images of one dataset: one per frame for enhanced multi-frame objects."""
    sop_class = str(ds.get("SOPClassUID", ""))
    sop_uid = str(ds.get("SOPInstanceUID", ""))
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    localizer = "LOCALIZER" in image_type
    try:
        per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame_seq is not None and store.frames >= 1:
            shared = _item(ds, "SharedFunctionalGroupsSequence")
            images = []
            for n in range(store.frames):
                per_frame = per_frame_seq[n] if n < len(per_frame_seq) else None
                plane = _macro(per_frame, shared, "PlanePositionSequence")
                orient = _macro(per_frame, shared, "PlaneOrientationSequence")
                measures = _macro(per_frame, shared, "PixelMeasuresSequence")
                transform = _macro(per_frame, shared, "PixelValueTransformationSequence")
                images.append(DicomImage(
                    file, n, sop_class, sop_uid, rows, cols,
                    _floats(plane, "ImagePositionPatient", 3) if plane is not None else None,
                    _floats(orient, "ImageOrientationPatient", 6) if orient is not None else None,
                    _floats(measures, "PixelSpacing", 2) if measures is not None else None,
                    _float(transform, "RescaleSlope", 1.0) if transform is not None else 1.0,
                    _float(transform, "RescaleIntercept", 0.0) if transform is not None else 0.0,
                    localizer, store))
            return images
        return [DicomImage(file, None, sop_class, sop_uid, rows, cols,
                           _floats(ds, "ImagePositionPatient", 3), _floats(ds, "ImageOrientationPatient", 6),
                           _floats(ds, "PixelSpacing", 2), _float(ds, "RescaleSlope", 1.0),
                           _float(ds, "RescaleIntercept", 0.0), localizer, store)]
    except DKOARError as exc:
        raise DKOARError(f"{file}: {exc}") from None


def _slice_thickness(ds) -> float | None:
    try:
        if ds.get("SliceThickness") not in (None, ""):
            return float(ds.SliceThickness)
        measures = _macro(None, _item(ds, "SharedFunctionalGroupsSequence"), "PixelMeasuresSequence")
        if measures is not None and measures.get("SliceThickness") not in (None, ""):
            return float(measures.SliceThickness)
    except (TypeError, ValueError):
        pass
    return None


def read_header(file: Path):
    """(dataset without pixel data, PixelStore), or None when the file is not DICOM.

    Raises OSError when the file cannot be read and DKOARError (naming the file) when it is
    DICOM but its header cannot be parsed.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    with open(file, "rb") as fp:
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
        except InvalidDicomError:
            return None
        except (ValueError, EOFError, KeyError, TypeError, NotImplementedError, struct.error) as exc:
            raise DKOARError(f"{file}: a damaged DICOM header ({one_line(exc)})") from None
        file_size = os.fstat(fp.fileno()).st_size
        meta = getattr(ds, "file_meta", None)
        syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        if not syntax:
            implicit, little = getattr(ds, "original_encoding", (False, True))
            syntax = IMPLICIT_LE if implicit else EXPLICIT_LE if little else EXPLICIT_BE
        if syntax == DEFLATED_LE:  # pydicom inflated the file into memory: fp's position says nothing
            has_pixels, offset, length = True, None, None
        else:
            has_pixels, offset, length = _pixel_element(fp, syntax, file_size)
    try:
        store = PixelStore(
            transfer_syntax=syntax,
            bits_allocated=int(ds.get("BitsAllocated", 0) or 0),
            bits_stored=int(ds.get("BitsStored", 0) or ds.get("BitsAllocated", 0) or 0),
            signed=int(ds.get("PixelRepresentation", 0) or 0) == 1,
            samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
            photometric=str(ds.get("PhotometricInterpretation", "")),
            frames=int(ds.get("NumberOfFrames", 1) or 1),
            value_offset=offset, value_length=length, file_size=file_size, has_pixels=has_pixels)
    except (TypeError, ValueError) as exc:
        raise DKOARError(f"{file}: a malformed image pixel description ({one_line(exc)})") from None
    return ds, store


def _files_under(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.rglob("*") if p.is_file())
    except OSError as exc:
        raise DKOARError(f"{exc.filename or folder}: cannot be read ({exc.strerror or one_line(exc)})") from None


def _is_image_storage(ds) -> bool:
    """Whether the file says it is an image (CT, MR... Image Storage), so that it must hold pixel data."""
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    sop_class = str((meta.get("MediaStorageSOPClassUID") if meta is not None else None) or ds.get("SOPClassUID", ""))
    return bool(sop_class) and "Image Storage" in UID(sop_class).name


def _add_file(scan: FolderScan, file: Path) -> bool:
    """Record one file in ``scan``; False when it is not DICOM."""
    try:
        found = read_header(file)
    except OSError as exc:
        scan.unreadable.append((file, f"cannot be read ({exc.strerror or one_line(exc)})"))
        return True
    except DKOARError as exc:
        scan.unreadable.append((file, str(exc).split(": ", 1)[-1]))
        return True
    if found is None:
        scan.not_dicom += 1
        return False
    ds, store = found
    if not store.has_pixels and _is_image_storage(ds):
        scan.unreadable.append((file, "the file ends before its pixel data (truncated or damaged)"))
        return True
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    if not uid:
        scan.without_series += 1
        return True
    try:
        images = _images_of(file, ds, store)
    except DKOARError as exc:
        scan.unreadable.append((file, str(exc).split(": ", 1)[-1]))
        return True
    entry = scan.series.get(uid)
    if entry is None:
        entry = scan.series[uid] = SeriesSummary(
            uid, str(ds.get("Modality", "") or ""), str(ds.get("SeriesDescription", "") or ""),
            slice_thickness=_slice_thickness(ds), number=str(ds.get("SeriesNumber", "") or ""))
    entry.files.append(file)
    entry.images.extend(images)
    return True


def scan_dicom_folder(folder: Path | str) -> FolderScan:
    """Every DICOM file under ``folder`` (recursively, any file name), grouped by series.

    Files that are not DICOM are counted and otherwise ignored; files that cannot be read or
    whose DICOM header is damaged are listed, because one of them may be a slice of the CT.
    """
    folder = Path(folder)
    scan = FolderScan(folder, {})
    for file in _files_under(folder):
        _add_file(scan, file)
    if scan.not_dicom or scan.without_series:
        log.info("%s: %d files that are not DICOM and %d DICOM files outside any series were ignored",
                 folder, scan.not_dicom, scan.without_series)
    return scan


def scan_dicom_file(file: Path | str) -> FolderScan | None:
    """One DICOM file as a scan of its own (an enhanced multi-frame CT is a whole series); None if not DICOM."""
    file = Path(file)
    scan = FolderScan(file.parent, {})
    return scan if _add_file(scan, file) else None


def _listing(series: list[SeriesSummary]) -> str:
    return "; ".join(s.describe() for s in series)


def choose_series(scan: FolderScan, series_uid: str | None = None, allow_modality: bool = False) -> SeriesSummary:
    """The series to load: the one asked for, or the only candidate planning CT.

    Raises DKOARError, naming the folder and listing the series, when the choice is not clear.
    """
    folder = scan.folder
    if scan.unreadable:
        file, why = scan.unreadable[0]
        more = f" (and {len(scan.unreadable) - 1} more such files)" if len(scan.unreadable) > 1 else ""
        raise DKOARError(f"{file}: {why}{more}; it may be a slice of the CT, so nothing was loaded: "
                         "remove it or export the series again")
    if not scan.series:
        raise DKOARError(f"{folder}: no DICOM files found ({scan.not_dicom} other files, "
                         f"{scan.without_series} DICOM files outside any series)")
    if series_uid is not None:
        chosen = scan.series.get(series_uid)
        if chosen is None:
            raise DKOARError(f"{folder}: no series with UID {series_uid}; found: {_listing(list(scan.series.values()))}")
        _check_modality(folder, chosen, allow_modality)
        return chosen
    cts = [s for s in scan.series.values() if s.modality == "CT" and s.is_image and not s.is_localizer]
    if len(cts) == 1:
        return cts[0]
    if len(cts) > 1:
        raise DKOARError(f"{folder}: several CT series; choose one with --series UID: {_listing(cts)}")
    others = [s for s in scan.series.values() if s.is_image and not s.is_localizer and s.modality not in NOT_IMAGES]
    if allow_modality and len(others) == 1:
        return others[0]
    if allow_modality and len(others) > 1:
        raise DKOARError(f"{folder}: several image series; choose one with --series UID: {_listing(others)}")
    single = [s for s in scan.series.values() if s.modality == "CT" and s.is_image]
    if single:
        s = single[0]
        raise DKOARError(f"{s.files[0]}: only a localiser or a single slice in CT series {s.uid}; "
                         f"a CT series needs at least two slices")
    if others:
        raise DKOARError(f"{folder}: no CT series found, only {_listing(others)}; the model expects CT "
                         "(add --allow-modality to read another modality anyway)")
    found = ", ".join(sorted({s.modality or "?" for s in scan.series.values()}))
    raise DKOARError(f"{folder}: no CT series found (found modality {found})")


def _check_modality(folder: Path, series: SeriesSummary, allow_modality: bool) -> None:
    if series.modality in NOT_IMAGES or not series.is_image:
        raise DKOARError(f"{series.files[0]}: series {series.uid} is {series.modality or 'not an image'}, "
                         "not an image series to contour")
    if series.modality != "CT" and not allow_modality:
        raise DKOARError(f"{series.files[0]}: series {series.uid} is {series.modality or 'of unknown modality'}, "
                         "not CT; the model expects CT in Hounsfield units (add --allow-modality to read it anyway)")


def series_listing(scan: FolderScan) -> list[str]:
    """Lines for ``dkoar series``: one per series (UID, modality, slices, thickness, description),
    the series ``dkoar segment`` would take by itself marked, then what the scan set aside."""
    try:
        default = choose_series(scan).uid
    except DKOARError:
        default = None
    lines = [f"{'SeriesInstanceUID':<64}  {'modality':<8}  {'slices':>6}  {'thickness':>9}  description"]
    for s in sorted(scan.series.values(), key=lambda s: (s.modality != "CT", s.uid)):
        if s.uid == default:
            note = "  <- taken by default"
        elif not s.is_image:
            note = "  (not an image)"
        elif s.is_localizer:
            note = "  (localiser or single slice)"
        else:
            note = ""
        thickness = f"{s.slice_thickness:g} mm" if s.slice_thickness else "?"
        slices = str(s.slices) if s.is_image else "-"
        if not s.is_image:
            thickness = "-"
        lines.append(f"{s.uid:<64}  {s.modality or '?':<8}  {slices:>6}  {thickness:>9}  "
                     f"{s.description or '(no description)'}{note}")
    if not scan.series:
        lines.append("(no DICOM series)")
    elif default is None:
        lines.append("no single CT series to take by default: dkoar segment needs --series UID "
                     "(and --allow-modality for another modality than CT)")
    lines.append(f"{scan.not_dicom} files that are not DICOM ignored; {scan.without_series} DICOM files "
                 f"outside any series (DICOMDIR and the like)")
    for file, why in scan.unreadable:
        lines.append(f"cannot use {file}: {why}")
    return lines

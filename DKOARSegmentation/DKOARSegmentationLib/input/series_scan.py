"""Finding the DICOM series in a folder as a hospital exports it, and choosing the planning CT.

A folder from a scanner, a PACS or a planning system mixes series (the planning CT, localisers,
an RTSTRUCT, a plan, a dose, sometimes an MR), names files without extension and holds other
files (DICOMDIR, notes, thumbnails). Every file's header is read once (``dicom_headers``) and
kept as a small record per image.

Choosing: one CT series beside localisers (ImageType LOCALIZER or a single slice), RTSTRUCT,
RTPLAN or RTDOSE is taken by itself; several candidate CT series need the user's choice
(``--series``); another modality is read only when the user allows it (``--allow-modality``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DKOARError
from .dicom_headers import DicomImage, images_of, one_line, read_header, slice_thickness

log = logging.getLogger(__name__)

# never an image to contour, whatever the user allows
NOT_IMAGES = {"RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "RTIMAGE", "SEG", "SR", "KO", "PR", "REG", "RWV",
              "DOC", "PLAN", "FID", "RESP", "ECG", "AU"}


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
    without_series_uid: list[Path] = field(default_factory=list)  # images whose SeriesInstanceUID is empty
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (file, why): cannot be opened or parsed



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
        scan.unreadable.append((file, "an image without pixel data (no PixelData element: stored without its "
                                      "image, or cut off before it)"))
        return True
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if not uid:
        if _is_image_storage(ds):
            scan.without_series_uid.append(file)
        else:
            scan.without_series += 1
        return True
    try:
        images = images_of(file, ds, store)
    except DKOARError as exc:
        scan.unreadable.append((file, str(exc).split(": ", 1)[-1]))
        return True
    entry = scan.series.get(uid)
    if entry is None:
        entry = scan.series[uid] = SeriesSummary(
            uid, str(ds.get("Modality", "") or ""), str(ds.get("SeriesDescription", "") or ""),
            slice_thickness=slice_thickness(ds), number=str(ds.get("SeriesNumber", "") or ""))
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
    if scan.not_dicom or scan.without_series or scan.without_series_uid:
        log.info("%s: %d files that are not DICOM and %d DICOM files outside any series were ignored",
                 folder, scan.not_dicom, scan.without_series + len(scan.without_series_uid))
    return scan


def scan_dicom_files(folder: Path | str, files) -> FolderScan:
    """The given DICOM files (e.g. one series found by an earlier scan), grouped by series as
    ``scan_dicom_folder`` groups them; ``folder`` names the scan in messages."""
    scan = FolderScan(Path(folder), {})
    for file in files:
        _add_file(scan, Path(file))
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
    if not scan.series and scan.without_series_uid:
        raise DKOARError(f"{folder}: its {len(scan.without_series_uid)} DICOM images have an empty "
                         f"SeriesInstanceUID (0020,000E) (e.g. {scan.without_series_uid[0].name}), so they form no "
                         "series that can be told apart from others; give them one UID (dcmtk: dcmodify -i "
                         "\"(0020,000E)=<a new UID>\" on the series' files) or export the series again")
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
    if scan.without_series_uid:
        lines.append(f"{len(scan.without_series_uid)} DICOM images with an empty SeriesInstanceUID (0020,000E), in "
                     f"no series (e.g. {scan.without_series_uid[0]}): give them one UID to read them")
    for file, why in scan.unreadable:
        lines.append(f"cannot use {file}: {why}")
    return lines

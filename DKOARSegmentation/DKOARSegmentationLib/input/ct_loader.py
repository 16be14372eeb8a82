"""Loading a planning CT into a Volume: a DICOM series folder, or a NIfTI / NRRD / MHA file.

A DICOM series is read in five steps, each refusing with one DKOARError that names the file and
the problem rather than guessing:

1. ``series_scan.scan_dicom_folder`` reads every header once (never the pixels) and
   ``choose_series`` picks the CT (or the one the user named);
2. everything the headers tell is checked before any voxel is allocated: geometry attributes
   present, one orientation, size and pixel spacing, a decoder for the transfer syntax, native
   pixel data as long as the image needs (a truncated file), the memory the volume needs;
3. slices are ordered by the projection of ImagePositionPatient on the slice normal (never by
   InstanceNumber or file name); exact duplicates (same SOPInstanceUID, or identical pixels at one
   position) are collapsed, two different images at one position are refused, and positions off
   the normal (gantry tilt, shear) are refused with the angle;
4. the volume is allocated once and filled slice by slice: native pixel data are read straight
   from their byte offset in the file, compressed data (JPEG Lossless, JPEG-LS, JPEG 2000, RLE) go
   through pydicom's decoders (pylibjpeg plugins); RescaleSlope/Intercept are applied per slice;
5. each slice's own SOP identity and ImagePositionPatient are kept for export.

Missing slices and irregular spacing: the voxel array holds the real slices only, in order, and
the affine's slice axis uses the median slice spacing. The voxel grid (and the NIfTI/.seg.nrrd
made on it) is therefore exact only where the spacing is regular; the RTSTRUCT is exact
everywhere because it puts every contour on its own slice's ImagePositionPatient (kept in
``Volume.dicom.slices``). A warning names the gap. Inventing a slice to fill the gap is not done:
it has no SOP instance an RTSTRUCT could reference.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DKOARError
from ..volume import DicomSeriesInfo, SliceReference, Volume
from .dicom_headers import DicomImage, inflated_frames, one_line, read_header
from .series_scan import FolderScan, SeriesSummary, choose_series, scan_dicom_file, scan_dicom_folder

log = logging.getLogger(__name__)

__all__ = ["FolderScan", "FrameReference", "SeriesSummary", "available_memory", "load_ct", "load_dicom_ct",
           "load_dicom_series", "load_image_file", "load_series", "require_dicom", "scan_dicom_folder"]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
SAME_POSITION_MM = 1e-3  # closer slices are at one position
OFF_NORMAL_MM = 0.05  # slice positions further than this from the normal through the first: tilted or sheared
MEMORY_MARGIN = 1.5  # the volume may take at most 1/1.5 of the memory available when loading starts


@dataclass(frozen=True)
class FrameReference(SliceReference):
    """A slice that is one frame of an enhanced multi-frame object (1-based ``frame_number``)."""

    frame_number: int = 1


def load_ct(path: Path | str, series_uid: str | None = None, *, allow_modality: bool = False) -> Volume:
    """The CT at ``path``: a folder of DICOM files, one (enhanced multi-frame) DICOM file, or an image file.

    ``allow_modality`` lets a series of another modality than CT (MR, PT) be read; the model
    expects Hounsfield units, so this is for research use.
    """
    path = Path(path)
    if not path.exists():
        raise DKOARError(f"{path}: no such file or folder")
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        raise DKOARError(f"{path}: cannot be read (permission denied)")
    if path.is_dir():
        return load_dicom_series(path, series_uid, allow_modality=allow_modality)
    if path.name.lower().endswith(IMAGE_SUFFIXES):
        return load_image_file(path)
    return _load_dicom_file(path, series_uid, allow_modality)


def require_dicom(ct: Volume, what: str, source: Path | str) -> Volume:
    """``ct`` when it came from DICOM; refused otherwise, since ``what`` (an RTSTRUCT, a DICOM SEG,
    a logged case) references the DICOM series and slices it was drawn on."""
    if ct.dicom is None:
        raise DKOARError(f"{source}: {what} references the DICOM CT it was drawn on; give the CT's DICOM folder "
                         "(or load the CT from DICOM)")
    return ct


def load_dicom_ct(path: Path | str, series_uid: str | None = None, what: str = "an RTSTRUCT") -> Volume:
    """The DICOM CT at ``path`` that ``what`` references (see ``require_dicom``)."""
    return require_dicom(load_ct(path, series_uid), what, path)


def load_image_file(path: Path) -> Volume:
    import SimpleITK as sitk

    from ..output.label_maps import affine_from_sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DKOARError(f"{path}: cannot read the image ({str(exc).strip().splitlines()[-1]})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DKOARError(f"{path}: a CT must be a 3D single-channel image")
    voxels = sitk.GetArrayFromImage(image)
    if not np.issubdtype(voxels.dtype, np.integer):
        voxels = voxels.astype(np.float32)
    return Volume(voxels, affine_from_sitk(image), None, str(path))


def _load_dicom_file(path: Path, series_uid: str | None, allow_modality: bool) -> Volume:
    """A single DICOM file given as input: an enhanced multi-frame CT (a single slice is refused)."""
    scan = scan_dicom_file(path)
    if scan is None:
        raise DKOARError(f"{path}: not a DICOM folder nor a NIfTI, NRRD or MHA image")
    if series_uid is None and len(scan.series) == 1:
        series_uid = next(iter(scan.series))
    return load_series(choose_series(scan, series_uid, allow_modality), str(path))


def load_dicom_series(folder: Path, series_uid: str | None = None, allow_modality: bool = False) -> Volume:
    scan = scan_dicom_folder(folder)
    series = choose_series(scan, series_uid, allow_modality)
    return load_series(series, str(folder))


def load_series(series: SeriesSummary, source: str) -> Volume:
    """Check, order and read one series into a Volume (see the module docstring)."""
    images = _without_localizers(series)
    for image in {id(im.store): im for im in images}.values():  # once per file
        _check_pixels_readable(image)
    normal = _check_same_grid(images)
    images = _ordered_unique(images, normal)
    if len(images) < 2:
        raise DKOARError(f"{images[0].label}: a CT series needs at least two slices, found one distinct slice")
    _check_along_normal(images, normal)
    positions = np.array([float(np.dot(im.position, normal)) for im in images])
    spacing_z = _slice_spacing(positions, source)
    dtype = _output_dtype(images)
    rows, cols = images[0].rows, images[0].columns
    _check_memory(len(images), rows, cols, dtype, source, series.uid)
    voxels = np.empty((len(images), rows, cols), dtype=dtype)
    _fill(voxels, images)

    first = images[0]
    row_dir, col_dir = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)  # IOP is rounded text
    affine = np.eye(4)
    affine[:3, 0] = row_dir * first.pixel_spacing[1]
    affine[:3, 1] = col_dir * first.pixel_spacing[0]
    affine[:3, 2] = normal * spacing_z
    affine[:3, 3] = first.position
    header = read_header(first.file)[0]
    slices = tuple(_reference(im) for im in images)
    return Volume(voxels, affine, DicomSeriesInfo(header=header, slices=slices), source)


def _reference(image: DicomImage) -> SliceReference:
    position = tuple(float(v) for v in image.position)
    if image.frame is not None:
        return FrameReference(image.sop_class_uid, image.sop_instance_uid, position, image.frame + 1)
    return SliceReference(image.sop_class_uid, image.sop_instance_uid, position)


def _without_localizers(series: SeriesSummary) -> list[DicomImage]:
    """The series' images less localisers some scanners store in the CT series itself."""
    images = [im for im in series.images if not im.localizer]
    if len(images) < len(series.images):
        log.info("series %s: %d localiser images left out", series.uid, len(series.images) - len(images))
    if len(images) < 2:
        file = (images or series.images)[0].label
        raise DKOARError(f"{file}: a CT series needs at least two slices, found {len(images)} in series {series.uid}")
    return images


def _check_pixels_readable(image: DicomImage) -> None:
    """Refuse, from the header alone, pixel data this loader cannot turn into one CT slice."""
    store = image.store
    if not store.has_pixels:
        raise DKOARError(f"{image.file}: no pixel data (no PixelData element: an image object without its image, "
                         "or a file cut off before it); export the series again")
    if store.samples_per_pixel != 1:
        raise DKOARError(f"{image.file}: a colour image (SamplesPerPixel {store.samples_per_pixel}), not a CT slice")
    if store.bits_allocated not in (8, 16, 32):
        raise DKOARError(f"{image.file}: {store.bits_allocated} bits per pixel; a CT slice has 8, 16 or 32")
    if image.rows <= 0 or image.columns <= 0:
        raise DKOARError(f"{image.file}: Rows or Columns is missing")
    if store.frames > 1 and image.frame is None:
        raise DKOARError(f"{image.file}: a multi-frame image without per-frame positions "
                         "(PerFrameFunctionalGroupsSequence); it cannot be read as a CT series")
    if store.native or store.deflated:
        need = image.rows * image.columns * store.bits_allocated // 8 * store.frames
        have = min(store.value_length or 0, store.file_size - (store.value_offset or store.file_size))
        if store.deflated:  # counted in inflated bytes, which the file's size does not bound
            have = store.value_length or 0
        if store.value_offset is None or have < need:
            raise DKOARError(f"{image.file}: the file is truncated or damaged: its pixel data hold {max(have, 0)} "
                             f"bytes where {image.rows}x{image.columns} pixels need {need}; copy it again from the source")
        return
    _check_decoder(image)


def _check_decoder(image: DicomImage) -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    uid = UID(image.store.transfer_syntax)
    name = uid.name if uid.is_transfer_syntax else f"an unknown transfer syntax {uid}"
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise DKOARError(f"{image.file}: its pixel data are encoded as {name}, which no installed decoder reads; "
                         "export the series uncompressed (or as JPEG Lossless, JPEG-LS, JPEG 2000 or RLE)") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise DKOARError(f"{image.file}: its pixel data are compressed as {name} and no decoder for it is installed "
                         f"({missing}); reinstall dkoar-segmentation with its dependencies")


def _vector(image: DicomImage, name: str):
    value = getattr(image, {"ImagePositionPatient": "position", "ImageOrientationPatient": "orientation",
                            "PixelSpacing": "pixel_spacing"}[name])
    if value is None:
        raise DKOARError(f"{image.label}: {name} is missing; the slice's geometry is unknown")
    return np.asarray(value, dtype=float)


def _check_same_grid(images: list[DicomImage]) -> np.ndarray:
    """The slice normal, after checking every slice has the first one's orientation, size and spacing."""
    first = images[0]
    iop = _vector(first, "ImageOrientationPatient")
    row_dir, col_dir = iop[:3], iop[3:]
    if (abs(np.linalg.norm(row_dir) - 1) > 1e-3 or abs(np.linalg.norm(col_dir) - 1) > 1e-3
            or abs(float(row_dir @ col_dir)) > 1e-3):
        raise DKOARError(f"{first.label}: ImageOrientationPatient is not two perpendicular unit vectors ({iop.tolist()})")
    spacing = _vector(first, "PixelSpacing")
    if np.any(spacing <= 0):
        raise DKOARError(f"{first.label}: PixelSpacing must be positive ({spacing.tolist()})")
    for image in images:
        _vector(image, "ImagePositionPatient")
        if not np.allclose(_vector(image, "ImageOrientationPatient"), iop, atol=1e-4):
            raise DKOARError(f"{image.label}: its orientation {list(image.orientation)} differs from the series' "
                             f"{iop.tolist()} ({first.label}); one series must have one orientation")
        if (image.rows, image.columns) != (first.rows, first.columns):
            raise DKOARError(f"{image.label}: its size {image.rows}x{image.columns} differs from the series' "
                             f"{first.rows}x{first.columns} ({first.label})")
        if not np.allclose(_vector(image, "PixelSpacing"), spacing, rtol=1e-4, atol=1e-4):
            raise DKOARError(f"{image.label}: its pixel spacing {list(image.pixel_spacing)} mm differs from the "
                             f"series' {spacing.tolist()} mm ({first.label})")
        if image.store.bits_allocated != first.store.bits_allocated:
            raise DKOARError(f"{image.label}: {image.store.bits_allocated} bits per pixel where the series has "
                             f"{first.store.bits_allocated}")
    normal = np.cross(row_dir, col_dir)
    return normal / np.linalg.norm(normal)


def _ordered_unique(images: list[DicomImage], normal: np.ndarray) -> list[DicomImage]:
    """Images sorted along the normal, exact duplicates collapsed; different images at one position refused."""
    keyed = sorted(((float(np.dot(im.position, normal)), im.label, im) for im in images), key=lambda e: e[:2])
    by_uid: dict[tuple[str, int | None], DicomImage] = {}
    kept: list[DicomImage] = []
    kept_pos: list[float] = []
    for pos, _, image in keyed:
        key = (image.sop_instance_uid, image.frame)
        same_uid = by_uid.get(key)
        if same_uid is not None and abs(float(np.dot(same_uid.position, normal)) - pos) > SAME_POSITION_MM:
            raise DKOARError(f"{image.label}: SOPInstanceUID {image.sop_instance_uid} is also used by "
                             f"{same_uid.label} at another position; the series is inconsistent")
        if kept and abs(pos - kept_pos[-1]) <= SAME_POSITION_MM:
            other = kept[-1]
            if same_uid is not None or _same_pixels(image, other):
                log.info("%s: a duplicate of %s, left out", image.label, other.label)
                continue
            raise DKOARError(f"{image.label}: a different image at the same position ({pos:.2f} mm along the normal) "
                             f"as {other.label}; the folder mixes two acquisitions: choose one with --series "
                             "or remove the other")
        by_uid[key] = image
        kept.append(image)
        kept_pos.append(pos)
    return kept


def _same_pixels(a: DicomImage, b: DicomImage) -> bool:
    if (a.slope, a.intercept) != (b.slope, b.intercept):
        return False
    return bool(np.array_equal(_read_one(a), _read_one(b)))


def _read_one(image: DicomImage) -> np.ndarray:
    return [np.array(frame) for frame in _read_frames(image.file, [image])][0]


def _check_along_normal(images: list[DicomImage], normal: np.ndarray) -> None:
    """Refuse a gantry-tilted or sheared series: positions must lie on the normal through the first."""
    positions = np.array([im.position for im in images], dtype=float)
    offsets = positions - positions[0]
    along = offsets @ normal
    off = np.linalg.norm(offsets - np.outer(along, normal), axis=1)
    j = int(np.argmax(off))
    if off[j] > OFF_NORMAL_MM:
        angle = math.degrees(math.atan2(off[j], abs(along[j])))
        raise DKOARError(f"{images[j].label}: the slice positions are not along the slice normal: the series is "
                         f"gantry-tilted or sheared by {angle:.1f} degrees ({off[j]:.2f} mm sideways over "
                         f"{abs(along[j]):.1f} mm); reconstruct it without tilt or resample it before contouring")


def _slice_spacing(positions: np.ndarray, source: str) -> float:
    """The median gap between slices; missing slices and irregular spacing are warned about, not hidden."""
    gaps = np.diff(positions)
    spacing = float(np.median(gaps))
    missing = gaps > 1.5 * spacing
    if np.any(missing):
        count = int(sum(round(g / spacing) - 1 for g in gaps[missing]))
        k = int(np.argmax(missing))
        log.warning("%s: %d slice%s missing (first gap %.2f mm after the slice at %.2f mm where the series' spacing "
                    "is %.2f mm); the voxel grid keeps the %d real slices at %.2f mm, so the NIfTI and .seg.nrrd are "
                    "shifted beyond the gap, while the RTSTRUCT puts each contour on its own slice",
                    source, count, "s" if count != 1 else "", gaps[k], positions[k], spacing, len(positions), spacing)
    elif np.max(np.abs(gaps - spacing)) > 0.01 * spacing:
        log.warning("%s: irregular slice spacing (%.3f to %.3f mm); the voxel grid uses the median %.3f mm, the "
                    "RTSTRUCT keeps each slice's own position", source, gaps.min(), gaps.max(), spacing)
    return spacing


def _output_dtype(images: list[DicomImage]) -> np.dtype:
    """int16 when every slice's rescale is integral (exact HU), float32 otherwise."""
    integral = all(float(im.slope).is_integer() and float(im.intercept).is_integer() for im in images)
    return np.dtype(np.int16 if integral else np.float32)


def available_memory() -> int:
    """Bytes of memory available now; the loader checks the volume fits before allocating it."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency; keep working without it
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return int(psutil.virtual_memory().available)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _check_memory(slices: int, rows: int, cols: int, dtype: np.dtype, source: str, uid: str) -> None:
    need = slices * rows * cols * np.dtype(dtype).itemsize
    available = available_memory()
    if need * MEMORY_MARGIN > available:
        raise DKOARError(f"{source}: series {uid} is too large for the memory available: {slices} slices of "
                         f"{rows}x{cols} need {_gib(need)}, only {_gib(available)} is free; close other programs, "
                         "use a machine with more memory or choose a smaller series")


def _stored_dtype(image: DicomImage) -> np.dtype:
    store = image.store
    kind = "i" if store.signed else "u"
    return np.dtype(f"{'>' if store.big_endian else '<'}{kind}{store.bits_allocated // 8}")


def _mask_unused_bits(stored: np.ndarray, image: DicomImage) -> np.ndarray:
    """Native data keep only BitsStored bits (old scanners put overlays in the high bits), sign-extended."""
    store = image.store
    unused = store.bits_allocated - store.bits_stored
    if unused <= 0 or store.bits_stored <= 0:
        return stored
    if store.signed:
        return (stored << unused) >> unused
    return stored & np.array((1 << store.bits_stored) - 1, dtype=stored.dtype)


def _read_frames(file: Path, images: list[DicomImage]):
    """Yield the stored values of ``images`` (all from ``file``), in the order given.

    Native data are read from their byte offset into one reused buffer (the array yielded is only
    valid until the next one); compressed data are decoded by pydicom, a multi-frame file once.
    """
    store = images[0].store
    rows, cols = images[0].rows, images[0].columns
    if store.deflated:
        dtype = _stored_dtype(images[0])
        frames = inflated_frames(file, store.value_offset, rows * cols * dtype.itemsize, [im.frame for im in images])
        for image in images:
            yield _mask_unused_bits(np.frombuffer(frames[image.frame or 0], dtype).reshape(rows, cols), image)
        return
    if store.native:
        dtype = _stored_dtype(images[0])
        frame_bytes = rows * cols * dtype.itemsize
        buffer = bytearray(frame_bytes)
        try:
            with open(file, "rb") as fh:
                for image in images:
                    fh.seek(store.value_offset + (image.frame or 0) * frame_bytes)
                    if fh.readinto(buffer) != frame_bytes:
                        raise DKOARError(f"{image.label}: the file is truncated: its pixel data are too short")
                    yield _mask_unused_bits(np.frombuffer(buffer, dtype).reshape(rows, cols), image)
        except OSError as exc:
            raise DKOARError(f"{file}: cannot be read ({exc.strerror or one_line(exc)})") from None
        return
    from pydicom.pixels import iter_pixels

    indices = sorted({image.frame or 0 for image in images})
    decoded: dict[int, np.ndarray] = {}
    try:
        # from the path pydicom reads only what it decodes
        for index, frame in zip(indices, iter_pixels(str(file), indices=indices)):
            decoded[index] = frame
    except Exception as exc:  # decoders raise many types (ValueError, RuntimeError, their own) on damaged data
        raise DKOARError(f"{file}: cannot decode the pixel data ({type(exc).__name__}: {one_line(exc)})") from None
    for image in images:
        frame = decoded.get(image.frame or 0)
        if frame is None or frame.shape != (rows, cols):
            raise DKOARError(f"{image.label}: the decoded pixel data are not one {rows}x{cols} image")
        yield frame


def _rescale_into(out: np.ndarray, stored: np.ndarray, image: DicomImage) -> int:
    """Write stored * slope + intercept into ``out``; the number of values clipped to int16."""
    if out.dtype == np.float32:
        np.multiply(stored, np.float32(image.slope), out=out, casting="unsafe")
        out += np.float32(image.intercept)
        return 0
    slope, intercept = int(image.slope), int(image.intercept)
    lo, hi = int(stored.min()) * slope + intercept, int(stored.max()) * slope + intercept
    if slope == 1 and -32768 <= min(lo, hi) and max(lo, hi) <= 32767:
        np.add(stored, np.int32(intercept), out=out, casting="unsafe")  # computed in int32 or wider, fits int16
        return 0
    wide = stored.astype(np.int64) * slope + intercept
    clipped = int(np.count_nonzero((wide < -32768) | (wide > 32767)))
    out[...] = np.clip(wide, -32768, 32767)
    return clipped


def _fill(voxels: np.ndarray, images: list[DicomImage]) -> None:
    """Read every slice into its place in the preallocated volume, one file at a time."""
    by_file: dict[Path, list[int]] = defaultdict(list)
    for k, image in enumerate(images):
        by_file[image.file].append(k)
    clipped = 0
    for file, ks in by_file.items():
        for k, stored in zip(ks, _read_frames(file, [images[k] for k in ks])):
            clipped += _rescale_into(voxels[k], stored, images[k])
    if clipped:
        log.warning("%s and others: %d values beyond the int16 range were clipped", images[0].file, clipped)

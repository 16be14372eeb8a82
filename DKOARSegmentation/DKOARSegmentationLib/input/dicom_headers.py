"""Reading one DICOM file's header, without its pixel data, into what the loader needs.

Each image (each frame of an enhanced multi-frame object) becomes a ``DicomImage``: geometry,
rescale, and a ``PixelStore`` saying how and where the file keeps its pixels, so that the loader
never parses a header twice and can check a whole series before it allocates the volume.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import DKOARError

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
NATIVE_SYNTAXES = (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE)
PIXEL_DATA_TAG = (0x7FE0, 0x0010)
# explicit VR elements whose length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2)
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
# what a deflated file may inflate to before its pixel data: a header is kilobytes; more is a
# damaged file or a deflate bomb (megabytes on disk, gigabytes inflated)
MAX_INFLATED_HEADER = 64 * 2**20


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
    def deflated(self) -> bool:
        """Deflated explicit VR little endian: native pixel data inside a zlib stream, whose
        ``value_offset`` counts inflated bytes from the start of the dataset (``InflatedStream``)."""
        return self.transfer_syntax == DEFLATED_LE

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


def images_of(file: Path, ds, store: PixelStore) -> list[DicomImage]:
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


def slice_thickness(ds) -> float | None:
    try:
        if ds.get("SliceThickness") not in (None, ""):
            return float(ds.SliceThickness)
        measures = _macro(None, _item(ds, "SharedFunctionalGroupsSequence"), "PixelMeasuresSequence")
        if measures is not None and measures.get("SliceThickness") not in (None, ""):
            return float(measures.SliceThickness)
    except (TypeError, ValueError):
        pass
    return None


class InflatedStream:
    """The dataset of a deflated file (PS3.5 A.5), inflated as it is read, for pydicom's dataset
    reader or the pixel reader: never more than ``limit`` bytes from the dataset's start are
    inflated, so a file that inflates to gigabytes is refused rather than held in memory (pydicom
    itself inflates a whole deflated file before reading its first element)."""

    def __init__(self, fp, file: Path, limit: int = MAX_INFLATED_HEADER):
        self._fp, self._file, self.limit = fp, file, limit
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._data = bytearray()
        self._base = 0  # stream offset of self._data[0]; what lies before was forgotten
        self._pos = 0
        self._done = False

    def _inflate_to(self, end: int) -> None:
        while self._base + len(self._data) < end and not self._done:
            have = self._base + len(self._data)
            if have >= self.limit:
                raise DKOARError(f"{self._file}: its deflated data inflate to more than {self.limit / 2**20:g} MiB "
                                 "before the pixel data; a damaged file or a deflate bomb, so it is not read")
            source = self._inflater.unconsumed_tail or self._fp.read(1 << 16)
            if not source:
                self._done = True
                break
            try:
                self._data += self._inflater.decompress(source, min(1 << 20, self.limit - have + 1))
            except zlib.error as exc:
                raise DKOARError(f"{self._file}: its deflated data are damaged ({one_line(exc)}); copy it again "
                                 "from the source") from None
            self._done = self._inflater.eof

    def read(self, size: int | None = -1) -> bytes:
        end = self.limit + 1 if size is None or size < 0 else self._pos + size
        self._inflate_to(end)
        chunk = bytes(self._data[self._pos - self._base:end - self._base])
        self._pos += len(chunk)
        return chunk

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self._pos + offset if whence == 1 else None
        if target is None or target < self._base:
            raise OSError(f"{self._file}: cannot seek there in a deflated stream")
        self._pos = target
        return target

    def forget(self) -> None:
        """Drop what was read: a reader going on keeps what it reads next, not the whole file."""
        del self._data[:self._pos - self._base]
        self._base = self._pos


def _file_meta(fp) -> tuple[int, str]:
    """(offset of the dataset, TransferSyntaxUID) after the preamble and the file meta group
    (group 0002, explicit VR little endian, PS3.10 7.1) of the file open as ``fp``; read without
    pydicom, which would inflate a deflated file whole."""
    fp.seek(0)
    position = 132 if fp.read(132)[128:132] == b"DICM" else 0
    syntax = ""
    while True:
        fp.seek(position)
        head = fp.read(8)
        if len(head) < 8 or struct.unpack("<H", head[:2])[0] != 2:
            return position, syntax
        if head[4:6] in LONG_VRS:
            extra = fp.read(4)
            header, length = 12, (struct.unpack("<I", extra)[0] if len(extra) == 4 else 0)
        else:
            header, length = 8, struct.unpack("<H", head[6:8])[0]
        if struct.unpack("<H", head[2:4])[0] == 0x0010 and length < 256:
            syntax = fp.read(length).decode("ascii", "replace").strip("\0 ")
        position += header + length


def open_inflated(fp, file: Path, limit: int = MAX_INFLATED_HEADER) -> InflatedStream:
    """The inflated dataset of the deflated DICOM file open as ``fp``, from its first element."""
    fp.seek(_file_meta(fp)[0])
    return InflatedStream(fp, file, limit)


def inflated_frames(file: Path, value_offset: int, frame_bytes: int, frames: list[int | None]) -> dict[int, bytes]:
    """Frame index -> stored bytes of the ``frames`` of a deflated file whose native pixel data
    start ``value_offset`` inflated bytes into its dataset: inflated as read, up to the last frame
    needed, keeping only the frames."""
    wanted = sorted({frame or 0 for frame in frames})
    out: dict[int, bytes] = {}
    try:
        with open(file, "rb") as fp:
            stream = open_inflated(fp, file, limit=value_offset + (wanted[-1] + 1) * frame_bytes)
            for index in wanted:
                stream.seek(value_offset + index * frame_bytes)
                out[index] = stream.read(frame_bytes)
                if len(out[index]) != frame_bytes:
                    raise DKOARError(f"{file}: the file is truncated: its pixel data are too short")
                stream.forget()
    except OSError as exc:
        raise DKOARError(f"{file}: cannot be read ({exc.strerror or one_line(exc)})") from None
    return out


def _at_pixel_data(tag, vr, length) -> bool:
    return tag in (0x7FE00010, 0x7FE00009, 0x7FE00008)


def _read_deflated(file: Path, fp):
    """(dataset without pixel data, pixel element) of a deflated file, inflated only up to its pixel
    data (``InflatedStream``); the pixel element's offset counts inflated bytes."""
    from pydicom.dataset import FileDataset
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import read_dataset, read_file_meta_info

    try:
        meta = read_file_meta_info(file)
        stream = open_inflated(fp, file)
        dataset = read_dataset(stream, False, True, stop_when=_at_pixel_data)
    except (InvalidDicomError, ValueError, EOFError, KeyError, TypeError, NotImplementedError, struct.error) as exc:
        raise DKOARError(f"{file}: a damaged DICOM header ({one_line(exc)})") from None
    ds = FileDataset(str(file), dataset, None, meta, is_implicit_VR=False, is_little_endian=True)
    ds.set_original_encoding(False, True, dataset._character_set)
    return ds, _pixel_element(stream, EXPLICIT_LE, 1 << 62)


def read_header(file: Path):
    """(dataset without pixel data, PixelStore), or None when the file is not DICOM.

    Raises OSError when the file cannot be read and DKOARError (naming the file) when it is
    DICOM but its header cannot be parsed.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    with open(file, "rb") as fp:
        file_size = os.fstat(fp.fileno()).st_size
        deflated = _file_meta(fp)[1] == DEFLATED_LE
        fp.seek(0)
        if deflated:
            ds, (has_pixels, offset, length) = _read_deflated(file, fp)
            syntax = DEFLATED_LE
        else:
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True)
            except InvalidDicomError:
                return None
            except (ValueError, EOFError, KeyError, TypeError, NotImplementedError, struct.error) as exc:
                raise DKOARError(f"{file}: a damaged DICOM header ({one_line(exc)})") from None
            meta = getattr(ds, "file_meta", None)
            syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
            if not syntax:
                implicit, little = getattr(ds, "original_encoding", (False, True))
                syntax = IMPLICIT_LE if implicit else EXPLICIT_LE if little else EXPLICIT_BE
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

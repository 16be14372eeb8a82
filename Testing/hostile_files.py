"""Files a hostile but fair tester brings: RTSTRUCTs damaged one element at a time, DICOM that is
deflated, cut short or inflates to gigabytes, and the real third-party files in ../shared/realdata."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian

REPO = Path(__file__).resolve().parent.parent
# a checkout elsewhere has no shared folder beside it: the tests that need it skip there
REALDATA = Path(os.environ.get("DKOAR_REALDATA", REPO.parent / "shared" / "realdata"))


def realdata(*parts: str) -> Path:
    """A file or folder of the real third-party corpus (see its ATTRIBUTION.md); skips when absent."""
    path = REALDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the real DICOM corpus lies in ../shared/realdata beside the repository)")
    return path


def damaged_rtstruct(source: Path, target: Path, change) -> Path:
    """A copy of the RTSTRUCT ``source`` with ``change(dataset)`` applied, written as it is (no
    validation: the point is a file a careless or broken writer would make)."""
    ds = pydicom.dcmread(source)
    change(ds)
    ds.save_as(target, enforce_file_format=False)
    return target


def set_raw(item, keyword: str, vr: str, text: str) -> None:
    """Store ``text`` as the encoded value of ``keyword`` in ``item``, whatever it says (NaN, letters)."""
    value = text.encode("ascii")
    value += b" " if len(value) % 2 else b""
    item[Tag(keyword)] = RawDataElement(Tag(keyword), vr, len(value), value, 0, False, True)


def first_contour(ds, roi: int = 0):
    return ds.ROIContourSequence[roi].ContourSequence[0]


def deflate(ds: pydicom.Dataset, path: Path) -> Path:
    """Write ``ds`` (with its file meta) in the deflated transfer syntax."""
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


_ZEROS = 16 * 2**20


def deflate_bomb(template: Path, path: Path, gib: int = 2, where: str = "pixels") -> Path:
    """A deflated copy of the CT slice ``template`` of about 1 MB per GiB that inflates by ``gib`` GiB of
    zeros: its pixel data (``where="pixels"``) or a private element before them (``"header"``).

    The zeros are one deflate block repeated: after a full flush the compressor starts afresh, so
    the same 16 MiB of input compresses to the same bytes each time (made in a fraction of a second)."""
    ds = pydicom.dcmread(template)
    rows, columns = int(ds.Rows), int(ds.Columns)
    del ds.PixelData
    if where == "header":
        ds.add_new(0x00090010, "LO", "DKOAR TEST")
    length = gib * 2**30
    # the file meta, as pydicom writes it for the deflated syntax (it is never compressed)
    path.parent.mkdir(parents=True, exist_ok=True)
    deflate(ds, path)
    head = path.read_bytes()
    (group_length,) = struct.unpack("<I", head[140:144])
    meta = head[:144 + group_length]
    # the dataset before the big element, as explicit VR little endian
    plain = pydicom.Dataset()
    plain.update(ds)
    body = io.BytesIO()
    pydicom.dcmwrite(body, plain, implicit_vr=False, little_endian=True)
    body.write(struct.pack("<HH2sHI", *((0x0009, 0x1000, b"OB") if where == "header" else (0x7FE0, 0x0010, b"OW")),
                           0, length))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = compressor.compress(body.getvalue()) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(_ZEROS)) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = b""
    if where == "header":  # then a proper PixelData
        end = compressor.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, rows * columns * 2)
                                  + bytes(rows * columns * 2))
    end += compressor.flush()
    with open(path, "wb") as handle:
        handle.write(meta + start)
        for _ in range(length // _ZEROS):
            handle.write(block)
        handle.write(end)
    return path

"""Hostile DICOM beside a good CT: deflated files cut short or damaged, deflate bombs (megabytes that
inflate to gigabytes), images without pixel data, a series with an empty SeriesInstanceUID. Each is
named in one line; none crashes a command or fills the memory."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pydicom
import pytest

import Testing.dicom_factory as fac
from DKOARSegmentationLib.cli import main
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.input.ct_loader import load_ct
from DKOARSegmentationLib.input.dicom_headers import MAX_INFLATED_HEADER, read_header
from DKOARSegmentationLib.input.series_scan import scan_dicom_folder
from Testing.hostile_files import deflate, deflate_bomb, realdata


def _one_line_error(capsys, code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def _deflated_series(folder, n=4):
    files = fac.write_series(folder, n=n)
    for f in files:
        deflate(pydicom.dcmread(f), f)
    return files


def test_a_deflated_series_is_read_by_streaming_and_matches_pydicom(tmp_path):
    files = _deflated_series(tmp_path / "s")
    ct = load_ct(tmp_path / "s")
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        assert np.array_equal(ct.voxels[k], ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept))


def test_a_deflated_file_cut_in_its_header_beside_a_good_ct_is_named_in_one_line(tmp_path, capsys):
    fac.write_series(tmp_path / "ct", n=4)
    files = _deflated_series(tmp_path / "other", n=1)
    short = tmp_path / "ct" / "short.dcm"
    short.write_bytes(files[0].read_bytes()[:700])
    # `dkoar series` lists it as unusable; the loaders refuse the folder naming it (it may be a slice)
    assert main(["series", str(tmp_path / "ct")]) == 0
    assert f"cannot use {short}" in capsys.readouterr().out
    err = _one_line_error(capsys, main(["segment", "-q", str(tmp_path / "ct"), "--out", str(tmp_path / "out")]))
    assert str(short) in err and not (tmp_path / "out").exists()


def test_a_deflated_slice_cut_in_its_pixel_data_is_named_in_one_line(tmp_path, capsys):
    files = fac.write_series(tmp_path / "ct", n=4)
    deflate(pydicom.dcmread(files[2]), files[2])
    files[2].write_bytes(files[2].read_bytes()[:-60])
    err = _one_line_error(capsys, main(["segment", "-q", str(tmp_path / "ct"), "--out", str(tmp_path / "out")]))
    assert str(files[2]) in err and "truncated" in err and not (tmp_path / "out").exists()


def test_damaged_deflated_data_are_named(tmp_path):
    files = _deflated_series(tmp_path / "s", n=2)
    data = bytearray(files[0].read_bytes())
    (meta_length,) = struct.unpack("<I", data[140:144])
    data[144 + meta_length:144 + meta_length + 8] = b"\xff" * 8  # a deflate block of the reserved type
    files[0].write_bytes(bytes(data))
    data = bytearray(files[1].read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"\xff" * 64  # garbage that may still inflate, to garbage
    files[1].write_bytes(bytes(data))
    problems = dict(scan_dicom_folder(tmp_path / "s").unreadable)
    assert "its deflated data are damaged" in problems[files[0]]
    assert files[1] in problems


def _peak_rss_mib(args) -> tuple[int, subprocess.CompletedProcess]:
    """Run ``dkoar ARGS`` in a child process; its peak resident memory (MiB) and result."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); "
             "print(r.returncode); sys.stderr.write(r.stdout + r.stderr)")
    result = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "DKOARSegmentationLib.cli", *args],
                            capture_output=True, text=True, timeout=300)
    peak, code = result.stdout.split()
    return int(peak), subprocess.CompletedProcess(args, int(code), "", result.stderr)


def test_deflate_bombs_do_not_fill_the_memory(tmp_path):
    files = fac.write_series(tmp_path / "ct", n=4)
    start = time.perf_counter()
    pixels = deflate_bomb(files[0], tmp_path / "bombs" / "pixels.dcm", gib=2, where="pixels")
    header = deflate_bomb(files[0], tmp_path / "bombs" / "header.dcm", gib=2, where="header")
    assert pixels.stat().st_size < 3 * 2**20 and header.stat().st_size < 3 * 2**20
    made = time.perf_counter() - start
    # a header that inflates past the cap is refused, its pixel data bomb is never inflated
    with pytest.raises(DKOARError, match=f"more than {MAX_INFLATED_HEADER // 2**20} MiB before the pixel data"):
        read_header(header)
    _, store = read_header(pixels)
    assert store.value_length == 2 * 2**30  # the element's length was read, not its 2 GiB
    shutil.copy(pixels, tmp_path / "ct" / "pixels.dcm")
    shutil.copy(header, tmp_path / "ct" / "header.dcm")
    peak, result = _peak_rss_mib(["series", str(tmp_path / "ct")])
    assert result.returncode == 0, result.stderr
    assert "deflate bomb" in result.stderr  # the header bomb listed as unusable
    assert peak < 400, f"dkoar series peaked at {peak} MiB on two 2 MB files inflating to 2 GiB each"
    assert made < 10


def test_a_pixel_bomb_slice_reads_only_its_own_pixels(tmp_path):
    files = fac.write_series(tmp_path / "ct", n=3)
    expected = load_ct(tmp_path / "ct").voxels.copy()
    pydicom_slice = pydicom.dcmread(files[1])
    deflate_bomb(files[1], files[1], gib=1, where="pixels")  # same header, 1 GiB of pixel data behind it
    # the slice's 32x40 pixels are the first bytes of the bomb: zeros, i.e. the intercept
    ct = load_ct(tmp_path / "ct")
    assert np.array_equal(ct.voxels[0], expected[0]) and np.array_equal(ct.voxels[2], expected[2])
    assert np.all(ct.voxels[1] == int(pydicom_slice.RescaleIntercept))


def test_a_real_ct_without_pixel_data_is_not_called_truncated(tmp_path, capsys):
    source = realdata("odd_orthanc_tests", "2020-09-12-ELSCINT1-PMSCT_RLE1.dcm")
    shutil.copy(source, tmp_path / "philips.dcm")
    assert main(["series", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "no PixelData element" in listing and "truncated" not in listing
    err = _one_line_error(capsys, main(["segment", "-q", str(tmp_path / "philips.dcm"), "--out", str(tmp_path / "o")]))
    assert "no PixelData element" in err and "truncated" not in err


def test_a_real_series_with_an_empty_series_uid_is_named(tmp_path, capsys):
    folder = realdata("totalsegmentator_siemens_j2k")
    assert main(["series", str(folder)]) == 0
    assert "20 DICOM images with an empty SeriesInstanceUID" in capsys.readouterr().out
    err = _one_line_error(capsys, main(["segment", "-q", str(folder), "--out", str(tmp_path / "o")]))
    assert "empty SeriesInstanceUID (0020,000E)" in err and "dcmodify" in err and "no DICOM files found" not in err
    assert not (tmp_path / "o").exists()


def test_a_made_series_with_an_empty_series_uid_is_named_beside_nothing_else(tmp_path, capsys):
    files = fac.write_series(tmp_path / "s", n=3)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = ""
        ds.save_as(f)
    with pytest.raises(DKOARError, match="its 3 DICOM images have an empty SeriesInstanceUID"):
        load_ct(tmp_path / "s")
    # beside a good series, that series is taken and the others are still listed
    fac.write_series(tmp_path / "s" / "good", n=3)
    assert load_ct(tmp_path / "s").shape[0] == 3
    assert main(["series", str(tmp_path / "s")]) == 0
    assert "3 DICOM images with an empty SeriesInstanceUID" in capsys.readouterr().out

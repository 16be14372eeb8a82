"""Damaged and hostile RTSTRUCTs: each damage is refused in one line naming the file and the ROI
(never a traceback, never a contour silently left out), through the reader and through `compare`,
`log add` and `rtstruct-to-labels`; two ROIs of one name are joined, not replaced; an RTSTRUCT
written on a CT with an empty character set is valid."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import warnings

import numpy as np
import pydicom
import pytest

from DKOARSegmentationLib.cli import main
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.input.ct_loader import load_ct
from DKOARSegmentationLib.output.label_maps import write_labelmap_nifti
from DKOARSegmentationLib.output.rtstruct_reader import read_rtstruct_masks
from DKOARSegmentationLib.output.rtstruct_writer import RTStructOptions, write_rtstruct
from Testing.conftest import require_tool
from Testing.hostile_files import damaged_rtstruct, first_contour, realdata, set_raw
from Testing.tiny_case import write_tiny_case


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_case(tmp_path_factory.mktemp("tiny"))


def _shift_z(ds, millimetres: float) -> None:
    contour = first_contour(ds, 1)
    points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
    points[:, 2] += millimetres
    set_raw(contour, "ContourData", "DS", "\\".join(f"{v:.3f}" for v in points.ravel()))


def _drop_value(ds) -> None:
    contour = first_contour(ds)
    data = list(np.asarray(contour.ContourData, dtype=float))[:-1]
    set_raw(contour, "ContourData", "DS", "\\".join(f"{v:.3f}" for v in data))


def _one_point(value: str):
    def change(ds):
        contour = first_contour(ds)
        data = [f"{v:.3f}" for v in np.asarray(contour.ContourData, dtype=float)]
        data[4] = value
        set_raw(contour, "ContourData", "DS", "\\".join(data))
    return change


# (what is damaged, the damage, what the one-line message says)
DAMAGES = [
    ("ContourData not in triplets", _drop_value, "not (x, y, z) triplets"),
    ("ContourData missing", lambda ds: delattr(first_contour(ds), "ContourData"), "has no ContourData"),
    ("ContourData of letters", _one_point("twelve"), "damaged"),
    ("a NaN vertex", _one_point("NaN"), "not a position in the patient"),
    ("an infinite vertex", _one_point("-inf"), "not a position in the patient"),
    ("a vertex 1e30 mm away", _one_point("1e30"), "not a position in the patient"),
    ("ReferencedROINumber missing", lambda ds: delattr(ds.ROIContourSequence[0], "ReferencedROINumber"),
     "has no ReferencedROINumber"),
    ("ROINumber empty", lambda ds: set_raw(ds.StructureSetROISequence[0], "ROINumber", "IS", ""), "has no ROINumber"),
    ("ROINumber of letters", lambda ds: set_raw(ds.StructureSetROISequence[0], "ROINumber", "IS", "one"),
     "malformed ROINumber"),
    ("a contour beyond the last slice", lambda ds: _shift_z(ds, 500.0), "beyond the CT's last slice"),
    ("a contour beyond the first slice", lambda ds: _shift_z(ds, -500.0), "beyond the CT's first slice"),
    ("a contour between two slices", lambda ds: _shift_z(ds, 5.0), "between the CT's slices"),
]


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
@pytest.mark.parametrize("what, damage, message", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_a_damaged_rtstruct_is_refused_naming_the_file(tiny, tmp_path, what, damage, message, capsys):
    bad = damaged_rtstruct(tiny.final, tmp_path / "bad.dcm", damage)
    with pytest.raises(DKOARError, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        read_rtstruct_masks(bad, tiny.ct)
    assert str(bad) in str(refused.value) and "\n" not in str(refused.value)
    # and through each command that reads an RTSTRUCT: exit 2, one line, nothing written
    commands = {
        "compare": ["compare", "--ai", tiny.ai, "--final", bad, "--ct", tiny.ct_dir, "--out", tmp_path / "c.json"],
        "log add": ["log", "add", "--log", tmp_path / "l.sqlite", "--ai", tiny.ai, "--final", bad, "--ct",
                    tiny.ct_dir, "--site-key", tmp_path / "k"],
        "rtstruct-to-labels": ["rtstruct-to-labels", bad, "--ct", tiny.ct_dir, "--out", tmp_path / "l.nii.gz"],
    }
    for name, args in commands.items():
        with _no_numpy_warnings():
            code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, (name, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dcm"]


@contextlib.contextmanager
def _no_numpy_warnings():
    """Numpy's RuntimeWarnings (overflow, invalid value) were all a silently dropped contour left: errors here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def test_a_truncated_rtstruct_is_one_line_in_a_child_process(tiny, tmp_path):
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(tiny.final.read_bytes()[:3000])
    result = subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli",
                             "compare", "--ai", str(tiny.ai), "--final", str(cut), "--ct", str(tiny.ct_dir),
                             "--out", str(tmp_path / "c.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(cut) in result.stderr


def test_two_rois_of_one_name_are_joined_not_replaced(tiny, tmp_path, caplog):
    def rename(ds):
        ds.StructureSetROISequence[1].ROIName = ds.StructureSetROISequence[0].ROIName

    names = [str(r.ROIName) for r in pydicom.dcmread(tiny.ai).StructureSetROISequence]
    both = damaged_rtstruct(tiny.ai, tmp_path / "same_name.dcm", rename)
    original = read_rtstruct_masks(tiny.ai, tiny.ct)
    with caplog.at_level(logging.WARNING):
        joined = read_rtstruct_masks(both, tiny.ct)
    assert np.array_equal(joined[names[0]], original[names[0]] | original[names[1]])
    assert names[1] not in joined and f"two ROIs are named {names[0]}" in caplog.text


def test_an_rtstruct_on_a_ct_with_an_empty_character_set_is_valid(tiny, tmp_path):
    for f in sorted(tiny.ct_dir.iterdir()):
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet = ""
        ds.save_as(tmp_path / f.name)
    ct = load_ct(tmp_path)
    assert ct.dicom.header.SpecificCharacterSet == ""
    path = write_rtstruct(ct, tiny.truth, tmp_path / "rs" / "rtstruct.dcm", RTStructOptions())
    assert pydicom.dcmread(path).SpecificCharacterSet == "ISO_IR 100"
    _assert_dciodvfy_clean(path)
    # a valid code-extension list is copied as it is
    for f in sorted(tmp_path.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
        ds.save_as(f)
    written = write_rtstruct(load_ct(tmp_path), tiny.truth, tmp_path / "rs" / "ext.dcm", RTStructOptions())
    assert list(pydicom.dcmread(written).SpecificCharacterSet) == ["", "ISO 2022 IR 87"]


def test_a_real_ct_with_an_empty_character_set_gets_a_valid_rtstruct(tmp_path):
    folder = realdata("dcmqi_ct3slice_ffs_seg")
    ct_dir = tmp_path / "ct"
    ct_dir.mkdir()
    for name in ("01.dcm", "02.dcm", "03.dcm"):
        (ct_dir / name).write_bytes((folder / name).read_bytes())
    ct = load_ct(ct_dir)
    assert str(ct.dicom.header.get("SpecificCharacterSet")) == ""
    labels = np.zeros(ct.shape, dtype=np.uint8)
    labels[:, 100:200, 150:300] = 1  # Brain, a box
    from DKOARSegmentationLib.structures.catalogue import default_catalogue
    from DKOARSegmentationLib.volume import Segmentation

    write_labelmap_nifti(Segmentation(labels, ct.affine.copy(), tuple(default_catalogue())), tmp_path / "l.nii.gz")
    assert main(["export-rtstruct", "--ct", str(ct_dir), "--labels", str(tmp_path / "l.nii.gz"),
                 "--out", str(tmp_path / "rs.dcm")]) == 0
    _assert_dciodvfy_clean(tmp_path / "rs.dcm")


def _assert_dciodvfy_clean(path) -> None:
    result = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    report = (result.stdout + result.stderr).strip().splitlines()
    errors = [line for line in report if "Error" in line]
    assert not errors, errors
    assert not [line for line in report if "SpecificCharacterSet" in line], report

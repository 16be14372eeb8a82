"""The RTSTRUCT: valid for dciodvfy, consistent with the CT, exact on the round trip."""

import subprocess

import numpy as np
import pydicom
import pytest

from DKOARSegmentationLib.ct_loader import load_ct
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.rtstruct_reader import read_rtstruct_masks
from DKOARSegmentationLib.rtstruct_writer import RTStructOptions, write_rtstruct
from DKOARSegmentationLib.volume import Segmentation

from conftest import require_tool


@pytest.fixture(scope="module")
def written(small_phantom, tmp_path_factory):
    out, phantom = small_phantom
    ct = load_ct(out / "ct")
    path = tmp_path_factory.mktemp("rt") / "rtstruct.dcm"
    write_rtstruct(ct, phantom.truth, path, RTStructOptions(model_name="test model", model_version="9.9",
                                                            edited=frozenset({"Parotid_L"})))
    return ct, phantom, path


def test_dciodvfy_finds_no_errors_nor_warnings(written):
    _, _, path = written
    dciodvfy = require_tool("dciodvfy")
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
    report = (result.stdout + result.stderr).strip().splitlines()
    problems = [line for line in report if "Error" in line or "Warning" in line]
    assert report and report[0].strip() == "RTStructureSet"
    assert not problems, problems


def test_dcentvfy_finds_ct_and_rtstruct_consistent(written, small_phantom):
    out, _ = small_phantom
    _, _, path = written
    dcentvfy = require_tool("dcentvfy")
    first_ct = sorted((out / "ct").glob("*.dcm"))[0]
    result = subprocess.run([dcentvfy, str(first_ct), str(path)], capture_output=True, text=True)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert not [line for line in lines if "Error" in line], lines


def test_round_trip_is_exact_for_every_structure(written, catalogue):
    ct, phantom, path = written
    masks = read_rtstruct_masks(path, ct)
    for s in catalogue:
        truth = phantom.truth.labels == s.label
        assert np.array_equal(masks[s.name], truth), s.name


def test_references_identity_and_provenance(written, catalogue):
    ct, _, path = written
    ds = pydicom.dcmread(path)
    ct_uids = {r.sop_instance_uid: r for r in ct.dicom.slices}
    assert ds.FrameOfReferenceUID == ct.dicom.frame_of_reference_uid
    assert ds.StudyInstanceUID == ct.dicom.study_instance_uid
    assert ds.SeriesInstanceUID != ct.dicom.series_instance_uid
    assert ds.PatientName == ct.dicom.header.PatientName and ds.PatientID == ct.dicom.header.PatientID
    ref_series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert ref_series.SeriesInstanceUID == ct.dicom.series_instance_uid
    assert [i.ReferencedSOPInstanceUID for i in ref_series.ContourImageSequence] == [r.sop_instance_uid for r in ct.dicom.slices]
    assert ds.ApprovalStatus == "UNAPPROVED" and ds.Manufacturer == "DKOARSegmentation"
    numbers = {r.ROINumber for r in ds.StructureSetROISequence}
    assert {c.ReferencedROINumber for c in ds.ROIContourSequence} == numbers
    assert {o.ReferencedROINumber for o in ds.RTROIObservationsSequence} == numbers
    identities = set()
    for roi, obs, cont in zip(ds.StructureSetROISequence, ds.RTROIObservationsSequence, ds.ROIContourSequence):
        s = catalogue.by_name(roi.ROIName)
        assert roi.ROIGenerationAlgorithm == ("SEMIAUTOMATIC" if s.name == "Parotid_L" else "AUTOMATIC")
        assert "test model 9.9" in roi.ROIGenerationDescription
        assert obs.RTROIInterpretedType == "ORGAN"
        code = obs.RTROIIdentificationCodeSequence[0]
        modifier = code.get("SegmentedPropertyTypeModifierCodeSequence")
        identities.add((code.CodeValue, modifier[0].CodeValue if modifier else ""))
        assert list(cont.ROIDisplayColor) == list(s.rgb)
        for contour in cont.ContourSequence:
            assert isinstance(contour.NumberOfContourPoints, int)
            assert contour.NumberOfContourPoints * 3 == len(contour.ContourData) and contour.NumberOfContourPoints >= 4
            ref = ct_uids[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            z = np.asarray(contour.ContourData, float).reshape(-1, 3)[:, 2]
            assert np.allclose(z, ref.position[2], atol=1e-3)  # exactly on its own slice
    assert len(identities) == len(catalogue)


def test_ds_values_fit_16_characters(written):
    _, _, path = written
    ds = pydicom.dcmread(path)
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            raw = contour["ContourData"]
            assert all(len(str(v)) <= 16 for v in raw.value)


def test_empty_structure_policy(written, tmp_path, catalogue):
    ct, phantom, _ = written
    labels = phantom.truth.labels.copy()
    labels[labels == catalogue.by_name("Chiasm").label] = 0
    seg = Segmentation(labels, phantom.truth.affine, phantom.truth.structures)
    kept = pydicom.dcmread(write_rtstruct(ct, seg, tmp_path / "keep.dcm", RTStructOptions(empty_structures="keep")))
    names = [r.ROIName for r in kept.StructureSetROISequence]
    assert "Chiasm" in names
    chiasm = kept.ROIContourSequence[names.index("Chiasm")]
    assert "ContourSequence" not in chiasm
    omitted = pydicom.dcmread(write_rtstruct(ct, seg, tmp_path / "omit.dcm", RTStructOptions(empty_structures="omit")))
    assert "Chiasm" not in [r.ROIName for r in omitted.StructureSetROISequence]


def test_refuses_a_label_map_off_the_ct_grid_and_ct_without_dicom(written, tmp_path):
    ct, phantom, _ = written
    wrong = Segmentation(phantom.truth.labels[:-1], phantom.truth.affine, phantom.truth.structures)
    with pytest.raises(DKOARError, match="not on the CT's grid"):
        write_rtstruct(ct, wrong, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()
    ct.dicom, saved = None, ct.dicom
    try:
        with pytest.raises(DKOARError, match="DICOM CT"):
            write_rtstruct(ct, phantom.truth, tmp_path / "y.dcm")
    finally:
        ct.dicom = saved
    assert list(tmp_path.iterdir()) == []

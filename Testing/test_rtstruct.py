"""The RTSTRUCT: valid for dciodvfy, consistent with the CT, exact on the round trip."""

import subprocess

import numpy as np
import pydicom
import pytest

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.input.ct_loader import load_ct
from DKOARSegmentationLib.output.rtstruct_reader import read_rtstruct_masks
from DKOARSegmentationLib.output.rtstruct_writer import RTStructOptions, write_rtstruct
from DKOARSegmentationLib.volume import Segmentation
from Testing.conftest import require_tool


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


def test_contour_data_is_encoded_as_each_value_alone():
    from pydicom.valuerep import DSfloat, validate_value

    from DKOARSegmentationLib.output.rtstruct_writer import _ds, _ds_multi_value

    rng = np.random.default_rng(5)
    values = np.concatenate([
        [0.0, -0.0, -0.0004, 0.0004, 100.0, -100.0, 1000.5, -250.25, 0.5, -0.5, 12345.678, 10.0, -10.0],
        rng.uniform(-600, 600, 500), np.round(rng.uniform(-600, 600, 200), 1),
    ])
    encoded = _ds_multi_value(values)
    assert len(encoded) % 2 == 0
    texts = encoded.decode("ascii").rstrip(" ").split("\\")
    assert texts == [_ds(v) for v in values]
    for text in texts:
        validate_value("DS", text, 2)  # raises on a value DICOM does not allow
        assert len(text) <= 16
    assert np.allclose([float(DSfloat(t)) for t in texts], values, atol=5e-4)


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


# --- geometry: every patient position, missing slices, non-square pixels, oblique series -------

from DKOARSegmentationLib.output.contours import mask_to_polygons, polygon_area  # noqa: E402
from DKOARSegmentationLib.phantom import PATIENT_POSITIONS  # noqa: E402
from DKOARSegmentationLib.phantom.ct_series_writer import write_ct_series  # noqa: E402
from DKOARSegmentationLib.volume import Volume  # noqa: E402


@pytest.mark.parametrize("position", PATIENT_POSITIONS)
def test_round_trip_in_every_patient_position(phantom_factory, tmp_path, catalogue, position):
    out, phantom = phantom_factory(5, position)
    ct = load_ct(out / "ct")
    path = write_rtstruct(ct, phantom.truth, tmp_path / "rs.dcm")
    masks = read_rtstruct_masks(path, ct)
    for s in catalogue:
        assert np.array_equal(masks[s.name], phantom.truth.labels == s.label), (position, s.name)


def test_missing_slice_keeps_every_contour_on_its_own_slice(small_phantom, tmp_path, catalogue):
    out, phantom = small_phantom
    files = sorted((out / "ct").glob("*.dcm"))
    gap = tmp_path / "ct"
    gap.mkdir()
    dropped = len(files) // 2
    for n, f in enumerate(files):
        if n != dropped:
            (gap / f.name).write_bytes(f.read_bytes())
    ct = load_ct(gap)
    assert ct.shape[0] == len(files) - 1
    truth = np.delete(phantom.truth.labels, dropped, axis=0)
    seg = Segmentation(truth, ct.affine, phantom.truth.structures)
    path = write_rtstruct(ct, seg, tmp_path / "rs.dcm")
    ds = pydicom.dcmread(path)
    positions = {r.sop_instance_uid: r.position for r in ct.dicom.slices}
    for roi in ds.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            z = np.asarray(contour.ContourData, float).reshape(-1, 3)[:, 2]
            assert np.allclose(z, positions[contour.ContourImageSequence[0].ReferencedSOPInstanceUID][2], atol=1e-3)
    masks = read_rtstruct_masks(path, ct)
    for s in catalogue:
        assert np.array_equal(masks[s.name], truth == s.label), s.name


@pytest.mark.parametrize("oblique_deg", [0.0, 25.0])
def test_non_square_pixels_and_oblique_orientation_are_exact(tmp_path, catalogue, oblique_deg):
    """Checked against the DICOM attributes directly (PixelSpacing is row spacing, then column
    spacing), not only through our own reader, which would cancel a mistake of our writer."""
    a = np.radians(oblique_deg)
    row_dir = np.array([np.cos(a), np.sin(a), 0.0])
    col_dir = np.array([-np.sin(a), np.cos(a), 0.0])
    col_spacing, row_spacing, slice_mm = 0.7, 1.3, 2.0  # along i (columns) and along j (rows)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = np.cross(row_dir, col_dir) * slice_mm
    affine[:3, 3] = [-20.0, 15.0, -8.0]
    rng = np.random.default_rng(4)
    labels = np.zeros((6, 40, 50), np.uint8)
    yy, xx = np.mgrid[:40, :50]
    ring = (np.hypot((xx - 25) * col_spacing, (yy - 20) * row_spacing) < 12) & (np.hypot((xx - 25) * col_spacing, (yy - 20) * row_spacing) > 5)
    labels[1:5][:, ring] = catalogue.by_name("Mandible").label
    labels[2, 3, 4] = catalogue.by_name("Lens_L").label  # one voxel
    labels[3] = np.where(rng.random((40, 50)) < 0.05, catalogue.by_name("Chiasm").label, labels[3])
    ct = Volume(np.zeros(labels.shape, np.int16), affine)
    ct.dicom = write_ct_series(ct, tmp_path / "ct", seed=1)
    ct = load_ct(tmp_path / "ct")
    np.testing.assert_allclose(ct.affine, affine, atol=1e-6)
    seg = Segmentation(labels, ct.affine, tuple(catalogue))
    path = write_rtstruct(ct, seg, tmp_path / "rs.dcm", RTStructOptions(empty_structures="omit"))
    masks = read_rtstruct_masks(path, ct)
    for name in ("Mandible", "Lens_L", "Chiasm"):
        assert np.array_equal(masks[name], labels == catalogue.by_name(name).label), name
    ds = pydicom.dcmread(path)
    lens = [c for r, c in zip(ds.StructureSetROISequence, ds.ROIContourSequence) if r.ROIName == "Lens_L"][0]
    (contour,) = lens.ContourSequence
    slice_ds = pydicom.dcmread(sorted((tmp_path / "ct").glob("*.dcm"))[2])
    ipp = np.array(slice_ds.ImagePositionPatient, float)
    iop = np.array(slice_ds.ImageOrientationPatient, float)
    dr, dc = (float(v) for v in slice_ds.PixelSpacing)
    expected = {tuple(np.round(ipp + (4 + di) * dc * iop[:3] + (3 + dj) * dr * iop[3:], 3))
                for di in (-0.5, 0.5) for dj in (-0.5, 0.5)}
    points = {tuple(np.round(p, 3)) for p in np.asarray(contour.ContourData, float).reshape(-1, 3)}
    assert points == expected
    # every point lies in its slice's plane
    normal = np.cross(iop[:3], iop[3:])
    for roi in ds.ROIContourSequence:
        for c in roi.ContourSequence:
            pts = np.asarray(c.ContourData, float).reshape(-1, 3)
            ref = [s for s in ct.dicom.slices if s.sop_instance_uid == c.ContourImageSequence[0].ReferencedSOPInstanceUID][0]
            assert np.allclose((pts - np.asarray(ref.position)) @ normal, 0, atol=1e-3)


def test_polygon_area_equals_voxel_area(small_phantom, catalogue):
    _, phantom = small_phantom
    labels = phantom.truth.labels
    for s in catalogue:
        mask = labels == s.label
        for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
            area = sum(polygon_area(p) for p in mask_to_polygons(mask[k]))
            assert area == mask[k].sum(), (s.name, k)

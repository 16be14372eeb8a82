"""Our RTSTRUCT and DICOM SEG read by real third-party readers, and theirs read by ours."""

import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.input.ct_loader import load_ct
from DKOARSegmentationLib.monitoring.overlap import dice
from DKOARSegmentationLib.output.dicom_seg import read_dicom_seg, read_source_datasets, write_dicom_seg
from DKOARSegmentationLib.output.label_maps import affine_to_sitk
from DKOARSegmentationLib.output.rtstruct_reader import read_rtstruct_masks
from DKOARSegmentationLib.output.rtstruct_writer import write_rtstruct
from DKOARSegmentationLib.volume import DicomSeriesInfo, SliceReference, Volume
from Testing.conftest import REPO, require_tool


@pytest.fixture(scope="module")
def case(small_phantom, tmp_path_factory):
    out, phantom = small_phantom
    ct = load_ct(out / "ct")
    path = write_rtstruct(ct, phantom.truth, tmp_path_factory.mktemp("interop") / "rtstruct.dcm")
    return out, ct, phantom, path


def test_plastimatch_reads_every_structure_back(case, tmp_path, catalogue):
    out, ct, phantom, path = case
    plastimatch = require_tool("plastimatch")
    result = subprocess.run([plastimatch, "convert", "--input", str(path), "--referenced-ct", str(out / "ct"),
                             "--output-prefix", str(tmp_path / "masks"), "--prefix-format", "nrrd"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    reference = sitk.GetImageFromArray(np.zeros(ct.shape, np.uint8))
    affine_to_sitk(reference, ct.affine)
    scores = {}
    for s in catalogue:
        image = sitk.ReadImage(str(tmp_path / "masks" / f"{s.name}.nrrd"))
        on_ct = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        scores[s.name] = dice(sitk.GetArrayFromImage(on_ct) > 0, phantom.truth.labels == s.label)
    assert min(scores.values()) >= 0.99, scores


def test_dicompyler_core_reads_every_structure_and_its_volume(case, catalogue):
    _, ct, phantom, path = case
    python = REPO / ".venv-dicompyler" / "bin" / "python"
    if not python.exists():
        pytest.fail("dicompyler-core's environment is missing; `make test` creates .venv-dicompyler")
    result = subprocess.run([str(python), str(REPO / "Testing" / "third_party" / "dicompyler_volumes.py"), str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)
    assert set(theirs) == {s.name for s in catalogue}
    ours = phantom.truth.volumes_ml()
    for s in catalogue:
        planes = int(np.count_nonzero((phantom.truth.labels == s.label).any(axis=(1, 2))))
        assert theirs[s.name]["planes"] == planes, s.name
        if planes < 2:
            continue  # dicompyler-core infers the slice thickness from the planes: none for one plane
        assert theirs[s.name]["volume_ml"] == pytest.approx(ours[s.name], rel=0.02), s.name


def test_our_reader_reads_rt_utils_output(case, tmp_path, catalogue):
    out, ct, phantom, _ = case
    from rt_utils import RTStructBuilder

    rt = RTStructBuilder.create_new(dicom_series_path=str(out / "ct"))
    names = ["Brain", "Parotid_L", "Mandible", "Lens_R"]
    for name in names:
        mask = phantom.truth.labels == catalogue.by_name(name).label
        rt.add_roi(mask=np.transpose(mask, (1, 2, 0)), name=name, color=list(catalogue.by_name(name).rgb))
    rt.save(str(tmp_path / "rtutils.dcm"))
    masks = read_rtstruct_masks(tmp_path / "rtutils.dcm", ct)
    for name in names:
        truth = phantom.truth.labels == catalogue.by_name(name).label
        score = dice(masks[name], truth)
        # rt-utils draws through voxel centres: the outer ring is lost, more so on small structures
        assert 0.5 < score < 1.0, (name, score)
        assert masks[name].sum() < truth.sum()


def test_our_reader_reads_pydicoms_test_rtstruct():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("rtstruct.dcm")
    ds = pydicom.dcmread(path, force=True)
    frame = ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    # a CT grid of that frame of reference: 2 mm pixels covering +-250 mm, slices at -200..-180 mm
    header = pydicom.Dataset()
    header.FrameOfReferenceUID = frame
    header.StudyInstanceUID = header.SeriesInstanceUID = "1.2.3"
    zs = [-200.0, -190.0, -180.0]
    affine = np.diag([2.0, 2.0, 10.0, 1.0])
    affine[:3, 3] = [-249.0, -249.0, -200.0]
    slices = tuple(SliceReference("1.2.840.10008.5.1.4.1.1.2", f"1.2.3.{n}", (-249.0, -249.0, z)) for n, z in enumerate(zs))
    ct = Volume(np.zeros((3, 250, 250), np.int16), affine, DicomSeriesInfo(header, slices))
    masks = read_rtstruct_masks(path, ct)
    assert set(masks) == {"patient", "Isocenter 1", "Isocenter 2"}
    assert not masks["Isocenter 1"].any()  # POINT ROIs have no area
    area = masks["patient"].sum(axis=(1, 2)) * 4.0
    assert np.all(area > 0)
    assert area[0] == pytest.approx(400 * 300, rel=0.03)  # the first plane is a 400 x 300 mm rectangle


def test_reader_refuses_other_frames_and_off_slice_contours(case, tmp_path):
    _, ct, _, path = case
    ds = pydicom.dcmread(path)
    for roi in ds.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = "1.2.3.4"
    ds.save_as(tmp_path / "other_frame.dcm")
    with pytest.raises(DKOARError, match="frame of reference"):
        read_rtstruct_masks(tmp_path / "other_frame.dcm", ct)
    ds = pydicom.dcmread(path)
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    data = np.asarray(contour.ContourData, float).reshape(-1, 3)
    data[:, 2] += ct.spacing[2] / 2  # halfway between two slices
    contour.ContourData = [f"{v:.3f}" for v in data.ravel()]
    ds.save_as(tmp_path / "between.dcm")
    with pytest.raises(DKOARError, match="between the CT's slices"):
        read_rtstruct_masks(tmp_path / "between.dcm", ct)
    ds = pydicom.dcmread(path)
    ds.ROIContourSequence[0].ContourSequence[0].ContourGeometricType = "OPEN_PLANAR"
    ds.save_as(tmp_path / "open.dcm")
    with pytest.raises(DKOARError, match="only CLOSED_PLANAR"):
        read_rtstruct_masks(tmp_path / "open.dcm", ct)


def test_dicom_seg_round_trip_and_validation(case, tmp_path, catalogue):
    out, ct, phantom, _ = case
    path = write_dicom_seg(ct, read_source_datasets(out / "ct", ct), phantom.truth, tmp_path / "seg.dcm",
                           edited=frozenset({"Thyroid"}))
    masks = read_dicom_seg(path, ct)
    for s in catalogue:
        assert np.array_equal(masks[s.name], phantom.truth.labels == s.label), s.name
    ds = pydicom.dcmread(path)
    items = {item.SegmentLabel: item for item in ds.SegmentSequence}
    parotid = items["Parotid_R"].SegmentedPropertyTypeCodeSequence[0]
    assert parotid.CodeValue == "45289007"
    assert parotid.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "24028007"
    assert items["Thyroid"].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert items["Brain"].SegmentAlgorithmType == "AUTOMATIC"
    dciodvfy = require_tool("dciodvfy")
    report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
    lines = (report.stdout + report.stderr).splitlines()
    assert not [line for line in lines if "Error" in line], lines


def test_cli_export_and_read_back(case, tmp_path):
    out, _, phantom, _ = case

    def dkoar(*args):
        return subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", *map(str, args)],
                              capture_output=True, text=True)

    result = dkoar("export-rtstruct", "--ct", out / "ct", "--labels", out / "truth.seg.nrrd", "--out", tmp_path / "rs.dcm")
    assert result.returncode == 0, result.stderr
    result = dkoar("rtstruct-to-labels", tmp_path / "rs.dcm", "--ct", out / "ct", "--out", tmp_path / "back.nii.gz")
    assert result.returncode == 0, result.stderr
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "back.nii.gz")))
    assert np.array_equal(back, phantom.truth.labels)
    result = dkoar("export-seg", "--ct", out / "ct", "--labels", out / "truth.nii.gz", "--out", tmp_path / "seg.dcm")
    assert result.returncode == 0, result.stderr
    result = dkoar("export-rtstruct", "--ct", out / "truth.nii.gz", "--labels", out / "truth.nii.gz",
                   "--out", tmp_path / "x.dcm")
    assert result.returncode == 2 and "DICOM" in result.stderr and not (tmp_path / "x.dcm").exists()

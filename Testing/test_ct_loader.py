"""Loading a CT: DICOM folders in any order and position, NIfTI/NRRD with their orientation."""

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.input.ct_loader import load_ct


def test_slice_order_comes_from_positions_not_file_names(small_phantom, tmp_path):
    out, phantom = small_phantom
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    files = sorted((out / "ct").glob("*.dcm"))
    rng = np.random.default_rng(0)
    for n, f in enumerate(rng.permutation(files)):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = int(rng.integers(1, 1000))  # misleading on purpose
        ds.save_as(shuffled / f"{n:08x}")  # no extension
    (shuffled / "README.txt").write_text("not DICOM")
    ct = load_ct(shuffled)
    assert np.array_equal(ct.voxels, phantom.ct.voxels)
    np.testing.assert_allclose(ct.affine, phantom.ct.affine, atol=1e-6)
    assert [r.position for r in ct.dicom.slices] == sorted((r.position for r in ct.dicom.slices), key=lambda p: p[2])


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_image_files_keep_lps_geometry(small_phantom, tmp_path, suffix):
    out, phantom = small_phantom
    ct = load_ct(out / "ct")
    # an FFP-like layout: flip two axes so the direction matrix is not the identity
    image = sitk.GetImageFromArray(ct.voxels[::-1, ::-1, :].copy())
    affine = ct.affine.copy()
    affine[:3, 3] = ct.index_to_lps(np.array([0.0, ct.shape[1] - 1.0, ct.shape[0] - 1.0]))
    affine[:3, 1] *= -1
    affine[:3, 2] *= -1
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    image.SetDirection((affine[:3, :3] / spacing).ravel().tolist())
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    loaded = load_ct(path)
    assert loaded.dicom is None
    np.testing.assert_allclose(loaded.affine, affine, atol=1e-4)
    # the same voxel is at the same LPS point whichever layout
    ijk = np.array([10.0, 20.0, 5.0])
    point = loaded.index_to_lps(ijk)
    back = np.linalg.solve(ct.affine[:3, :3], point - ct.affine[:3, 3])
    i, j, k = np.round(back).astype(int)
    assert loaded.voxels[5, 20, 10] == ct.voxels[k, j, i]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DKOARError, match="no such file"):
        load_ct(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    with pytest.raises(DKOARError, match="no DICOM files"):
        load_ct(empty)
    with pytest.raises(DKOARError, match="not a DICOM folder"):
        load_ct(empty / "notes.txt")


def test_missing_geometry_and_single_slice_are_refused(small_phantom, tmp_path):
    out, _ = small_phantom
    files = sorted((out / "ct").glob("*.dcm"))
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(files[0], one / "a.dcm")
    with pytest.raises(DKOARError, match="at least two slices"):
        load_ct(one)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in files[:3]:
        shutil.copy(f, broken / f.name)
    ds = pydicom.dcmread(broken / files[1].name)
    del ds.ImagePositionPatient
    ds.save_as(broken / files[1].name)
    with pytest.raises(DKOARError, match="ImagePositionPatient is missing") as err:
        load_ct(broken)
    assert files[1].name in str(err.value)


def test_several_ct_series_need_a_choice(small_phantom, tmp_path):
    out, phantom = small_phantom
    two = tmp_path / "two"
    shutil.copytree(out / "ct", two / "a")
    second_series = pydicom.uid.generate_uid()
    for f in sorted((out / "ct").glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = second_series
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        (two / "b").mkdir(exist_ok=True)
        ds.save_as(two / "b" / f.name)
    with pytest.raises(DKOARError, match="several CT series"):
        load_ct(two)
    uid = pydicom.dcmread(next((two / "b").glob("*.dcm"))).SeriesInstanceUID
    assert load_ct(two, series_uid=uid).dicom.series_instance_uid == uid

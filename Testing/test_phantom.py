"""The phantom: a real DICOM CT series with plausible anatomy, ground truth on its grid."""

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from DKOARSegmentationLib.input.ct_loader import load_ct
from DKOARSegmentationLib.output.label_maps import read_labelmap
from DKOARSegmentationLib.phantom import PATIENT_POSITIONS, PhantomGrid, generate_phantom


def _centroid_lps(volume, mask):
    k, j, i = np.nonzero(mask)
    return volume.index_to_lps(np.column_stack([i, j, k]).astype(float)).mean(axis=0)


def _extent_mm(volume, mask):
    k, j, i = np.nonzero(mask)
    pts = volume.index_to_lps(np.column_stack([i, j, k]).astype(float))
    return pts.max(axis=0) - pts.min(axis=0) + np.abs(volume.affine[:3, :3]).sum(axis=1)


def test_files_and_dicom_series(small_phantom, catalogue):
    out, phantom = small_phantom
    files = sorted((out / "ct").glob("*.dcm"))
    assert len(files) == phantom.ct.shape[0]
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT" and ds.PatientPosition == "HFS" and ds.RescaleIntercept == -1024
    ct = load_ct(out / "ct")
    assert np.array_equal(ct.voxels, phantom.ct.voxels)
    np.testing.assert_allclose(ct.affine, phantom.ct.affine, atol=1e-6)
    for name in ("truth.nii.gz", "truth.seg.nrrd"):
        truth = read_labelmap(out / name, catalogue)
        assert np.array_equal(truth.labels, phantom.truth.labels)
        np.testing.assert_allclose(truth.affine, ct.affine, atol=1e-5)


def test_all_structures_present_with_plausible_volumes(small_phantom, catalogue):
    _, phantom = small_phantom
    volumes = phantom.truth.volumes_ml()
    plausible = {  # ml, adult anatomy, wide ranges
        "Brain": (1000, 1700), "Brainstem": (15, 40), "SpinalCord": (3, 20), "Chiasm": (0.15, 1.0),
        "OpticNerve_L": (0.3, 1.5), "Cochlea_R": (0.03, 0.2), "Lens_L": (0.08, 0.35), "EyeBack_R": (4, 9),
        "Parotid_L": (8, 40), "Submandibular_R": (3, 12), "Mandible": (25, 90), "Thyroid": (6, 30),
        "LarynxG": (0.8, 6), "OralCavity": (15, 60),
    }
    for s in catalogue:
        assert volumes[s.name] > 0, s.name
    for name, (lo, hi) in plausible.items():
        assert lo <= volumes[name] <= hi, (name, volumes[name])


def test_small_structures_have_their_anatomical_size(small_phantom, catalogue):
    _, phantom = small_phantom
    ct, labels = phantom.ct, phantom.truth.labels
    lens = _extent_mm(ct, labels == catalogue.by_name("Lens_L").label)
    assert 3.0 <= lens[1] <= 7.0 and 7.5 <= lens[0] <= 12.5  # thin antero-posteriorly, ~9 mm across
    cochlea = _extent_mm(ct, labels == catalogue.by_name("Cochlea_R").label)
    assert np.all(cochlea <= 9.0) and np.all(cochlea >= 3.0)
    chiasm = _extent_mm(ct, labels == catalogue.by_name("Chiasm").label)
    assert chiasm[2] <= 9.0  # thin cranio-caudally (3 mm slices)


@pytest.mark.parametrize("position", PATIENT_POSITIONS)
def test_patient_left_is_plus_x_in_every_position(phantom_factory, catalogue, position):
    out, _ = phantom_factory(5, position)
    ct = load_ct(out / "ct")
    truth = read_labelmap(out / "truth.nii.gz", catalogue)
    for left, right in (("Parotid_L", "Parotid_R"), ("Lens_L", "Lens_R"), ("Cochlea_L", "Cochlea_R")):
        xl = _centroid_lps(ct, truth.labels == catalogue.by_name(left).label)[0]
        xr = _centroid_lps(ct, truth.labels == catalogue.by_name(right).label)[0]
        assert xl > xr + 20, (position, left, xl, xr)
    brain = _centroid_lps(ct, truth.labels == catalogue.by_name("Brain").label)
    thyroid = _centroid_lps(ct, truth.labels == catalogue.by_name("Thyroid").label)
    assert brain[2] > thyroid[2] + 100  # head is superior (+z) in every position
    lens = _centroid_lps(ct, truth.labels == catalogue.by_name("Lens_L").label)
    cord = _centroid_lps(ct, truth.labels == catalogue.by_name("SpinalCord").label)
    assert lens[1] < cord[1] - 50  # anterior is -y
    assert pydicom.dcmread(next((out / "ct").glob("*.dcm"))).PatientPosition == position


def test_anatomical_neighbours(small_phantom, catalogue):
    _, phantom = small_phantom
    hu, labels = phantom.ct.voxels, phantom.truth.labels
    # the spinal cord runs inside a bony vertebral canal
    cord = labels == catalogue.by_name("SpinalCord").label
    ring = ndimage.binary_dilation(cord, iterations=7) & ~ndimage.binary_dilation(cord, iterations=3)
    ring_slices = [k for k in range(hu.shape[0]) if cord[k].any() and ring[k].any()]
    bone_fraction = np.mean([np.mean(hu[k][ring[k]] > 300) for k in ring_slices])
    assert bone_fraction > 0.4
    # each parotid lies against the mandible ramus
    mandible = ndimage.binary_dilation(labels == catalogue.by_name("Mandible").label, iterations=2)
    for name in ("Parotid_L", "Parotid_R"):
        assert np.any(mandible & (labels == catalogue.by_name(name).label)), name
    # the lens is bright inside the eye; the cochlea is fluid inside dense bone
    lens = labels == catalogue.by_name("Lens_L").label
    eye = labels == catalogue.by_name("EyeBack_L").label
    assert np.median(hu[lens]) > np.median(hu[eye]) + 60
    cochlea = labels == catalogue.by_name("Cochlea_L").label
    shell = ndimage.binary_dilation(cochlea, iterations=3) & ~ndimage.binary_dilation(cochlea, iterations=1)
    assert np.median(hu[shell]) > 700 and np.median(hu[cochlea]) < 400
    # air in the pharynx, the brain at brain density
    assert np.median(hu[labels == catalogue.by_name("Brain").label]) == pytest.approx(32, abs=12)


def test_seeds_vary_the_anatomy(catalogue):
    grid = PhantomGrid(matrix=160, pixel_mm=1.6, slice_mm=3.0)
    a = generate_phantom(11, "HFS", grid)
    b = generate_phantom(12, "HFS", grid)
    again = generate_phantom(11, "HFS", grid)
    assert np.array_equal(a.truth.labels, again.truth.labels) and np.array_equal(a.ct.voxels, again.ct.voxels)
    for name in ("Parotid_L", "Brainstem", "Thyroid"):
        label = catalogue.by_name(name).label
        ca = _centroid_lps(a.ct, a.truth.labels == label)
        cb = _centroid_lps(b.ct, b.truth.labels == label)
        assert np.linalg.norm(ca - cb) > 0.5, name
    assert a.truth.volumes_ml()["Brain"] != b.truth.volumes_ml()["Brain"]

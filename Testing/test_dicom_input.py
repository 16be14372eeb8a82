"""Real-world DICOM input: every series a hospital sends is read correctly or refused clearly.

Every case writes its own small series with pydicom (``dicom_factory``); refusals are checked for
one DKOARError naming the file and the problem, and, through the command line, for one line on
stderr, exit code 2 and nothing written.
"""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from DKOARSegmentationLib.cli import main
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.input import ct_loader
from DKOARSegmentationLib.input.ct_loader import FrameReference, load_ct
from DKOARSegmentationLib.input.series_scan import scan_dicom_folder
from DKOARSegmentationLib.output.rtstruct_reader import read_rtstruct_masks
from DKOARSegmentationLib.output.rtstruct_writer import write_rtstruct
from DKOARSegmentationLib.volume import Segmentation
from Testing import dicom_factory as fac

N = 6


def assert_volume(ct, n=N, slice_mm=2.0, origin=(-10.0, -8.0, 30.0)):
    assert np.array_equal(ct.voxels, fac.expected_hu(n))
    np.testing.assert_allclose(ct.affine[:3, :3], np.diag([0.7, 0.8, slice_mm]), atol=1e-6)
    np.testing.assert_allclose(ct.affine[:3, 3], origin, atol=1e-6)


# --- reading -----------------------------------------------------------------------------------------

def test_folder_scanned_recursively_non_dicom_counted_series_listed(tmp_path, capsys):
    fac.write_series(tmp_path / "a" / "b", n=3, names="IM{k}")  # no extension, nested
    fac.write_series(tmp_path / "a" / "c", n=3, names="IM{k}", positions=[6.0, 8.0, 10.0],
                     ids=fac.SeriesIds(), description="Test CT")
    (tmp_path / "README.txt").write_text("not DICOM")
    (tmp_path / "a" / "thumbs.db").write_bytes(b"\x00" * 300)
    scan = scan_dicom_folder(tmp_path)
    assert scan.not_dicom == 2 and len(scan.series) == 2
    assert {s.slices for s in scan.series.values()} == {3}
    assert main(["series", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for s in scan.series.values():
        assert s.uid in out
    assert "CT" in out and "2 mm" in out and "Test CT" in out
    assert "2 files that are not DICOM" in out and "--series" in out


def test_the_ct_beside_localisers_and_rt_objects_is_taken_by_itself(tmp_path, caplog, capsys):
    ids = fac.SeriesIds()
    fac.write_series(tmp_path / "ct", ids=ids)
    # a scout series (LOCALIZER), a single-slice series, a scout inside the CT series itself
    fac.write_series(tmp_path / "scout", n=2, orientation=(0, 1, 0, 0, 0, -1),
                     image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    fac.write_series(tmp_path / "single", n=1)
    ds = fac.image_dataset(fac.expected_hu(1)[0], (0, 0, 0), ids, orientation=(1, 0, 0, 0, 0, -1),
                           image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    fac.save(ds, tmp_path / "ct" / "scout_in_series.dcm")
    fac.write_non_image(tmp_path / "rs.dcm", "RTSTRUCT", fac.RTSTRUCT, ids)
    fac.write_non_image(tmp_path / "rp.dcm", "RTPLAN", fac.RTPLAN, ids)
    fac.write_dose(tmp_path / "rd.dcm", ids)
    with caplog.at_level(logging.INFO):
        ct = load_ct(tmp_path)
    assert ct.dicom.series_instance_uid == ids.series
    assert_volume(ct)
    assert "localiser" in caplog.text
    assert main(["series", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "taken by default" in line][0].startswith(ids.series)
    assert len([line for line in lines if "(localiser or single slice)" in line]) == 2
    assert len([line for line in lines if "(not an image)" in line]) == 3


def test_several_ct_series_need_a_choice_which_is_listed(tmp_path):
    a = fac.write_series(tmp_path / "a")
    b = fac.write_series(tmp_path / "b", description="Second reconstruction")
    with pytest.raises(DKOARError, match="several CT series; choose one with --series") as err:
        load_ct(tmp_path)
    uid_a, uid_b = (str(pydicom.dcmread(f[0]).SeriesInstanceUID) for f in (a, b))
    assert uid_a in str(err.value) and uid_b in str(err.value) and "Second reconstruction" in str(err.value)
    assert load_ct(tmp_path, uid_b).dicom.series_instance_uid == uid_b


def test_slices_ordered_by_position_not_instance_number_nor_file_name(tmp_path):
    files = fac.write_series(tmp_path / "s", orientation=(-1, 0, 0, 0, -1, 0))  # normal still +z
    for n, f in enumerate(reversed(files)):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = n + 1
        f.rename(tmp_path / "s" / f"{n:02d}_{f.name}")
    ct = load_ct(tmp_path / "s")
    assert np.array_equal(ct.voxels, fac.expected_hu(N))
    assert [r.position[2] for r in ct.dicom.slices] == [30.0 + 2 * k for k in range(N)]


def test_exact_duplicates_are_collapsed(tmp_path):
    files = fac.write_series(tmp_path / "s")
    shutil.copy(files[2], tmp_path / "copy_of_2.dcm")  # same SOPInstanceUID
    ds = pydicom.dcmread(files[4])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()  # same pixels, same place
    ds.save_as(tmp_path / "resent_4.dcm")
    ct = load_ct(tmp_path)
    assert_volume(ct)
    assert len({r.sop_instance_uid for r in ct.dicom.slices}) == N


def test_two_different_images_at_one_position_are_refused(tmp_path):
    files = fac.write_series(tmp_path / "s")
    ds = pydicom.dcmread(files[3])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = (ds.pixel_array + 1).astype(np.uint16).tobytes()
    ds.save_as(tmp_path / "other.dcm")
    with pytest.raises(DKOARError, match="different image at the same position") as err:
        load_ct(tmp_path)
    assert "other.dcm" in str(err.value) and files[3].name in str(err.value)


def test_missing_slice_keeps_true_positions_and_the_rtstruct_references_each_real_slice(tmp_path, caplog):
    files = fac.write_series(tmp_path / "s", n=8)
    files[4].unlink()
    with caplog.at_level(logging.WARNING):
        ct = load_ct(tmp_path / "s")
    assert "1 slice missing" in caplog.text
    assert ct.shape[0] == 7
    assert np.array_equal(ct.voxels, np.delete(fac.expected_hu(8), 4, axis=0))
    true_z = [30.0 + 2 * k for k in range(8) if k != 4]
    assert [r.position[2] for r in ct.dicom.slices] == true_z
    assert ct.spacing[2] == pytest.approx(2.0)  # the median spacing; positions above say the truth
    # the RTSTRUCT puts each contour on its own slice and reads back exactly
    from DKOARSegmentationLib.structures.catalogue import default_catalogue

    brain = default_catalogue().by_name("Brain")
    labels = np.zeros(ct.shape, dtype=np.uint8)
    labels[:, 10:20, 12:30] = brain.label
    seg = Segmentation(labels, ct.affine, (brain,))
    path = write_rtstruct(ct, seg, tmp_path / "rs.dcm")
    rs = pydicom.dcmread(path)
    z_of_contours = sorted({float(c.ContourData[2]) for c in rs.ROIContourSequence[0].ContourSequence})
    assert z_of_contours == true_z
    uids = {c.ContourImageSequence[0].ReferencedSOPInstanceUID for c in rs.ROIContourSequence[0].ContourSequence}
    assert uids == {r.sop_instance_uid for r in ct.dicom.slices}
    assert np.array_equal(read_rtstruct_masks(path, ct)["Brain"], labels == brain.label)


def test_irregular_spacing_is_warned_and_positions_kept(tmp_path, caplog):
    zs = [0.0, 2.0, 4.0, 6.5, 8.5, 10.5]
    fac.write_series(tmp_path / "s", positions=zs)
    with caplog.at_level(logging.WARNING):
        ct = load_ct(tmp_path / "s")
    assert "irregular slice spacing" in caplog.text
    assert [r.position[2] - 30.0 for r in ct.dicom.slices] == pytest.approx(zs)


def test_rescale_float_slope_and_per_slice_intercepts(tmp_path):
    fac.write_series(tmp_path / "f", slope=0.5, intercept=-1000.0)
    ct = load_ct(tmp_path / "f")
    assert ct.voxels.dtype == np.float32
    np.testing.assert_allclose(ct.voxels, fac.expected_hu(N), atol=0.5)
    files = fac.write_series(tmp_path / "i", signed=True, intercept=0.0)
    ds = pydicom.dcmread(files[2])  # one slice stored differently: intercept -1024, unsigned
    hu = fac.expected_hu(N)[2]
    ds.RescaleIntercept, ds.PixelRepresentation = "-1024", 0
    ds.PixelData = (hu.astype(np.int32) + 1024).astype(np.uint16).tobytes()
    ds.save_as(files[2])
    ct = load_ct(tmp_path / "i")
    assert ct.voxels.dtype == np.int16 and np.array_equal(ct.voxels, fac.expected_hu(N))


def test_unused_high_bits_are_masked(tmp_path):
    files = fac.write_series(tmp_path / "s")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = (ds.pixel_array | 0xF000).astype(np.uint16).tobytes()  # an overlay in the high bits
        ds.save_as(f)
    assert_volume(load_ct(tmp_path / "s"))


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                                    RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGLosslessSV1])
def test_transfer_syntaxes(tmp_path, syntax):
    fac.write_series(tmp_path / "s", syntax=syntax)
    fac.write_series(tmp_path / "signed", syntax=syntax, signed=True, intercept=0.0)
    assert_volume(load_ct(tmp_path / "s"))
    assert_volume(load_ct(tmp_path / "signed"))
    assert pydicom.dcmread(next((tmp_path / "s").iterdir())).file_meta.TransferSyntaxUID == syntax


def test_deflated_transfer_syntax(tmp_path):
    files = fac.write_series(tmp_path / "s")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        pydicom.dcmwrite(f, ds, enforce_file_format=True)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert_volume(load_ct(tmp_path / "s"))


def test_a_real_jpeg2000_head_ct_slice(tmp_path):
    """A scanner's JPEG 2000 head CT slice (pydicom's test data), made into a two-slice series."""
    source = get_testdata_file("J2K_pixelrep_mismatch.dcm")
    reference = pydicom.dcmread(source)
    normal = np.cross(np.array(reference.ImageOrientationPatient[:3], float), np.array(reference.ImageOrientationPatient[3:], float))
    for k in range(2):
        ds = pydicom.dcmread(source)
        ds.ImagePositionPatient = [f"{v:.4f}" for v in np.array(ds.ImagePositionPatient, float) + k * 1.0 * normal]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(tmp_path / f"j2k_{k}")
    ct = load_ct(tmp_path)
    assert ct.shape == (2, 512, 512)
    hu = reference.pixel_array.astype(np.float64) * float(reference.RescaleSlope) + float(reference.RescaleIntercept)
    assert np.array_equal(ct.voxels[0], hu) and np.array_equal(ct.voxels[1], hu)
    assert -1100 < np.median(ct.voxels[0]) < 0 < ct.voxels.max()  # air and tissue, not noise
    np.testing.assert_allclose(ct.direction[:, 2], normal, atol=1e-4)


def test_enhanced_multiframe_ct(tmp_path):
    path = fac.write_enhanced_ct(tmp_path / "enhanced" / "ct.dcm")
    for source in (tmp_path / "enhanced", path):
        ct = load_ct(source)
        assert_volume(ct)
        assert all(isinstance(r, FrameReference) for r in ct.dicom.slices)
        assert [r.frame_number for r in ct.dicom.slices] == list(range(N, 0, -1))  # stored superior first
        assert len({r.sop_instance_uid for r in ct.dicom.slices}) == 1
    # an RTSTRUCT on it names the frame of every contour's slice (ReferencedFrameNumber)
    from DKOARSegmentationLib.structures.catalogue import default_catalogue

    brain = default_catalogue().by_name("Brain")
    labels = np.zeros(ct.shape, dtype=np.uint8)
    labels[1:-1, 10:20, 12:30] = brain.label
    rs = pydicom.dcmread(write_rtstruct(ct, Segmentation(labels, ct.affine, (brain,)), tmp_path / "rs.dcm"))
    listed = rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert [int(i.ReferencedFrameNumber) for i in listed.ContourImageSequence] == [r.frame_number for r in ct.dicom.slices]
    frame_at_z = {round(r.position[2], 3): r.frame_number for r in ct.dicom.slices}
    contours = rs.ROIContourSequence[0].ContourSequence
    assert len(contours) == ct.shape[0] - 2
    for contour in contours:
        assert int(contour.ContourImageSequence[0].ReferencedFrameNumber) == frame_at_z[round(float(contour.ContourData[2]), 3)]
    assert np.array_equal(read_rtstruct_masks(tmp_path / "rs.dcm", ct)["Brain"], labels == brain.label)


def test_another_modality_only_when_allowed(tmp_path):
    files = fac.write_series(tmp_path / "mr", modality="MR", sop_class=fac.MR_IMAGE, intercept=0.0, signed=True,
                             description="T1")
    with pytest.raises(DKOARError, match="no CT series found.*MR.*--allow-modality"):
        load_ct(tmp_path)
    uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    with pytest.raises(DKOARError, match="is MR, not CT.*--allow-modality") as err:
        load_ct(tmp_path, uid)
    assert str(files[0]) in str(err.value)
    assert_volume(load_ct(tmp_path, allow_modality=True))
    assert_volume(load_ct(tmp_path, uid, allow_modality=True))
    dose = fac.write_dose(tmp_path / "rd.dcm")
    dose_uid = str(pydicom.dcmread(dose).SeriesInstanceUID)
    with pytest.raises(DKOARError, match="RTDOSE, not an image series to contour"):
        load_ct(tmp_path, dose_uid, allow_modality=True)


# --- refusing, clearly -------------------------------------------------------------------------------

def test_path_missing_or_unreadable(tmp_path):
    with pytest.raises(DKOARError, match="no such file or folder"):
        load_ct(tmp_path / "nowhere")
    if os.geteuid() == 0:
        pytest.skip("root reads every file: the permission case needs an ordinary user")
    fac.write_series(tmp_path / "locked")
    os.chmod(tmp_path / "locked", 0)
    try:
        with pytest.raises(DKOARError, match="cannot be read"):
            load_ct(tmp_path / "locked")
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    files = fac.write_series(tmp_path / "onefile")
    os.chmod(files[2], 0)
    try:
        with pytest.raises(DKOARError, match="cannot be read") as err:
            load_ct(tmp_path / "onefile")
        assert files[2].name in str(err.value)
    finally:
        os.chmod(files[2], 0o644)


def test_unreadable_folder_or_file_even_as_root(tmp_path, monkeypatch):
    """The same refusals as above, with the permission errors simulated (root may read anything)."""
    from DKOARSegmentationLib.input import series_scan

    files = fac.write_series(tmp_path / "s")
    real_access = os.access
    monkeypatch.setattr(ct_loader.os, "access", lambda p, mode: False if str(p) == str(tmp_path / "s")
                        else real_access(p, mode))
    with pytest.raises(DKOARError, match="cannot be read"):
        load_ct(tmp_path / "s")
    monkeypatch.setattr(ct_loader.os, "access", real_access)
    real_read = series_scan.read_header

    def read_header(file):
        if file == files[3]:
            raise PermissionError(13, "Permission denied", str(file))
        return real_read(file)

    monkeypatch.setattr(series_scan, "read_header", read_header)
    with pytest.raises(DKOARError, match="cannot be read \\(Permission denied\\)") as err:
        load_ct(tmp_path / "s")
    assert files[3].name in str(err.value)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DKOARError, match="no DICOM files found"):
        load_ct(tmp_path)


@pytest.mark.parametrize("tilt", [15.0, -4.5])
def test_gantry_tilt_is_refused_with_its_angle(tmp_path, tilt):
    fac.write_series(tmp_path / "s", tilt_deg=tilt)
    with pytest.raises(DKOARError, match=f"gantry-tilted or sheared by {abs(tilt):.1f} degrees") as err:
        load_ct(tmp_path / "s")
    assert "CT_" in str(err.value)


def test_sheared_series_is_refused(tmp_path):
    files = fac.write_series(tmp_path / "s")
    ds = pydicom.dcmread(files[3])
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0] + 0.6, ipp[1], ipp[2]]
    ds.save_as(files[3])
    with pytest.raises(DKOARError, match="not along the slice normal") as err:
        load_ct(tmp_path / "s")
    assert files[3].name in str(err.value)


@pytest.mark.parametrize("change, message", [
    (lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0.995037, 0.0995037]), "orientation"),
    (lambda ds: setattr(ds, "PixelSpacing", [0.9, 0.9]), "pixel spacing"),
    ("size", "its size 16x40 differs"),
])
def test_slices_of_another_orientation_spacing_or_size_are_refused(tmp_path, change, message):
    files = fac.write_series(tmp_path / "s")
    ds = pydicom.dcmread(files[2])
    if change == "size":
        ds.Rows = 16
        ds.PixelData = ds.PixelData[: 16 * 40 * 2]
    else:
        change(ds)
    ds.save_as(files[2])
    with pytest.raises(DKOARError, match=message) as err:
        load_ct(tmp_path / "s")
    assert files[2].name in str(err.value)


@pytest.mark.parametrize("name", ["PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient"])
def test_missing_geometry_is_refused(tmp_path, name):
    files = fac.write_series(tmp_path / "s")
    ds = pydicom.dcmread(files[3])
    delattr(ds, name)
    ds.save_as(files[3])
    with pytest.raises(DKOARError, match=f"{name} is missing") as err:
        load_ct(tmp_path / "s")
    assert files[3].name in str(err.value)


def test_truncated_or_corrupt_files_are_refused(tmp_path):
    files = fac.write_series(tmp_path / "half")
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) - 1000])  # cut in the pixel data
    with pytest.raises(DKOARError, match="truncated") as err:
        load_ct(tmp_path / "half")
    assert files[2].name in str(err.value)
    files = fac.write_series(tmp_path / "header")
    data = files[1].read_bytes()
    files[1].write_bytes(data[:600])  # cut in the header
    with pytest.raises(DKOARError, match="truncated|damaged") as err:
        load_ct(tmp_path / "header")
    assert files[1].name in str(err.value)
    files = fac.write_series(tmp_path / "jls", syntax=JPEGLSLossless)
    ds = pydicom.dcmread(files[1])
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + b"\x13" * 64])  # a JPEG-LS start, then garbage
    ds.save_as(files[1])
    with pytest.raises(DKOARError, match="cannot decode the pixel data") as err:
        load_ct(tmp_path / "jls")
    assert files[1].name in str(err.value) and "\n" not in str(err.value)


def test_too_large_for_memory_is_refused_before_allocating(tmp_path, monkeypatch):
    fac.write_series(tmp_path / "s")
    monkeypatch.setattr(ct_loader, "available_memory", lambda: 20_000)
    monkeypatch.setattr(ct_loader, "_fill", lambda *a: pytest.fail("the volume was read despite the memory check"))
    with pytest.raises(DKOARError, match="too large for the memory available: 6 slices of 32x40"):
        load_ct(tmp_path / "s")


def test_single_slice_is_refused(tmp_path):
    files = fac.write_series(tmp_path / "s", n=1)
    for source in (tmp_path / "s", files[0]):
        with pytest.raises(DKOARError, match="at least two slices") as err:
            load_ct(source)
        assert files[0].name in str(err.value)


def test_compression_without_decoder_is_refused(tmp_path, monkeypatch):
    files = fac.write_series(tmp_path / "jxl", syntax="1.2.840.10008.1.2.4.110")  # JPEG XL: no decoder here
    with pytest.raises(DKOARError, match="no installed decoder reads") as err:
        load_ct(tmp_path / "jxl")
    assert files[0].name in str(err.value)
    fac.write_series(tmp_path / "private", syntax="1.3.6.1.4.1.99999.1.2")
    with pytest.raises(DKOARError, match="unknown transfer syntax 1.3.6.1.4.1.99999.1.2"):
        load_ct(tmp_path / "private")
    fac.write_series(tmp_path / "rle", syntax=RLELossless)
    from pydicom.pixels.decoders.base import Decoder

    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(DKOARError, match="compressed as RLE Lossless and no decoder for it is installed"):
        load_ct(tmp_path / "rle")


def test_image_files_still_honour_their_orientation_and_refuse_rtstruct(tmp_path):
    """NIfTI/NRRD/MHA keep their geometry (see test_ct_loader); no RTSTRUCT without the DICOM CT."""
    import SimpleITK as sitk

    from DKOARSegmentationLib.output.rtstruct_writer import build_rtstruct

    image = sitk.GetImageFromArray(fac.expected_hu(N))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS-like axes, written as LPS by ITK
    image.SetSpacing((0.7, 0.8, 2.0))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    ct = load_ct(tmp_path / "ct.nii.gz")
    np.testing.assert_allclose(ct.affine[:3, :3], np.diag([-0.7, -0.8, 2.0]), atol=1e-5)
    seg = Segmentation(np.zeros(ct.shape, np.uint8), ct.affine, ())
    with pytest.raises(DKOARError, match="DICOM CT"):
        build_rtstruct(ct, seg)


# --- the command line: one line, exit code 2, nothing written ------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from Testing.model_factory import make_model_folder

    return make_model_folder(tmp_path_factory.mktemp("model") / "m")


def _several(d):
    fac.write_series(d / "a")
    fac.write_series(d / "b")


def _truncated(d):
    f = fac.write_series(d)[2]
    f.write_bytes(f.read_bytes()[:-1500])


def _no_position(d):
    f = fac.write_series(d)[1]
    ds = pydicom.dcmread(f)
    del ds.ImagePositionPatient
    ds.save_as(f)


def _other_size(d):
    f = fac.write_series(d)[2]
    ds = pydicom.dcmread(f)
    ds.Rows, ds.PixelData = 16, ds.PixelData[: 16 * 40 * 2]
    ds.save_as(f)


REFUSALS = {
    "missing path": (None, ["nowhere", "no such file"]),
    "no DICOM": (lambda d: (d.mkdir(), (d / "a.txt").write_text("x")), ["no DICOM files"]),
    "several CT series": (_several, ["several CT series", "--series"]),
    "MR": (lambda d: fac.write_series(d, modality="MR", sop_class=fac.MR_IMAGE), ["MR", "--allow-modality"]),
    "gantry tilt": (lambda d: fac.write_series(d, tilt_deg=20), ["CT_005.dcm", "20.0 degrees"]),
    "other size": (_other_size, ["CT_002.dcm", "its size 16x40 differs"]),
    "missing position": (_no_position, ["CT_001.dcm", "ImagePositionPatient is missing"]),
    "truncated": (_truncated, ["CT_002.dcm", "truncated"]),
    "single slice": (lambda d: fac.write_series(d, n=1), ["CT_000.dcm", "at least two slices"]),
    "no decoder": (lambda d: fac.write_series(d, syntax="1.2.840.10008.1.2.4.110"), ["CT_000.dcm", "decoder"]),
    "memory": (fac.write_series, ["too large for the memory"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_cli_refuses_in_one_line_with_exit_code_2_and_writes_nothing(tmp_path, capsys, monkeypatch, model, case):
    build, fragments = REFUSALS[case]
    source = tmp_path / ("nowhere" if build is None else "in")
    if build is not None:
        build(source)
    if case == "memory":
        monkeypatch.setattr(ct_loader, "available_memory", lambda: 1000)
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(["segment", str(source), "--out", str(out), "--model", str(model), "--device", "cpu", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("dkoar: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    assert not out.exists()


def test_cli_passes_allow_modality_and_series(tmp_path, monkeypatch, model, capsys):
    import DKOARSegmentationLib.pipeline.segment as pipeline

    seen = {}

    def fake_load(path, series_uid=None, *, allow_modality=False):
        seen.update(series_uid=series_uid, allow_modality=allow_modality)
        raise DKOARError("stopped after loading")

    monkeypatch.setattr(pipeline, "load_ct", fake_load)
    fac.write_series(tmp_path / "mr", modality="MR", sop_class=fac.MR_IMAGE)
    assert main(["segment", str(tmp_path / "mr"), "--out", str(tmp_path / "o"), "--model", str(model),
                 "--series", "1.2.3", "--allow-modality", "-q"]) == 2
    assert seen == {"series_uid": "1.2.3", "allow_modality": True}


def test_cli_series_of_a_missing_folder_and_a_real_process(tmp_path, model):
    import subprocess
    import sys

    assert main(["series", str(tmp_path / "nowhere")]) == 2
    fac.write_series(tmp_path / "tilted", tilt_deg=12)
    result = subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", "segment", str(tmp_path / "tilted"),
                             "--out", str(tmp_path / "out"), "--model", str(model), "-q"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "12.0 degrees" in lines[0] and "CT_005.dcm" in lines[0]
    assert not (tmp_path / "out").exists()


def test_loader_warnings_reach_run_json(tmp_path, model):
    """A department running unattended reads run.json, not the log: a missing slice is said there."""
    import json

    from DKOARSegmentationLib.pipeline.segment import segment

    folder = tmp_path / "Hansen_Jens_010203-1234" / "s"  # as some exports name a patient's folder
    files = fac.write_series(folder, n=8)
    files[4].unlink()
    result = segment(folder, tmp_path / "out", model_path=model, device="cpu")
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert any("1 slice missing" in w for w in run["warnings"])
    # the same warnings, less the input's path: run.json names no patient
    assert run["warnings"] == [w.replace(str(folder), "<input>") for w in result.warnings]
    text = (tmp_path / "out" / "run.json").read_text()
    assert "Hansen" not in text and "010203" not in text and str(tmp_path) not in text
    assert not logging.getLogger("DKOARSegmentationLib").handlers  # the collector is gone afterwards

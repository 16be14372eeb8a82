"""Trainee mode, the core: an attempt scored against a reference, border by border.

Borders are checked on phantom structures moved by known distances in each patient direction, in
each patient position (the same move must give the same numbers however the series is laid out),
grown and shrunk; an empty attempt is a result; the scores are those of ``dkoar compare``.
Small phantoms (192 x 192 pixels of 1.3 mm, 3 mm slices) keep it quick.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from DKOARSegmentationLib.cli.main import main
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.monitoring.contour_sets import contour_set_from_masks
from DKOARSegmentationLib.output.label_maps import write_labelmap_nifti
from DKOARSegmentationLib.phantom import PATIENT_POSITIONS, generate_phantom
from DKOARSegmentationLib.practice.borders import DIRECTIONS, OPPOSITE, UNIT_LPS, extents, main_islands
from DKOARSegmentationLib.practice.feedback import border_sentence
from DKOARSegmentationLib.practice.scoring import score_contour_sets
from DKOARSegmentationLib.volume import Segmentation

from .conftest import SMALL_GRID

ARRAY_AXIS_TO_COLUMN = {0: 2, 1: 1, 2: 0}  # array axis (k, j, i) -> column of the affine
# the words for a border that goes beyond (+) and stops short (-), for a structure on the patient's left
WORDS_LEFT_STRUCTURE = {
    "cranial": ("cranial", "too high", "too low"), "caudal": ("caudal", "too low", "too high"),
    "anterior": ("anterior", "too far anterior", "short"), "posterior": ("posterior", "too far posterior", "short"),
    "left": ("lateral", "too far lateral", "short"), "right": ("medial", "too far medial", "short"),
}


@pytest.fixture(scope="module")
def phantoms():
    return {p: generate_phantom(seed=3, position=p, grid=SMALL_GRID) for p in PATIENT_POSITIONS}


def _mask(phantom, name="Parotid_L"):
    structure = next(s for s in phantom.truth.structures if s.name == name)
    return phantom.truth.labels == structure.label


def _shifted(mask, axis, n):
    out = np.zeros_like(mask)
    src, dst = [slice(None)] * 3, [slice(None)] * 3
    size = mask.shape[axis]
    src[axis], dst[axis] = (slice(0, size - n), slice(n, size)) if n >= 0 else (slice(-n, size), slice(0, size + n))
    out[tuple(dst)] = mask[tuple(src)]
    return out


def _axis_along(affine, direction):
    """The array axis along patient direction ``direction``, its voxel size and the index step's sign."""
    unit = np.asarray(UNIT_LPS[direction])
    for axis, column in ARRAY_AXIS_TO_COLUMN.items():
        edge = np.asarray(affine)[:3, column]
        size = float(np.linalg.norm(edge))
        cosine = float(edge @ unit) / size
        if abs(cosine) > 0.99:
            return axis, size, int(np.sign(cosine))
    raise AssertionError(f"no array axis along {direction}")


def _score(reference, attempt, affine, name="Parotid_L"):
    ref, _ = contour_set_from_masks({name: reference}, affine)
    att, _ = contour_set_from_masks({name: attempt}, affine)
    return score_contour_sets(ref, att, name)


@pytest.mark.parametrize("position", PATIENT_POSITIONS)
def test_a_structure_moved_6_mm_in_each_patient_direction_gives_its_borders_and_words(phantoms, position):
    """Moved by the whole number of voxels nearest 6 mm: that border is 6 mm beyond, the opposite
    6 mm short (each within one voxel's size), the other four unchanged; same in every position."""
    phantom = phantoms[position]
    reference = _mask(phantom)
    affine = phantom.ct.affine
    for direction in DIRECTIONS:
        axis, voxel, sign = _axis_along(affine, direction)
        steps = int(round(6.0 / voxel))
        score = _score(reference, _shifted(reference, axis, sign * steps), affine)
        moved = steps * voxel
        assert score.borders_mm[direction] == pytest.approx(6.0, abs=voxel), (position, direction)
        assert score.borders_mm[direction] == pytest.approx(moved, abs=1e-6)
        assert score.borders_mm[OPPOSITE[direction]] == pytest.approx(-moved, abs=1e-6)
        for other in set(DIRECTIONS) - {direction, OPPOSITE[direction]}:
            assert score.borders_mm[other] == pytest.approx(0.0, abs=1e-6), (position, direction, other)
        label, beyond, _ = WORDS_LEFT_STRUCTURE[direction]
        back_label, _, short = WORDS_LEFT_STRUCTURE[OPPOSITE[direction]]
        assert f"{label} border {moved:.1f} mm {beyond}" in score.feedback, (position, direction, score.feedback)
        assert f"{back_label} border {moved:.1f} mm {short}" in score.feedback
        assert len(score.feedback) == 2
        assert score.dice < 1.0 and score.volume_attempt_ml == pytest.approx(score.volume_reference_ml, rel=0.02)


def test_the_same_move_gives_the_same_numbers_in_every_patient_position(phantoms):
    results = {}
    for position, phantom in phantoms.items():
        reference = _mask(phantom)
        axis, voxel, sign = _axis_along(phantom.ct.affine, "anterior")
        results[position] = _score(reference, _shifted(reference, axis, sign * 4), phantom.ct.affine).borders_mm
    first = results["HFS"]
    for position, borders in results.items():
        assert borders == pytest.approx(first, abs=1e-6), position


def test_borders_do_not_depend_on_the_array_order():
    """The arrays transposed (slices last) with the matrix's columns to match: the same borders."""
    phantom = generate_phantom(seed=3, position="HFP", grid=SMALL_GRID)
    reference = _mask(phantom)
    axis, _, sign = _axis_along(phantom.ct.affine, "cranial")
    attempt = ndimage.binary_dilation(_shifted(reference, axis, sign * 2), iterations=1)
    expected = _score(reference, attempt, phantom.ct.affine).borders_mm
    # array (k, j, i) -> (i, j, k): the new i axis is the old k axis and the other way round
    affine = phantom.ct.affine.copy()
    affine[:3, [0, 2]] = affine[:3, [2, 0]]
    transposed = _score(reference.transpose(2, 1, 0).copy(), attempt.transpose(2, 1, 0).copy(), affine).borders_mm
    assert transposed == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("voxels,sense", [(2, 1), (2, -1)], ids=["grown", "shrunk"])
def test_a_grown_and_a_shrunk_structure_move_every_border(phantoms, voxels, sense):
    """Grown: the attempt is the reference dilated by 2 voxels; shrunk: the reference is the attempt
    dilated (eroding a slanted organ would move its pointed ends by more than 2 voxels)."""
    phantom = phantoms["FFS"]
    organ = _mask(phantom, "Brainstem")
    grown = ndimage.binary_dilation(organ, iterations=voxels)
    reference, attempt = (organ, grown) if sense > 0 else (grown, organ)
    score = _score(reference, attempt, phantom.ct.affine, "Brainstem")
    for direction in DIRECTIONS:
        _, voxel, _ = _axis_along(phantom.ct.affine, direction)
        assert score.borders_mm[direction] == pytest.approx(sense * voxels * voxel, abs=voxel), direction
    assert (score.volume_attempt_ml > score.volume_reference_ml) == (sense > 0)
    # cranial and caudal move by whole 3 mm slices, beyond the brainstem's 2.5 mm tolerance
    word = {1: ("too high", "too low"), -1: ("too low", "too high")}[sense]
    assert f"cranial border {2 * 3.0:.1f} mm {word[0]}" in score.feedback
    assert f"caudal border {2 * 3.0:.1f} mm {word[1]}" in score.feedback
    # a midline structure keeps left and right
    assert not any("lateral" in s or "medial" in s for s in score.feedback)


def test_an_empty_attempt_is_a_clear_result(phantoms):
    phantom = phantoms["HFS"]
    reference = _mask(phantom)
    score = _score(reference, np.zeros_like(reference), phantom.ct.affine)
    assert score.attempt_empty and score.dice == 0.0 and score.surface_dice == 0.0 and score.hd95_mm is None
    assert score.apl_mm > 0  # the whole reference contour is still to be drawn
    assert set(score.borders_mm.values()) == {None}
    assert score.feedback == ["the attempt is empty: nothing was drawn for this structure"]
    document = json.loads(json.dumps(score.as_json()))
    assert document["borders_mm"]["cranial"] is None and document["hd95_mm"] is None
    assert any("0.00 ml drawn" in line for line in score.summary_lines())


def test_a_stray_voxel_far_away_does_not_move_a_border(phantoms):
    phantom = phantoms["HFS"]
    reference = _mask(phantom)
    attempt = reference.copy()
    k, j, i = np.argwhere(reference).max(axis=0)
    attempt[min(k + 10, attempt.shape[0] - 1), j, i] = True  # a click of the brush 30 mm above
    score = _score(reference, attempt, phantom.ct.affine)
    assert score.borders_mm == pytest.approx({d: 0.0 for d in DIRECTIONS}, abs=1e-6)
    assert score.feedback == [f"every border within {score.tolerance_mm:g} mm of the reference"]
    assert score.dice < 1.0 and score.hd95_mm is not None


def test_main_islands_keep_real_pieces_and_drop_specks():
    mask = np.zeros((20, 20, 20), bool)
    mask[2:8, 2:8, 2:8] = True  # 216 voxels
    mask[12:16, 12:16, 12:16] = True  # 64 voxels: 23 %, a real second piece
    mask[19, 0, 19] = True  # a single stray voxel
    mask[0, 19, 0:2] = True  # 2 voxels: under 5 %
    kept = main_islands(mask)
    assert kept.sum() == 216 + 64 and kept[14, 14, 14] and not kept[19, 0, 19]
    single = np.zeros((3, 3, 3), bool)
    single[1, 1, 1] = True
    assert main_islands(single).sum() == 1  # the only island always counts
    assert extents(np.zeros((2, 2, 2), bool), np.eye(4)) is None


def test_border_words_for_right_and_midline_structures():
    assert border_sentence("left", 3.04, "R") == "medial border 3.0 mm too far medial"
    assert border_sentence("right", -2.0, "R") == "lateral border 2.0 mm short"
    assert border_sentence("left", 3.0, "") == "left border 3.0 mm too far left"
    assert border_sentence("caudal", 7.5, "L") == "caudal border 7.5 mm too low"
    assert border_sentence("anterior", -3.0, "L") == "anterior border 3.0 mm short"


def test_a_reference_without_the_structure_and_another_grid_are_refused(phantoms):
    phantom = phantoms["HFS"]
    reference = _mask(phantom)
    with pytest.raises(DKOARError, match="the reference has no Brainstem"):
        score_contour_sets(contour_set_from_masks({"Parotid_L": reference}, phantom.ct.affine)[0],
                           contour_set_from_masks({"Brainstem": reference}, phantom.ct.affine)[0], "Brainstem")
    other = phantom.ct.affine.copy()
    other[:3, 3] += 5.0
    with pytest.raises(DKOARError, match="not on the grid"):
        score_contour_sets(contour_set_from_masks({"Parotid_L": reference}, phantom.ct.affine)[0],
                           contour_set_from_masks({"Parotid_L": reference}, other)[0], "Parotid_L")


# ---------------------------------------------------------------------------------------------
# the command


def _rtstruct(ct, labels, structures, path):
    from DKOARSegmentationLib.output.rtstruct_writer import RTStructOptions, write_rtstruct

    write_rtstruct(ct, Segmentation(labels, ct.affine, structures), path, RTStructOptions())
    return path


def test_practice_score_equals_dkoar_compare_on_rtstructs(small_phantom, tmp_path, capsys):
    """A trainee's RTSTRUCT against the reference RTSTRUCT: the same numbers as `dkoar compare
    --ai ATTEMPT --final REFERENCE` for that structure, and the feedback JSON of the issue."""
    from DKOARSegmentationLib.input.ct_loader import load_ct

    folder, phantom = small_phantom
    ct = load_ct(folder / "ct")
    truth = phantom.truth
    parotid = next(s for s in truth.structures if s.name == "Parotid_L")
    labels = truth.labels.copy()
    grown = ndimage.binary_dilation(labels == parotid.label, iterations=2) & (labels == 0)
    labels[grown] = parotid.label
    axis, _, sign = _axis_along(ct.affine, "caudal")
    moved = _shifted(labels == parotid.label, axis, sign * 3)
    labels[labels == parotid.label] = 0
    labels[moved & (labels == 0)] = parotid.label
    reference = _rtstruct(ct, truth.labels, truth.structures, tmp_path / "reference.dcm")
    attempt = _rtstruct(ct, labels, (parotid,), tmp_path / "attempt.dcm")

    out = tmp_path / "feedback.json"
    assert main(["practice", "score", "--reference", str(reference), "--attempt", str(attempt),
                 "--ct", str(folder / "ct"), "--structure", "Parotid_L", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    feedback = json.loads(out.read_text())
    assert main(["compare", "--ai", str(attempt), "--final", str(reference), "--ct", str(folder / "ct"),
                 "--out", str(tmp_path / "compare.json")]) == 0
    compared = json.loads((tmp_path / "compare.json").read_text())["structures"]["Parotid_L"]
    for key in ("dice", "surface_dice", "tolerance_mm", "hd95_mm", "msd_mm", "apl_mm"):
        assert feedback[key] == compared[key], key
    assert feedback["volume_attempt_ml"] == compared["volume_ai_ml"]
    assert feedback["volume_reference_ml"] == compared["volume_final_ml"]
    assert set(feedback) >= {"structure", "dice", "surface_dice", "tolerance_mm", "hd95_mm", "apl_mm",
                             "volume_reference_ml", "volume_attempt_ml", "borders_mm", "feedback"}
    assert list(feedback["borders_mm"]) == ["cranial", "caudal", "anterior", "posterior", "left", "right"]
    assert feedback["border_names"]["left"] == "lateral"
    assert feedback["borders_mm"]["caudal"] > 3 * 3.0 and "caudal border" in feedback["feedback"][0]
    assert "Parotid_L: Dice" in printed and feedback["feedback"][0] in printed and str(out) in printed


def test_practice_score_on_label_maps_with_an_empty_attempt(small_phantom, tmp_path, capsys):
    folder, phantom = small_phantom
    truth = phantom.truth
    write_labelmap_nifti(truth, tmp_path / "reference.nii.gz")
    write_labelmap_nifti(Segmentation(np.zeros_like(truth.labels), truth.affine, truth.structures),
                         tmp_path / "attempt.nii.gz")
    assert main(["practice", "score", "--reference", str(tmp_path / "reference.nii.gz"),
                 "--attempt", str(tmp_path / "attempt.nii.gz"), "--ct", str(folder / "ct"),
                 "--structure", "parotid l"]) == 0
    printed = capsys.readouterr().out
    assert "nothing was drawn" in printed and "Parotid_L" in printed


def test_practice_score_refuses_in_one_line_and_writes_nothing(small_phantom, tmp_path, capsys):
    folder, phantom = small_phantom
    truth = phantom.truth
    write_labelmap_nifti(truth, tmp_path / "reference.nii.gz")
    shifted = truth.affine.copy()
    shifted[:3, 3] += 10.0
    write_labelmap_nifti(Segmentation(truth.labels, shifted, truth.structures), tmp_path / "elsewhere.nii.gz")
    out = tmp_path / "feedback.json"
    common = ["practice", "score", "--reference", str(tmp_path / "reference.nii.gz"), "--ct", str(folder / "ct"),
              "--out", str(out)]
    for extra, message in ((["--attempt", str(tmp_path / "elsewhere.nii.gz"), "--structure", "Parotid_L"],
                            "not on the grid of the CT"),
                           (["--attempt", str(tmp_path / "reference.nii.gz"), "--structure", "Spleen"],
                            "not a structure of the catalogue"),
                           (["--attempt", str(tmp_path / "missing.nii.gz"), "--structure", "Parotid_L"],
                            "no such file")):
        assert main(common + extra) == 2
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1, error
    assert not out.exists()

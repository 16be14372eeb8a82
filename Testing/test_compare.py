"""`dkoar compare`: label maps or RTSTRUCTs in, the per-structure metrics out (JSON + CSV)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import surface_distance as ref  # DeepMind's package, the reference (test extra)

from DKOARSegmentationLib.monitoring.comparison import METRIC_FIELDS, compare_segmentations
from DKOARSegmentationLib.output.label_maps import write_labelmap_nifti
from DKOARSegmentationLib.output.rtstruct_writer import RTStructOptions, write_rtstruct
from DKOARSegmentationLib.volume import Segmentation
from Testing.log_factory import clinician_edits

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SPEC_KEYS = {"dice", "hd95_mm", "msd_mm", "surface_dice", "tolerance_mm", "apl_mm", "volume_ai_ml", "volume_final_ml"}


def dkoar(*args):
    return subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def edited_case(small_phantom, tmp_path_factory, catalogue):
    out, phantom = small_phantom
    work = tmp_path_factory.mktemp("compare")
    truth = phantom.truth
    final = Segmentation(clinician_edits(truth.labels, catalogue), truth.affine.copy(), truth.structures)
    write_labelmap_nifti(truth, work / "ai.nii.gz")
    write_labelmap_nifti(final, work / "final.nii.gz")
    write_rtstruct(phantom.ct, truth, work / "ai.dcm", RTStructOptions(model_name="DK-OAR", model_version="1.0"))
    write_rtstruct(phantom.ct, final, work / "final.dcm", RTStructOptions(model_name="DK-OAR", model_version="1.0"))
    return out, phantom, truth, final, work


def test_compare_label_maps(edited_case, catalogue):
    out, phantom, truth, final, work = edited_case
    result = dkoar("compare", "--ai", work / "ai.nii.gz", "--final", work / "final.nii.gz", "--out", work / "lm.json")
    assert result.returncode == 0, result.stderr
    document = json.loads((work / "lm.json").read_text())
    structures = document["structures"]
    present = {catalogue.by_label(v).name for v in np.unique(truth.labels) if v}
    assert set(structures) == present
    for name, values in structures.items():
        assert SPEC_KEYS <= set(values)
        assert values["tolerance_mm"] == catalogue.by_name(name).tolerance_mm
    changed = {name for name, v in structures.items() if not v["unchanged"]}
    assert changed == {"Parotid_L", "Mandible", "SpinalCord"}
    assert structures["Parotid_L"]["volume_final_ml"] > structures["Parotid_L"]["volume_ai_ml"]
    assert structures["Mandible"]["volume_final_ml"] < structures["Mandible"]["volume_ai_ml"]
    # grown by 2 pixels of 1.3 mm (2.6 mm), less than the parotid's 2.85 mm: surface Dice 1, no APL
    assert structures["Parotid_L"]["surface_dice"] == 1.0 and structures["Parotid_L"]["apl_mm"] == 0.0
    # moved by 3 columns of 1.3 mm = 3.9 mm > 2.93 mm: the cord's far side is redrawn on every slice
    cord = structures["SpinalCord"]
    assert cord["apl_mm"] > 0 and cord["surface_dice"] < 1.0 and cord["hd95_mm"] == pytest.approx(3.9, abs=0.01)
    assert structures["Brain"] == {**structures["Brain"], "dice": 1.0, "hd95_mm": 0.0, "apl_mm": 0.0, "surface_dice": 1.0}
    # against the reference on the full grid
    spacing = (3.0, 1.3, 1.3)
    for name in ("SpinalCord", "Mandible"):
        label = catalogue.by_name(name).label
        theirs = ref.compute_surface_distances(truth.labels == label, final.labels == label, spacing)
        tol = catalogue.by_name(name).tolerance_mm
        assert structures[name]["surface_dice"] == pytest.approx(ref.compute_surface_dice_at_tolerance(theirs, tol), abs=1e-6)
        assert structures[name]["hd95_mm"] == pytest.approx(ref.compute_robust_hausdorff(theirs, 95), abs=0.01)
    with open(work / "lm.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["structure"] for r in rows] == list(structures)
    assert set(rows[0]) == {"structure", *METRIC_FIELDS}


def test_compare_rtstructs_gives_the_label_map_figures(edited_case):
    out, phantom, truth, final, work = edited_case
    result = dkoar("compare", "--ai", work / "ai.dcm", "--final", work / "final.dcm", "--ct", out / "ct",
                   "--out", work / "rs.json")
    assert result.returncode == 0, result.stderr
    assert "3 changed" in result.stdout
    from_rtstruct = json.loads((work / "rs.json").read_text())["structures"]
    expected = compare_segmentations(truth, final)
    assert set(from_rtstruct) >= set(expected)
    for name, r in expected.items():
        for key in ("dice", "surface_dice", "apl_mm", "volume_final_ml"):
            assert from_rtstruct[name][key] == pytest.approx(getattr(r, key), abs=1e-5), (name, key)


def test_compare_errors_are_one_line(edited_case, tmp_path):
    out, phantom, truth, final, work = edited_case
    result = dkoar("compare", "--ai", work / "ai.dcm", "--final", work / "final.dcm", "--out", tmp_path / "x.json")
    assert result.returncode == 2 and "--ct" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    other = Segmentation(truth.labels[:, :-1].copy(), truth.affine.copy(), truth.structures)
    write_labelmap_nifti(other, tmp_path / "other.nii.gz")
    result = dkoar("compare", "--ai", work / "ai.nii.gz", "--final", tmp_path / "other.nii.gz", "--out", tmp_path / "x.json")
    assert result.returncode == 2 and "same grid" in result.stderr
    assert not (tmp_path / "x.json").exists()

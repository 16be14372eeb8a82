"""``dkoar dataset build``: an nnU-Net v2 raw dataset from a phantom cohort (the labels are the
phantoms' own voxels), the clinicians' final contours of logged cases added, no PHI in it; and the
structures a site adds through its site configuration."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.input.ct_loader import load_ct
from DKOARSegmentationLib.monitoring.case_from_files import add_case
from DKOARSegmentationLib.monitoring.correction_log import open_log
from DKOARSegmentationLib.monitoring.pseudonym import SiteKey
from DKOARSegmentationLib.phantom import PhantomGrid
from DKOARSegmentationLib.structures.site_config import apply_site_config, parse_site_config
from Testing.research_factory import PITUITARY, STRUCTURES, site_catalogue, write_case, write_cohort

TINY = PhantomGrid(matrix=48, pixel_mm=5.0, slice_mm=6.0)


def dkoar(*args):
    return subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    catalogue = site_catalogue(root)
    write_cohort(root / "data", range(50, 54), catalogue, TINY, lacking={53: "Pituitary"})
    result = dkoar("cohort", "scan", root / "data", "--map", root / "data" / "names.csv", "--site-config",
                   root / "site.json", "--out", root / "cohort.json")
    assert result.returncode == 0, result.stderr
    out = root / "raw" / "Dataset502_Phantoms"
    result = dkoar("dataset", "build", root / "cohort.json", "--out", out, "--site-config", root / "site.json", "--quiet")
    assert result.returncode == 0, result.stderr
    return root, out, catalogue, result.stdout


def test_the_dataset_has_nnunet_layout_with_catalogue_names_and_ct_channel(built):
    _, out, _, stdout = built
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"} and dataset["file_ending"] == ".nii.gz"
    # the whole drawn set in catalogue order, numbered 1..N as nnU-Net requires
    assert dataset["labels"] == {"background": 0, **{name: n for n, name in enumerate(
        ["Brain", "Brainstem", "SpinalCord", "Parotid_L", "Parotid_R", "Mandible", "Pituitary"], start=1)}}
    cases = sorted(p.name for p in (out / "labelsTr").iterdir())
    assert len(cases) == dataset["numTraining"] == 3
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [c.replace(".nii.gz", "_0000.nii.gz") for c in cases]
    assert "lacks Pituitary" in stdout


def test_labels_are_the_phantoms_voxels_read_back_from_their_rtstructs(built, catalogue):
    root, out, site, _ = built
    details = json.loads((out / "dkoar_dataset.json").read_text())
    values = {s["name"]: s["value"] for s in details["structures"]}
    cohort = json.loads((root / "cohort.json").read_text())
    for case in cohort["cases"]:
        if case["case_id"] not in details["cases"]:
            continue
        ct = load_ct((root / "data" / case["ct_files"][0]).parent)
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str((root / "data" / case["ct_files"][0]).parent.parent
                                                          / "truth.nii.gz")))
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / f"{case['case_id']}.nii.gz")))
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "imagesTr" / f"{case['case_id']}_0000.nii.gz")))
        assert np.array_equal(image, ct.voxels)
        pituitary = labels == values["Pituitary"]  # drawn over brain and brainstem voxels
        for name in ("Brain", "Brainstem", "Parotid_L", "Parotid_R", "Mandible", "SpinalCord"):
            expected = (truth == catalogue.by_name(name).label) & ~pituitary
            assert np.array_equal(labels == values[name], expected), (case["case_id"], name)
        assert (labels == values["Pituitary"]).sum() > 8


def test_the_dataset_holds_no_patient_identity_and_says_what_it_left_out(built):
    root, out, _, _ = built
    names = [p.name for p in out.rglob("*")]
    assert all(n.startswith(("case_", "dataset", "dkoar_dataset", "imagesTr", "labelsTr")) for n in names), names
    details = (out / "dkoar_dataset.json").read_text()
    cohort = json.loads((root / "cohort.json").read_text())
    for case in cohort["cases"]:
        assert case["series_uid"] not in details and "patient_" not in details
    document = json.loads(details)
    assert list(document["excluded"].values()) == ["lacks Pituitary"]
    assert document["rules"]["overlaps"].startswith("where structures overlap, the smaller")
    added = [s for s in document["structures"] if s["added"]]
    assert [s["name"] for s in added] == ["Pituitary"] and added[0]["definition"]["guideline"] == PITUITARY["guideline"]


def test_include_log_adds_the_clinicians_final_contours_of_logged_cases(built, tmp_path):
    root, _, catalogue, _ = built
    exports = tmp_path / "exports"
    final = write_case(exports / "visit", 60, catalogue, TINY, {}, STRUCTURES)
    ai = tmp_path / "ai.dcm"
    shutil.copy(final, ai)
    with open_log(tmp_path / "log.sqlite") as log:
        add_case(log, ai_path=ai, final_path=final, ct=load_ct(exports / "visit" / "ct"),
                 key=SiteKey(b"k" * 32), site="Aarhus", catalogue=catalogue)
        log.start_case(site="Aarhus")  # never finished: not a source
    out = tmp_path / "raw" / "Dataset503_Loop"
    result = dkoar("dataset", "build", root / "cohort.json", "--out", out, "--site-config", root / "site.json",
                   "--include-log", tmp_path / "log.sqlite", "--log-files", exports, "--quiet")
    assert result.returncode == 0, result.stderr
    details = json.loads((out / "dkoar_dataset.json").read_text())
    assert details["correction_log"] == {"found": 1, "without_final": 0, "final_not_found": 0, "without_ct": 0}
    assert details["cases"]["log_0001"]["origin"].startswith("correction log")
    assert (out / "labelsTr" / "log_0001.nii.gz").is_file() and len(details["cases"]) == 4


def test_a_dataset_folder_must_be_named_as_nnunet_names_them(built, tmp_path):
    root, _, _, _ = built
    result = dkoar("dataset", "build", root / "cohort.json", "--out", tmp_path / "MyData")
    assert result.returncode == 2 and "DatasetNNN_Name" in result.stderr and not (tmp_path / "MyData").exists()


def test_a_site_adds_a_structure_with_its_codes_colour_tolerance_and_guideline(catalogue):
    config = parse_site_config(json.dumps({"add": [PITUITARY]}), "json", "site.json")
    site = apply_site_config(catalogue, config)
    pituitary = site.by_name("Hypofyse")
    assert (pituitary.label, pituitary.type.value, pituitary.rgb, pituitary.tolerance_mm) == (35, "56329008",
                                                                                               (200, 0, 200), 1.5)
    assert pituitary.category.value == "91723000" and pituitary.modifier is None and not pituitary.core
    assert site.guidelines["Pituitary"].startswith("The gland in the sella") and len(site) == len(catalogue) + 1
    listed = apply_site_config(catalogue, parse_site_config(json.dumps(
        {"structures": ["Brainstem"], "add": [PITUITARY]}), "json", "site.json"))
    assert [s.name for s in listed] == ["Brainstem", "Pituitary"]


@pytest.mark.parametrize("change, message", [
    ({"label": 17}, "label 17 is already Parotid_L's"),
    ({"type": {"scheme": "SCT", "code": "45289007", "meaning": "Parotid gland"}, "laterality": "L"},
     "has the codes of a structure the catalogue already holds"),
    ({"name": "Parotis"}, None),
    ({"type": "56329008"}, "type must be"),
    ({"label": 300}, "outside 1-255"),
    ({"color": "pink"}, "is not #rrggbb"),
])
def test_a_site_cannot_add_a_structure_that_clashes_with_the_catalogue(catalogue, change, message):
    config = parse_site_config(json.dumps({"add": [{**PITUITARY, **change}]}), "json", "site.json")
    if message is None:  # a name the spellings table gives to Parotid: the catalogue's look-up stays unambiguous
        assert apply_site_config(catalogue, config).by_name("Parotis").label == 35
        return
    with pytest.raises(DKOARError, match=message):
        apply_site_config(catalogue, config)

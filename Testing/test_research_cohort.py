"""Cohort scan: ROI names in clinics' spellings mapped to the catalogue, every CT paired with its
RTSTRUCTs, and the real planning-system structure sets of ../shared/realdata read without a crash."""

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from DKOARSegmentationLib.phantom import PhantomGrid
from DKOARSegmentationLib.research.names import NameMapper
from Testing.conftest import REPO
from Testing.research_factory import site_catalogue, write_cohort

# ../shared/realdata beside the repository; DKOAR_REALDATA where a checkout lies elsewhere (a worktree)
REALDATA = Path(os.environ.get("DKOAR_REALDATA", REPO.parent / "shared" / "realdata"))
TINY = PhantomGrid(matrix=48, pixel_mm=5.0, slice_mm=6.0)


def dkoar(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("roi, structure", [
    ("Parotid_L", "Parotid_L"), ("L Parotid", "Parotid_L"), ("PAROTID_LT", "Parotid_L"), ("parotid-left", "Parotid_L"),
    ("Parotis_sin", "Parotid_L"), ("parotis dx", "Parotid_R"), ("Glnd_Submand_R", "Submandibular_R"),
    ("BrainStem", "Brainstem"), ("Hjernestamme", "Brainstem"), ("Spinal-Cord", "SpinalCord"),
    ("Medulla spinalis", "SpinalCord"), ("N. opticus dx", "OpticNerve_R"), ("Synsnerve_V", "OpticNerve_L"),
    ("Øresnegl sin", "Cochlea_L"), ("Spiserør", "Esophagus"), ("Linse H", "Lens_R"), ("Musc_Constrict_S", "PCM_Up"),
    ("Constrictor inf", "PCM_Low"), ("Skjoldbruskkirtel", "Thyroid"), ("Cavity_Oral", "OralCavity"),
])
def test_roi_names_in_clinics_spellings_map_to_the_catalogue(catalogue, roi, structure):
    assert NameMapper(catalogue).map(roi).structure.name == structure


@pytest.mark.parametrize("roi", ["SpinalCord_PRV5", "Parotid", "z_Brainstem", "Lt Lung", "PTV_70", "Parotid_L_old"])
def test_names_that_are_not_exactly_a_structure_stay_unmapped(catalogue, roi):
    assert NameMapper(catalogue).map(roi).structure is None


def test_a_site_mapping_file_maps_its_own_names_and_marks_others_ignored(catalogue, tmp_path):
    (tmp_path / "names.csv").write_text("roi_name,structure\nOAR Cord,SpinalCord\nBODY,-\nPTV_70,\n", encoding="utf-8")
    mapper = NameMapper(catalogue, tmp_path / "names.csv")
    assert mapper.map("oar_cord").structure.name == "SpinalCord" and mapper.map("oar_cord").how == "site"
    assert mapper.map("Body").how == "ignored" and mapper.map("PTV 70").how == "ignored"
    (tmp_path / "bad.csv").write_text("roi_name,structure\nX,Spleen\n", encoding="utf-8")
    result = dkoar("cohort", "scan", tmp_path, "--map", tmp_path / "bad.csv")
    assert result.returncode == 2 and "'Spleen' is not a structure of the catalogue" in result.stderr


@pytest.fixture(scope="module")
def phantom_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    site_catalogue(root)
    write_cohort(root / "data", range(20, 25), site_catalogue(root), TINY, lacking={24: "Pituitary"})
    return root


def test_cohort_scan_pairs_every_ct_with_its_rtstruct_and_counts_cases_per_structure(phantom_cohort):
    root = phantom_cohort
    result = dkoar("cohort", "scan", root / "data", "--map", root / "data" / "names.csv", "--site-config",
                   root / "site.json", "--out", root / "cohort.json")
    assert result.returncode == 0, result.stderr
    cohort = json.loads((root / "cohort.json").read_text())
    assert len(cohort["cases"]) == 5 and not cohort["rtstructs_without_ct"]
    counts = {k: v["cases"] for k, v in cohort["structures"].items() if v["cases"]}
    assert counts == {"Brain": 5, "Brainstem": 5, "SpinalCord": 5, "Parotid_L": 5, "Parotid_R": 5, "Mandible": 5,
                      "Pituitary": 4}
    assert cohort["unmapped"] == {"Couch_Top": 5}
    assert re.search(r"^Pituitary +4 +4 +0$", result.stdout, re.M)
    assert "unmapped ROI names (1; RTSTRUCTs using each): Couch_Top (5)" in result.stdout
    assert all(rt["matched_by"] == "referenced series" for case in cohort["cases"] for rt in case["rtstructs"])


REALDATA_FOLDERS = ["orthanc_lctsc_plastimatch", "ibsi1_lung_ct_cerr", "mirp_nsclc_lung1_aria", "rt_utils_mim",
                    "dicompyler_core_breast"]


@pytest.fixture(scope="module")
def realdata(tmp_path_factory):
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is not here (a clone elsewhere)")
    with_rtstruct = sorted({p.relative_to(REALDATA).parts[0] for p in REALDATA.rglob("*") if p.is_file()
                            and _is_rtstruct(p)})
    assert with_rtstruct == sorted(REALDATA_FOLDERS)
    # the ARIA export's CT is kept as a tar.xz of its files: unpacked beside its RTSTRUCT, it is a cohort case
    aria = tmp_path_factory.mktemp("aria")
    with tarfile.open(REALDATA / "mirp_nsclc_lung1_aria" / "ct_image.tar.xz") as tar:
        tar.extractall(aria / "ct", filter="data")
    (aria / "RS_1-1.dcm").write_bytes((REALDATA / "mirp_nsclc_lung1_aria" / "RS_1-1.dcm").read_bytes())
    return aria


def _is_rtstruct(path) -> bool:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True).get("Modality") == "RTSTRUCT"
    except Exception:  # noqa: BLE001 - not DICOM
        return False


@pytest.mark.parametrize("folder, cases, unmapped, note", [
    ("orthanc_lctsc_plastimatch", 1, {"Heart": 1, "Lung_L": 1, "Lung_R": 1}, "129 of 130 referenced slices"),
    ("ibsi1_lung_ct_cerr", 1, {"GTV-1": 1}, "26 of 26 contours reference no image"),
    ("mirp_nsclc_lung1_aria", 0, {"GTV-1": 1, "Lung-Left": 1, "Lung-Right": 1}, "ROI numbers are not 1..4: 2, 6, 7, 8"),
    ("rt_utils_mim", 1, {"ROI-1": 3, "ROI-2": 2, "ROI-3": 2, "ROI-4": 2}, "3 of 5 referenced slices"),
    ("dicompyler_core_breast", 1, {"Areola": 1, "BODY": 1, "Borders": 1, "Breast": 1, "Heart": 1, "Lt Lung": 1,
                                   "Nodes": 1, "Scar": 1, "Tumor Bed": 1, "Tumor Bed Block": 1}, "empty ROI"),
])
def test_cohort_scan_reads_every_real_planning_system_rtstruct(realdata, tmp_path, folder, cases, unmapped, note):
    result = dkoar("cohort", "scan", REALDATA / folder, "--out", tmp_path / "cohort.json")
    assert result.returncode == 0, result.stderr
    cohort = json.loads((tmp_path / "cohort.json").read_text())
    assert len(cohort["cases"]) == cases and cohort["unmapped"] == unmapped
    assert note in result.stdout
    print(result.stdout)


def test_the_aria_export_with_its_ct_becomes_a_case_and_its_structures_rasterise(realdata, tmp_path):
    """Varian ARIA's structure set (ROI numbers 2, 6, 7, 8), with lungs a site added as structures."""
    lungs = [{"name": f"Lung_{side}", "laterality": side, "aliases": [f"Lung-{word}"], "color": colour,
              "type": {"scheme": "SCT", "code": "39607008", "meaning": "Lung"}}
             for side, word, colour in (("L", "Left", "#80c0ff"), ("R", "Right", "#4080ff"))]
    (tmp_path / "site.json").write_text(json.dumps({"add": lungs}), encoding="utf-8")
    result = dkoar("cohort", "scan", realdata, "--site-config", tmp_path / "site.json", "--out", tmp_path / "c.json")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^SpinalCord +1 +1 +0$", result.stdout, re.M) and re.search(r"^Lung_L +1 +1 +0$", result.stdout, re.M)
    out = tmp_path / "ds" / "Dataset777_Lungs"
    result = dkoar("dataset", "build", tmp_path / "c.json", "--out", out, "--site-config", tmp_path / "site.json",
                   "--quiet")
    assert result.returncode == 0, result.stderr
    labels = json.loads((out / "dataset.json").read_text())["labels"]
    assert labels == {"background": 0, "SpinalCord": 1, "Lung_L": 2, "Lung_R": 3}
    import numpy as np
    import SimpleITK as sitk

    image = sitk.ReadImage(str(out / "labelsTr" / "case_0001.nii.gz"))
    volumes = np.bincount(sitk.GetArrayFromImage(image).ravel(), minlength=4)[1:] * np.prod(image.GetSpacing()) / 1000
    assert 10 < volumes[0] < 60 and 1000 < volumes[1] < 4000 and 1000 < volumes[2] < 4000, volumes  # ml

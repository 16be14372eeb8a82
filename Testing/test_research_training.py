"""From phantom cohorts to a trained nnU-Net model that contours a structure the site added.

The whole researcher's path on the CPU in a few minutes: five clinics' phantom CTs with RTSTRUCTs
whose ROIs are named in five spellings and hold a structure the site added (the pituitary), a
cohort scan, an nnU-Net dataset, nnU-Net's own planning, preprocessing and trainer for one short
epoch on a small network, the model folder with its card, and ``dkoar segment`` with it: the new
structure is in the RTSTRUCT with its SNOMED CT code, and in the .seg.nrrd with its terminology.
"""

import json
import subprocess
import sys

import pydicom
import pytest

from DKOARSegmentationLib.phantom import PhantomGrid
from Testing.research_factory import PITUITARY, STRUCTURES, site_catalogue, write_cohort

TINY = PhantomGrid(matrix=48, pixel_mm=5.0, slice_mm=6.0)


def dkoar(*args, timeout=900):
    result = subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", *map(str, args)], capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.timeout(1800)  # nnU-Net's planning, preprocessing, one epoch and validation on the CPU
def test_a_model_trained_with_nnunet_on_a_phantom_cohort_contours_the_structure_the_site_added(tmp_path):
    catalogue = site_catalogue(tmp_path)
    write_cohort(tmp_path / "data", range(30, 37), catalogue, TINY, lacking={36: "Pituitary"})
    dkoar("cohort", "scan", tmp_path / "data", "--map", tmp_path / "data" / "names.csv", "--site-config",
          tmp_path / "site.json", "--out", tmp_path / "cohort.json")
    dataset = tmp_path / "nnUNet_raw" / "Dataset901_SitePituitary"
    built = dkoar("dataset", "build", tmp_path / "cohort.json", "--out", dataset, "--site-config", tmp_path / "site.json",
                  "--structures", ",".join(STRUCTURES), "--quiet")
    assert "lacks Pituitary" in built.stdout
    details = json.loads((dataset / "dkoar_dataset.json").read_text())
    assert len(details["cases"]) == 6 and len(details["excluded"]) == 1

    model = tmp_path / "model"
    dkoar("train", dataset, "--out", model, "--device", "cpu", "--epochs", "1", "--iterations-per-epoch", "10",
          "--features-scale", "0.25", "--processes", "1", "--version", "0.0.1")
    manifest = json.loads((model / "dkoar_model.json").read_text())
    assert manifest["labels"]["7"] == "Pituitary" and manifest["structures"][0]["type"]["code"] == "56329008"
    assert "6 cases (6 from the cohort; 1 left out)" in manifest["training_data"]
    assert "nnUNetTrainerNoMirroring" in manifest["training_data"] and "1 epochs x 10 iterations" in manifest["training_data"]
    card = dkoar("model", "info", model).stdout
    assert "nnU-Net validation" in card and "NOT FOR CLINICAL USE" in card
    dkoar("model", "verify", model)

    # run as any site would, without the site configuration: the model brings the structure's definition
    dkoar("segment", tmp_path / "data" / "patient_0" / "ct", "--out", tmp_path / "result", "--model", model,
          "--device", "cpu", "--quiet")
    ds = pydicom.dcmread(tmp_path / "result" / "rtstruct.dcm")
    numbers = {roi.ROIName: roi.ROINumber for roi in ds.StructureSetROISequence}
    assert set(numbers) == set(STRUCTURES)
    observation = next(o for o in ds.RTROIObservationsSequence if o.ReferencedROINumber == numbers["Pituitary"])
    code = observation.RTROIIdentificationCodeSequence[0]
    assert (code.CodingSchemeDesignator, code.CodeValue, code.CodeMeaning) == ("SCT", "56329008", "Pituitary gland")
    colour = next(c.ROIDisplayColor for c in ds.ROIContourSequence if c.ReferencedROINumber == numbers["Pituitary"])
    assert list(colour) == [200, 0, 200]
    import slicerio

    segments = {s["name"]: s for s in slicerio.read_segmentation(str(tmp_path / "result" / "segmentation.seg.nrrd"),
                                                                  skip_voxels=True)["segments"]}
    assert segments["Pituitary"]["terminology"]["type"] == ["SCT", "56329008", PITUITARY["type"]["meaning"]]
    assert catalogue.by_name("Pituitary").label == 35

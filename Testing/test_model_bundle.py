"""Model bundles are verified before anything loads, and nothing in them runs."""

import json

import pytest
import torch

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.model.bundle import MANIFEST_NAME, file_sha256, load_bundle
from DKOARSegmentationLib.model.devices import resolve_device
from DKOARSegmentationLib.model.loading import load_model
from DKOARSegmentationLib.model.manifest import init_manifest
from DKOARSegmentationLib.resources import demo_model_dir
from Testing.model_factory import make_model_folder


class RunsCode:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_demo_model_bundle_is_complete_and_labelled_not_clinical(catalogue):
    bundle = load_bundle(demo_model_dir())
    assert not bundle.clinical_use and "NOT FOR CLINICAL USE" in bundle.intended_use.upper()
    stage = "inner_ear/"  # the second stage on crops around the inner ears
    assert set(bundle.files) == {"dataset.json", "plans.json", "fold_0/checkpoint_final.pth",
                                 stage + "dataset.json", stage + "plans.json", stage + "fold_0/checkpoint_final.pth"}
    assert [r["folder"] for r in bundle.card["refinements"]] == ["inner_ear"]
    for weights in ("fold_0/checkpoint_final.pth", stage + "fold_0/checkpoint_final.pth"):
        assert (demo_model_dir() / weights).stat().st_size < 20 * 1024 * 1024
    assert {catalogue.by_name(name).label for name in bundle.labels.values()} == {s.label for s in catalogue}
    checkpoint = bundle.load_checkpoint("fold_0/checkpoint_final.pth")
    assert checkpoint["trainer_name"] == "nnUNetTrainerNoMirroring"  # left and right stay apart
    assert checkpoint["inference_allowed_mirroring_axes"] is None
    plans = bundle.read_json("plans.json")
    assert plans["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
    perf = bundle.card["performance"]  # measured by tools/evaluate_demo_model.py on unseen phantoms
    assert 0 < perf["mean_dice_32"] <= 1 and len(perf["per_structure"]) == 34
    assert "never seen in training" in perf["evaluated_on"]


def test_tampered_file_is_refused(tmp_path):
    folder = make_model_folder(tmp_path / "m")
    load_bundle(folder)
    with open(folder / "plans.json", "a") as f:
        f.write(" ")
    with pytest.raises(DKOARError, match="sha256 differs"):
        load_bundle(folder)


def test_missing_manifest_and_missing_file(tmp_path):
    folder = make_model_folder(tmp_path / "m")
    (folder / "fold_0" / "checkpoint_final.pth").unlink()
    with pytest.raises(DKOARError, match="missing"):
        load_bundle(folder)
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(DKOARError, match="no dkoar_model.json"):
        load_bundle(folder)


def test_checkpoint_whose_pickle_runs_code_is_refused(tmp_path, capsys):
    folder = make_model_folder(tmp_path / "m")
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    torch.save({"network_weights": {}, "payload": RunsCode()}, checkpoint)
    init_manifest(folder, "test model", "0.0.2", intended_use="tests", force=True)  # hashes match again
    bundle = load_bundle(folder)
    with pytest.raises(DKOARError, match="would run code"):
        load_model(bundle, resolve_device("cpu"))
    assert "this would have run" not in capsys.readouterr().out


def test_manifest_init_refuses_to_overwrite_without_force(tmp_path):
    folder = make_model_folder(tmp_path / "m")
    with pytest.raises(DKOARError, match="--force"):
        init_manifest(folder, "x", "1", intended_use="x")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["files"]["plans.json"] == file_sha256(folder / "plans.json")
    assert manifest["labels"]["17"] == "Parotid_L"


def test_plans_naming_a_foreign_class_is_refused(tmp_path):
    folder = make_model_folder(tmp_path / "m")
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "os.system"
    (folder / "plans.json").write_text(json.dumps(plans))
    init_manifest(folder, "test model", "0.0.3", intended_use="tests", force=True)
    with pytest.raises(DKOARError, match="not one this extension runs"):
        load_model(load_bundle(folder), resolve_device("cpu"))


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(DKOARError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(DKOARError, match="unknown device"):
        resolve_device("tpu")

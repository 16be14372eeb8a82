"""A model's second stage on crops (the demo model's inner ears): described in the manifest with its
files' sha256, placed from the first stage's structures, its structure put in place of the first
stage's, its uncertainty with it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.model.bundle import load_bundle
from DKOARSegmentationLib.model.crop_refinement import crop_box, crop_centre
from DKOARSegmentationLib.model.loading import load_model
from DKOARSegmentationLib.model.manifest import add_refinement, init_manifest
from DKOARSegmentationLib.model.predictor import predict
from DKOARSegmentationLib.phantom import PATIENT_POSITIONS, PhantomGrid, generate_phantom
from Testing.nnunet_factory import make_nnunet_folder
from tools import train_demo_inner_ear

GRID = PhantomGrid(matrix=160, pixel_mm=1.5, slice_mm=2.5, z_min=-60.0, z_max=60.0)


@pytest.mark.parametrize("position", PATIENT_POSITIONS)
def test_the_crop_is_placed_on_the_inner_ear_in_every_patient_position(catalogue, position):
    phantom = generate_phantom(12, position, GRID)
    values = {s.name: s.label for s in catalogue}
    for side in ("L", "R"):
        centre = crop_centre(phantom.truth.labels, phantom.truth.affine, values, side, train_demo_inner_ear.CENTRE)
        kji = np.argwhere(phantom.truth.labels == values[f"Cochlea_{side}"])
        truth = (kji[:, ::-1] @ phantom.truth.affine[:3, :3].T + phantom.truth.affine[:3, 3]).mean(axis=0)
        assert np.all(np.abs(centre - truth) < 6.0), (side, centre, truth)
        box = crop_box(phantom.ct, centre, train_demo_inner_ear.CROP_MM)
        assert np.count_nonzero(phantom.truth.labels[box] == values[f"Cochlea_{side}"]) == len(kji)
    missing = np.where(phantom.truth.labels == values["Parotid_L"], 0, phantom.truth.labels)
    assert "not found" in crop_centre(missing, phantom.truth.affine, values, "L", train_demo_inner_ear.CENTRE)


@pytest.fixture(scope="module")
def two_stage_model(tmp_path_factory):
    """A small first stage with the catalogue's labels and a second stage (one label) inside it."""
    from tools import train_demo_model

    folder = tmp_path_factory.mktemp("two_stage") / "model"
    make_nnunet_folder(folder, folds=(0,), trainer="nnUNetTrainerNoMirroring", seed=2,
                       dataset=train_demo_model.dataset_json(1))
    stage = folder / "inner_ear"
    make_nnunet_folder(stage, spacing_zyx=(2.5, 1.0, 1.0), patch_zyx=(8, 32, 32), folds=(0,),
                       trainer="nnUNetTrainerNoMirroring", seed=4, manifest=False,
                       dataset={"labels": {"background": 0, "Cochlea": 1}, "channel_names": {"0": "CT"},
                                "numTraining": 1, "file_ending": ".nii.gz"})
    init_manifest(folder, "two stages", "0.1", "tests", force=True)
    add_refinement(folder, {"folder": "inner_ear", "structures": train_demo_inner_ear.SIDES,
                            "crop_mm": train_demo_inner_ear.CROP_MM, "centre": train_demo_inner_ear.CENTRE})
    return folder


def test_the_second_stage_is_listed_checked_and_kept_by_a_new_manifest(two_stage_model):
    manifest = json.loads((two_stage_model / "dkoar_model.json").read_text())
    assert {"inner_ear/dataset.json", "inner_ear/plans.json", "inner_ear/fold_0/checkpoint_final.pth"} <= set(
        manifest["files"])
    init_manifest(two_stage_model, "two stages", "0.2", "tests", force=True)  # a new first stage keeps it
    again = json.loads((two_stage_model / "dkoar_model.json").read_text())
    assert again["refinements"] == manifest["refinements"] and again["files"] == manifest["files"]
    model = load_model(load_bundle(two_stage_model), torch.device("cpu"))
    assert [r.folder for r in model.refinements] == ["inner_ear"]
    assert model.refinements[0].model.spacing_zyx == (2.5, 1.0, 1.0)


def test_a_changed_second_stage_is_refused(two_stage_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(two_stage_model, copy)
    weights = copy / "inner_ear" / "fold_0" / "checkpoint_final.pth"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(DKOARError, match="sha256"):
        load_bundle(copy)


def test_a_second_stage_linked_from_outside_the_model_folder_is_refused(two_stage_model, tmp_path):
    copy, elsewhere = tmp_path / "copy", tmp_path / "elsewhere"
    shutil.copytree(two_stage_model, copy)
    shutil.move(copy / "inner_ear", elsewhere)
    (copy / "inner_ear").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DKOARError, match="outside the model folder"):
        load_model(load_bundle(copy), torch.device("cpu"))


def test_the_second_stage_replaces_the_first_stages_structure_in_its_crops(two_stage_model, catalogue, monkeypatch):
    """With the first stage's output replaced by the phantom's truth (so that the crops are placed
    right), every Cochlea voxel comes from the second stage, inside its crops."""
    from DKOARSegmentationLib.model import crop_refinement, predictor

    model = load_model(load_bundle(two_stage_model), torch.device("cpu"))
    phantom = generate_phantom(12, "HFP", GRID)
    real = predictor._first_stage

    def first_stage_is_the_truth(m, ct, progress, options, uncertainty):
        out = real(m, ct, progress, options, uncertainty)
        if m is model:
            out.labels = phantom.truth.labels.copy()
        return out

    monkeypatch.setattr(predictor, "_first_stage", first_stage_is_the_truth)
    boxes = []
    real_box = crop_refinement.crop_box
    monkeypatch.setattr(crop_refinement, "crop_box", lambda *a: boxes.append(real_box(*a)) or boxes[-1])
    prediction = predict(model, phantom.ct)
    assert len(boxes) == 2
    inside = np.zeros(phantom.ct.shape, dtype=bool)
    for box in boxes:
        inside[box] = True
    for side in ("L", "R"):
        label = catalogue.by_name(f"Cochlea_{side}").label
        assert not np.any((prediction.labels == label) & ~inside)
    others = ~np.isin(phantom.truth.labels, [catalogue.by_name(n).label for n in ("Cochlea_L", "Cochlea_R")])
    assert np.array_equal(prediction.labels[others & ~inside], phantom.truth.labels[others & ~inside])
    assert prediction.uncertainty.values.shape[1] == phantom.ct.shape[0]

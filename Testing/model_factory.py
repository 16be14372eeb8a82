"""Small nnU-Net v2 result folders for tests: real plans, real network classes, seeded weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from DKOARSegmentationLib.model.manifest import init_manifest
from DKOARSegmentationLib.model.network import build_network
from DKOARSegmentationLib.model.preprocessing import IntensityProperties
from tools import train_demo_model  # the demo's own plans and dataset.json writers


def make_model_folder(folder: Path, label_names: dict[int, str] | None = None, seed: int = 0) -> Path:
    """An nnU-Net folder (dataset.json, plans.json, fold_0/checkpoint_final.pth) with our manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fold_0").mkdir(exist_ok=True)
    props = IntensityProperties(mean=60.0, std=300.0, percentile_00_5=-900.0, percentile_99_5=1500.0)
    plans = train_demo_model.plans_json(props, [100, 120, 100])
    dataset = train_demo_model.dataset_json(1)
    if label_names is not None:
        dataset["labels"] = {"background": 0, **{name: value for value, name in label_names.items()}}
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    arch["arch_kwargs"]["features_per_stage"] = [4, 8, 8, 8, 8]
    torch.manual_seed(seed)
    net = build_network(arch, 1, len(dataset["labels"]))
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    torch.save({"network_weights": net.state_dict(), "init_args": {"plans": plans, "dataset_json": dataset},
                "trainer_name": "nnUNetTrainerNoMirroring", "inference_allowed_mirroring_axes": None},
               folder / "fold_0" / "checkpoint_final.pth")
    init_manifest(folder, "test model", "0.0.1", intended_use="tests only")
    return folder

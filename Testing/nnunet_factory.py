"""nnU-Net v2 result folders made with nnU-Net's own code, and nnU-Net's own predictor run on them.

Used by the parity tests and by ``benchmarks/bench_nnunet.py``. Needs nnunetv2 (installed for the
tests only, see the Makefile); the extension itself never imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.model.manifest import init_manifest
from DKOARSegmentationLib.model.preprocessing import IntensityProperties
from DKOARSegmentationLib.volume import Volume
from tools import train_demo_model  # the demo's own plans and dataset.json writers

TRAINER_MIRROR_AXES = {"nnUNetTrainer": (0, 1, 2), "nnUNetTrainerNoMirroring": None}


def require_nnunetv2():
    try:
        import nnunetv2.inference.predict_from_raw_data  # noqa: F401
    except ImportError as exc:
        import pytest

        pytest.fail(f"nnunetv2 is needed for the parity tests ({exc}); `make test` installs it (see the Makefile)")


def nnunet_plans(spacing_zyx, patch_zyx, features, props: IntensityProperties | None = None) -> dict:
    props = props or IntensityProperties(mean=40.0, std=350.0, percentile_00_5=-1000.0, percentile_99_5=1400.0)
    plans = train_demo_model.plans_json(props, [64, 64, 64])
    config = plans["configurations"]["3d_fullres"]
    config["spacing"] = [float(v) for v in spacing_zyx]
    config["patch_size"] = [int(v) for v in patch_zyx]
    arch = config["architecture"]["arch_kwargs"]
    n = len(features)
    arch.update(n_stages=n, features_per_stage=list(features), kernel_sizes=[[3, 3, 3]] * n,
                strides=[[1, 1, 1]] + [[2, 2, 2]] * (n - 1), n_conv_per_stage=[2] * n,
                n_conv_per_stage_decoder=[2] * (n - 1))
    return plans


def make_nnunet_folder(folder: Path, spacing_zyx=(6.0, 5.0, 5.0), patch_zyx=(16, 32, 32), features=(4, 8, 8, 8),
                       trainer: str = "nnUNetTrainer", folds=(0, 1), seed: int = 0, dataset: dict | None = None,
                       manifest: bool = True) -> Path:
    """An nnU-Net v2 result folder whose networks are built by nnU-Net's own
    ``get_network_from_plans`` (dynamic_network_architectures' PlainConvUNet, He initialisation)
    with seeded weights, saved as nnU-Net saves its checkpoints."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    folder.mkdir(parents=True, exist_ok=True)
    plans = nnunet_plans(spacing_zyx, patch_zyx, features)
    dataset = dataset or train_demo_model.dataset_json(2)
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    for fold in folds:
        torch.manual_seed(seed * 100 + fold)
        net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     1, len(dataset["labels"]), allow_init=True, deep_supervision=False)
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save({"network_weights": net.state_dict(), "optimizer_state": None, "grad_scaler_state": None,
                    "logging": {}, "_best_ema": None, "current_epoch": 1000,
                    "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": fold,
                                  "dataset_json": dataset, "device": "cpu"},
                    "trainer_name": trainer, "inference_allowed_mirroring_axes": TRAINER_MIRROR_AXES[trainer]},
                   folder / f"fold_{fold}" / "checkpoint_final.pth")
    if manifest:
        init_manifest(folder, "parity test model", "0.0.1", intended_use="tests only", force=True)
    return folder


def nnunet_predictor(folder: Path, device: str = "cpu", use_mirroring: bool = True, checkpoint="checkpoint_final.pth"):
    """nnU-Net's ``nnUNetPredictor`` on ``folder``, initialised as its
    ``initialize_from_trained_model_folder`` does, except that the network comes from
    ``get_network_from_plans`` directly: nnU-Net's trainer lookup imports its training code, which
    needs timm and torchvision (not installed here). That is the call the trainers' default
    ``build_network_architecture`` makes."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folds = nnUNetPredictor.auto_detect_available_folds(str(folder), checkpoint)
    dataset_json = load_json(str(folder / "dataset.json"))
    plans_manager = PlansManager(load_json(str(folder / "plans.json")))
    parameters = []
    for i, f in enumerate(sorted(folds)):
        checkpoint_data = torch.load(folder / f"fold_{f}" / checkpoint, map_location="cpu", weights_only=False)
        if i == 0:
            trainer_name = checkpoint_data["trainer_name"]
            configuration_name = checkpoint_data["init_args"]["configuration"]
            mirror_axes = checkpoint_data.get("inference_allowed_mirroring_axes")
        parameters.append(checkpoint_data["network_weights"])
    configuration_manager = plans_manager.get_configuration(configuration_name)
    num_input = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    num_output = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    network = get_network_from_plans(configuration_manager.network_arch_class_name,
                                     configuration_manager.network_arch_init_kwargs,
                                     configuration_manager.network_arch_init_kwargs_req_import,
                                     num_input, num_output, allow_init=True, deep_supervision=False)
    network.load_state_dict(parameters[0])
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                                perform_everything_on_device=device != "cpu", device=torch.device(device),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                    trainer_name, mirror_axes)
    return predictor


def run_nnunet(predictor, nifti: Path) -> np.ndarray:
    """nnU-Net's label map of a CT NIfTI file (read by its SimpleITK reader), in SimpleITK's array order."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        result = predictor.predict_from_files_sequential([[str(nifti)]], None, save_probabilities=False,
                                                         overwrite=True)
    return np.asarray(result[0])


def write_ct_nifti(ct: Volume, path: Path) -> Path:
    import SimpleITK as sitk

    from DKOARSegmentationLib.output.label_maps import affine_to_sitk

    image = sitk.GetImageFromArray(ct.voxels)
    affine_to_sitk(image, ct.affine)
    sitk.WriteImage(image, str(path))
    return path


def agreement(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, dict[int, float]]:
    """Fraction of voxels with the same label, and the Dice of every label present in either."""
    if ours.shape != theirs.shape:
        raise DKOARError(f"label maps differ in shape: {ours.shape} vs {theirs.shape}")
    same = float(np.mean(ours == theirs))
    dice = {}
    for label in sorted(set(np.unique(ours).tolist()) | set(np.unique(theirs).tolist())):
        if label == 0:
            continue
        a, b = ours == label, theirs == label
        dice[int(label)] = float(2 * np.sum(a & b) / (np.sum(a) + np.sum(b)))
    return same, dice

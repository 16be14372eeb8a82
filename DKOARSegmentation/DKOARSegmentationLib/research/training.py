"""Training with nnU-Net v2 itself: its fingerprint, planning, preprocessing and trainer.

nnU-Net's command-line tools find a trainer class by name, which imports every trainer module it
ships, and some of those import ``timm`` (never installed here: it pulls torchvision and another
torch). The functions underneath import without it: the plan-and-preprocess API and the trainer
classes themselves. So ``train`` calls ``extract_fingerprints``, ``plan_experiments`` and
``preprocess`` as nnU-Net's ``nnUNetv2_plan_and_preprocess`` does, constructs nnU-Net's own
``nnUNetTrainerNoMirroring`` (imported directly; no lookup by name) and runs its
``run_training`` and ``perform_actual_validation`` as ``nnUNetv2_train`` does.

Why no mirroring: nnU-Net's mirroring augmentation flips left and right without swapping the
labels of paired structures (Parotid_L, Parotid_R...), so it teaches the network that the sides
are interchangeable. The demo model is trained the same way.

A shorter schedule (``--epochs``, ``--iterations-per-epoch``) sets the trainer's own attributes,
and a smaller network (``--patch``, ``--features-scale``) edits the plans before training, as a
researcher tuning nnU-Net would; the model card records both.

Several GPUs: nnU-Net's own distributed training (``run_training(..., num_gpus=N)``: one process per
GPU, NCCL). It looks the trainer up by name in each process, so it needs nnU-Net's full
installation (with timm) on the training machine; ``train`` says so rather than imitating it.

The model folder gets a weights-only copy of nnU-Net's checkpoint (nnU-Net's own holds numpy
scalars in its training log, which ``torch.load(weights_only=True)`` refuses); nnU-Net's folders,
with the full checkpoint to continue from, stay in the work folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_directory
from ..errors import DKOARError
from .dataset import DATASET_NAME

TRAINER = "nnUNetTrainerNoMirroring"
PLANS = "nnUNetPlans"
INTENDED_USE = ("Research model trained by dkoar train with nnU-Net v2; NOT FOR CLINICAL USE until it has been "
                "evaluated and approved at the site.")


@dataclass
class TrainingOptions:
    configuration: str = "3d_fullres"
    fold: int = 0
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    patch_size: list[int] | None = None
    features_scale: float | None = None
    device: str = "cuda"
    num_gpus: int = 1
    name: str | None = None
    version: str = "1.0.0"
    processes: int | None = None


@dataclass
class TrainingResult:
    folder: Path
    seconds: float
    validation: dict


@contextmanager
def _environment(values: dict[str, str]):
    """nnU-Net reads its folders and worker counts from the environment."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check(dataset: Path, options: TrainingOptions) -> tuple[int, dict]:
    match = DATASET_NAME.match(dataset.name)
    if not dataset.is_dir() or match is None or not (dataset / "dataset.json").is_file():
        raise DKOARError(f"{dataset}: not an nnU-Net raw dataset (a DatasetNNN_Name folder with dataset.json)")
    dataset_json = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    cases = len(list((dataset / "labelsTr").glob("*" + dataset_json.get("file_ending", ".nii.gz"))))
    if cases < 5:
        raise DKOARError(f"{dataset}: {cases} cases; nnU-Net's 5-fold cross-validation needs at least 5")
    import torch

    if options.device == "cuda" and not torch.cuda.is_available():
        raise DKOARError("no CUDA GPU is available to this process; train with --device cpu (slow) or on a GPU machine")
    if options.device == "mps" and not torch.backends.mps.is_available():
        raise DKOARError("Apple's MPS is not available here; use --device cpu")
    if options.num_gpus > 1:
        import importlib.util

        if options.device != "cuda" or torch.cuda.device_count() < options.num_gpus:
            raise DKOARError(f"--num-gpus {options.num_gpus} needs that many CUDA GPUs "
                             f"({torch.cuda.device_count()} found)")
        if importlib.util.find_spec("timm") is None:
            raise DKOARError("several GPUs run nnU-Net's own distributed training, which finds its trainer by name "
                             "and so needs nnU-Net's full installation (with timm): on the training machine run "
                             f"nnUNetv2_train {match.group(1)} {options.configuration} {options.fold} -tr {TRAINER} "
                             f"-num_gpus {options.num_gpus} with nnUNet_raw={dataset.parent.resolve()}, then "
                             "dkoar model init on the result folder")
        if any(v is not None for v in (options.epochs, options.iterations_per_epoch, options.patch_size,
                                       options.features_scale)):
            raise DKOARError("with several GPUs nnU-Net's own trainer runs as it is: leave out --epochs, "
                             "--iterations-per-epoch, --patch and --features-scale")
    return int(match.group(1)), dataset_json


def _tune_plans(plans_file: Path, options: TrainingOptions) -> None:
    """A smaller patch or network for a short run, written into the plans the trainer reads."""
    if options.patch_size is None and options.features_scale is None:
        return
    plans = json.loads(plans_file.read_text(encoding="utf-8"))
    configuration = plans["configurations"][options.configuration]
    arch = configuration["architecture"]["arch_kwargs"]
    if options.patch_size is not None:
        factors = [1] * len(options.patch_size)
        for stride in arch["strides"]:
            factors = [f * int(s) for f, s in zip(factors, stride)]
        if any(p < f or p % f for p, f in zip(options.patch_size, factors)):
            raise DKOARError(f"--patch {' '.join(map(str, options.patch_size))}: each side must be a multiple of the "
                             f"network's downsampling {' '.join(map(str, factors))} (z y x)")
        configuration["patch_size"] = [int(v) for v in options.patch_size]
    if options.features_scale is not None:
        arch["features_per_stage"] = [max(4, int(round(f * options.features_scale)))
                                      for f in arch["features_per_stage"]]
    plans_file.write_text(json.dumps(plans, indent=2) + "\n", encoding="utf-8")


def _weights_only_copy(source: Path, target: Path) -> None:
    import torch

    checkpoint = torch.load(source, map_location="cpu", weights_only=False)  # nnU-Net's own file, just written
    init = checkpoint.get("init_args", {})
    axes = checkpoint.get("inference_allowed_mirroring_axes")
    clean = {
        "network_weights": checkpoint["network_weights"],
        "optimizer_state": None,
        "grad_scaler_state": None,
        "logging": {k: [float(v) for v in values] for k, values in checkpoint.get("logging", {}).items()
                    if isinstance(values, list) and all(isinstance(v, (int, float)) or hasattr(v, "item")
                                                        for v in values)},
        "_best_ema": None,
        "current_epoch": int(checkpoint.get("current_epoch", 0)),
        "init_args": {"plans": init.get("plans"), "configuration": init.get("configuration"),
                      "fold": init.get("fold"), "dataset_json": init.get("dataset_json"), "device": "cpu"},
        "trainer_name": str(checkpoint.get("trainer_name", TRAINER)),
        "inference_allowed_mirroring_axes": None if axes is None else tuple(int(a) for a in axes),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(clean, target)
    torch.load(target, map_location="cpu", weights_only=True)  # what dkoar will do


def _run_nnunet(dataset_id: int, options: TrainingOptions, processes: int) -> None:
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    extract_fingerprints([dataset_id], num_processes=processes, check_dataset_integrity=True)
    plan_experiments([dataset_id])
    name = convert_id_to_dataset_name(dataset_id)
    preprocessed = Path(str(nnUNet_preprocessed)) / name
    _tune_plans(preprocessed / f"{PLANS}.json", options)
    preprocess([dataset_id], PLANS, configurations=(options.configuration,), num_processes=(processes,))
    if options.num_gpus > 1:
        from nnunetv2.run.run_training import run_training

        run_training(str(dataset_id), options.configuration, options.fold, TRAINER, PLANS,
                     num_gpus=options.num_gpus, device=torch.device("cuda"))
        return
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import (
        nnUNetTrainerNoMirroring,
    )

    plans = json.loads((preprocessed / f"{PLANS}.json").read_text(encoding="utf-8"))
    plans["continue_training"] = False
    dataset_json = json.loads((preprocessed / "dataset.json").read_text(encoding="utf-8"))
    if options.device == "cpu":
        torch.set_num_threads(max(1, processes))
    trainer = nnUNetTrainerNoMirroring(plans=plans, configuration=options.configuration, fold=options.fold,
                                       dataset_json=dataset_json, device=torch.device(options.device))
    if options.epochs is not None:
        trainer.num_epochs = int(options.epochs)
    if options.iterations_per_epoch is not None:
        trainer.num_iterations_per_epoch = int(options.iterations_per_epoch)
        trainer.num_val_iterations_per_epoch = max(1, int(options.iterations_per_epoch) // 5)
    trainer.run_training()
    trainer.perform_actual_validation(False)


def train(dataset: Path | str, out: Path | str, options: TrainingOptions, work: Path | str | None = None
          ) -> TrainingResult:
    """Train nnU-Net on ``dataset`` and write the model folder ``out`` with its manifest and card."""
    started = time.perf_counter()
    dataset, out = Path(dataset).resolve(), Path(out).resolve()
    if out.exists():
        raise DKOARError(f"{out}: already exists; choose a new model folder")
    dataset_id, dataset_json = _check(dataset, options)
    work = Path(work).resolve() if work else out.parent / f"{out.name}_nnunet"
    processes = options.processes if options.processes is not None else max(1, min(8, os.cpu_count() or 1))
    folders = {"nnUNet_raw": str(dataset.parent), "nnUNet_preprocessed": str(work / "preprocessed"),
               "nnUNet_results": str(work / "results"), "nnUNet_n_proc_DA": str(processes)}
    for key in ("nnUNet_preprocessed", "nnUNet_results"):
        Path(folders[key]).mkdir(parents=True, exist_ok=True)
    with _environment(folders):
        _run_nnunet(dataset_id, options, processes)
    result = work / "results" / dataset.name / f"{TRAINER}__{PLANS}__{options.configuration}"
    fold = result / f"fold_{options.fold}"
    if not (fold / "checkpoint_final.pth").is_file():
        raise DKOARError(f"{fold}: nnU-Net finished without checkpoint_final.pth; see its training log there")
    validation = _validation(fold, dataset_json)
    with atomic_directory(out) as tmp:
        for name in ("dataset.json", "plans.json", "dataset_fingerprint.json"):
            shutil.copy2(result / name, tmp / name)
        _weights_only_copy(fold / "checkpoint_final.pth", tmp / f"fold_{options.fold}" / "checkpoint_final.pth")
        for extra in ("debug.json", "progress.png", "validation/summary.json"):
            if (fold / extra).is_file():
                (tmp / f"fold_{options.fold}" / extra).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(fold / extra, tmp / f"fold_{options.fold}" / extra)
        _write_manifest(tmp, dataset, dataset_json, options, validation, time.perf_counter() - started)
    return TrainingResult(out, time.perf_counter() - started, validation)


def _validation(fold: Path, dataset_json: dict) -> dict:
    """nnU-Net's validation Dice per structure (the fold's held-out cases), from its summary.json."""
    summary = fold / "validation" / "summary.json"
    if not summary.is_file():
        return {}
    data = json.loads(summary.read_text(encoding="utf-8"))
    names = {str(v): k for k, v in dataset_json.get("labels", {}).items()}
    per = {names.get(str(k), str(k)): round(float(v["Dice"]), 3) for k, v in data.get("mean", {}).items()
           if isinstance(v, dict) and v.get("Dice") is not None and v["Dice"] == v["Dice"]}
    mean = data.get("foreground_mean", {}).get("Dice")
    return {"mean_dice": round(float(mean), 3) if mean is not None else None, "dice": per,
            "cases": len(data.get("metric_per_case", []))}


def _write_manifest(folder: Path, dataset: Path, dataset_json: dict, options: TrainingOptions, validation: dict,
                    seconds: float) -> None:
    from importlib.metadata import version

    from ..model.manifest import init_manifest

    details_file = dataset / "dkoar_dataset.json"
    details = json.loads(details_file.read_text(encoding="utf-8")) if details_file.is_file() else {}
    origins: dict[str, int] = {}
    for case in details.get("cases", {}).values():
        origin = "correction log" if str(case.get("origin", "")).startswith("correction log") else "cohort"
        origins[origin] = origins.get(origin, 0) + 1
    structures = [k for k in dataset_json.get("labels", {}) if k != "background"]
    schedule = (f"{options.epochs or 1000} epochs x {options.iterations_per_epoch or 250} iterations"
                + (f", patch {options.patch_size}" if options.patch_size else "")
                + (f", features x{options.features_scale}" if options.features_scale else ""))
    training_data = (f"{dataset.name}: {dataset_json.get('numTraining')} cases ("
                     + ", ".join(f"{n} from the {k}" for k, n in origins.items()) + f"; "
                     f"{len(details.get('excluded', {}))} left out), {len(structures)} structures: "
                     f"{', '.join(structures)}. nnU-Net {version('nnunetv2')} {TRAINER}, {options.configuration}, "
                     f"fold {options.fold} of 5, {schedule}, on {options.device}, {seconds / 60:.1f} min.")
    performance = {"nnU-Net validation (fold's held-out cases)": validation} if validation else {}
    added = [s["definition"] for s in details.get("structures", []) if s.get("added") and s.get("definition")]
    init_manifest(folder, name=options.name or dataset.name, version=options.version, intended_use=INTENDED_USE,
                  training_data=training_data, performance=performance, configuration=options.configuration,
                  structures=added)

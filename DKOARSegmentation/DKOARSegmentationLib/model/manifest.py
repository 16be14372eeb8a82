"""Writing the manifest (``dkoar_model.json``) of a model folder: the sha256 of every file that is
loaded, the label mapping and the model card, for an nnU-Net v2 result folder, a TorchScript
network or a MONAI network."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_path
from ..errors import DKOARError
from ..hashing import file_sha256
from .bundle import MANIFEST_FORMAT, MANIFEST_NAME, check_network_manifest, confined


def write_manifest(folder: Path, manifest: dict) -> Path:
    for rel in manifest["files"]:
        confined(folder, rel, folder / MANIFEST_NAME)
    path = folder / MANIFEST_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def _find_checkpoint_files(folder: Path) -> tuple[list[int], str]:
    folds = sorted(int(p.name.split("_", 1)[1]) for p in folder.glob("fold_*") if p.is_dir()
                   and p.name.split("_", 1)[1].isdigit())
    if not folds:
        raise DKOARError(f"{folder}: no fold_N folders; this is not an nnU-Net v2 result folder")
    for name in ("checkpoint_final.pth", "checkpoint_best.pth"):
        if all((folder / f"fold_{f}" / name).is_file() for f in folds):
            return folds, name
    raise DKOARError(f"{folder}: the folds lack a common checkpoint_final.pth or checkpoint_best.pth")


def init_manifest(folder: Path | str, name: str, version: str, intended_use: str, clinical_use: bool = False,
                  training_data: str = "", performance: dict | None = None, force: bool = False,
                  configuration: str = "3d_fullres", structures: list[dict] | None = None) -> Path:
    """Write the manifest of an existing nnU-Net v2 result folder: hashes of the files that are
    loaded, and the label mapping from its dataset.json. ``structures``: definitions of structures
    the model was trained with that the catalogue lacks (``structures.added``), carried with it."""
    folder = Path(folder)
    if (folder / MANIFEST_NAME).exists() and not force:
        raise DKOARError(f"{folder}: already has a {MANIFEST_NAME} (use --force to rewrite it)")
    for required in ("dataset.json", "plans.json"):
        if not (folder / required).is_file():
            raise DKOARError(f"{folder}: {required} is missing; this is not an nnU-Net v2 result folder")
    folds, checkpoint = _find_checkpoint_files(folder)
    files = ["dataset.json", "plans.json"] + [f"fold_{f}/{checkpoint}" for f in folds]
    if (folder / "postprocessing.pkl").is_file():
        files.append("postprocessing.pkl")
    previous = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8")) if (folder / MANIFEST_NAME).exists() else {}
    refinements = previous.get("refinements", [])  # a second stage outlives a new first stage
    for entry in refinements:
        files += _stage_files(folder, entry)
    dataset = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    labels = {}
    for label_name, value in dataset.get("labels", {}).items():
        if isinstance(value, (list, tuple)):
            raise DKOARError(f"{folder}: region-based labels ({label_name}) are not supported")
        if int(value) != 0:
            labels[str(int(value))] = label_name
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "version": version,
        "kind": "nnunetv2",
        "configuration": configuration,
        "folds": folds,
        "checkpoint": checkpoint,
        "files": {rel: file_sha256(folder / rel) for rel in files},
        "labels": labels,
        "intended_use": intended_use,
        "clinical_use": clinical_use,
        "training_data": training_data,
        "performance": performance or {},
    }
    if structures:
        manifest["structures"] = list(structures)
    if refinements:
        manifest["refinements"] = refinements
    return write_manifest(folder, manifest)


def _stage_files(folder: Path, entry: dict) -> list[str]:
    """The files of a second stage's nnU-Net result folder, relative to the model folder."""
    stage = str(entry["folder"]).strip("/")
    folds, checkpoint = _find_checkpoint_files(folder / stage)
    return [f"{stage}/dataset.json", f"{stage}/plans.json"] + [f"{stage}/fold_{f}/{checkpoint}" for f in folds]


def add_refinement(folder: Path | str, entry: dict) -> Path:
    """Describe a second stage (``crop_refinement``) in a model's manifest and list its files with
    their sha256; an entry for the same folder is replaced."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    manifest = json.loads(path.read_text(encoding="utf-8"))
    stage = str(entry["folder"]).strip("/")
    manifest["files"] = {rel: sha for rel, sha in manifest["files"].items() if not rel.startswith(stage + "/")}
    for rel in _stage_files(folder, entry):
        manifest["files"][rel] = file_sha256(folder / rel)
    manifest["refinements"] = [e for e in manifest.get("refinements", []) if str(e["folder"]).strip("/") != stage]
    manifest["refinements"].append(entry)
    return write_manifest(folder, manifest)


def init_torchscript_manifest(folder: Path | str, network: str, labels: dict[int, str], spacing_zyx, patch_zyx,
                              ct_clip, ct_mean: float, ct_std: float, name: str, version: str,
                              intended_use: str, clinical_use: bool = False, mirror_axes=None,
                              training_data: str = "", performance: dict | None = None, force: bool = False) -> Path:
    """Write the manifest of a folder holding one TorchScript network (``network``, relative to
    the folder) that takes a (1, 1, z, y, x) CT window normalised as given and returns logits for
    label values 0..max(labels)."""
    folder = Path(folder)
    if (folder / MANIFEST_NAME).exists() and not force:
        raise DKOARError(f"{folder}: already has a {MANIFEST_NAME} (use --force to rewrite it)")
    if not confined(folder, network, folder / MANIFEST_NAME).is_file():
        raise DKOARError(f"{folder / network}: no such network file")
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "version": version,
        "kind": "torchscript",
        "network": network,
        "spacing": [float(v) for v in spacing_zyx],
        "patch_size": [int(v) for v in patch_zyx],
        "normalisation": {"scheme": "CT", "clip": [float(ct_clip[0]), float(ct_clip[1])], "mean": float(ct_mean),
                          "std": float(ct_std)},
        "mirror_axes": [int(a) for a in mirror_axes] if mirror_axes else None,
        "files": {network: file_sha256(folder / network)},
        "labels": {str(int(k)): str(v) for k, v in labels.items() if int(k) != 0},
        "intended_use": intended_use,
        "clinical_use": clinical_use,
        "training_data": training_data,
        "performance": performance or {},
    }
    check_network_manifest(manifest, folder / MANIFEST_NAME)
    return write_manifest(folder, manifest)


def init_monai_manifest(folder: Path | str, weights: str, network_class: str, network_kwargs: dict,
                        labels: dict[int, str], spacing_zyx, patch_zyx, ct_clip, ct_mean: float, ct_std: float,
                        name: str, version: str, intended_use: str, clinical_use: bool = False, mirror_axes=None,
                        training_data: str = "", performance: dict | None = None, force: bool = False) -> Path:
    """Write the manifest of a MONAI network: a class of ``network.MONAI_NETWORKS`` with its
    keyword arguments (JSON values only: MONAI resolves names such as "INSTANCE" itself) and a
    state dict (``weights``, loaded with weights_only=True). A MONAI bundle's inference.json is
    not read: its "_target_" entries would import and call whatever they name."""
    folder = Path(folder)
    if (folder / MANIFEST_NAME).exists() and not force:
        raise DKOARError(f"{folder}: already has a {MANIFEST_NAME} (use --force to rewrite it)")
    if not confined(folder, weights, folder / MANIFEST_NAME).is_file():
        raise DKOARError(f"{folder / weights}: no such weights file")
    json.dumps(network_kwargs)  # JSON values only
    manifest = {
        "format": MANIFEST_FORMAT, "name": name, "version": version, "kind": "monai",
        "network": {"class": network_class, "kwargs": network_kwargs}, "weights": weights,
        "spacing": [float(v) for v in spacing_zyx], "patch_size": [int(v) for v in patch_zyx],
        "normalisation": {"scheme": "CT", "clip": [float(ct_clip[0]), float(ct_clip[1])], "mean": float(ct_mean),
                          "std": float(ct_std)},
        "mirror_axes": [int(a) for a in mirror_axes] if mirror_axes else None,
        "files": {weights: file_sha256(folder / weights)},
        "labels": {str(int(k)): str(v) for k, v in labels.items() if int(k) != 0},
        "intended_use": intended_use, "clinical_use": clinical_use, "training_data": training_data,
        "performance": performance or {},
    }
    check_network_manifest(manifest, folder / MANIFEST_NAME)
    return write_manifest(folder, manifest)

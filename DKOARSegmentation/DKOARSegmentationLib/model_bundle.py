"""Model bundles: an nnU-Net v2 result folder plus our manifest, checked before anything loads.

The manifest (``dkoar_model.json``) names the model and its version, lists the sha256 of every
file that is loaded, maps the model's labels to catalogue structures, and carries the model card
(intended use, training data, performance). Files are hashed before they are read, checkpoints
are loaded with ``torch.load(weights_only=True)``, and nothing from the folder is executed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DKOARError

MANIFEST_NAME = "dkoar_model.json"
MANIFEST_FORMAT = "dkoar-model/1"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelBundle:
    folder: Path
    name: str
    version: str
    kind: str  # "nnunetv2"
    configuration: str
    folds: list[int]
    checkpoint_name: str
    files: dict[str, str]  # relative path -> sha256
    labels: dict[int, str]  # model label value -> structure name
    intended_use: str
    clinical_use: bool
    card: dict = field(default_factory=dict)

    @property
    def manifest_sha256(self) -> str:
        return sha256_of(self.folder / MANIFEST_NAME)

    @property
    def identity(self) -> str:
        return f"{self.name} {self.version}"

    def verify(self) -> None:
        """Raise if a listed file is missing or its content differs from the manifest."""
        for rel, expected in self.files.items():
            path = self.folder / rel
            if not path.is_file():
                raise DKOARError(f"{path}: a file of the model is missing")
            actual = sha256_of(path)
            if actual != expected:
                raise DKOARError(f"{path}: its sha256 differs from the model manifest; the file was changed or "
                                 "damaged, so the model is refused")

    def read_json(self, rel: str) -> dict:
        if rel not in self.files:
            raise DKOARError(f"{self.folder}: {rel} is not listed in the model manifest")
        return json.loads((self.folder / rel).read_text(encoding="utf-8"))

    def load_checkpoint(self, rel: str) -> dict:
        import pickle

        import torch

        if rel not in self.files:
            raise DKOARError(f"{self.folder}: {rel} is not listed in the model manifest")
        try:
            return torch.load(self.folder / rel, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise DKOARError(f"{self.folder / rel}: the checkpoint holds more than weights (its pickle would run "
                             f"code), so it is refused ({str(exc).splitlines()[0]})") from None
        except (RuntimeError, EOFError, OSError) as exc:
            raise DKOARError(f"{self.folder / rel}: cannot read the checkpoint ({str(exc).splitlines()[0]})") from None

    def checkpoint_paths(self) -> list[str]:
        return [f"fold_{f}/{self.checkpoint_name}" for f in self.folds]


def load_bundle(folder: Path | str, verify: bool = True) -> ModelBundle:
    folder = Path(folder)
    if not folder.is_dir():
        raise DKOARError(f"{folder}: no such model folder")
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise DKOARError(f"{folder}: not a model bundle (no {MANIFEST_NAME}); a model folder needs its manifest")
    try:
        m = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DKOARError(f"{manifest_path}: the manifest is not valid JSON ({exc})") from None
    if m.get("format") != MANIFEST_FORMAT:
        raise DKOARError(f"{manifest_path}: unknown manifest format {m.get('format')!r} (expected {MANIFEST_FORMAT})")
    try:
        bundle = ModelBundle(
            folder=folder,
            name=str(m["name"]),
            version=str(m["version"]),
            kind=str(m["kind"]),
            configuration=str(m.get("configuration", "3d_fullres")),
            folds=[int(f) for f in m.get("folds", [0])],
            checkpoint_name=str(m.get("checkpoint", "checkpoint_final.pth")),
            files={str(k): str(v) for k, v in m["files"].items()},
            labels={int(k): str(v) for k, v in m["labels"].items()},
            intended_use=str(m.get("intended_use", "")),
            clinical_use=bool(m.get("clinical_use", False)),
            card=m,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DKOARError(f"{manifest_path}: the manifest lacks or mangles {exc}") from None
    if bundle.kind != "nnunetv2":
        raise DKOARError(f"{manifest_path}: model kind {bundle.kind!r} is not supported (nnunetv2)")
    if verify:
        bundle.verify()
    return bundle


def write_manifest(folder: Path, manifest: dict) -> Path:
    path = folder / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
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
                  configuration: str = "3d_fullres") -> Path:
    """Write the manifest of an existing nnU-Net v2 result folder: hashes of the files that are
    loaded, and the label mapping from its dataset.json."""
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
        "files": {rel: sha256_of(folder / rel) for rel in files},
        "labels": labels,
        "intended_use": intended_use,
        "clinical_use": clinical_use,
        "training_data": training_data,
        "performance": performance or {},
    }
    return write_manifest(folder, manifest)

"""Model bundles: a model folder plus our manifest, checked before anything loads.

The manifest (``dkoar_model.json``) names the model and its version, lists the sha256 of every
file that is loaded, maps the model's labels to catalogue structures, and carries the model card
(intended use, training data, performance). Files are hashed as they are read (the bytes that are
hashed are the bytes that are used), checkpoints are loaded with ``torch.load(weights_only=True)``,
a ``postprocessing.pkl`` with a restricted unpickler, and nothing from the folder is executed.

Two kinds of model:
- ``nnunetv2``: an nnU-Net v2 result folder (dataset.json, plans.json, fold_N/checkpoint_*.pth,
  optional postprocessing.pkl), run as nnU-Net runs it (see ``predictor``).
- ``torchscript``: one TorchScript network file (``torch.jit.load``; MONAI bundles export their
  networks this way) with what nnU-Net's plans would say written in the manifest: spacing
  (z, y, x), patch size, CT normalisation (clip, mean, std), labels, mirroring axes.
- ``monai``: a MONAI network named by class and JSON keyword arguments (a fixed list of MONAI's
  segmentation networks) with a state dict, and the same fields as a TorchScript model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DKOARError

MANIFEST_NAME = "dkoar_model.json"
MANIFEST_FORMAT = "dkoar-model/1"
MODEL_KINDS = ("nnunetv2", "torchscript", "monai")


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
    kind: str  # "nnunetv2", "torchscript" or "monai"
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

    def read_verified(self, rel: str) -> bytes:
        """The bytes of a listed file, checked against the manifest's sha256 as they are read."""
        if rel not in self.files:
            raise DKOARError(f"{self.folder}: {rel} is not listed in the model manifest")
        path = self.folder / rel
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DKOARError(f"{path}: cannot read a file of the model ({exc.strerror})") from None
        if hashlib.sha256(data).hexdigest() != self.files[rel]:
            raise DKOARError(f"{path}: its sha256 differs from the model manifest; the file was changed or "
                             "damaged, so the model is refused")
        return data

    def load_postprocessing(self) -> list:
        """nnU-Net's post-processing steps of the folder (none without a postprocessing.pkl)."""
        from .postprocessing import parse_postprocessing

        if "postprocessing.pkl" not in self.files:
            return []
        return parse_postprocessing(self.read_verified("postprocessing.pkl"), str(self.folder / "postprocessing.pkl"))

    def load_torchscript(self, device):
        import io

        import torch

        rel = str(self.card.get("network", ""))
        data = self.read_verified(rel)
        try:
            net = torch.jit.load(io.BytesIO(data), map_location=device)
        except (RuntimeError, ValueError) as exc:
            raise DKOARError(f"{self.folder / rel}: not a TorchScript network ({str(exc).splitlines()[0]})") from None
        return net.eval()

    def load_checkpoint(self, rel: str) -> dict:
        import io
        import pickle

        import torch

        data = self.read_verified(rel)
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
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
    if bundle.kind not in MODEL_KINDS:
        raise DKOARError(f"{manifest_path}: model kind {bundle.kind!r} is not supported ({', '.join(MODEL_KINDS)})")
    if bundle.kind in ("torchscript", "monai"):
        _check_network_manifest(m, manifest_path)
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


def _check_network_manifest(m: dict, where) -> None:
    """The fields of a TorchScript or MONAI model's manifest (what nnU-Net's plans would say)."""
    try:
        if m["kind"] == "torchscript" and str(m["network"]) not in m["files"]:
            raise ValueError("the network file is not listed in files")
        if m["kind"] == "monai":
            from .network import MONAI_NETWORKS

            if str(m["weights"]) not in m["files"]:
                raise ValueError("the weights file is not listed in files")
            if m["network"].get("class") not in MONAI_NETWORKS or not isinstance(m["network"].get("kwargs", {}), dict):
                raise ValueError(f"network: a class of {', '.join(MONAI_NETWORKS)} with its keyword arguments")
        if len(m["spacing"]) != 3 or len(m["patch_size"]) != 3:
            raise ValueError("spacing and patch_size need three values (z, y, x)")
        [float(v) for v in m["spacing"]], [int(v) for v in m["patch_size"]]
        norm = m["normalisation"]
        if norm.get("scheme") != "CT":
            raise ValueError("the normalisation scheme must be CT")
        lo, hi = (float(v) for v in norm["clip"])
        float(norm["mean"]), float(norm["std"])
        if not lo < hi:
            raise ValueError("normalisation clip must be (low, high)")
    except (KeyError, TypeError, ValueError) as exc:
        raise DKOARError(f"{where}: the {m.get('kind')} model's manifest lacks or mangles {exc}") from None


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
    if not (folder / network).is_file():
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
        "files": {network: sha256_of(folder / network)},
        "labels": {str(int(k)): str(v) for k, v in labels.items() if int(k) != 0},
        "intended_use": intended_use,
        "clinical_use": clinical_use,
        "training_data": training_data,
        "performance": performance or {},
    }
    _check_network_manifest(manifest, folder / MANIFEST_NAME)
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
    if not (folder / weights).is_file():
        raise DKOARError(f"{folder / weights}: no such weights file")
    json.dumps(network_kwargs)  # JSON values only
    manifest = {
        "format": MANIFEST_FORMAT, "name": name, "version": version, "kind": "monai",
        "network": {"class": network_class, "kwargs": network_kwargs}, "weights": weights,
        "spacing": [float(v) for v in spacing_zyx], "patch_size": [int(v) for v in patch_zyx],
        "normalisation": {"scheme": "CT", "clip": [float(ct_clip[0]), float(ct_clip[1])], "mean": float(ct_mean),
                          "std": float(ct_std)},
        "mirror_axes": [int(a) for a in mirror_axes] if mirror_axes else None,
        "files": {weights: sha256_of(folder / weights)},
        "labels": {str(int(k)): str(v) for k, v in labels.items() if int(k) != 0},
        "intended_use": intended_use, "clinical_use": clinical_use, "training_data": training_data,
        "performance": performance or {},
    }
    _check_network_manifest(manifest, folder / MANIFEST_NAME)
    return write_manifest(folder, manifest)


def model_card(bundle: ModelBundle) -> str:
    """The model card as text: identity, intended use, training data, performance, files, labels."""
    m = bundle.card
    lines = [f"{bundle.name} {bundle.version}  ({bundle.kind})",
             f"  folder:          {bundle.folder}",
             f"  clinical use:    {'yes' if bundle.clinical_use else 'NO - not for clinical use'}",
             f"  intended use:    {bundle.intended_use or '(not stated)'}",
             f"  training data:   {m.get('training_data') or '(not stated)'}"]
    if bundle.kind == "nnunetv2":
        lines.append(f"  configuration:   {bundle.configuration}, folds {bundle.folds}, {bundle.checkpoint_name}")
        if "postprocessing.pkl" in bundle.files:
            lines.append("  post-processing: postprocessing.pkl (nnU-Net's largest-component removal)")
    else:
        norm = m["normalisation"]
        network = m["network"] if bundle.kind == "torchscript" else f"MONAI {m['network']['class']} ({m['weights']})"
        lines.append(f"  network:         {network}, spacing {m['spacing']} mm (z, y, x), patch {m['patch_size']}")
        lines.append(f"  normalisation:   CT, clip {norm['clip']}, mean {norm['mean']}, std {norm['std']}")
    perf = m.get("performance") or {}
    if perf:
        lines.append("  performance:")
        for key, value in perf.items():
            if isinstance(value, dict):
                lines.append(f"    {key}:")
                lines.extend(f"      {k2}: {v2}" for k2, v2 in value.items())
            else:
                lines.append(f"    {key}: {value}")
    else:
        lines.append("  performance:     (not stated)")
    lines.append(f"  labels ({len(bundle.labels)}): " + ", ".join(f"{v}={n}" for v, n in sorted(bundle.labels.items())))
    lines.append("  files (sha256):")
    lines.extend(f"    {digest}  {rel}" for rel, digest in bundle.files.items())
    return "\n".join(lines)

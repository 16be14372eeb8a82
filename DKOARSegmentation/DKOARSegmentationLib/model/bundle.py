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
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import DKOARError
from ..hashing import file_sha256

MANIFEST_NAME = "dkoar_model.json"
MANIFEST_FORMAT = "dkoar-model/1"
MODEL_KINDS = ("nnunetv2", "torchscript", "monai")
# an nnU-Net folder lists a handful of files (plans, dataset, one checkpoint per fold, post-processing);
# more than this is no model folder, and hashing would read without end
MAX_MODEL_FILES = 256
MAX_MANIFEST_BYTES = 1024 * 1024


def confined(folder: Path, rel: str, where) -> Path:
    """The file that ``rel`` (a manifest entry) names inside the model folder. A manifest names only
    its own folder's files: an absolute path, a ``..`` or a link leading out is refused, so that a
    model folder can neither read nor vouch for a file elsewhere on the computer."""
    rel = str(rel)
    posix, windows = PurePosixPath(rel), PureWindowsPath(rel)
    if (not rel.strip() or posix.is_absolute() or windows.is_absolute() or windows.drive or "\\" in rel
            or ".." in posix.parts):
        raise DKOARError(f"{where}: {rel!r} is not a file inside the model folder; a manifest names only files of "
                         "its own folder, by paths relative to it without '..': correct the manifest")
    root = Path(folder).resolve()
    resolved = (root / posix).resolve()
    if not resolved.is_relative_to(root):
        raise DKOARError(f"{where}: {rel} leads outside the model folder (to {resolved}); copy the file into the "
                         "model folder instead of linking to it")
    return resolved


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
        """The manifest's sha256, the model's identity in provenance records; empty when the
        manifest can no longer be read (deleted or moved after loading)."""
        try:
            return file_sha256(self.folder / MANIFEST_NAME)
        except OSError:
            return ""

    @property
    def identity(self) -> str:
        return f"{self.name} {self.version}"

    def verify(self) -> None:
        """Raise if a listed file is missing or its content differs from the manifest."""
        for rel, expected in self.files.items():
            path = confined(self.folder, rel, self.folder / MANIFEST_NAME)
            if not path.is_file():
                raise DKOARError(f"{path}: a file of the model is missing")
            actual = file_sha256(path)
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
        path = confined(self.folder, rel, self.folder / MANIFEST_NAME)
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
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise DKOARError(f"{manifest_path}: {manifest_path.stat().st_size} bytes, too large for a model manifest "
                         f"(at most {MAX_MANIFEST_BYTES // 1024} KiB)")
    try:
        m = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DKOARError(f"{manifest_path}: the manifest is not valid JSON ({exc})") from None
    except RecursionError:
        raise DKOARError(f"{manifest_path}: the manifest is nested too deeply to be a model manifest") from None
    if not isinstance(m, dict):
        raise DKOARError(f"{manifest_path}: the manifest is not a JSON object")
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
        check_network_manifest(m, manifest_path)
    _check_files_confined(bundle, manifest_path)
    if verify:
        bundle.verify()
    return bundle


def _check_files_confined(bundle: ModelBundle, manifest_path: Path) -> None:
    """Every file the manifest lists or loads lies inside the folder, and there are not too many."""
    if len(bundle.files) > MAX_MODEL_FILES:
        raise DKOARError(f"{manifest_path}: lists {len(bundle.files)} files; a model folder has at most "
                         f"{MAX_MODEL_FILES}: correct the manifest")
    for rel in bundle.files:
        confined(bundle.folder, rel, manifest_path)
    if bundle.kind == "nnunetv2":
        name = bundle.checkpoint_name
        if PurePosixPath(name).name != name or name in ("", ".", "..") or "\\" in name:
            raise DKOARError(f"{manifest_path}: checkpoint {bundle.checkpoint_name!r} must be a file name in each "
                             "fold_N folder (e.g. checkpoint_final.pth): correct the manifest")
        unlisted = [rel for rel in bundle.checkpoint_paths() if rel not in bundle.files]
        if unlisted:
            raise DKOARError(f"{manifest_path}: {unlisted[0]} is loaded but not listed with its sha256 in files: "
                             "write the manifest again (dkoar model init --force)")


def check_network_manifest(m: dict, where) -> None:
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

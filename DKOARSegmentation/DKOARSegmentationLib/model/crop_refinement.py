"""A model's second stage: structures too small for the first stage's spacing (the cochleae, about
15 voxels at 1.5 mm), segmented again at a finer spacing on a crop placed from the first stage's
result.

The manifest describes each second stage (``refinements``); its network is an nnU-Net v2 result
folder inside the model folder, its files listed (with their sha256) in the manifest's ``files``:

    "refinements": [{"folder": "inner_ear", "structures": {"L": "Cochlea_L", "R": "Cochlea_R"},
                     "crop_mm": [40, 32, 32],
                     "centre": {"from": "Parotid", "towards": "Brainstem", "fraction_x": 0.38,
                                "fraction_y": 0.23, "above_top_mm": 5.4}}]

Per side, the crop (``crop_mm``: z, y, x) is centred where the first stage's structures put it: from
the centre of ``from``_L (or _R) ``fraction_x`` and ``fraction_y`` of the way to the part of
``towards`` at the height of that structure's upper end, ``above_top_mm`` above that end (the
inner ear lies medial to the parotid's upper pole and lateral to the brainstem). The second stage's
label 1 is that side's structure, one part per side: its largest connected part is kept (as
nnU-Net's post-processing keeps a structure's largest component), and replaces the first stage's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DKOARError
from ..volume import Volume
from .bundle import MANIFEST_NAME, ModelBundle, confined

TOP_PERCENTILE = 98.0  # a structure's upper end, robust to a stray voxel
NEAR_MM = 10.0  # the part of ``towards`` within this of that height


@dataclass
class Refinement:
    folder: str
    model: object  # the second stage's LoadedModel
    structures: dict[str, str]  # side ("L", "R") -> structure name
    crop_mm: tuple[float, float, float]  # z, y, x
    centre: dict


def _sub_bundle(bundle: ModelBundle, entry: dict) -> ModelBundle:
    folder = str(entry["folder"]).strip("/")
    prefix = folder + "/"
    files = {rel[len(prefix):]: sha for rel, sha in bundle.files.items() if rel.startswith(prefix)}
    if "dataset.json" not in files or "plans.json" not in files:
        raise DKOARError(f"{bundle.folder / folder}: the second stage's dataset.json and plans.json are not listed "
                         "in the manifest's files")
    sub = ModelBundle(confined(bundle.folder, folder, bundle.folder / MANIFEST_NAME), f"{bundle.name} ({folder})", bundle.version, "nnunetv2",
                      str(entry.get("configuration", "3d_fullres")), [int(f) for f in entry.get("folds", [0])],
                      str(entry.get("checkpoint", "checkpoint_final.pth")), files, {}, bundle.intended_use,
                      bundle.clinical_use)
    labels = sub.read_json("dataset.json").get("labels", {})
    sub.labels = {int(v): str(k) for k, v in labels.items() if int(v) != 0}
    return sub


def load_refinements(bundle: ModelBundle, device) -> list[Refinement]:
    """The second stages a manifest describes, loaded (checked against their sha256) on ``device``."""
    from .loading import load_model

    out = []
    for entry in bundle.card.get("refinements", []) or []:
        try:
            crop = tuple(float(v) for v in entry["crop_mm"])
            structures = {str(k): str(v) for k, v in entry["structures"].items()}
            centre = dict(entry["centre"])
            float(centre["fraction_x"]), float(centre["fraction_y"]), float(centre["above_top_mm"])
            str(centre["from"]), str(centre["towards"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DKOARError(f"{bundle.folder}: a refinement of the manifest lacks or mangles {exc}") from None
        if len(crop) != 3 or set(structures) - {"L", "R"}:
            raise DKOARError(f"{bundle.folder}: a refinement needs crop_mm (z, y, x) and structures by side (L, R)")
        out.append(Refinement(str(entry["folder"]), load_model(_sub_bundle(bundle, entry), device), structures,
                              crop, centre))
    return out


def _points(labels: np.ndarray, value: int, affine: np.ndarray) -> np.ndarray:
    kji = np.argwhere(labels == value)
    return kji[:, ::-1].astype(np.float64) @ affine[:3, :3].T + affine[:3, 3]


def crop_centre(labels: np.ndarray, affine: np.ndarray, values: dict[str, int], side: str, centre: dict):
    """The LPS centre of one side's crop, or a sentence saying why there is none."""
    lateral = values.get(f"{centre['from']}_{side}")
    medial = values.get(str(centre["towards"]))
    if lateral is None or medial is None:
        return f"the model has no {centre['from']}_{side} or {centre['towards']} to place it by"
    p = _points(labels, lateral, affine)
    b = _points(labels, medial, affine)
    if not len(p) or not len(b):
        return f"{centre['from']}_{side} or {centre['towards']} was not found"
    top = float(np.percentile(p[:, 2], TOP_PERCENTILE))
    near = b[np.abs(b[:, 2] - top) < NEAR_MM]
    near = near if len(near) else b
    px, py = p[:, 0].mean(), p[:, 1].mean()
    bx, by = near[:, 0].mean(), near[:, 1].mean()
    return np.array([px + float(centre["fraction_x"]) * (bx - px), py + float(centre["fraction_y"]) * (by - py),
                     top + float(centre["above_top_mm"])])


def crop_box(ct: Volume, centre_lps: np.ndarray, crop_mm) -> tuple[slice, ...] | None:
    """The array box (k, j, i) holding a box of ``crop_mm`` (z, y, x) about ``centre_lps``."""
    half = np.array([crop_mm[2], crop_mm[1], crop_mm[0]], dtype=float) / 2.0  # x, y, z
    corners = np.array([[centre_lps[0] + sx * half[0], centre_lps[1] + sy * half[1], centre_lps[2] + sz * half[2]]
                        for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    inverse = np.linalg.inv(ct.affine)
    ijk = corners @ inverse[:3, :3].T + inverse[:3, 3]
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, np.array(ct.shape[::-1]))
    if np.any(hi - lo < 2):
        return None
    return tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))


def _largest_part(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labelled, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return mask
    return labelled == int(np.argmax(np.bincount(labelled.ravel())[1:])) + 1


def refine(model, ct: Volume, prediction, options, uncertainty: bool) -> None:
    """Run every second stage of ``model`` on its crops and put its structures into ``prediction``."""
    from ..input.orientation import relayout_for
    from .predictor import predict

    values = {name: value for value, name in model.bundle.labels.items()}
    slice_axis = relayout_for(ct.affine).order[0] if uncertainty and prediction.uncertainty is not None else 0
    for refinement in model.refinements:
        for side, name in refinement.structures.items():
            target = values.get(name)
            if target is None:
                continue
            centre = crop_centre(prediction.labels, ct.affine, values, side, refinement.centre)
            box = None if isinstance(centre, str) else crop_box(ct, centre, refinement.crop_mm)
            if box is None:
                model.messages.append(f"{name}: the second stage ({refinement.folder}) was not run: "
                                      f"{centre if isinstance(centre, str) else 'its crop lies outside the CT'}")
                continue
            origin = ct.affine.copy()
            origin[:3, 3] = ct.index_to_lps(np.array([box[2].start, box[1].start, box[0].start], dtype=float))
            crop = Volume(ct.voxels[box], origin, source=f"{ct.source} ({refinement.folder} crop)")
            stage = predict(refinement.model, crop, None, options, uncertainty)
            found = _largest_part(stage.labels == 1)
            labels = prediction.labels
            labels[labels == target] = 0
            region = labels[box]
            region[found & ((region == 0) | (region == target))] = target
            if prediction.uncertainty is not None:
                table = prediction.uncertainty.values
                table[target] = 0.0
                if stage.uncertainty is not None:
                    start = box[slice_axis].start
                    per_slice = stage.uncertainty.for_label(1)
                    table[target, start:start + len(per_slice), 1 if side == "L" else 0] += per_slice

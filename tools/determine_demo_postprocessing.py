#!/usr/bin/env python
"""Determine the demo model's post-processing by nnU-Net's rule (``nnUNetv2_determine_postprocessing``)
and write it into the model folder as ``postprocessing.pkl``, as nnU-Net writes it.

The model segments phantoms it never saw, without post-processing; then, on those results against
the ground truth, removing all but the largest connected component (26-connectivity) is tried,
first of the whole foreground, then of each label in turn, and a step is kept when the mean Dice
over the cases rises (and, for the foreground step, no label's mean Dice falls), as nnU-Net's
``determine_postprocessing`` decides. Its own function does the same through NIfTI files, one
folder round trip per label: about 40 s a label on 2 shared cores for six full-size phantoms, half
an hour for the 34 labels; here each label is cut to its bounding box in memory, about a second.

Of its steps, only those of structures that are one piece are kept (the catalogue's ``parts`` is 1:
the thyroid, the lips and the glottic larynx have several), and none of a structure a second stage
re-segments (the cochleae: ``crop_refinement`` replaces them after the post-processing and keeps
the largest part of its own result).

The seeds must be unseen: not the training seeds (1000-1059), not the card's evaluation seeds
(1, 2, 3), not the clean-result tests' seeds (3, 5, 8, 9, 11). Patient positions alternate.

    python tools/determine_demo_postprocessing.py --seeds 31 32 33 34 35 36 --work work_pp [--write]

``--write`` puts ``postprocessing.pkl`` (nnU-Net's function and arguments, pickled as nnU-Net's
``save_pickle`` does) and ``postprocessing.json`` (the measured Dice and the decisions) into the model
folder and rewrites its manifest (the pkl listed with its sha256; everything else kept). The
results are cached in ``--work``: a second run with the same seeds segments nothing again.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from DKOARSegmentationLib.model.bundle import MANIFEST_NAME
from DKOARSegmentationLib.model.manifest import init_manifest
from DKOARSegmentationLib.model.predict_options import PredictOptions
from DKOARSegmentationLib.phantom import PhantomGrid, write_phantom
from DKOARSegmentationLib.phantom.anatomy import PATIENT_POSITIONS
from DKOARSegmentationLib.pipeline.segment import segment
from DKOARSegmentationLib.resources import demo_model_dir
from DKOARSegmentationLib.structures.catalogue import default_catalogue

RESERVED_SEEDS = {1, 2, 3, 5, 8, 9, 11} | set(range(1000, 1060))
KEPT_JSON_KEYS = ("name", "version", "intended_use", "clinical_use", "training_data", "performance", "structures")


def _write_label_nifti(labels: np.ndarray, spacing_xyz, path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(labels.astype(np.uint8))
    image.SetSpacing(tuple(float(v) for v in spacing_xyz))
    sitk.WriteImage(image, str(path), True)


def segment_cases(model: Path, seeds: list[int], work: Path, lut: np.ndarray) -> tuple[Path, Path]:
    """Predictions (no post-processing) and ground truths, in the model's label values, as NIfTI
    files of the same names in ``work/predictions`` and ``work/reference``."""
    predictions, reference = work / "predictions", work / "reference"
    predictions.mkdir(parents=True, exist_ok=True)
    reference.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(seeds):
        position = PATIENT_POSITIONS[n % len(PATIENT_POSITIONS)]
        name = f"phantom_{seed:04d}.nii.gz"
        if (predictions / name).is_file() and (reference / name).is_file():
            continue
        case = work / f"seed_{seed}"
        phantom = write_phantom(case / "phantom", seed=seed, position=position, grid=PhantomGrid())
        result = segment(case / "phantom" / "ct", case / "result", model_path=model, device="cpu",
                         predict_options=PredictOptions(postprocess=False))
        spacing = np.linalg.norm(np.asarray(phantom.ct.affine)[:3, :3], axis=0)
        _write_label_nifti(lut[phantom.truth.labels], spacing, reference / name)
        _write_label_nifti(lut[result.segmentation.labels], spacing, predictions / name)
        print(f"seed {seed} ({position}): inference {result.seconds['inference']:.1f} s", flush=True)
        shutil.rmtree(case)
    return predictions, reference


def candidate_labels(model: Path) -> dict[int, str]:
    """The model's labels that may be post-processed: one-piece structures no second stage replaces."""
    manifest = json.loads((model / MANIFEST_NAME).read_text())
    refined = {name for entry in manifest.get("refinements", []) for name in entry["structures"].values()}
    parts = {s.name: s.parts for s in default_catalogue()}
    return {int(v): name for v, name in manifest["labels"].items() if parts.get(name) == 1 and name not in refined}


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = int(pred.sum()) + int(truth.sum())
    return float("nan") if total == 0 else 2.0 * int((pred & truth).sum()) / total  # nnU-Net: NaN, left out


def _largest_part(mask: np.ndarray) -> np.ndarray:
    """``mask`` less every connected component but the largest (all of equal largest size kept), in
    its bounding box: ``model.postprocessing``'s operation for one label."""
    from DKOARSegmentationLib.model.postprocessing import remove_all_but_largest_component

    out = np.zeros_like(mask)
    where = np.argwhere(mask)
    if not len(where):
        return out
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(where.min(axis=0), where.max(axis=0)))
    out[box] = remove_all_but_largest_component(mask[box].astype(np.uint8), [1]) == 1
    return out


def _means(scores: dict[int, list[float]]) -> dict[int, float]:
    return {v: float(np.nanmean(s)) if not np.all(np.isnan(s)) else float("nan") for v, s in scores.items()}


def decide(predictions: Path, reference: Path, values: list[int]) -> dict:
    """nnU-Net's decision on the cases of the two folders: per label the mean Dice as is and with
    the largest part only, whether the foreground step is kept, and the labels whose step is kept."""
    import SimpleITK as sitk

    from DKOARSegmentationLib.model.postprocessing import remove_all_but_largest_component

    before: dict[int, list[float]] = {v: [] for v in values}
    after: dict[int, list[float]] = {v: [] for v in values}
    fg_after: dict[int, list[float]] = {v: [] for v in values}
    for path in sorted(predictions.glob("*.nii.gz")):
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(reference / path.name)))
        fg = remove_all_but_largest_component(pred, values)
        for v in values:
            p, t = pred == v, truth == v
            before[v].append(_dice(p, t))
            after[v].append(_dice(_largest_part(p), t))
            fg_after[v].append(_dice(fg == v, t))
    before_m, after_m, fg_m = _means(before), _means(after), _means(fg_after)
    foreground = (np.nanmean(list(fg_m.values())) > np.nanmean(list(before_m.values()))
                  and not any(fg_m[v] < before_m[v] for v in values))
    base = fg_m if foreground else before_m
    # labels are disjoint: one label's step leaves the others' voxels and Dice as they were
    improved = [v for v in values if after_m[v] > base[v]]
    return {"cases": sorted(p.name for p in predictions.glob("*.nii.gz")), "dice_as_is": before_m,
            "dice_largest_part": after_m, "dice_per_case_as_is": before, "dice_per_case_largest_part": after,
            "keep_largest_foreground": bool(foreground), "improved_labels": improved}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[31, 32, 33, 34, 35, 36])
    ap.add_argument("--work", type=Path, default=Path("work_postprocessing"))
    ap.add_argument("--write", action="store_true", help="write postprocessing.pkl into the model folder")
    args = ap.parse_args()
    reserved = sorted(RESERVED_SEEDS & set(args.seeds))
    if reserved:
        ap.error(f"seeds {reserved} are training, evaluation or test seeds; use unseen ones")
    model = args.model or demo_model_dir()
    manifest = json.loads((model / MANIFEST_NAME).read_text())
    names = {int(v): name for v, name in manifest["labels"].items()}
    by_name = {name: v for v, name in names.items()}
    lut = np.zeros(256, dtype=np.uint8)  # catalogue label -> model label
    for s in default_catalogue():
        lut[s.label] = by_name.get(s.name, 0)
    predictions, reference = segment_cases(model, args.seeds, args.work, lut)
    result = decide(predictions, reference, sorted(names))
    candidates = candidate_labels(model)
    kept = [v for v in result["improved_labels"] if v in candidates]
    print(f"keep the largest part of the whole foreground: {'yes' if result['keep_largest_foreground'] else 'no'}"
          " (not used: several structures are apart from the rest)")
    print(f"{'label':<18} {'Dice as is':>10} {'largest part':>12}  decision")
    for v in sorted(names):
        rule = "improves" if v in result["improved_labels"] else "no gain"
        verdict = "keep largest" if v in kept else ("not a candidate" if v not in candidates else "leave")
        print(f"{names[v]:<18} {result['dice_as_is'][v]:10.4f} {result['dice_largest_part'][v]:12.4f}  "
              f"{rule}: {verdict}", flush=True)
    print(f"steps kept: {[names[v] for v in kept]}")
    if args.write:
        from batchgenerators.utilities.file_and_folder_operations import save_pickle
        from nnunetv2.postprocessing.remove_connected_components import (
            remove_all_but_largest_component_from_segmentation as keep_largest,
        )

        save_pickle(([keep_largest] * len(kept), [{"labels_or_regions": v} for v in kept]),
                    str(model / "postprocessing.pkl"))
        record = {
            "rule": "nnU-Net's determine_postprocessing: keep the largest connected component of a label when "
                    "the mean Dice over the cases rises",
            "seeds": args.seeds, "positions": [PATIENT_POSITIONS[n % 4] for n in range(len(args.seeds))],
            "candidates": "labels whose catalogue parts is 1, not re-segmented by a second stage",
            "kept": {str(v): names[v] for v in kept},
            **{k: ({names[v]: x for v, x in val.items()} if isinstance(val, dict) else val)
               for k, val in result.items() if k != "improved_labels"},
        }
        (model / "postprocessing.json").write_text(json.dumps(record, indent=2) + "\n")
        init_manifest(model, configuration=manifest.get("configuration", "3d_fullres"), force=True,
                      **{k: manifest[k] for k in KEPT_JSON_KEYS if k in manifest})
        print(f"wrote {model / 'postprocessing.pkl'} and rewrote {model / MANIFEST_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Determine the demo model's post-processing the way nnU-Net does (``nnUNetv2_determine_postprocessing``)
and write it into the model folder as ``postprocessing.pkl``.

The model segments phantoms it never saw, without post-processing; nnU-Net's
``determine_postprocessing`` then tries, on those results against the ground truth, removing all
but the largest connected component, first of the whole foreground, then of each label, and keeps a
step when the mean Dice over the cases rises (and, for the foreground step, no label's falls).

Of its steps, only those of structures that are one piece are kept (the catalogue's ``parts`` is 1:
the thyroid, the lips and the glottic larynx have several), and none of a structure a second stage
re-segments (the cochleae: ``crop_refinement`` replaces them after the post-processing and keeps
the largest part of its own result).

The seeds must be unseen: not the training seeds (1000-1059), not the card's evaluation seeds
(1, 2, 3), not the clean-result tests' seeds (3, 5, 8, 9, 11). Patient positions alternate.

    python tools/determine_demo_postprocessing.py --seeds 31 32 33 34 35 36 --work work_pp [--write]

``--write`` puts ``postprocessing.pkl`` and nnU-Net's ``postprocessing.json`` into the model
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[31, 32, 33, 34, 35, 36])
    ap.add_argument("--work", type=Path, default=Path("work_postprocessing"))
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="write postprocessing.pkl into the model folder")
    args = ap.parse_args()
    reserved = sorted(RESERVED_SEEDS & set(args.seeds))
    if reserved:
        ap.error(f"seeds {reserved} are training, evaluation or test seeds; use unseen ones")
    from batchgenerators.utilities.file_and_folder_operations import save_pickle
    from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing

    model = args.model or demo_model_dir()
    manifest = json.loads((model / MANIFEST_NAME).read_text())
    by_name = {name: int(v) for v, name in manifest["labels"].items()}
    lut = np.zeros(256, dtype=np.uint8)  # catalogue label -> model label
    for s in default_catalogue():
        lut[s.label] = by_name.get(s.name, 0)
    predictions, reference = segment_cases(model, args.seeds, args.work, lut)
    for stale in ("summary.json", "postprocessing.pkl", "postprocessing.json", "postprocessed"):
        path = predictions / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    fns, kwargs = determine_postprocessing(str(predictions), str(reference), str(model / "plans.json"),
                                           str(model / "dataset.json"), num_processes=args.processes,
                                           keep_postprocessed_files=False)
    decided = json.loads((predictions / "postprocessing.json").read_text())
    candidates = candidate_labels(model)
    kept = [(fn, kw) for fn, kw in zip(fns, kwargs)
            if isinstance(kw["labels_or_regions"], int) and int(kw["labels_or_regions"]) in candidates]
    before = {int(k): v["Dice"] for k, v in decided["input_folder"]["mean"].items()}
    print(f"{'label':<18} {'Dice as is':>10} {'largest part':>12}  decision")
    baseline = json.loads((predictions / "summary.json").read_text())
    chosen = {int(kw["labels_or_regions"]) for _, kw in kept}
    per_label_after = _dice_largest_part_only(predictions, reference, sorted(by_name.values()))
    for value in sorted(before):
        name = manifest["labels"][str(value)]
        rule = "improves" if any(kw["labels_or_regions"] == value for kw in kwargs) else "no gain"
        verdict = "keep largest" if value in chosen else ("not a candidate" if value not in candidates else "leave")
        print(f"{name:<18} {before[value]:10.4f} {per_label_after[value]:12.4f}  {rule}: {verdict}", flush=True)
    print(f"foreground mean Dice {baseline['foreground_mean']['Dice']:.4f}; steps kept: "
          f"{[manifest['labels'][str(v)] for v in sorted(chosen)]}")
    if args.write:
        save_pickle(([fn for fn, _ in kept], [{"labels_or_regions": int(kw["labels_or_regions"])} for _, kw in kept]),
                    str(model / "postprocessing.pkl"))
        decided["dkoar"] = {
            "seeds": args.seeds, "positions": [PATIENT_POSITIONS[n % 4] for n in range(len(args.seeds))],
            "candidates": "labels whose catalogue parts is 1, not re-segmented by a second stage",
            "kept_labels": sorted(chosen),
        }
        (model / "postprocessing.json").write_text(json.dumps(decided, indent=2) + "\n")
        init_manifest(model, configuration=manifest.get("configuration", "3d_fullres"), force=True,
                      **{k: manifest[k] for k in KEPT_JSON_KEYS if k in manifest})
        print(f"wrote {model / 'postprocessing.pkl'} and rewrote {model / MANIFEST_NAME}")
    return 0


def _dice_largest_part_only(predictions: Path, reference: Path, values: list[int]) -> dict[int, float]:
    """Mean Dice per label over the cases with every label reduced to its largest part (for the table)."""
    import SimpleITK as sitk

    from DKOARSegmentationLib.model.postprocessing import remove_all_but_largest_component

    scores: dict[int, list[float]] = {v: [] for v in values}
    for path in sorted(predictions.glob("*.nii.gz")):
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(reference / path.name)))
        for v in values:
            p = remove_all_but_largest_component(pred, [v]) == v
            t = truth == v
            total = int(p.sum()) + int(t.sum())
            if total:
                scores[v].append(2.0 * int((p & t).sum()) / total)
    return {v: float(np.mean(s)) if s else float("nan") for v, s in scores.items()}


if __name__ == "__main__":
    raise SystemExit(main())

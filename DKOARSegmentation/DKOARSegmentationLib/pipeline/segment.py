"""``segment``: CT in, organs at risk out (RTSTRUCT, .seg.nrrd, NIfTI, PNG overview, run.json).

All outputs are written into a temporary folder inside the output folder and moved into place
when every one is complete, so a failed run leaves nothing half-written and replaces nothing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import check_output_folder, prepare_output_folder, staging_folder
from ..errors import DKOARError
from ..input.ct_loader import load_ct
from ..model.bundle import ModelBundle, load_bundle
from ..model.devices import resolve_device
from ..model.loading import load_model
from ..model.predict_options import PredictOptions
from ..model.predictor import predict
from ..output.label_maps import write_labelmap_nifti, write_seg_nrrd
from ..output.overview import write_overview
from ..output.rtstruct_writer import RTStructOptions, write_rtstruct
from ..progress import Progress
from ..resources import demo_model_dir
from ..review.guidance import ReviewGuidance, review_guidance
from ..structures.added import with_model_structures
from ..structures.catalogue import Catalogue, default_catalogue
from ..structures.model_labels import map_model_labels, to_catalogue_labels
from ..volume import Segmentation, Volume
from .run_record import run_record, warnings_logged_by

OUTPUT_NAMES = {
    "rtstruct": "rtstruct.dcm",
    "seg_nrrd": "segmentation.seg.nrrd",
    "labels_nifti": "labels.nii.gz",
    "overview": "overview.png",
    "run_json": "run.json",
}


@dataclass
class RunResult:
    ct: Volume
    segmentation: Segmentation
    bundle: ModelBundle
    outputs: dict[str, Path]
    seconds: dict[str, float]
    device: str
    warnings: list[str] = field(default_factory=list)
    guidance: ReviewGuidance = field(default_factory=ReviewGuidance)  # flags and where to look first


def segment(
    input_path: Path | str,
    out_dir: Path | str,
    model_path: Path | str | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    series_uid: str | None = None,
    catalogue: Catalogue | None = None,
    empty_structures: str = "keep",
    allow_modality: bool = False,
    predict_options: PredictOptions | None = None,
) -> RunResult:
    input_path, out_dir = Path(input_path), Path(out_dir)
    catalogue = catalogue or default_catalogue()
    seconds: dict[str, float] = {}
    warnings: list[str] = []
    if not input_path.exists():
        raise DKOARError(f"{input_path}: no such file or folder")
    check_output_folder(out_dir)  # refused now, not after the inference

    t = time.perf_counter()
    bundle = load_bundle(Path(model_path) if model_path else demo_model_dir())
    torch_device = resolve_device(device)
    seconds["verify_model"] = time.perf_counter() - t

    t = time.perf_counter()
    if progress is not None:
        progress.begin("loading CT")
    with warnings_logged_by("DKOARSegmentationLib", warnings):  # missing slices, irregular spacing, ...
        ct = load_ct(input_path, series_uid, allow_modality=allow_modality)
    seconds["load_ct"] = time.perf_counter() - t

    t = time.perf_counter()
    model = load_model(bundle, torch_device)
    catalogue = with_model_structures(catalogue, bundle.card.get("structures"))
    mapping = map_model_labels(bundle.labels, catalogue)
    if mapping.unmapped:
        warnings.append("model labels that map to no catalogue structure: "
                        + ", ".join(f"{v}={n}" for v, n in mapping.unmapped.items()))
    seconds["load_model"] = time.perf_counter() - t

    t = time.perf_counter()
    prediction = predict(model, ct, progress, predict_options)
    model_labels = prediction.labels
    warnings.extend(model.messages)
    if mapping.excluded:
        warnings.append("model labels left out by the site configuration or the chosen structures: "
                        + ", ".join(f"{v}={n}" for v, n in mapping.excluded.items()))
    segmentation = to_catalogue_labels(model_labels, mapping, ct)
    segmentation.provenance = {"model": bundle.identity}
    seconds["inference"] = time.perf_counter() - t

    t = time.perf_counter()
    guidance = review_guidance(segmentation, ct, prediction.uncertainty, mapping)
    seconds["review"] = time.perf_counter() - t

    t = time.perf_counter()
    if progress is not None:
        progress.begin("writing")
    prepare_output_folder(out_dir)
    with staging_folder(out_dir) as staging:
        staged: dict[str, Path] = {}
        if ct.dicom is not None:
            options = RTStructOptions(model_name=bundle.name, model_version=bundle.version,
                                      empty_structures=empty_structures,
                                      observations=guidance.rtstruct_observations())
            staged["rtstruct"] = write_rtstruct(ct, segmentation, staging / OUTPUT_NAMES["rtstruct"], options)
        else:
            warnings.append("no RTSTRUCT: an RTSTRUCT references the DICOM CT it was drawn on, and the input "
                            "was not a DICOM series")
        write_seg_nrrd(segmentation, staging / OUTPUT_NAMES["seg_nrrd"], catalogue)
        staged["seg_nrrd"] = staging / OUTPUT_NAMES["seg_nrrd"]
        write_labelmap_nifti(segmentation, staging / OUTPUT_NAMES["labels_nifti"])
        staged["labels_nifti"] = staging / OUTPUT_NAMES["labels_nifti"]
        title = f"{bundle.identity}" + ("" if bundle.clinical_use else " - NOT FOR CLINICAL USE")
        write_overview(ct, segmentation, staging / OUTPUT_NAMES["overview"], title)
        staged["overview"] = staging / OUTPUT_NAMES["overview"]
        seconds["export"] = time.perf_counter() - t
        run = run_record(input_path, ct, bundle, segmentation, mapping, str(torch_device), seconds, warnings)
        run.update(guidance.as_record())
        (staging / OUTPUT_NAMES["run_json"]).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
        staged["run_json"] = staging / OUTPUT_NAMES["run_json"]
        outputs = {}
        for key, path in staged.items():
            final = out_dir / OUTPUT_NAMES[key]
            os.replace(path, final)
            outputs[key] = final
    if progress is not None:
        progress.update(1.0, "done")
    return RunResult(ct, segmentation, bundle, outputs, seconds, str(torch_device), warnings, guidance)


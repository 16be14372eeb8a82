#!/usr/bin/env python
"""The review guidance's figures, with the demo model on the CPU:

1. overhead: what measuring the uncertainty adds to the prediction on a full-size phantom (target
   under 15 %): the prediction without and with it, alternately, the process's CPU time (robust to
   other programs on the machine) and wall time, and the uncertainty step alone;
2. ranking: on phantoms it never saw (patient positions in turn), a simulated clinician edits the
   structures whose AI contour is off the phantom's truth beyond the catalogue's tolerance (surface
   Dice at the tolerance under ``EDIT_BELOW``): each edit is the AI contour grown, shrunk or
   shifted to the truth. How well does the uncertainty score rank the edited structures above the
   unedited ones (AUC, target above 0.75)? Also given: the AUC of the whole guidance (error and
   warning flags first, then the uncertainty).

    python -m Testing.benchmarks.bench_review [--seeds 21 22 23 24] [--repeats 2] [--skip-overhead]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

EDIT_BELOW = 0.95  # surface Dice at the structure's tolerance below which the clinician edits


def _model():
    import torch

    from DKOARSegmentationLib.model.bundle import load_bundle
    from DKOARSegmentationLib.model.loading import load_model
    from DKOARSegmentationLib.resources import demo_model_dir

    torch.set_num_threads(2)
    return load_model(load_bundle(demo_model_dir()), torch.device("cpu"))


def overhead(repeats: int) -> dict:
    from DKOARSegmentationLib.model import predictor
    from DKOARSegmentationLib.phantom import PhantomGrid, generate_phantom

    model = _model()
    ct = generate_phantom(7, "HFS", PhantomGrid()).ct
    step = []
    measure = predictor._uncertainty

    def timed(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = measure(*args, **kwargs)
        step.append((time.perf_counter() - t0, time.process_time() - c0))
        return out

    predictor._uncertainty = timed
    try:
        predictor.predict(model, ct, uncertainty=False)  # the first call traces the network
        times = {False: [], True: []}
        for _ in range(repeats):
            for flag in (False, True):
                t0, c0 = time.perf_counter(), time.process_time()
                predictor.predict(model, ct, uncertainty=flag)
                times[flag].append((time.perf_counter() - t0, time.process_time() - c0))
    finally:
        predictor._uncertainty = measure
    plain, measured = (np.median(np.array(times[f]), axis=0) for f in (False, True))
    alone = np.median(np.array(step), axis=0)
    return {"wall_s": [float(plain[0]), float(measured[0])], "cpu_s": [float(plain[1]), float(measured[1])],
            "overhead_cpu": float(measured[1] / plain[1] - 1), "overhead_wall": float(measured[0] / plain[0] - 1),
            "step_wall_s": float(alone[0]), "step_cpu_s": float(alone[1]),
            "step_share_cpu": float(alone[1] / plain[1])}


def _edit_kind(comparison, ai_centroid, truth_centroid, tolerance) -> str:
    ai, final = comparison.volume_ai_ml, comparison.volume_final_ml
    if ai == 0:
        return "drawn"
    if final > 1.1 * ai:
        return "grown"
    if final < 0.9 * ai:
        return "shrunk"
    if ai_centroid is not None and truth_centroid is not None and np.linalg.norm(ai_centroid - truth_centroid) > tolerance / 2:
        return "shifted"
    return "reshaped"


def ranking(seeds: list[int]) -> dict:
    from DKOARSegmentationLib.model.predictor import predict
    from DKOARSegmentationLib.monitoring.comparison import compare_segmentations
    from DKOARSegmentationLib.monitoring.contour_sets import contour_set_from_segmentation
    from DKOARSegmentationLib.monitoring.guidance_aggregates import auc
    from DKOARSegmentationLib.phantom import PATIENT_POSITIONS, PhantomGrid, generate_phantom
    from DKOARSegmentationLib.review.flags import by_structure, severity_rank, worst_severity
    from DKOARSegmentationLib.review.geometry import measure_contours
    from DKOARSegmentationLib.review.plausibility import check_segmentation
    from DKOARSegmentationLib.review.uncertainty import structure_uncertainty
    from DKOARSegmentationLib.structures.catalogue import default_catalogue
    from DKOARSegmentationLib.structures.model_labels import map_model_labels, to_catalogue_labels

    model = _model()
    catalogue = default_catalogue()
    rows = []
    for n, seed in enumerate(seeds):
        position = PATIENT_POSITIONS[n % len(PATIENT_POSITIONS)]
        phantom = generate_phantom(seed, position, PhantomGrid(matrix=320))
        prediction = predict(model, phantom.ct)
        mapping = map_model_labels(model.bundle.labels, catalogue)
        ai = to_catalogue_labels(prediction.labels, mapping, phantom.ct)
        from DKOARSegmentationLib.input.orientation import relayout_for

        scores = structure_uncertainty(prediction.uncertainty, mapping, ai, relayout_for(phantom.ct.affine).order[0])
        flags = by_structure(check_segmentation(ai, phantom.ct))
        comparisons = compare_segmentations(ai, phantom.truth, catalogue)
        geometry = {}
        for name, segmentation in (("ai", ai), ("truth", phantom.truth)):
            geometry[name] = measure_contours(contour_set_from_segmentation(segmentation, catalogue))
        for s in catalogue.core_structures:
            c = comparisons.get(s.name)
            if c is None:
                continue
            edited = c.surface_dice < EDIT_BELOW
            ai_g, truth_g = geometry["ai"].get(s.name), geometry["truth"].get(s.name)
            rows.append({"seed": seed, "position": position, "structure": s.name, "edited": bool(edited),
                         "kind": _edit_kind(c, ai_g.centroid if ai_g else None, truth_g.centroid if truth_g else None,
                                            s.tolerance_mm) if edited else "",
                         "surface_dice": round(c.surface_dice, 3), "dice": round(c.dice, 3),
                         "score": scores[s.name].score if s.name in scores else 0.0,
                         "flag": severity_rank(worst_severity(flags.get(s.name, [])))})
        done = [r for r in rows if r["seed"] == seed]
        print(f"seed {seed} ({position}): {sum(r['edited'] for r in done)} of {len(done)} structures edited "
              f"({', '.join(r['structure'] + ' ' + r['kind'] for r in done if r['edited'])})", flush=True)
    score = np.array([r["score"] for r in rows])
    edited = np.array([r["edited"] for r in rows])
    guidance = np.array([100.0 * max(r["flag"], 0) * (r["flag"] >= 1) + r["score"] for r in rows])
    return {"rows": rows, "auc_uncertainty": auc(score, edited), "auc_guidance": auc(guidance, edited),
            "edited": int(edited.sum()), "structures": len(rows),
            "per_seed": {str(seed): auc(score[[r["seed"] == seed for r in rows]], edited[[r["seed"] == seed for r in rows]])
                         for seed in seeds}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23, 24])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-ranking", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="write every figure (and each structure's row) here")
    args = ap.parse_args()
    out = {}
    if not args.skip_overhead:
        o = overhead(args.repeats)
        out["overhead"] = o
        print(f"prediction without / with the uncertainty: CPU {o['cpu_s'][0]:.1f} / {o['cpu_s'][1]:.1f} s, "
              f"wall {o['wall_s'][0]:.1f} / {o['wall_s'][1]:.1f} s")
        print(f"overhead of the uncertainty: {100 * o['overhead_cpu']:.1f} % of the CPU time "
              f"({100 * o['overhead_wall']:.1f} % of the wall time); the step alone {o['step_cpu_s']:.2f} s CPU "
              f"= {100 * o['step_share_cpu']:.1f} %   target < 15 %")
    if not args.skip_ranking:
        r = ranking(args.seeds)
        out["ranking"] = r
        print(f"edited structures: {r['edited']} of {r['structures']} (surface Dice at tolerance < {EDIT_BELOW})")
        print(f"AUC of the uncertainty score, edited above unedited: {r['auc_uncertainty']:.3f}   target > 0.75")
        print(f"AUC of the guidance (flags first, then the uncertainty): {r['auc_guidance']:.3f}")
        print("per phantom: " + ", ".join(f"seed {k} {v:.2f}" for k, v in r["per_seed"].items() if v is not None))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

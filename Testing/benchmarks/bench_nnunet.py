#!/usr/bin/env python
"""Our predictor against nnU-Net v2's ``nnUNetPredictor`` on the same model and CT: time, peak
memory and agreement, as ratios, in one run.

    python -m Testing.benchmarks.bench_nnunet                 # CPU, the bundled demo model
    python -m Testing.benchmarks.bench_nnunet --device cuda   # the same on a GPU
    python -m Testing.benchmarks.bench_nnunet --model FOLDER --matrix 512 --slice-mm 2.5

The CT is a phantom (``dkoar phantom``'s generator) written as NIfTI; nnU-Net reads it with its
SimpleITK reader (tile step 0.5, Gaussian, mirroring as the checkpoint allows, every fold,
``perform_everything_on_device`` on the GPU only), we read the same file. Each predictor runs in a
fresh process of its own, so that its peak memory (resident set; on a GPU also the peak of
allocated device memory) is its own. Three runs: nnU-Net, our nnU-Net mode (the same steps, our
code) and our fast mode (the default); the stage times of our two modes say where the time goes.

Needs nnunetv2 (``make test`` installs it); the model must be an nnU-Net v2 folder.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker(args) -> None:
    import numpy as np
    import torch

    device = torch.device(args.device)
    stages: dict[str, float] = {}
    windows = {}
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.worker == "nnunet":
        from Testing.nnunet_factory import nnunet_predictor, run_nnunet

        predictor = nnunet_predictor(Path(args.model), args.device)
        t0 = time.perf_counter()
        labels = run_nnunet(predictor, Path(args.nifti))
        seconds = time.perf_counter() - t0
    else:
        from DKOARSegmentationLib.input.ct_loader import load_ct
        from DKOARSegmentationLib.model.bundle import load_bundle
        from DKOARSegmentationLib.model.loading import load_model
        from DKOARSegmentationLib.model.predict_options import PredictOptions
        from DKOARSegmentationLib.model.predictor import predict_labels
        from DKOARSegmentationLib.progress import Progress

        model = load_model(load_bundle(args.model), device)
        marks = []

        def callback(stage, fraction, message):
            if not marks or marks[-1][0] != stage:
                marks.append((stage, time.perf_counter()))
            if message.startswith("window "):
                windows["n"] = int(message.split("/")[1])

        t0 = time.perf_counter()
        ct = load_ct(args.nifti)
        marks.append(("read CT", t0))
        mode = {"nnunet-mode": "nnunet", "fast": "fast"}[args.worker]
        labels = predict_labels(model, ct, Progress(callback), PredictOptions(mode=mode))
        seconds = time.perf_counter() - t0
        ends = [t for _, t in marks[1:]] + [t0 + seconds]
        stages = {name: round(end - start, 2) for (name, start), end in zip(marks, ends)}
    np.save(args.labels_out, labels)
    result = {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "stages": stages, "windows": windows.get("n")}
    if args.device == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(args.json_out).write_text(json.dumps(result))


def _run_worker(kind: str, args, work: Path) -> dict:
    labels, out = work / f"{kind}.npy", work / f"{kind}.json"
    cmd = [sys.executable, "-m", __spec__.name, "--worker", kind, "--device", args.device, "--model", str(args.model),
           "--nifti", str(work / "ct_0000.nii.gz"), "--labels-out", str(labels), "--json-out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{kind} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    import numpy as np

    result["labels"] = np.load(labels)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--model", type=Path, default=None, help="nnU-Net v2 folder with our manifest (default: the demo model)")
    ap.add_argument("--seed", type=int, default=7, help="phantom seed")
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--pixel-mm", type=float, default=0.977)
    ap.add_argument("--slice-mm", type=float, default=2.5)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    ap.add_argument("--skip-nnunet-mode", action="store_true", help="run only nnU-Net and our fast mode")
    ap.add_argument("--worker", choices=("nnunet", "nnunet-mode", "fast"), help=argparse.SUPPRESS)
    ap.add_argument("--nifti", help=argparse.SUPPRESS)
    ap.add_argument("--labels-out", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0

    import numpy as np
    import torch

    from DKOARSegmentationLib.model.bundle import load_bundle
    from DKOARSegmentationLib.phantom import PhantomGrid, generate_phantom
    from DKOARSegmentationLib.resources import demo_model_dir
    from Testing.nnunet_factory import agreement, require_nnunetv2, write_ct_nifti

    require_nnunetv2()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: PyTorch finds no CUDA GPU")
    args.model = (args.model or demo_model_dir()).resolve()
    bundle = load_bundle(args.model)
    if bundle.kind != "nnunetv2":
        sys.exit(f"{args.model}: not an nnU-Net v2 model")
    with tempfile.TemporaryDirectory(prefix="bench_nnunet_") as tmp:
        work = Path(tmp)
        grid = PhantomGrid(matrix=args.matrix, pixel_mm=args.pixel_mm, slice_mm=args.slice_mm)
        phantom = generate_phantom(args.seed, "HFS", grid)
        write_ct_nifti(phantom.ct, work / "ct_0000.nii.gz")
        print(f"model: {bundle.identity} ({len(bundle.folds)} fold(s)); CT: phantom seed {args.seed}, "
              f"{phantom.ct.shape} voxels of {args.slice_mm} x {args.pixel_mm} x {args.pixel_mm} mm; "
              f"device {args.device}, torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}")
        runs = {}
        kinds = ("nnunet", "fast") if args.skip_nnunet_mode else ("nnunet", "nnunet-mode", "fast")
        for kind in kinds:
            runs[kind] = _run_worker(kind, args, work)
            print(f"  {kind:<12} {runs[kind]['seconds']:7.1f} s, peak RSS {runs[kind]['peak_rss_mb']:7.0f} MB"
                  + (f", peak GPU {runs[kind]['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in runs[kind] else "")
                  + (f", {runs[kind]['windows']} windows" if runs[kind].get("windows") else "")
                  + (f"  stages {runs[kind]['stages']}" if runs[kind]["stages"] else ""))
    ref = runs["nnunet"]
    from DKOARSegmentationLib.input.body import body_bbox

    # where nnU-Net itself labels air: the fast mode, which leaves the air outside the body's box
    # as background, can only agree with nnU-Net where the model does too
    inside = np.zeros(phantom.ct.shape, dtype=bool)
    inside[body_bbox(phantom.ct.voxels)] = True
    air_labelled = int(np.count_nonzero(ref["labels"][~inside]))
    print(f"  nnU-Net's foreground outside the body's box: {air_labelled} voxels "
          f"({100 * air_labelled / max(1, np.count_nonzero(~inside)):.3f} % of them)")
    from DKOARSegmentationLib.model.preprocessing import compute_new_shape
    from DKOARSegmentationLib.model.sliding_window import _window_plan

    plans = bundle.read_json("plans.json")["configurations"][bundle.configuration]
    new_shape = compute_new_shape(phantom.ct.shape, tuple(reversed(phantom.ct.spacing)), plans["spacing"])
    _, starts, _ = _window_plan(new_shape, plans["patch_size"], 0.5)
    n_windows = int(np.prod([len(s) for s in starts]))
    print(f"  nnU-Net's windows: {n_windows} per fold on the resampled {tuple(new_shape)} grid")
    report = {"model": bundle.identity, "ct_shape": list(phantom.ct.shape), "device": args.device,
              "nnunet_foreground_outside_body_box_voxels": air_labelled,
              "nnunet_windows_per_fold": n_windows,
              "torch_threads": torch.get_num_threads(), "runs": {}}
    print("\nagainst nnUNetPredictor (ratios: ours / nnU-Net):")
    for kind in kinds[1:]:
        r = runs[kind]
        same, dice = agreement(r["labels"], ref["labels"])
        present = {k: v for k, v in dice.items() if np.any(ref["labels"] == k)}
        entry = {"seconds": round(r["seconds"], 2), "nnunet_seconds": round(ref["seconds"], 2),
                 "time_ratio": round(r["seconds"] / ref["seconds"], 3),
                 "peak_rss_ratio": round(r["peak_rss_mb"] / ref["peak_rss_mb"], 3),
                 "agreement_percent": round(same * 100, 4), "min_dice": round(min(present.values()), 4) if present else None,
                 "labels_present": len(present), "stages": r["stages"], "windows": r.get("windows"),
                 "agreement_inside_body_box_percent": round(float(np.mean(r["labels"][inside] == ref["labels"][inside])) * 100, 4)}
        if "peak_gpu_mb" in r:
            entry["peak_gpu_ratio"] = round(r["peak_gpu_mb"] / max(ref["peak_gpu_mb"], 1e-6), 3)
        worst = sorted(present.items(), key=lambda kv: kv[1])[:3]
        print(f"  {kind:<12} time {entry['time_ratio']:.2f}x, peak memory {entry['peak_rss_ratio']:.2f}x"
              + (f", GPU memory {entry['peak_gpu_ratio']:.2f}x" if "peak_gpu_ratio" in entry else "")
              + f", agreement {entry['agreement_percent']:.3f} % of voxels "
              f"({entry['agreement_inside_body_box_percent']:.3f} % inside the body's box), Dice min {entry['min_dice']} over "
              f"{entry['labels_present']} labels (lowest {', '.join(f'{k}:{v:.4f}' for k, v in worst)})")
        report["runs"][kind] = entry
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

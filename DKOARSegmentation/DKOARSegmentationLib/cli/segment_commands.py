"""``dkoar segment``, ``dkoar demo``, ``dkoar phantom`` and ``dkoar series``: from a CT to its
contours, and the synthetic CTs and series listings around it."""

from __future__ import annotations

from pathlib import Path

from ..errors import DKOARError
from .options import DEVICES, add_segment_options, segment_kwargs


def _cmd_phantom(args) -> int:
    from ..phantom import PhantomGrid, write_phantom

    grid = PhantomGrid(matrix=args.matrix, pixel_mm=args.pixel_mm, slice_mm=args.slice_mm)
    write_phantom(args.out, seed=args.seed, position=args.position, grid=grid)
    print(f"phantom seed {args.seed} ({args.position}): {args.out / 'ct'}, {args.out / 'truth.nii.gz'}, "
          f"{args.out / 'truth.seg.nrrd'}")
    return 0


def _cmd_segment(args) -> int:
    from ..pipeline.segment import segment
    from ..progress import TerminalProgress

    progress = TerminalProgress() if not args.quiet else None
    try:
        result = segment(args.input, args.out, model_path=args.model, device=args.device, progress=progress,
                         series_uid=args.series, empty_structures=args.empty_structures,
                         allow_modality=args.allow_modality, **segment_kwargs(args))
    finally:
        if progress is not None:
            progress.finish()
    _print_result(result)
    if args.truth:
        _print_dice(result, args.truth)
    return 0


def _print_result(result) -> None:
    print(f"model: {result.bundle.identity} on {result.device}"
          + ("" if result.bundle.clinical_use else "  (demonstration model: NOT FOR CLINICAL USE)"))
    for key, path in result.outputs.items():
        print(f"  {key:<13} {path}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"time: {stages}")
    for w in result.warnings:
        print(f"warning: {w}")


def _print_dice(result, truth_path: Path) -> float:
    import numpy as np

    from ..monitoring.overlap import dice_per_structure
    from ..output.label_maps import read_labelmap

    truth = read_labelmap(truth_path)
    if truth.labels.shape != result.segmentation.labels.shape:
        raise DKOARError(f"{truth_path}: the ground truth is not on the CT's grid")
    scores = dice_per_structure(result.segmentation.labels, truth.labels, result.segmentation.structures)
    print("Dice against the ground truth:")
    for s in result.segmentation.structures:
        print(f"  {s.label:2d} {s.name:<16} {scores[s.name]:.3f}" + ("" if s.core else "  (optional extra)"))
    core = [scores[s.name] for s in result.segmentation.structures if s.core]
    mean = float(np.mean(core))
    print(f"  mean Dice over the {len(core)} national structures: {mean:.3f}")
    return mean


def _cmd_series(args) -> int:
    from ..input.series_scan import scan_dicom_file, scan_dicom_folder, series_listing

    if not args.folder.exists():
        raise DKOARError(f"{args.folder}: no such file or folder")
    scan = scan_dicom_folder(args.folder) if args.folder.is_dir() else scan_dicom_file(args.folder)
    if scan is None:
        raise DKOARError(f"{args.folder}: not a DICOM file")
    print("\n".join(series_listing(scan)))
    return 0


def _cmd_demo(args) -> int:
    from ..phantom import PhantomGrid, write_phantom
    from ..pipeline.segment import segment
    from ..progress import TerminalProgress

    out = args.out
    print(f"1/2 making a synthetic head-and-neck CT (phantom seed {args.seed}) in {out / 'phantom'}")
    write_phantom(out / "phantom", seed=args.seed, position=args.position, grid=PhantomGrid())
    print(f"2/2 contouring it with the bundled demo model into {out / 'result'}")
    progress = TerminalProgress()
    try:
        result = segment(out / "phantom" / "ct", out / "result", device=args.device, progress=progress)
    finally:
        progress.finish()
    _print_result(result)
    _print_dice(result, out / "phantom" / "truth.nii.gz")
    return 0


def add_parsers(sub) -> None:
    from ..phantom import PATIENT_POSITIONS

    p = sub.add_parser("phantom", help="write a synthetic head-and-neck CT (DICOM) with its ground truth")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--position", choices=PATIENT_POSITIONS, default="HFS")
    p.add_argument("--matrix", type=int, default=512, help="pixels per row and column (default 512)")
    p.add_argument("--pixel-mm", type=float, default=0.977)
    p.add_argument("--slice-mm", type=float, default=2.5)
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("segment", help="contour the organs at risk on a CT (a DICOM folder, or a NIfTI, NRRD or MHA file)")
    p.add_argument("input", type=Path, help="the CT: a DICOM folder (any depth, any file names) or a NIfTI, NRRD or "
                                            "MHA file")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the bundled demo model)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--series", default=None, help="SeriesInstanceUID when the folder holds several CT series")
    p.add_argument("--allow-modality", action="store_true",
                   help="read a series of another modality than CT (MR, PT); the model expects CT")
    p.add_argument("--empty-structures", choices=("keep", "omit"), default="keep",
                   help="RTSTRUCT: keep an ROI without contours for a structure not found, or omit it")
    p.add_argument("--truth", type=Path, default=None, help="a ground-truth label map: print the Dice per structure")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_segment_options(p)
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("series", help="list the DICOM series in a folder (UID, modality, slices, thickness)")
    p.add_argument("folder", type=Path)
    p.set_defaults(func=_cmd_series)

    p = sub.add_parser("demo", help="make a phantom CT, contour it with the demo model, print the Dice")
    p.add_argument("--out", type=Path, default=Path("demo_output"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--position", choices=PATIENT_POSITIONS, default="HFS")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(func=_cmd_demo)

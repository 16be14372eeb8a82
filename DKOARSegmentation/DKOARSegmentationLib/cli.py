"""The ``dkoar`` command line.

Errors a user can cause print one line on stderr and exit with code 2; nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import DKOARError


def _cmd_phantom(args) -> int:
    from .phantom import PhantomGrid, write_phantom

    grid = PhantomGrid(matrix=args.matrix, pixel_mm=args.pixel_mm, slice_mm=args.slice_mm)
    write_phantom(args.out, seed=args.seed, position=args.position, grid=grid)
    print(f"phantom seed {args.seed} ({args.position}): {args.out / 'ct'}, {args.out / 'truth.nii.gz'}, "
          f"{args.out / 'truth.seg.nrrd'}")
    return 0


def _cmd_segment(args) -> int:
    from .pipeline import segment
    from .progress import TerminalProgress

    progress = TerminalProgress() if not args.quiet else None
    try:
        result = segment(args.input, args.out, model_path=args.model, device=args.device, progress=progress,
                         series_uid=args.series, empty_structures=args.empty_structures)
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

    from .labelmap_io import read_labelmap
    from .metrics import dice_per_structure

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


def _cmd_export_rtstruct(args) -> int:
    import numpy as np

    from .catalogue import default_catalogue
    from .ct_loader import load_ct
    from .labelmap_io import read_labelmap
    from .rtstruct_writer import RTStructOptions, write_rtstruct

    catalogue = default_catalogue()
    ct = load_ct(args.ct, args.series)
    if ct.dicom is None:
        raise DKOARError(f"{args.ct}: an RTSTRUCT references the DICOM CT it was drawn on; give the CT's DICOM folder")
    segmentation = read_labelmap(args.labels, catalogue)
    options = RTStructOptions(label=args.label, model_name=args.algorithm, model_version=args.algorithm_version,
                              empty_structures=args.empty_structures,
                              series_description=f"{args.label} (unapproved)")
    write_rtstruct(ct, segmentation, args.out, options)
    present = [v for v in np.unique(segmentation.labels) if v > 0]
    print(f"wrote {args.out}: {len(present)} structures with contours")
    return 0


def _cmd_export_seg(args) -> int:
    from .catalogue import default_catalogue
    from .ct_loader import load_ct
    from .dicom_seg import read_source_datasets, write_dicom_seg
    from .labelmap_io import read_labelmap

    catalogue = default_catalogue()
    ct = load_ct(args.ct, args.series)
    if ct.dicom is None:
        raise DKOARError(f"{args.ct}: a DICOM SEG references the DICOM CT it was drawn on; give the CT's DICOM folder")
    segmentation = read_labelmap(args.labels, catalogue)
    if segmentation.labels.shape != ct.shape:
        raise DKOARError(f"{args.labels}: the label map is not on the CT's grid")
    write_dicom_seg(ct, read_source_datasets(args.ct, ct), segmentation, args.out,
                    model_name=args.algorithm, model_version=args.algorithm_version)
    print(f"wrote {args.out}")
    return 0


def _cmd_rtstruct_to_labels(args) -> int:
    from .catalogue import default_catalogue
    from .ct_loader import load_ct
    from .label_export import rtstruct_to_segmentation, write_segmentation_file

    catalogue = default_catalogue()
    ct = load_ct(args.ct, args.series)
    segmentation, report = rtstruct_to_segmentation(args.rtstruct, ct, catalogue)
    write_segmentation_file(segmentation, args.out, catalogue)
    print(f"wrote {args.out}: {len(segmentation.structures)} structures in catalogue numbering")
    if report.unknown_rois:
        print("not in the catalogue, left out: " + ", ".join(report.unknown_rois))
    if report.empty_rois:
        print("without contours: " + ", ".join(report.empty_rois))
    for pair, voxels in report.overlaps.items():
        print(f"overlap {pair}: {voxels} voxels given to the smaller structure")
    return 0


def _cmd_demo(args) -> int:
    from .phantom import PhantomGrid, write_phantom
    from .pipeline import segment
    from .progress import TerminalProgress

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


class _OneLineErrors(argparse.ArgumentParser):
    """Usage errors in one line (exit code 2), like every other error of the command."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .phantom import PATIENT_POSITIONS

    parser = _OneLineErrors(prog="dkoar", description="Contour the Danish head-and-neck organs at risk on a planning CT.")
    parser.add_argument("--version", action="version", version=f"dkoar {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineErrors)

    p = sub.add_parser("phantom", help="write a synthetic head-and-neck CT (DICOM) with its ground truth")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--position", choices=PATIENT_POSITIONS, default="HFS")
    p.add_argument("--matrix", type=int, default=512, help="pixels per row and column (default 512)")
    p.add_argument("--pixel-mm", type=float, default=0.977)
    p.add_argument("--slice-mm", type=float, default=2.5)
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("segment", help="contour the organs at risk on a CT (DICOM folder, NIfTI or NRRD)")
    p.add_argument("input", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the bundled demo model)")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    p.add_argument("--series", default=None, help="SeriesInstanceUID when the folder holds several CT series")
    p.add_argument("--empty-structures", choices=("keep", "omit"), default="keep",
                   help="RTSTRUCT: keep an ROI without contours for a structure not found, or omit it")
    p.add_argument("--truth", type=Path, default=None, help="a ground-truth label map: print the Dice per structure")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("export-rtstruct", help="write an RTSTRUCT from a label map on a DICOM CT's grid")
    p.add_argument("--ct", type=Path, required=True, help="the CT's DICOM folder")
    p.add_argument("--labels", type=Path, required=True, help="label map (.nii.gz, .nrrd, .seg.nrrd), catalogue numbering")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--series", default=None, help="SeriesInstanceUID when the folder holds several CT series")
    p.add_argument("--label", default="DKOAR", help="StructureSetLabel (at most 16 characters)")
    p.add_argument("--algorithm", default="user segmentation", help="what made the label map (provenance)")
    p.add_argument("--algorithm-version", default="")
    p.add_argument("--empty-structures", choices=("keep", "omit"), default="omit")
    p.set_defaults(func=_cmd_export_rtstruct)

    p = sub.add_parser("export-seg", help="write a DICOM SEG from a label map on a DICOM CT's grid")
    p.add_argument("--ct", type=Path, required=True, help="the CT's DICOM folder")
    p.add_argument("--labels", type=Path, required=True, help="label map (.nii.gz, .nrrd, .seg.nrrd), catalogue numbering")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--series", default=None)
    p.add_argument("--algorithm", default="user segmentation")
    p.add_argument("--algorithm-version", default="")
    p.set_defaults(func=_cmd_export_seg)

    p = sub.add_parser("rtstruct-to-labels", help="read an RTSTRUCT onto its CT's grid as a label map")
    p.add_argument("rtstruct", type=Path)
    p.add_argument("--ct", type=Path, required=True, help="the CT's DICOM folder (or an image file on the same grid)")
    p.add_argument("--out", type=Path, required=True, help=".nii.gz, .nrrd or .seg.nrrd")
    p.add_argument("--series", default=None)
    p.set_defaults(func=_cmd_rtstruct_to_labels)

    p = sub.add_parser("demo", help="make a phantom CT, contour it with the demo model, print the Dice")
    p.add_argument("--out", type=Path, default=Path("demo_output"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--position", choices=PATIENT_POSITIONS, default="HFS")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="dkoar: %(message)s")
    try:
        return args.func(args)
    except DKOARError as exc:
        print(f"dkoar: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dkoar: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

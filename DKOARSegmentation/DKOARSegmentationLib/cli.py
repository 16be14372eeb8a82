"""The ``dkoar`` command line.

Errors a user can cause print one line on stderr and exit with code 2; nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .cli_model import add_model_parsers, add_segment_options, segment_kwargs
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


def _dicom_ct_and_labels(args, what: str):
    """The DICOM CT and the label map on its grid that an export command writes ``what`` from."""
    from .catalogue import default_catalogue
    from .ct_loader import load_ct
    from .labelmap_io import read_labelmap

    ct = load_ct(args.ct, args.series)
    if ct.dicom is None:
        raise DKOARError(f"{args.ct}: {what} references the DICOM CT it was drawn on; give the CT's DICOM folder")
    segmentation = read_labelmap(args.labels, default_catalogue())
    if segmentation.labels.shape != ct.shape:
        raise DKOARError(f"{args.labels}: the label map is not on the CT's grid")
    return ct, segmentation


def _cmd_export_rtstruct(args) -> int:
    import numpy as np

    from .rtstruct_writer import RTStructOptions, write_rtstruct

    ct, segmentation = _dicom_ct_and_labels(args, "an RTSTRUCT")
    options = RTStructOptions(label=args.label, model_name=args.algorithm, model_version=args.algorithm_version,
                              empty_structures=args.empty_structures,
                              series_description=f"{args.label} (unapproved)")
    write_rtstruct(ct, segmentation, args.out, options)
    present = [v for v in np.unique(segmentation.labels) if v > 0]
    print(f"wrote {args.out}: {len(present)} structures with contours")
    return 0


def _cmd_export_seg(args) -> int:
    from .dicom_seg import read_source_datasets, write_dicom_seg

    ct, segmentation = _dicom_ct_and_labels(args, "a DICOM SEG")
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


def _cmd_series(args) -> int:
    from .dicom_series import scan_dicom_file, scan_dicom_folder, series_listing

    if not args.folder.exists():
        raise DKOARError(f"{args.folder}: no such file or folder")
    scan = scan_dicom_folder(args.folder) if args.folder.is_dir() else scan_dicom_file(args.folder)
    if scan is None:
        raise DKOARError(f"{args.folder}: not a DICOM file")
    print("\n".join(series_listing(scan)))
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


def _cmd_compare(args) -> int:
    from .catalogue import default_catalogue
    from .comparison import compare_contour_sets, read_contour_set, write_comparison

    catalogue = default_catalogue()
    ct = None
    if args.ct is not None:
        from .ct_loader import load_ct

        ct = load_ct(args.ct, args.series)
    ai = read_contour_set(args.ai, ct, catalogue)
    final = read_contour_set(args.final, ct, catalogue)
    results = compare_contour_sets(ai, final)
    json_path, csv_path = write_comparison(results, args.out)
    edited = [name for name, r in results.items() if not r.unchanged]
    print(f"wrote {json_path} and {csv_path}: {len(results)} structures, {len(edited)} changed")
    for name in edited:
        r = results[name]
        hd95 = "-" if r.hd95_mm is None else f"{r.hd95_mm:.1f}"
        print(f"  {name:<16} Dice {r.dice:.3f}  HD95 {hd95} mm  surface Dice {r.surface_dice:.3f} "
              f"(tolerance {r.tolerance_mm:g} mm)  APL {r.apl_mm:.0f} mm")
    return 0


def _cmd_log_add(args) -> int:
    from .case_entry import add_case, read_times
    from .correction_log import open_log
    from .ct_loader import load_ct
    from .pseudonym import key_is_private, key_path_from, load_site_key

    key_path = key_path_from(args.site_key)
    if key_path.resolve() == args.log.resolve():
        raise DKOARError("the site key must be kept outside the log: give another file to --site-key")
    key = load_site_key(key_path)
    if key.created:
        print(f"created a new site key {key.path} (permissions 0600): keep it secret, outside the log and in the "
              "site's backup; the same key must be given for every case of this log")
    elif not key_is_private(key.path):
        print(f"warning: {key.path} is readable by other users; restrict it with chmod 600", file=sys.stderr)
    times = read_times(args.times) if args.times else None
    ct = load_ct(args.ct, args.series)
    with open_log(args.log) as log:
        added = add_case(log, ai_path=args.ai, final_path=args.final, ct=ct, key=key, site=args.site, times=times,
                         model_name=args.model_name, model_version=args.model_version,
                         model_hash=args.model_hash, started_at=args.date)
    changed = sum(1 for r in added.results.values() if not r.unchanged)
    model = f"{added.model_name} {added.model_version}".strip() or "unknown model"
    print(f"case {added.case_id} added to {args.log}: {len(added.results)} structures, {changed} changed by the "
          f"clinician ({model}" + (f", site {args.site})" if args.site else ")"))
    return 0


def _cmd_report(args) -> int:
    from .report import write_report

    html_path, csv_path, data = write_report(args.log, args.out, args.csv, metric=args.metric,
                                             baseline_months=args.baseline_months, baseline_min=args.manual_minutes)
    print(f"wrote {html_path} and {csv_path}: {data.n_cases} cases from {len(args.log)} log(s)")
    return 0


_TIMES_HELP = ("JSON of the correction times per structure: {\"structures\": {\"Parotid_L\": {\"active_s\": 42.5, "
               "\"wall_s\": 75, \"edits\": 3}, ...}} - active_s: seconds of editing without idle pauses, wall_s: "
               "seconds from first to last touch, edits: number of editing operations; all optional")


def _add_monitoring_parsers(sub) -> None:
    """The subcommands of the correction log and the monitoring report (compare, log add, report)."""
    p = sub.add_parser("compare", help="compare AI with final contours per structure (Dice, HD95, surface Dice, APL)",
                       description="Metrics per structure of the final contours against the AI contours, in mm on "
                                   "the CT's voxels: Dice, HD95, mean surface distance, surface Dice at the "
                                   "catalogue's tolerance, added path length, volumes. Writes JSON and a CSV beside it.")
    p.add_argument("--ai", type=Path, required=True, help="AI contours: an RTSTRUCT or a label map (catalogue numbering)")
    p.add_argument("--final", type=Path, required=True, help="final contours: an RTSTRUCT or a label map")
    p.add_argument("--ct", type=Path, default=None, help="the CT the contours were drawn on (needed for RTSTRUCTs)")
    p.add_argument("--series", default=None, help="SeriesInstanceUID when the CT folder holds several series")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write (the CSV goes beside it)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("log", help="the correction log (SQLite): add a case from files")
    log_sub = p.add_subparsers(dest="log_command", required=True, parser_class=_OneLineErrors)
    p = log_sub.add_parser("add", help="add a case: AI and final RTSTRUCTs on their CT, optionally with times",
                           description="Compare the final with the AI contours and add the case to the log. The "
                                       "patient and study are stored only as HMAC-SHA256 pseudonyms made with the "
                                       "site key, a file kept outside the log (created, 0600, when missing).")
    p.add_argument("--log", type=Path, required=True, help="the log file (created when missing)")
    p.add_argument("--ai", type=Path, required=True, help="the AI's RTSTRUCT")
    p.add_argument("--final", type=Path, required=True, help="the final (approved) RTSTRUCT")
    p.add_argument("--ct", type=Path, required=True, help="the CT's DICOM folder")
    p.add_argument("--series", default=None, help="SeriesInstanceUID when the CT folder holds several series")
    p.add_argument("--times", type=Path, default=None, help=_TIMES_HELP)
    p.add_argument("--site", default="", help="the site's name, as reported")
    p.add_argument("--site-key", type=Path, default=None,
                   help="the site key file (default: the file named by DKOAR_SITE_KEY); created when missing")
    p.add_argument("--model-name", default=None, help="default: from the AI RTSTRUCT")
    p.add_argument("--model-version", default=None, help="default: from the AI RTSTRUCT")
    p.add_argument("--model-hash", default="", help="the model bundle's sha256")
    p.add_argument("--date", default=None, help="when the correction was done (ISO 8601; default: now)")
    p.set_defaults(func=_cmd_log_add)

    p = sub.add_parser("report", help="the monitoring report (HTML + CSV of aggregates) from one or more logs",
                       description="A self-contained HTML page (no network needed) with time saved, per-structure "
                                   "effort and agreement, monthly control charts, and breakdowns by model and site; "
                                   "and a CSV of the aggregates (no patient data) for pooling across sites.")
    p.add_argument("--log", type=Path, action="append", required=True, help="a correction log; repeat to merge sites")
    p.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    p.add_argument("--csv", type=Path, default=None, help="the aggregates CSV (default: beside the HTML, .csv)")
    p.add_argument("--metric", default="surface_dice",
                   choices=("surface_dice", "dice", "hd95_mm", "msd_mm", "apl_mm", "active_s"),
                   help="the metric of the control charts (default surface_dice)")
    p.add_argument("--baseline-months", type=int, default=3, help="months of the baseline period (default 3)")
    p.add_argument("--manual-minutes", type=float, default=120.0,
                   help="minutes to draw the 32 structures by hand, for the time saved (default 120)")
    p.set_defaults(func=_cmd_report)


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
    p.add_argument("--allow-modality", action="store_true",
                   help="read a series of another modality than CT (MR, PT); the model expects CT")
    p.add_argument("--empty-structures", choices=("keep", "omit"), default="keep",
                   help="RTSTRUCT: keep an ROI without contours for a structure not found, or omit it")
    p.add_argument("--truth", type=Path, default=None, help="a ground-truth label map: print the Dice per structure")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_segment_options(p)
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

    p = sub.add_parser("series", help="list the DICOM series in a folder (UID, modality, slices, thickness)")
    p.add_argument("folder", type=Path)
    p.set_defaults(func=_cmd_series)

    p = sub.add_parser("demo", help="make a phantom CT, contour it with the demo model, print the Dice")
    p.add_argument("--out", type=Path, default=Path("demo_output"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--position", choices=PATIENT_POSITIONS, default="HFS")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    p.set_defaults(func=_cmd_demo)
    _add_monitoring_parsers(sub)
    add_model_parsers(sub)
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

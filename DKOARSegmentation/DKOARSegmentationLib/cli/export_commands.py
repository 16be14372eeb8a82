"""``dkoar export-rtstruct``, ``dkoar export-seg`` and ``dkoar rtstruct-to-labels``: between
label maps and the DICOM objects that planning systems read."""

from __future__ import annotations

from pathlib import Path

from ..errors import DKOARError
from .options import add_ct_options

LABEL_MAP_HELP = "label map (.nii.gz, .nrrd, .mha, .seg.nrrd), catalogue numbering"


def _dicom_ct_and_labels(args, what: str):
    """The DICOM CT and the label map on its grid that an export command writes ``what`` from."""
    from ..atomic import check_output_file
    from ..input.ct_loader import load_dicom_ct
    from ..output.label_maps import read_labelmap
    from ..structures.catalogue import default_catalogue

    check_output_file(args.out, inputs=(args.labels,))
    ct = load_dicom_ct(args.ct, args.series, what)
    segmentation = read_labelmap(args.labels, default_catalogue())
    if segmentation.labels.shape != ct.shape:
        raise DKOARError(f"{args.labels}: the label map is not on the CT's grid")
    return ct, segmentation


def _cmd_export_rtstruct(args) -> int:
    import numpy as np

    from ..output.rtstruct_writer import RTStructOptions, write_rtstruct

    ct, segmentation = _dicom_ct_and_labels(args, "an RTSTRUCT")
    options = RTStructOptions(label=args.label, model_name=args.algorithm, model_version=args.algorithm_version,
                              empty_structures=args.empty_structures,
                              series_description=f"{args.label} (unapproved)")
    write_rtstruct(ct, segmentation, args.out, options)
    present = [v for v in np.unique(segmentation.labels) if v > 0]
    print(f"wrote {args.out}: {len(present)} structures with contours")
    return 0


def _cmd_export_seg(args) -> int:
    from ..output.dicom_seg import read_source_datasets, write_dicom_seg

    ct, segmentation = _dicom_ct_and_labels(args, "a DICOM SEG")
    write_dicom_seg(ct, read_source_datasets(args.ct, ct), segmentation, args.out,
                    model_name=args.algorithm, model_version=args.algorithm_version)
    print(f"wrote {args.out}")
    return 0


def _cmd_rtstruct_to_labels(args) -> int:
    from ..atomic import check_output_file
    from ..input.ct_loader import load_ct
    from ..output.conversion import check_segmentation_file_name, rtstruct_to_segmentation, write_segmentation_file
    from ..structures.catalogue import default_catalogue

    check_output_file(check_segmentation_file_name(args.out), inputs=(args.rtstruct,))
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


def add_parsers(sub) -> None:
    p = sub.add_parser("export-rtstruct", help="write an RTSTRUCT from a label map on a DICOM CT's grid")
    add_ct_options(p)
    p.add_argument("--labels", type=Path, required=True, help=LABEL_MAP_HELP)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--label", default="DKOAR", help="StructureSetLabel (at most 16 characters)")
    p.add_argument("--algorithm", default="user segmentation", help="what made the label map (provenance)")
    p.add_argument("--algorithm-version", default="")
    p.add_argument("--empty-structures", choices=("keep", "omit"), default="omit")
    p.set_defaults(func=_cmd_export_rtstruct)

    p = sub.add_parser("export-seg", help="write a DICOM SEG from a label map on a DICOM CT's grid")
    add_ct_options(p)
    p.add_argument("--labels", type=Path, required=True, help=LABEL_MAP_HELP)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--algorithm", default="user segmentation", help="what made the label map (provenance)")
    p.add_argument("--algorithm-version", default="")
    p.set_defaults(func=_cmd_export_seg)

    p = sub.add_parser("rtstruct-to-labels", help="read an RTSTRUCT onto its CT's grid as a label map")
    p.add_argument("rtstruct", type=Path)
    add_ct_options(p, ct_help="the CT's DICOM folder (or an image file on the same grid)")
    p.add_argument("--out", type=Path, required=True, help=".nii.gz, .nrrd, .mha or .seg.nrrd")
    p.set_defaults(func=_cmd_rtstruct_to_labels)

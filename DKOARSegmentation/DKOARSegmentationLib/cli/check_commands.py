"""``dkoar check``: the plausibility flags of any contours on a CT (a label map in catalogue
numbering, a ``.seg.nrrd``, or an RTSTRUCT drawn on the CT)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DKOARError


def _cmd_check(args) -> int:
    import numpy as np

    from ..atomic import atomic_path
    from ..input.ct_loader import load_ct
    from ..monitoring.contour_sets import read_contour_set
    from ..review.flags import flags_document
    from ..review.plausibility import check_contours
    from ..structures.catalogue import default_catalogue
    from ..structures.choice import structure_set

    catalogue = default_catalogue()
    ct = load_ct(args.ct, args.series)
    contours = read_contour_set(args.labels, ct, catalogue)
    if tuple(contours.shape) != tuple(ct.shape) or not np.allclose(contours.affine, ct.affine, atol=1e-3):
        raise DKOARError(f"{args.labels}: the contours are not on the CT's grid (shape or geometry differ)")
    chosen = structure_set(None, args.structures) if args.structures else None
    expected = tuple(chosen) if chosen is not None else catalogue.core_structures + tuple(
        s for s in catalogue if not s.core and s.name in contours.items)
    document = flags_document(check_contours(contours, ct, expected))
    if args.out:
        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    for flag in document["flags"]:
        print(f"{flag['severity']:<7} {flag['kind']:<12} {flag['message']}")
    if not document["flags"]:
        print(f"no flag: {len(expected)} structures checked")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("check", help="plausibility flags of contours on a CT (missing, volume, fragmented, side, "
                                     "outside_body, order)")
    p.add_argument("ct", type=Path, help="the CT: a DICOM folder, or a NIfTI, NRRD or MHA file")
    p.add_argument("--labels", type=Path, required=True,
                   help="the contours: a label map (.nii.gz, .nrrd, .mha, .seg.nrrd) in catalogue numbering, or an "
                        "RTSTRUCT drawn on the CT")
    p.add_argument("--out", type=Path, default=None, help='write {"flags": [...]} as JSON here')
    p.add_argument("--structures", default=None, metavar="NAMES",
                   help="the structures expected (comma-separated; default: the 32 national structures and any "
                        "extra the contours hold)")
    p.add_argument("--series", default=None, help="SeriesInstanceUID when the CT folder holds several series")
    p.set_defaults(func=_cmd_check)

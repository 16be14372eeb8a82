"""What several commands share: one-line usage errors, the model-run options of ``dkoar segment``
(also read by the background run), and the options naming a CT."""

from __future__ import annotations

import argparse
from pathlib import Path

DEVICES = ("auto", "cuda", "mps", "cpu")


class OneLineErrors(argparse.ArgumentParser):
    """Usage errors in one line (exit code 2), like every other error of the command."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_ct_options(p, required: bool = True, ct_help: str = "the CT's DICOM folder") -> None:
    """``--ct`` and ``--series``: the CT that contours were drawn on."""
    p.add_argument("--ct", type=Path, required=required, default=None, help=ct_help)
    p.add_argument("--series", default=None, help="SeriesInstanceUID when the CT folder holds several series")


def add_segment_options(p) -> None:
    """Options of ``dkoar segment`` for the model run and the structure set."""
    p.add_argument("--site-config", type=Path, default=None,
                   help="site configuration (JSON or CSV): rename, recolour, reorder, choose structures, ROI types")
    p.add_argument("--structures", default=None, metavar="NAMES",
                   help="contour only these structures (comma-separated names or aliases; after --site-config)")
    p.add_argument("--predict-mode", choices=("fast", "nnunet"), default="fast",
                   help="fast (default) or nnunet: follow nnU-Net's predictor step by step (same result, slower)")


def segment_kwargs(args) -> dict:
    """Keyword arguments of ``pipeline.segment.segment`` from the options of ``add_segment_options``."""
    from ..model.predict_options import PredictOptions
    from ..structures.choice import structure_set

    kwargs = {"predict_options": PredictOptions(mode=getattr(args, "predict_mode", "fast"))}
    catalogue = structure_set(getattr(args, "site_config", None), getattr(args, "structures", None))
    if catalogue is not None:
        kwargs["catalogue"] = catalogue
    return kwargs

"""What several commands share: one-line usage errors, the model-run options of ``dkoar segment``
(also read by the background run), and the options naming a CT."""

from __future__ import annotations

import argparse
import sys
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


def site_key_path_for(argument: Path | None, log: Path) -> Path:
    """The site key file of ``--site-key`` (else DKOAR_SITE_KEY) for a log; refused when it is the
    log itself."""
    from ..errors import DKOARError
    from ..monitoring.pseudonym import key_path_from

    key_path = key_path_from(argument)
    if key_path.resolve() == Path(log).resolve():
        raise DKOARError("the site key must be kept outside the log: give another file to --site-key")
    return key_path


def announce_site_key(key) -> None:
    """A new key is announced (it must be kept and backed up), a key readable by others warned about."""
    from ..monitoring.pseudonym import key_is_private

    if key.created:
        print(f"created a new site key {key.path} (permissions 0600): keep it secret, outside the log and in the "
              "site's backup; the same key must be given for every case of this log")
    elif not key_is_private(key.path):
        print(f"warning: {key.path} is readable by other users; restrict it with chmod 600", file=sys.stderr)


def site_key_for(argument: Path | None, log: Path):
    """The site key for a log, made when missing (see ``site_key_path_for``, ``announce_site_key``)."""
    from ..monitoring.pseudonym import load_site_key

    key = load_site_key(site_key_path_for(argument, log))
    announce_site_key(key)
    return key

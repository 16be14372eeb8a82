"""``dkoar station``: the contouring station in a web browser (DKOARSegmentationStation).

The station runs on trame-slicer, which needs its own environment (``make station-env``, then
``.venv-station/bin/dkoar station``): it is imported only when the command runs, and its absence is
one line saying how to make that environment.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DKOARError
from .options import DEVICES

# what the station needs that only its environment has
STATION_PACKAGES = ("trame", "trame_slicer", "slicer")


def _cmd_station(args) -> int:
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in STATION_PACKAGES):
        raise DKOARError("the station needs trame-slicer, which this Python lacks: run `make station-env`, then "
                         ".venv-station/bin/dkoar station ...")
    from DKOARSegmentationStation.server import StationOptions, serve

    options = StationOptions(data=args.data, ct=args.ct, model=args.model, out=args.out, log=args.log,
                             site_key=args.site_key, site=args.site, device=args.device, host=args.host,
                             port=args.port)
    return serve(options)


def add_parsers(sub) -> None:
    p = sub.add_parser("station", help="the contouring station in a web browser (run, review, correct, export)",
                       description="Serve the contouring station to a web browser: open a CT, run the model, "
                                   "review and correct the structures, export RTSTRUCT, DICOM SEG and .seg.nrrd.")
    p.add_argument("--data", type=Path, default=None,
                   help="folder of DICOM series to choose from (the only folder the browser may open files in)")
    p.add_argument("--ct", type=Path, default=None, help="open this CT at start (a DICOM folder or an image file)")
    p.add_argument("--model", type=Path, default=None, help="model folder; the bundled demonstration model when absent")
    p.add_argument("--out", type=Path, default=Path("station_output"),
                   help="output folder: runs and exports go into time-stamped folders in it (default ./station_output)")
    p.add_argument("--log", type=Path, default=None,
                   help="the correction log (SQLite) where Finish stores each case (default OUT/corrections.sqlite)")
    p.add_argument("--site-key", type=Path, default=None,
                   help="site key file for the log's patient and study pseudonyms (else DKOAR_SITE_KEY)")
    p.add_argument("--site", default="", help="the site's name in the correction log")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where the model runs")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; any other needs the access "
                        "token printed at start)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free port)")
    p.set_defaults(func=_cmd_station)

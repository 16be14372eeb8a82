"""``dkoar serve`` (the DICOM node), ``dkoar serve status`` and ``dkoar batch``: running unattended."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from .options import DEVICES

# (flag, keyword of NodeConfig, argparse keywords): every setting of the configuration file
_SETTINGS = (
    ("--ae-title", "ae_title", {"help": "this node's AE title (default DKOAR)"}),
    ("--host", "host", {"help": "address to listen on (default 127.0.0.1: this machine only)"}),
    ("--port", "port", {"type": int, "help": "port to listen on (default 11112)"}),
    ("--allow", "allow", {"action": "append", "metavar": "CALLER_AE",
                          "help": "a calling AE title accepted (repeatable; \"*\" accepts any caller)"}),
    ("--send-to", "send_to", {"action": "append", "metavar": "AE@HOST:PORT",
                              "help": "a destination of the results (repeatable)"}),
    ("--work", "work", {"type": Path, "metavar": "DIR", "help": "queue, received CTs, results and log (default "
                                                                "./dkoar-node)"}),
    ("--idle-seconds", "idle_seconds", {"type": float, "metavar": "S",
                                        "help": "a series is complete when no slice came for S seconds (default 30)"}),
    ("--model", "model", {"type": Path, "metavar": "FOLDER", "help": "model folder (default: the bundled demo model)"}),
    ("--device", "device", {"choices": DEVICES}),
    ("--max-associations", "max_associations", {"type": int, "metavar": "N", "help": "at once (default 10)"}),
    ("--max-study-mb", "max_study_mb", {"type": float, "metavar": "MB", "help": "larger studies are refused"}),
    ("--min-free-mb", "min_free_mb", {"type": float, "metavar": "MB",
                                      "help": "slices are refused while the work folder's disk has less free"}),
    ("--priority-caller", "priority_callers", {"action": "append", "metavar": "CALLER_AE",
                                               "help": "series from these callers first, in this order"}),
    ("--order", "order", {"choices": ("oldest", "newest", "smallest"), "help": "then which waiting series first"}),
    ("--send-seg", "send_seg", {"action": argparse.BooleanOptionalAction, "help": "also send a DICOM SEG"}),
    ("--failure-rtstruct", "failure_rtstruct", {"action": argparse.BooleanOptionalAction,
                                                "help": "send an RTSTRUCT naming the failure (default on)"}),
    ("--missing-slices", "missing_slices", {"choices": ("fail", "warn"),
                                            "help": "a series with a gap: fail (default) or contour anyway"}),
    ("--keep-input", "keep_input", {"action": argparse.BooleanOptionalAction,
                                    "help": "keep received CTs after delivery"}),
    ("--retry-seconds", "retry_seconds", {"type": float, "metavar": "S", "help": "first retry of a delivery"}),
    ("--retry-max-seconds", "retry_max_seconds", {"type": float, "metavar": "S", "help": "longest wait between "
                                                                                       "delivery attempts"}),
    ("--max-attempts", "max_attempts", {"type": int, "metavar": "N", "help": "delivery attempts before giving up"}),
    ("--tls-certificate", "tls_certificate", {"type": Path, "metavar": "FILE"}),
    ("--tls-key", "tls_key", {"type": Path, "metavar": "FILE"}),
    ("--tls-ca", "tls_ca", {"type": Path, "metavar": "FILE", "help": "require callers' certificates signed by it"}),
    ("--site-key", "site_key", {"type": Path, "metavar": "FILE", "help": "key of the series pseudonyms"}),
)


def node_config_from(args):
    from ..node.config import node_config, read_config_file

    file_values = read_config_file(args.config) if args.config else {}
    flags = {key: getattr(args, key, None) for _, key, _ in _SETTINGS}
    return node_config(file_values, flags)


def _log_to(path: Path, verbose: bool) -> None:
    """The node's log: its own file in the work folder, and stderr."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    path.parent.mkdir(parents=True, exist_ok=True)
    handlers = [logging.FileHandler(path, encoding="utf-8"), logging.StreamHandler(sys.stderr)]
    for handler in handlers:
        handler.setFormatter(formatter)
    ours = logging.getLogger("DKOARSegmentationLib")
    ours.setLevel(logging.DEBUG if verbose else logging.INFO)
    ours.propagate = False
    network = logging.getLogger("pynetdicom")  # its own warnings (aborted associations...) in the same log
    network.setLevel(logging.WARNING)
    network.propagate = False
    for handler in handlers:
        ours.addHandler(handler)
        network.addHandler(handler)


def _cmd_serve(args) -> int:
    if args.serve_command == "status":
        return _cmd_status(args)
    from ..node.server import Node

    config = node_config_from(args)
    _log_to(config.work / "node.log", args.verbose)
    node = Node(config)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: node.request_stop())
    node.start()
    print(f"dkoar node {config.ae_title} on {config.host}:{config.port}, work folder {config.work} "
          "(Ctrl-C or SIGTERM stops it)", flush=True)
    try:
        node.wait()
    finally:
        node.stop()
    return 0


def _cmd_status(args) -> int:
    from ..node.status import status_lines

    config = args.status_config or args.config
    work = args.status_work or args.work
    if work is None and config is not None:
        from ..node.config import read_config_file

        work = read_config_file(config).get("work")
    database = Path(work or "dkoar-node") / "queue.sqlite3"
    print("\n".join(status_lines(database, args.last, args.last)))
    return 0


def _cmd_batch(args) -> int:
    from ..node.batch import SUMMARY_NAME, run_batch
    from ..progress import TerminalProgress

    progress = TerminalProgress() if not args.quiet else None
    try:
        rows = run_batch(args.input, args.out, model=args.model, device=args.device, workers=args.workers,
                         ray=args.ray, progress=progress)
    finally:
        if progress is not None:
            progress.finish()
    counts: dict[str, int] = {}
    for row in rows:
        status = row["status"].split(":")[0]
        counts[status] = counts.get(status, 0) + 1
    print(f"{len(rows)} series: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
          + f"; summary in {args.out / SUMMARY_NAME}")
    for row in rows:
        if row["status"].startswith("failed"):
            print(f"  {row['series']}: {row['status']}")
    return 1 if counts.get("failed") else 0


def add_parsers(sub) -> None:
    p = sub.add_parser("serve", help="run the DICOM node: receive CTs, send back structure sets (and `serve status`)",
                       description="A DICOM Storage SCP that contours each CT series it receives and stores the "
                                   "RTSTRUCT to the destinations. Settings from --config (TOML, keys as the flags "
                                   "with _ for -), each flag given overriding the file.")
    p.add_argument("--config", type=Path, default=None, metavar="FILE", help="the node's TOML configuration")
    for flag, key, kwargs in _SETTINGS:
        p.add_argument(flag, dest=key, default=None, **kwargs)
    p.set_defaults(func=_cmd_serve, serve_command=None)
    serve_sub = p.add_subparsers(dest="serve_command", parser_class=type(p))
    s = serve_sub.add_parser("status", help="the queue and the last deliveries of a node (running or not)")
    s.add_argument("--work", dest="status_work", type=Path, default=None, metavar="DIR", help="the node's work folder")
    s.add_argument("--config", dest="status_config", type=Path, default=None, metavar="FILE",
                   help="the node's configuration (its work folder)")
    s.add_argument("--last", type=int, default=10, metavar="N", help="deliveries and events shown (default 10)")

    p = sub.add_parser("batch", help="contour every CT series under a folder, each into its own output folder")
    p.add_argument("input", type=Path, help="a folder with CT series at any depth")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the bundled demo model)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="series at once (default 1)")
    p.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                   help="one Ray task per series: auto (the running cluster, else a local one), local, or a "
                        "cluster address")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_batch)

"""Run the pipeline for a parent process (the Slicer module): progress and result as JSON lines.

    PythonSlicer -m DKOARSegmentationLib.pipeline.json_run INPUT --out FOLDER [--model DIR] [--device auto|cpu|cuda|mps]

The Slicer module runs inference in a separate process so that Slicer stays responsive and Cancel
can end the whole process tree. Every line this writes on stdout is one JSON object:

- ``{"stage": ..., "progress": 0..1, "message": ...}`` while working (``progress.JsonLinesProgress``);
- ``{"result": {"outputs": {name: path}, "warnings": [...], "seconds": {...}, "device": ...,
  "model": {"name", "version", "sha256"}, "flags": [...], "review": [...], "uncertainty": {...}}}``
  at the end, exit code 0;
- ``{"error": "what is wrong and what to do"}`` for a problem the user can fix, exit code 2.

Anything else (a library printing) is not JSON and is shown by the parent as a log line.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..cli.options import add_segment_options, segment_kwargs
from ..errors import DKOARError


def result_record(result) -> dict:
    return {
        "outputs": {name: str(path) for name, path in result.outputs.items()},
        "warnings": list(result.warnings),
        "seconds": {name: round(float(value), 3) for name, value in result.seconds.items()},
        "device": result.device,
        "model": {"name": result.bundle.name, "version": result.bundle.version, "sha256": result.bundle.manifest_sha256},
        **result.guidance.as_record(),  # flags, review list, uncertainty: for the panel and the log
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="json_run", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="the CT: a DICOM folder, or a NIfTI, NRRD or MHA file")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default=None, help="a model folder; the bundled demonstration model when absent")
    parser.add_argument("--device", default="auto")
    add_segment_options(parser)  # --structures, --site-config, --predict-mode: as `dkoar segment`
    args = parser.parse_args(argv)

    from ..progress import JsonLinesProgress
    from .segment import segment

    try:
        result = segment(args.input, args.out, model_path=args.model, device=args.device,
                         progress=JsonLinesProgress(sys.stdout), **segment_kwargs(args))
    except DKOARError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 2
    print(json.dumps({"result": result_record(result)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

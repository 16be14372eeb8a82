"""Run the pipeline for a parent process (the Slicer module): progress and result as JSON lines.

    PythonSlicer -m DKOARSegmentationLib.json_run INPUT --out FOLDER [--model DIR] [--device auto|cpu|cuda|mps]

The Slicer module runs inference in a separate process so that Slicer stays responsive and Cancel
can end the whole process tree. Every line this writes on stdout is one JSON object:

- ``{"stage": ..., "progress": 0..1, "message": ...}`` while working (``progress.JsonLinesProgress``);
- ``{"result": {"outputs": {name: path}, "warnings": [...], "seconds": {...}, "device": ...,
  "model": {"name", "version", "sha256"}}}`` at the end, exit code 0;
- ``{"error": "what is wrong and what to do"}`` for a problem the user can fix, exit code 2.

Anything else (a library printing) is not JSON and is shown by the parent as a log line.
"""

from __future__ import annotations

import argparse
import json
import sys

from .cli_model import add_segment_options, segment_kwargs
from .errors import DKOARError


def parse_line(line: str) -> dict | None:
    """One line of this program's output as its JSON object; None for any other line."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def end_process_tree(pid: int, timeout_s: float = 5.0) -> None:
    """Stop a process and every process it started (killing a launcher such as PythonSlicer alone
    would leave the Python doing the work running): terminate, then kill what is left."""
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    processes = parent.children(recursive=True) + [parent]
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout_s)


def result_record(result) -> dict:
    return {
        "outputs": {name: str(path) for name, path in result.outputs.items()},
        "warnings": list(result.warnings),
        "seconds": {name: round(float(value), 3) for name, value in result.seconds.items()},
        "device": result.device,
        "model": {"name": result.bundle.name, "version": result.bundle.version, "sha256": _manifest_sha256(result)},
    }


def _manifest_sha256(result) -> str:
    try:
        return result.bundle.manifest_sha256
    except OSError:  # a model folder without a manifest
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="json_run", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="the CT: a DICOM folder, NIfTI or NRRD")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default=None, help="a model folder; the bundled demonstration model when absent")
    parser.add_argument("--device", default="auto")
    add_segment_options(parser)  # --structures, --site-config, --predict-mode: as `dkoar segment`
    args = parser.parse_args(argv)

    from .pipeline import segment
    from .progress import JsonLinesProgress

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

"""One run of the model on a CT volume node, in this process or in a child process.

Both ways share every step but the running itself: the input is checked and the structure choice
parsed before anything starts (``prepare``), the CT goes to the core as its DICOM files or a NRRD,
progress arrives as ``on_progress(stage, fraction, message)``, and the result comes back as the
child's JSON record (``json_run.result_record``), from which ``load_run_result`` loads the
segmentation and writes the model's provenance on the node.

In the child process (``start``) Slicer stays responsive and Cancel ends the whole process tree;
in this process (``run_here``) the core's ``Progress`` cancels at its next check.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from DKOARSegmentationLib.atomic import prepare_output_folder
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.pipeline.background import child_command, end_process_tree, parse_line
from DKOARSegmentationLib.pipeline.json_run import result_record
from DKOARSegmentationLib.progress import Progress
from DKOARSegmentationLib.structures.choice import structure_set

from .dicom_source import DicomFileLookup, core_input
from .result_loading import load_seg_nrrd

ProgressCallback = Callable[[str, float, str], None]

MODEL_NAME_ATTRIBUTE = "DKOAR.modelName"
MODEL_VERSION_ATTRIBUTE = "DKOAR.modelVersion"
MODEL_HASH_ATTRIBUTE = "DKOAR.modelHash"


@dataclass
class PreparedRun:
    """A run whose input was checked: the CT written for the core into ``work_dir``."""

    volume_node: object
    input_path: Path
    work_dir: Path
    output_folder: Path
    model_path: str
    device: str
    structures: str
    catalogue: object = None  # the structure set, None for the whole catalogue

    def discard(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def prepare(volume_node, output_folder: str, model_path: str, device: str, structures: str,
            database: DicomFileLookup | None, temporary_root: str | None = None) -> PreparedRun:
    """Check the input and write the CT for the core. Refused with a DKOARError (nothing started,
    nothing written) when there is no CT, a structure name is unknown, or the output folder cannot
    be made."""
    if volume_node is None or volume_node.GetImageData() is None:
        raise DKOARError("select a planning CT volume that has image data")
    catalogue = structure_set(None, structures)  # an unknown name is refused here
    if output_folder and output_folder.strip():
        folder = Path(output_folder.strip())
    else:
        folder = Path(tempfile.mkdtemp(prefix="DKOARSegmentation-", dir=temporary_root))
    prepare_output_folder(folder)
    work = Path(tempfile.mkdtemp(prefix="DKOAR-input-", dir=temporary_root))
    try:
        input_path = core_input(volume_node, work, database)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return PreparedRun(volume_node, input_path, work, folder, (model_path or "").strip(), device,
                       (structures or "").strip(), catalogue)


def run_here(run: PreparedRun, on_progress: ProgressCallback | None = None,
             progress: Progress | None = None) -> dict:
    """Run the pipeline in this process; returns the result record. ``progress`` (made from
    ``on_progress`` when not given) can cancel the run."""
    from DKOARSegmentationLib.pipeline.segment import segment

    progress = progress or Progress(on_progress)
    kwargs = {"catalogue": run.catalogue} if run.catalogue is not None else {}
    try:
        result = segment(run.input_path, run.output_folder, model_path=run.model_path or None, device=run.device,
                         progress=progress, **kwargs)
    finally:
        run.discard()
    return result_record(result)


def load_run_result(record: dict, volume_node, name: str | None = None):
    """The run's segmentation as a node beside the CT, carrying the model's name, version and
    manifest sha256 (for the correction log and the RTSTRUCT; saved with the scene)."""
    node = load_seg_nrrd(record["outputs"]["seg_nrrd"], volume_node, name=name or f"{volume_node.GetName()} OARs")
    model = record.get("model", {})
    node.SetAttribute(MODEL_NAME_ATTRIBUTE, model.get("name", ""))
    node.SetAttribute(MODEL_VERSION_ATTRIBUTE, model.get("version", ""))
    node.SetAttribute(MODEL_HASH_ATTRIBUTE, model.get("sha256", ""))
    if "flags" in record:  # the run's review guidance, for the panel, the station and the log
        from .review_guidance import set_guidance

        set_guidance(node, record)
    return node


def load_run_folder(folder, volume_node, name: str | None = None):
    """A run's output folder (``segment``'s run.json and segmentation.seg.nrrd) opened again on the
    CT it was made on: the segmentation with the model's provenance and the run's review guidance,
    as ``load_run_result`` gives it after a run (a station restarted, a run made on the command line)."""
    import json

    folder = Path(folder)
    # segment()'s OUTPUT_NAMES; its module is not imported here: it needs torch, which Slicer may lack
    run_json, seg_nrrd = folder / "run.json", folder / "segmentation.seg.nrrd"
    if not run_json.is_file() or not seg_nrrd.is_file():
        raise DKOARError(f"{folder.name}: not a run's folder (it needs run.json and segmentation.seg.nrrd)")
    try:
        run = json.loads(run_json.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise DKOARError(f"{folder.name}/run.json: not a run record (unreadable JSON)") from None
    if not isinstance(run, dict):
        raise DKOARError(f"{folder.name}/run.json: not a run record")
    model = run.get("model") if isinstance(run.get("model"), dict) else {}
    record = {key: run[key] for key in ("flags", "review", "uncertainty") if key in run}
    record["model"] = {"name": model.get("name", ""), "version": model.get("version", ""),
                       "sha256": model.get("manifest_sha256", "")}
    record["outputs"] = {"seg_nrrd": str(seg_nrrd)}
    try:
        return load_run_result(record, volume_node, name)
    except DKOARError as exc:
        raise DKOARError(f"{folder.name}: {exc}; open the CT the run was made on") from None


def model_identity(segmentation_node) -> tuple[str, str, str]:
    """(name, version, manifest sha256) of the model that made a segmentation; empty when unknown."""
    return tuple(segmentation_node.GetAttribute(a) or ""  # type: ignore[return-value]
                 for a in (MODEL_NAME_ATTRIBUTE, MODEL_VERSION_ATTRIBUTE, MODEL_HASH_ATTRIBUTE))


@dataclass
class BackgroundRun:
    """A run in a child process, from ``start`` until its completion callback."""

    run: PreparedRun
    process: object = None  # what the launcher returned (has ``pid``)
    cancelled: bool = False
    record: dict | None = None
    error: str | None = None
    log_lines: list[str] = field(default_factory=list)

    def cancel(self) -> None:
        """End the child and every process it started; the completion callback still follows."""
        self.cancelled = True
        if self.process is not None:
            end_process_tree(self.process.pid)


def start(run: PreparedRun, launcher, on_progress: ProgressCallback | None,
          on_completed: Callable[[object, dict | None, str | None], None] | None,
          python: str | None = None, module_dir: str | None = None) -> BackgroundRun:
    """Run the pipeline as a child process through ``launcher`` (the signature of
    ``slicer.util.launchConsoleProcess(..., blocking=False)``) and return at once.

    ``on_completed(segmentation_node, record, error)`` follows the child's end: the node and record
    when it succeeded, else None and one sentence (a refusal of the core, a cancel, a crash)."""
    background = BackgroundRun(run)
    args = child_command(run.input_path, run.output_folder, run.model_path or None, run.device,
                         run.structures or None, python=python)
    environment = {"PYTHONUNBUFFERED": "1"}
    if module_dir:  # where DKOARSegmentationLib lies when it is not installed (a Slicer module folder)
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (module_dir, os.environ.get("PYTHONPATH", "")) if p)

    def on_line(line: str) -> None:
        message = parse_line(line)
        if message is None:
            background.log_lines.append(line)
        elif "error" in message:
            background.error = str(message["error"])
        elif "result" in message:
            background.record = message["result"]
        elif on_progress is not None:
            on_progress(str(message.get("stage", "")), float(message.get("progress", 0.0)),
                        str(message.get("message", "")))

    def on_done(return_code: int) -> None:
        run.discard()
        node, error = None, background.error
        if background.cancelled:
            error = "cancelled by the user"
        elif return_code == 0 and background.record:
            try:
                node = load_run_result(background.record, run.volume_node)
            except (DKOARError, OSError, KeyError) as exc:
                error = f"the result could not be loaded: {exc}"
        elif error is None:
            last = background.log_lines[-1] if background.log_lines else "no output"
            error = f"the segmentation process failed (exit code {return_code}; last line: {last})"
        if on_completed is not None:
            on_completed(node, background.record if node is not None else None, error)

    try:
        background.process = launcher(args, updateEnvironment=environment, blocking=False,
                                      logCallback=on_line, completedCallback=on_done)
    except BaseException:
        run.discard()
        raise
    return background

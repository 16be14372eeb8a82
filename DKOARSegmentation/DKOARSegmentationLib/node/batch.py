"""``dkoar batch``: every CT series under a folder through the pipeline of ``dkoar segment``, each
into its own output folder, on local processes or on Ray.

    OUT/<the series' folder, relative to INPUT>/   rtstruct.dcm, segmentation.seg.nrrd, labels.nii.gz,
                                                  overview.png, run.json (as ``dkoar segment``)
    OUT/summary.csv                               series, seconds, structures, status

Resumable: a series whose run.json was written by the same model (its manifest's sha256) is
skipped; ``segment`` writes run.json last, so its presence means the folder is complete. A batch
killed at any point and started again does only what is left. The summary is rewritten after
every series, so it is complete up to the kill.

Several CT series in one folder get one output folder each, named by series number and a keyed
hash of the UID (no UID in clear in folder names or the summary).
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_path, prepare_output_folder
from ..errors import DKOARError
from ..pipeline.segment import OUTPUT_NAMES

SUMMARY_NAME = "summary.csv"
SUMMARY_COLUMNS = ("series", "seconds", "structures", "status")


@dataclass(frozen=True)
class BatchJob:
    name: str  # the output folder relative to OUT, also the series' name in the summary
    input: Path  # the folder holding the series' files
    series_uid: str
    out: Path


def find_series(input_dir: Path | str, out_dir: Path | str) -> list[BatchJob]:
    """One job per CT series (not localisers) under ``input_dir``, in folder order."""
    import hashlib

    from ..input.series_scan import scan_dicom_folder

    input_dir, out_dir = Path(input_dir).resolve(), Path(out_dir)
    if not input_dir.is_dir():
        raise DKOARError(f"{input_dir}: no such folder")
    scan = scan_dicom_folder(input_dir)
    cts = [s for s in scan.series.values() if s.modality == "CT" and s.is_image and not s.is_localizer]
    by_folder: dict[Path, list] = {}
    for series in cts:
        folder = Path(os.path.commonpath([str(f.parent) for f in series.files]))
        by_folder.setdefault(folder, []).append(series)
    jobs = []
    for folder in sorted(by_folder):
        rel = folder.relative_to(input_dir).as_posix()
        base = input_dir.name if rel == "." else rel
        for series in sorted(by_folder[folder], key=lambda s: (s.number, s.uid)):
            name = base
            if len(by_folder[folder]) > 1:
                digest = hashlib.sha256(series.uid.encode()).hexdigest()[:8]
                name = f"{base}/series{series.number or 'x'}-{digest}"
            jobs.append(BatchJob(name, folder, series.uid, out_dir / name))
    return jobs


def done_before(out: Path, manifest_sha256: str) -> dict | None:
    """The run.json of a complete earlier run of the same model in ``out``, else None."""
    try:
        run = json.loads((out / OUTPUT_NAMES["run_json"]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return run if run.get("model", {}).get("manifest_sha256") == manifest_sha256 else None


def summary_row(job: BatchJob, seconds: float, run: dict | None, status: str) -> dict:
    structures = sum(1 for s in (run or {}).get("structures", {}).values() if s.get("present"))
    return {"series": job.name, "seconds": f"{seconds:.1f}", "structures": structures if run else "",
            "status": status}


def run_job(job: BatchJob, model: str | None, device: str = "auto", threads: int | None = None) -> dict:
    """Contour one series (in whichever process runs it); its summary row. Never raises for a
    problem with the series: the row says what it was."""
    from ..pipeline.segment import segment

    if threads:
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        segment(job.input, job.out, model_path=model, device=device, series_uid=job.series_uid)
    except DKOARError as exc:
        return summary_row(job, time.perf_counter() - start, None, f"failed: {exc}")
    except Exception as exc:  # one broken series must not stop a batch of thousands
        return summary_row(job, time.perf_counter() - start, None,
                           f"failed: internal error {type(exc).__name__}: {exc}")
    run = json.loads((job.out / OUTPUT_NAMES["run_json"]).read_text(encoding="utf-8"))
    return summary_row(job, time.perf_counter() - start, run, "ok")


def write_summary(out_dir: Path, rows: list[dict]) -> Path:
    path = out_dir / SUMMARY_NAME
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda r: r["series"]))
    return path


def run_batch(input_dir: Path | str, out_dir: Path | str, model: Path | str | None = None, device: str = "auto",
              workers: int = 1, ray: str | None = None, progress=None) -> list[dict]:
    """Contour every CT series under ``input_dir`` not done before; the summary rows (also in
    ``out_dir/summary.csv``). ``ray``: None for local processes, "auto", "local" or a cluster address."""
    from ..model.bundle import load_bundle
    from ..resources import demo_model_dir

    out_dir = Path(out_dir)
    if workers < 1:
        raise DKOARError(f"--workers must be 1 or more, not {workers}")
    bundle = load_bundle(Path(model) if model else demo_model_dir())  # checked once, before any work
    model_folder = str(bundle.folder)
    jobs = find_series(input_dir, out_dir)
    if not jobs:
        raise DKOARError(f"{input_dir}: no CT series found")
    prepare_output_folder(out_dir)
    rows: list[dict] = []
    todo = []
    for job in jobs:
        run = done_before(job.out, bundle.manifest_sha256)
        if run is None:
            todo.append(job)
        else:
            rows.append(summary_row(job, sum(run.get("seconds", {}).values()), run, "done before"))
    write_summary(out_dir, rows)

    def finished(row: dict) -> None:
        rows.append(row)
        write_summary(out_dir, rows)
        if progress is not None:
            progress.update(len(rows) / len(jobs), f"{len(rows)}/{len(jobs)} series")

    if progress is not None:
        progress.begin("batch")
        progress.update(len(rows) / len(jobs), f"{len(rows)}/{len(jobs)} series ({len(rows)} done before)")
    if todo:
        if ray is None:
            _run_local(todo, model_folder, device, workers, finished)
        else:
            from .batch_ray import run_on_ray

            run_on_ray(todo, model_folder, device, workers, ray, finished)
    return sorted(rows, key=lambda r: r["series"])


def _run_local(jobs: list[BatchJob], model: str, device: str, workers: int, finished) -> None:
    """Local processes (spawned: a forked process would share the parent's torch thread pools);
    the CPU's cores shared between them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_job, job, model, device, threads) for job in jobs]
        for future in as_completed(futures):
            finished(future.result())

"""``dkoar batch`` on six small phantoms: the same outputs as ``dkoar segment`` for each series, on
local processes and on a local Ray instance; killed half-way and started again, it does only
the rest; the summary CSV."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pydicom
import pytest

from DKOARSegmentationLib.cli.main import main
from DKOARSegmentationLib.output.label_maps import read_labelmap
from DKOARSegmentationLib.pipeline.segment import OUTPUT_NAMES

from .node_factory import make_fast_model, write_studies

pytestmark = pytest.mark.slow
SEEDS = range(40, 46)


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    return make_fast_model(tmp_path_factory.mktemp("model") / "fast")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    write_studies(root, SEEDS)
    (root / "notes.txt").write_text("not DICOM: ignored")
    return root


@pytest.fixture(scope="module")
def by_segment(archive, fast_model, tmp_path_factory):
    """What `dkoar segment` writes for each series."""
    out = tmp_path_factory.mktemp("segment")
    for seed in SEEDS:
        name = f"p{seed:02d}/ct"
        assert main(["segment", str(archive / name), "--out", str(out / name), "--model", str(fast_model), "-q",
                     "--device", "cpu"]) == 0
    return out


def _rtstruct_content(path):
    ds = pydicom.dcmread(path)
    rois = [roi.ROIName for roi in ds.StructureSetROISequence]
    contours = [[(c.ContourImageSequence[0].ReferencedSOPInstanceUID, tuple(c.ContourData))
                 for c in getattr(item, "ContourSequence", [])] for item in ds.ROIContourSequence]
    return rois, contours


def assert_same_outputs(batch_out, segment_out):
    for seed in SEEDS:
        name = f"p{seed:02d}/ct"
        a, b = batch_out / name, segment_out / name
        assert {p.name for p in a.iterdir()} == {p.name for p in b.iterdir()} == set(OUTPUT_NAMES.values())
        assert np.array_equal(read_labelmap(a / OUTPUT_NAMES["labels_nifti"]).labels,
                              read_labelmap(b / OUTPUT_NAMES["labels_nifti"]).labels)
        assert _rtstruct_content(a / OUTPUT_NAMES["rtstruct"]) == _rtstruct_content(b / OUTPUT_NAMES["rtstruct"])


def _summary(out) -> dict[str, dict]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        return {row["series"]: row for row in csv.DictReader(f)}


def test_batch_on_local_processes_writes_what_segment_writes(archive, fast_model, by_segment, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(archive), "--out", str(out), "--model", str(fast_model), "--workers", "2",
                 "--device", "cpu"]) == 0
    assert "6 series: 6 ok" in capsys.readouterr().out
    assert_same_outputs(out, by_segment)
    summary = _summary(out)
    assert sorted(summary) == [f"p{seed:02d}/ct" for seed in SEEDS]
    assert all(row["status"] == "ok" and int(row["structures"]) == 2 and float(row["seconds"]) > 0
               for row in summary.values())


def test_batch_on_a_local_ray_instance_writes_what_segment_writes(archive, fast_model, by_segment, tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    assert main(["batch", str(archive), "--out", str(out), "--model", str(fast_model), "--ray", "local",
                 "--workers", "2", "--device", "cpu", "-q"]) == 0
    assert "6 series: 6 ok" in capsys.readouterr().out
    assert_same_outputs(out, by_segment)


def test_a_batch_killed_half_way_and_started_again_does_only_the_rest(archive, fast_model, by_segment, tmp_path,
                                                                       capsys):
    out = tmp_path / "out"
    args = ["batch", str(archive), "--out", str(out), "--model", str(fast_model), "--workers", "1", "--device", "cpu",
            "-q"]
    batch = subprocess.Popen([sys.executable, "-m", "DKOARSegmentationLib.cli", *args], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while len(list(out.glob("*/ct/run.json"))) < 2 and time.monotonic() < deadline and batch.poll() is None:
        time.sleep(0.05)
    os.killpg(batch.pid, signal.SIGKILL)  # the batch and its worker processes
    batch.wait(10)
    done = {p.parent.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.glob("*/ct/run.json")}
    assert 0 < len(done) < len(SEEDS), f"{len(done)} series were done at the kill"

    assert main(args) == 0
    assert f"{len(done)} done before" in capsys.readouterr().out
    summary = _summary(out)
    assert {name for name, row in summary.items() if row["status"] == "done before"} == set(done)
    assert {name for name, row in summary.items() if row["status"] == "ok"} == set(summary) - set(done)
    for name, mtime in done.items():  # not run again
        assert (out / name / "run.json").stat().st_mtime_ns == mtime
    assert_same_outputs(out, by_segment)
    assert not list(out.glob("**/.dkoar-run-*")) or all(p.is_dir() for p in out.glob("**/.dkoar-run-*"))

"""The pipeline run for the Slicer module's background process: JSON lines in, a process tree out."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from DKOARSegmentationLib.pipeline.background import end_process_tree, parse_line
from Testing.conftest import QUICK_GRID
from Testing.model_factory import make_model_folder


def run(*args):
    return subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.pipeline.json_run", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_parse_line():
    assert parse_line('{"stage": "load", "progress": 0.5, "message": ""}\n') == {
        "stage": "load", "progress": 0.5, "message": ""}
    assert parse_line("Using device cpu") is None
    assert parse_line("{not json") is None
    assert parse_line("[1, 2]") is None


def test_an_error_is_one_json_line_and_exit_code_2(tmp_path):
    done = run(tmp_path / "nowhere", "--out", tmp_path / "out")
    assert done.returncode == 2, done.stderr
    messages = [parse_line(line) for line in done.stdout.splitlines()]
    assert messages[-1] is not None and "nowhere" in messages[-1]["error"]
    assert "Traceback" not in done.stderr
    # the panel's structure choice, refused as a message before anything runs
    done = run(tmp_path / "nowhere", "--out", tmp_path / "out", "--structures", "Brainstem,Parotis")
    assert done.returncode == 2 and "'Parotis' is not a structure" in parse_line(done.stdout.splitlines()[-1])["error"]


@pytest.mark.slow  # a tiny model on CPU: about two minutes on a busy 2-core machine
def test_a_run_reports_progress_then_the_result(phantom_factory, tmp_path):
    folder, _ = phantom_factory(4, "HFS", QUICK_GRID)
    model = make_model_folder(tmp_path / "model")
    done = run(folder / "ct", "--out", tmp_path / "out", "--model", model, "--device", "cpu",
               "--structures", "Brainstem,Parotid_L,Lens_L")
    assert done.returncode == 0, done.stdout + done.stderr
    messages = [m for m in map(parse_line, done.stdout.splitlines()) if m is not None]
    progress = [m for m in messages if "stage" in m]
    assert progress and all(0.0 <= m["progress"] <= 1.0 for m in progress)
    result = messages[-1]["result"]
    assert Path(result["outputs"]["seg_nrrd"]).is_file()
    assert result["model"]["name"] == "test model"
    assert any("left out" in w and "Parotid_R" in w for w in result["warnings"])
    import slicerio

    written = slicerio.read_segmentation(result["outputs"]["seg_nrrd"], skip_voxels=True)
    assert [segment["name"] for segment in written["segments"]] == ["Brainstem", "Lens_L", "Parotid_L"]
    json.dumps(result)


def test_cancel_ends_the_whole_process_tree():
    code = ("import subprocess, sys, time; "
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print(child.pid, flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert psutil.pid_exists(child_pid)
    started = time.monotonic()
    end_process_tree(parent.pid)
    parent.wait(timeout=10)
    assert time.monotonic() - started < 10
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE

"""What the station accepts from a browser, checked without a browser (the core's ``serving``),
and ``dkoar station`` where trame is not installed (the core's own environment)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.serving.access import needs_token, new_token, token_matches
from DKOARSegmentationLib.serving.paths import inside, outside_files, resolve_inside


@pytest.fixture
def folders(tmp_path):
    data, out, elsewhere = tmp_path / "data", tmp_path / "out", tmp_path / "elsewhere"
    for folder in (data / "patient", out, elsewhere):
        folder.mkdir(parents=True)
    (data / "patient" / "ct.dcm").write_bytes(b"x")
    (elsewhere / "secret.dcm").write_bytes(b"x")
    (data / "link-out").symlink_to(elsewhere)
    (data / "patient" / "slice-out.dcm").symlink_to(elsewhere / "secret.dcm")
    (data / "link-in").symlink_to(data / "patient")
    return data, out, elsewhere


def test_paths_inside_the_data_folder_are_accepted_relative_or_absolute(folders):
    data, out, _ = folders
    roots = {"data": data, "output": out}
    assert resolve_inside("patient", roots) == data / "patient"
    assert resolve_inside(str(data / "patient" / "ct.dcm"), roots) == data / "patient" / "ct.dcm"
    assert resolve_inside("link-in/ct.dcm", roots) == data / "patient" / "ct.dcm"  # a link that stays inside
    assert resolve_inside(str(out), roots) == out


@pytest.mark.parametrize("given", ["..", "../elsewhere", "patient/../../elsewhere/secret.dcm", "/etc/passwd", "/",
                                   "link-out", "link-out/secret.dcm", "patient/slice-out.dcm", "~"])
def test_traversal_absolute_paths_and_links_leading_out_are_refused(folders, given):
    data, out, _ = folders
    with pytest.raises(DKOARError, match="outside the data folder or the output folder") as refused:
        resolve_inside(given, {"data": data, "output": out})
    assert "elsewhere" not in str(refused.value).replace(given, ""), "the message names the link's target"


@pytest.mark.parametrize("given, says", [("", "give a path"), ("nothing", "no such file"), ("a\x00b", "not a valid")])
def test_empty_missing_and_invalid_paths_are_refused(folders, given, says):
    with pytest.raises(DKOARError, match=says):
        resolve_inside(given, {"data": folders[0]})


def test_files_of_a_scan_that_lead_out_are_found(folders):
    data, _, elsewhere = folders
    files = [data / "patient" / "ct.dcm", data / "patient" / "slice-out.dcm"]
    assert outside_files(data, files) == [data / "patient" / "slice-out.dcm"]
    assert inside(data, data) and not inside(data, elsewhere)


def test_only_loopback_hosts_go_without_a_token():
    assert not any(needs_token(h) for h in ("127.0.0.1", "localhost", "::1", " LOCALHOST "))
    assert all(needs_token(h) for h in ("0.0.0.0", "::", "192.168.1.20", "127.0.0.2", "station.example"))
    token = new_token()
    assert len(token) >= 40 and token != new_token()
    assert token_matches(token, token)
    assert not token_matches(None, token) and not token_matches("", token) and not token_matches(token[:-1], token)


def test_dkoar_station_without_trame_says_how_to_make_its_environment(tmp_path):
    """The core's environment has no trame: one line on stderr, exit 2, nothing started."""
    import importlib.util

    if importlib.util.find_spec("trame_slicer") is not None:
        pytest.skip("this Python has trame-slicer")
    done = subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", "station", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "make station-env" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_the_station_package_is_left_out_of_the_slicer_module():
    """The Slicer module does not ship the station (it needs trame): neither the CMake lists nor
    their generator name it, while pyproject installs it into both environments."""
    import tomllib

    from tools.update_cmake_lists import PACKAGE_DIRS

    repo = Path(__file__).resolve().parent.parent
    assert "DKOARSegmentationStation" not in PACKAGE_DIRS
    assert "DKOARSegmentationStation" not in (repo / "DKOARSegmentation" / "CMakeLists.txt").read_text()
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    assert "DKOARSegmentationStation*" in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]


def test_the_series_table_lists_the_ct_and_refuses_a_series_linked_from_outside(tmp_path):
    from DKOARSegmentationLib.input.series_scan import scan_dicom_folder
    from DKOARSegmentationLib.input.series_table import series_table
    from DKOARSegmentationLib.phantom import PhantomGrid, write_phantom

    grid = PhantomGrid(matrix=32, pixel_mm=8.0, slice_mm=8.0)
    phantom = write_phantom(tmp_path / "data" / "patient", seed=1, grid=grid)
    other = write_phantom(tmp_path / "elsewhere", seed=2, grid=grid)
    first = sorted((tmp_path / "elsewhere" / "ct").iterdir())[0]
    (tmp_path / "data" / "linked.dcm").symlink_to(first)
    series, rows = series_table(scan_dicom_folder(tmp_path / "data"), tmp_path / "data")
    assert [s.uid for s in series] == [phantom.ct.dicom.series_instance_uid, other.ct.dicom.series_instance_uid]
    assert rows[0] == {"index": 0, "modality": "CT", "slices": phantom.ct.shape[0], "thickness": "8 mm",
                       "description": rows[0]["description"], "note": "", "openable": True}
    assert rows[1]["note"] == "files outside the data folder" and not rows[1]["openable"]
    assert not any(phantom.ct.dicom.series_instance_uid in str(v) for row in rows for v in row.values())

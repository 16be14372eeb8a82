"""Odd output places: a folder where a file is expected, a place below a file, a read-only file
system, an output that is also an input. Each is refused in one line before the work starts, and
nothing the user did not ask to replace is replaced. Outputs follow one permission rule (the
umask's), and what a killed export left is cleaned by the next. (run.json's input path: see
test_dicom_input's run.json test.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import Testing.dicom_factory as fac
from DKOARSegmentationLib.atomic import PARTIAL_MARK, atomic_path
from DKOARSegmentationLib.cli import main
from DKOARSegmentationLib.output.label_maps import write_labelmap_nifti
from Testing.log_factory import synthetic_log
from Testing.tiny_case import write_tiny_case


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    case = write_tiny_case(tmp_path_factory.mktemp("tiny"))
    write_labelmap_nifti(case.truth, case.folder / "labels.nii.gz")
    synthetic_log(case.folder / "log.sqlite", 12, months=3)
    return case


def _writers(tiny, out: Path) -> dict[str, list]:
    """Each command that writes a file, writing ``out``."""
    return {
        "export-rtstruct": ["export-rtstruct", "--ct", tiny.ct_dir, "--labels", tiny.folder / "labels.nii.gz",
                            "--out", out],
        "export-seg": ["export-seg", "--ct", tiny.ct_dir, "--labels", tiny.folder / "labels.nii.gz", "--out", out],
        "rtstruct-to-labels": ["rtstruct-to-labels", tiny.ai, "--ct", tiny.ct_dir, "--out",
                               out.with_name(out.stem + ".nii.gz")],
        "report": ["report", "--log", tiny.folder / "log.sqlite", "--out", out],
        "compare": ["compare", "--ai", tiny.ai, "--final", tiny.final, "--ct", tiny.ct_dir, "--out", out],
        "log add": ["log", "add", "--log", out, "--ai", tiny.ai, "--final", tiny.final, "--ct", tiny.ct_dir,
                    "--site-key", out.parent.parent / "site.key"],
    }


def _run(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _assert_refused(code, err, *fragments):
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_an_existing_folder_as_the_output_file_is_refused(tiny, tmp_path, capsys):
    folder = tmp_path / "out.dcm"
    for name in ("out.dcm", "out.nii.gz"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "keep.txt").write_text("mine")
    for name, args in _writers(tiny, folder).items():
        code, err = _run(args, capsys)
        _assert_refused(code, err, str(args[args.index("--out" if "--out" in args else "--log") + 1]), "a folder")
    for name in ("out.dcm", "out.nii.gz"):
        assert [p.name for p in (tmp_path / name).iterdir()] == ["keep.txt"]


def test_an_output_below_a_regular_file_is_refused(tiny, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "sub" / "out.dcm"
    for name in ("export-rtstruct", "log add", "rtstruct-to-labels", "compare", "report"):
        code, err = _run(_writers(tiny, out)[name], capsys)
        _assert_refused(code, err, str(blocker), "nothing can be written below it")
    code, err = _run(["phantom", "--out", blocker / "phantom", "--matrix", "32"], capsys)
    _assert_refused(code, err, str(blocker), "nothing can be written below it")
    assert blocker.read_text() == "not a folder"


def test_writing_onto_a_read_only_file_system_is_refused_in_one_line(tiny, tmp_path):
    """A read-only mount made in a private mount namespace (unshare); skipped where that is not allowed."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-rm", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no unprivileged mount namespace here (unshare -rm) to make a read-only file system in")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    cases = {name: [str(a) for a in args] for name, args in _writers(tiny, readonly / "sub" / "out.dcm").items()}
    cases["log add"][-1] = str(tmp_path / "site.key")
    cases["phantom"] = ["phantom", "--out", str(readonly / "phantom"), "--matrix", "32"]
    script = tmp_path / "in_namespace.py"
    script.write_text(textwrap.dedent(f"""
        import contextlib, io, json, subprocess, sys
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "none", {str(readonly)!r}], check=True)
        from DKOARSegmentationLib.cli import main
        results = {{}}
        for name, args in json.loads(sys.argv[1]).items():
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(args)
            results[name] = (code, err.getvalue())
        print(json.dumps(results))
    """))
    result = subprocess.run([unshare, "-rm", sys.executable, str(script), json.dumps(cases)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    for name, (code, err) in json.loads(result.stdout.strip().splitlines()[-1]).items():
        _assert_refused(code, err, "Read-only file system")
    assert list(readonly.iterdir()) == []


def test_report_refuses_a_page_and_csv_of_one_name_or_overwriting_a_log(tiny, tmp_path, capsys):
    log = tmp_path / "log.sqlite"
    shutil.copy(tiny.folder / "log.sqlite", log)
    before = log.read_bytes()
    for args in (["--out", tmp_path / "same.csv"],  # the CSV's default name is the page's
                 ["--out", tmp_path / "r.html", "--csv", tmp_path / "r.html"],
                 ["--out", log],
                 ["--out", tmp_path / "r.html", "--csv", log]):
        code, err = _run(["report", "--log", log, *args], capsys)
        _assert_refused(code, err, "also reads or writes that file")
    assert log.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["log.sqlite"]


def test_segment_refuses_an_unwritable_output_before_the_inference(tiny, tmp_path, monkeypatch):
    import DKOARSegmentationLib.pipeline.segment as pipeline
    from DKOARSegmentationLib.errors import DKOARError

    def never(*args, **kwargs):
        raise AssertionError("the CT was contoured before the output was checked")

    monkeypatch.setattr(pipeline, "predict", never)
    monkeypatch.setattr(pipeline, "load_ct", never)
    (tmp_path / "file").write_text("")
    with pytest.raises(DKOARError, match="nothing can be written below it"):
        pipeline.segment(tiny.ct_dir, tmp_path / "file" / "out")
    with pytest.raises(DKOARError, match="exists and is not a folder"):
        pipeline.segment(tiny.ct_dir, tmp_path / "file")


def test_phantom_replaces_only_a_phantom_never_a_ct_folder_of_the_user(tmp_path, capsys):
    phantom = ["phantom", "--matrix", "32", "--slice-mm", "20", "--out"]
    (tmp_path / "ct").mkdir()
    (tmp_path / "ct" / "patient_slice.dcm").write_text("a real patient's CT")
    code, err = _run(phantom + [tmp_path], capsys)
    _assert_refused(code, err, str(tmp_path / "ct"), "not a phantom written by dkoar")
    assert (tmp_path / "ct" / "patient_slice.dcm").read_text() == "a real patient's CT"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct"]
    real = fac.write_series(tmp_path / "real" / "ct", n=3)  # named CT_000.dcm.., but a scanner's, not a phantom
    code, err = _run(phantom + [tmp_path / "real"], capsys)
    assert code == 2 and sorted((tmp_path / "real" / "ct").iterdir()) == real
    # an earlier phantom is replaced: `dkoar demo` and `make demo` run again in the same place
    assert _run(phantom + [tmp_path / "new"], capsys)[0] == 0
    first = sorted(p.name for p in (tmp_path / "new" / "ct").iterdir())
    assert _run(phantom + [tmp_path / "new", "--seed", "4"], capsys)[0] == 0
    assert sorted(p.name for p in (tmp_path / "new" / "ct").iterdir()) == first


@pytest.mark.parametrize("umask, commands", [
    (0o077, ("export-rtstruct", "export-seg", "rtstruct-to-labels", "report", "compare", "log add")),
    (0o022, ("export-rtstruct", "rtstruct-to-labels", "compare", "log add"))], ids=["umask 077", "umask 022"])
def test_every_output_follows_the_umask_and_the_site_key_is_private(tiny, tmp_path, capsys, umask, commands):
    previous = os.umask(umask)
    try:
        for name, args in _writers(tiny, tmp_path / "out" / "o.dcm").items():
            if name not in commands:
                continue
            out = {"report": tmp_path / "out" / "r.html", "compare": tmp_path / "out" / "c.json",
                   "log add": tmp_path / "out" / "log.sqlite"}.get(name)
            if out is not None:
                args[args.index(tmp_path / "out" / "o.dcm")] = out
            if name == "export-seg":
                args[-1] = tmp_path / "out" / "seg.dcm"
            assert _run(args, capsys)[0] == 0, name
        assert _run(["phantom", "--out", tmp_path / "out" / "phantom", "--matrix", "32", "--slice-mm", "20"],
                    capsys)[0] == 0
    finally:
        os.umask(previous)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and not p.name.startswith("log.sqlite")]
    assert len(files) > 8
    modes = {p.relative_to(tmp_path): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
    folder_modes = {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "out").rglob("*") if p.is_dir()}
    assert folder_modes == {oct(0o777 & ~umask)}
    assert oct((tmp_path / "site.key").stat().st_mode & 0o777) == "0o600"


def test_what_a_killed_export_left_is_removed_by_the_next_write(tmp_path):
    script = textwrap.dedent(f"""
        import time
        from DKOARSegmentationLib.atomic import atomic_path
        with atomic_path({str(tmp_path / 'out' / 'rtstruct.dcm')!r}) as tmp:
            tmp.write_bytes(b"half an RTSTRUCT")
            print(tmp, flush=True)
            time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    partial = Path(child.stdout.readline().strip())
    assert partial.exists() and partial.name.startswith(".rtstruct.dcm.") and PARTIAL_MARK in partial.name
    with atomic_path(tmp_path / "out" / "other.txt") as tmp:  # the writer still runs: its file is kept
        tmp.write_text("x")
    assert partial.exists()
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert partial.exists()  # kill -9: nothing ran to remove it
    with atomic_path(tmp_path / "out" / "rtstruct.dcm") as tmp:
        tmp.write_text("whole")
    assert not partial.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["other.txt", "rtstruct.dcm"]

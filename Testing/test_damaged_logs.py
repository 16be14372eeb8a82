"""Damaged and hand-edited correction logs, odd arguments, and what free text may carry: each is one
line naming the file and what to do (never SQLite's or Python's traceback), nothing is written to a
damaged log, and the report shows text as text (HTML escaped, no spreadsheet formulas, no maths)."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3

import pydicom
import pytest

from DKOARSegmentationLib.cli import main
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.monitoring.correction_log import check_when, open_log
from Testing.log_factory import synthetic_log
from Testing.tiny_case import write_tiny_case


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_case(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def good_log(tmp_path_factory):
    return synthetic_log(tmp_path_factory.mktemp("log") / "log.sqlite", 24, months=4)


def _refused(capsys, args, *fragments) -> str:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _log_add(tiny, log, tmp_path, *extra):
    return ["log", "add", "--log", log, "--ai", tiny.ai, "--final", tiny.final, "--ct", tiny.ct_dir,
            "--site-key", tmp_path / "site.key", *extra]


def _edited(good_log, tmp_path, *statements):
    log = tmp_path / "edited.sqlite"
    shutil.copy(good_log, log)
    connection = sqlite3.connect(log)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()
    return log


def test_a_log_with_overwritten_pages_is_refused_by_report_and_log_add(good_log, tiny, tmp_path, capsys):
    log = tmp_path / "damaged.sqlite"
    data = bytearray(good_log.read_bytes())
    page = 4096
    data[3 * page:6 * page] = b"\xa5" * (3 * page)  # three pages of the cases and results overwritten
    log.write_bytes(bytes(data))
    _refused(capsys, ["report", "--log", log, "--out", tmp_path / "r.html"], str(log), "damaged",
             "restore it from the site's backup")
    _refused(capsys, _log_add(tiny, log, tmp_path), str(log), "damaged")
    assert log.read_bytes() == bytes(data)  # nothing written to it
    assert not (tmp_path / "site.key").exists() and not (tmp_path / "r.html").exists()


def test_a_log_cut_short_is_refused(good_log, tmp_path, capsys):
    log = tmp_path / "cut.sqlite"
    log.write_bytes(good_log.read_bytes()[:5000])
    _refused(capsys, ["report", "--log", log, "--out", tmp_path / "r.html"], str(log))


@pytest.mark.parametrize("statements, found", [
    (["ALTER TABLE structure_results RENAME COLUMN surface_dice TO sdice"], "surface_dice"),
    (["DROP TABLE meta"], "no table meta"),
    (["ALTER TABLE cases DROP COLUMN contrast"], "contrast"),
], ids=["a renamed column", "a dropped table", "a dropped column"])
def test_a_hand_edited_schema_is_named(good_log, tiny, tmp_path, capsys, statements, found):
    log = _edited(good_log, tmp_path, *statements)
    before = log.read_bytes()
    _refused(capsys, ["report", "--log", log, "--out", tmp_path / "r.html"], str(log), "changed by hand", found)
    _refused(capsys, _log_add(tiny, log, tmp_path), str(log), "changed by hand")
    with pytest.raises(DKOARError, match="changed by hand"):
        open_log(log)
    assert log.read_bytes() == before


def test_text_typed_into_a_number_column_is_named(good_log, tmp_path, capsys):
    log = _edited(good_log, tmp_path, "UPDATE structure_results SET dice = 'very good' WHERE structure = 'Brain' "
                                      "AND case_id = 3")
    _refused(capsys, ["report", "--log", log, "--out", tmp_path / "r.html"], str(log), "case 3 Brain dice",
             "'very good', not a number")
    log = _edited(good_log, tmp_path, "UPDATE cases SET slice_thickness_mm = 'thin' WHERE case_id = 2")
    _refused(capsys, ["report", "--log", log, "--out", tmp_path / "r.html"], "case 2 slice_thickness_mm")
    log = _edited(good_log, tmp_path, "UPDATE structure_results SET dice = '0.5' WHERE case_id = 2")
    assert main(["report", "--log", str(log), "--out", str(tmp_path / "r.html")]) == 0  # SQLite stored a number


@pytest.mark.parametrize("when", ["0001-01-01T00:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00+14:00",
                                  "1850-06-01", "2026-02-30T10:00", "yesterday", ""])
def test_an_odd_date_is_refused_before_anything_is_written(tiny, tmp_path, capsys, when):
    with pytest.raises(DKOARError):
        check_when(when)
    _refused(capsys, _log_add(tiny, tmp_path / "log.sqlite", tmp_path, "--date", when), repr(when)[1:-1] or "''")
    assert list(tmp_path.iterdir()) == []


def test_plausible_dates_are_kept_in_utc():
    assert check_when("2026-03-01T09:30:00+01:00") == "2026-03-01T08:30:00Z"
    assert check_when("2100-12-31T12:00Z") == "2100-12-31T12:00:00Z"


def test_a_times_file_nested_without_end_or_too_large_is_refused(tiny, tmp_path, capsys):
    nested = tmp_path / "nested.json"
    nested.write_text('{"structures": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _refused(capsys, _log_add(tiny, tmp_path / "log.sqlite", tmp_path, "--times", nested), str(nested),
             "nested too deeply")
    large = tmp_path / "large.json"
    large.write_text(json.dumps({"structures": {}, "padding": "x" * 2_000_000}))
    _refused(capsys, _log_add(tiny, tmp_path / "log.sqlite", tmp_path, "--times", large), str(large),
             "more than a times file can be")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.json", "nested.json"]


SITES = ["=HYPERLINK(\"http://x\",\"click\")", "+41 cmd", "-2+3", "@SUM(A1:A9)", "\tTab"]


def test_a_site_name_is_never_a_spreadsheet_formula(tmp_path):
    logs = [synthetic_log(tmp_path / f"log{n}.sqlite", 4, months=2, site=site, seed=n) for n, site in enumerate(SITES)]
    assert main(["report", *(a for log in logs for a in ("--log", str(log))), "--out", str(tmp_path / "r.html")]) == 0
    with open(tmp_path / "r.csv", newline="") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    for site in SITES:
        assert "'" + site in cells
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t")]
    assert not [c for c in cells if c.startswith("-") and not c.lstrip("-").replace(".", "").isdigit()]


@pytest.mark.filterwarnings("ignore:The value length", "ignore:Found unknown escape sequence")
def test_free_text_from_the_ct_and_the_site_is_shown_as_text(tiny, tmp_path, capsys):
    ct = tmp_path / "ct"
    shutil.copytree(tiny.ct_dir, ct)
    for f in sorted(ct.iterdir()):
        ds = pydicom.dcmread(f)
        ds.ManufacturerModelName = "<script>alert('x')</script>"
        ds.ConvolutionKernel = "B30f\x07\x1b[31m" + "K" * 200
        ds.save_as(f)
    log = tmp_path / "log.sqlite"
    args = ["log", "add", "--log", log, "--ai", tiny.ai, "--final", tiny.final, "--ct", ct, "--site-key",
            tmp_path / "site.key", "--site", "$\\frac{1}{0}$ <b>Odense</b>"]
    assert main([str(a) for a in args]) == 0, capsys.readouterr().err
    with open_log(log) as opened:
        case = opened.cases()[0]
    assert case["convolution_kernel"].startswith("B30f [31m") and len(case["convolution_kernel"]) == 64
    assert main(["report", "--log", str(log), "--out", str(tmp_path / "r.html")]) == 0, capsys.readouterr().err
    page = (tmp_path / "r.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>Odense</b>" not in page and "&lt;b&gt;Odense&lt;/b&gt;" in page
    assert "\x07" not in page and "\x1b" not in page

"""`dkoar log add` and `dkoar report`: no patient identifier in the log or anything made from it,
logs of several sites merged, a drift flagged, and a self-contained page that a browser shows
without the network."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from DKOARSegmentationLib.input.ct_loader import load_ct
from DKOARSegmentationLib.monitoring.aggregates import control_charts, load_logs
from DKOARSegmentationLib.monitoring.case_from_files import add_case, file_sha256
from DKOARSegmentationLib.monitoring.correction_log import open_log
from DKOARSegmentationLib.monitoring.pseudonym import load_site_key
from DKOARSegmentationLib.monitoring.report import write_report
from DKOARSegmentationLib.output.rtstruct_writer import RTStructOptions, write_rtstruct
from DKOARSegmentationLib.phantom.ct_series_writer import write_ct_series
from DKOARSegmentationLib.phantom.generate import generate_phantom
from DKOARSegmentationLib.volume import Segmentation
from Testing.conftest import SMALL_GRID
from Testing.log_factory import clinician_edits, synthetic_log

NAME = "Hansen^Jens Peter"
CPR = "010203-1234"
BIRTH = "19030201"


def dkoar(*args, env=None):
    return subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def patient_case(tmp_path_factory, catalogue):
    """A phantom CT of a 'patient' with a known name, CPR number, birth date and UIDs, with the AI
    and final RTSTRUCTs and a times file."""
    work = tmp_path_factory.mktemp("phi")
    phantom = generate_phantom(8, "HFS", SMALL_GRID, catalogue)
    phantom.ct.dicom = write_ct_series(phantom.ct, work / "ct", seed=8, patient_name=NAME, patient_id=CPR)
    for path in sorted((work / "ct").iterdir()):
        ds = pydicom.dcmread(path)
        ds.PatientBirthDate = BIRTH
        ds.save_as(path)
    truth = phantom.truth
    final = Segmentation(clinician_edits(truth.labels, catalogue), truth.affine.copy(), truth.structures)
    options = RTStructOptions(model_name="DK-OAR", model_version="1.0")
    write_rtstruct(phantom.ct, truth, work / "ai.dcm", options)
    write_rtstruct(phantom.ct, final, work / "final.dcm", options)
    (work / "times.json").write_text(json.dumps({"structures": {
        "Parotid_L": {"active_s": 95.5, "wall_s": 140, "edits": 6},
        "Mandible": {"active_s": 40.0, "wall_s": 52.5, "edits": 2},
        "SpinalCord": {"active_s": 31.0, "wall_s": 33.0, "edits": 1},
        "Brainstem": {"active_s": 3.0, "wall_s": 4.0, "edits": 0}}}))
    header = phantom.ct.dicom.header
    secrets_in_clear = [NAME, "Hansen", "Jens Peter", CPR, CPR.replace("-", ""), BIRTH,
                        str(header.StudyInstanceUID), str(header.SeriesInstanceUID), str(header.FrameOfReferenceUID),
                        phantom.ct.dicom.slices[0].sop_instance_uid,
                        str(pydicom.dcmread(work / "ai.dcm").SOPInstanceUID),
                        str(pydicom.dcmread(work / "final.dcm").SOPInstanceUID)]
    return work, secrets_in_clear


def _assert_no_phi(data: bytes, secrets, where: str) -> None:
    for secret in secrets:
        for encoding in ("utf-8", "utf-16-le"):
            assert secret.encode(encoding) not in data, f"{secret!r} found in {where}"


def test_log_add_and_report_hold_no_patient_identifier(patient_case, tmp_path):
    work, secrets_in_clear = patient_case
    db = tmp_path / "log.sqlite"
    key_file = tmp_path / "secret" / "site.key"
    common = ["--ai", work / "ai.dcm", "--final", work / "final.dcm", "--ct", work / "ct", "--log", db,
              "--site", "Aarhus", "--site-key", key_file]
    result = dkoar("log", "add", *common, "--times", work / "times.json", "--date", "2026-01-15T10:00:00Z")
    assert result.returncode == 0, result.stderr
    assert "created a new site key" in result.stdout and "3 changed" in result.stdout
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    result = dkoar("log", "add", *common, "--date", "2026-02-15T10:00:00Z")
    assert result.returncode == 0, result.stderr
    assert "created" not in result.stdout

    # the same patient keyed the same way both times; the case holds what monitoring needs
    with open_log(db) as log:
        cases = log.cases()
        assert len(cases) == 2 and cases[0]["patient_key"] == cases[1]["patient_key"] is not None
        case = cases[0]
        assert (case["site"], case["model_name"], case["model_version"]) == ("Aarhus", "DK-OAR", "1.0")
        assert case["convolution_kernel"] == "STANDARD" and case["slice_thickness_mm"] == 3.0
        assert case["scanner_model"] == "DKOARSegmentation phantom Synthetic head-and-neck phantom"
        assert case["ai_contours_sha256"] == file_sha256(work / "ai.dcm")
        assert case["final_contours_sha256"] == file_sha256(work / "final.dcm")
        assert case["started_at"] == "2026-01-15T10:00:00Z"
        results = log.structure_results(case["case_id"])
        assert results["Parotid_L"]["active_s"] == 95.5 and results["Parotid_L"]["edits"] == 6
        assert results["Parotid_L"]["unchanged"] == 0 and results["Brain"]["unchanged"] == 1
        assert results["SpinalCord"]["apl_mm"] > 0 and results["SpinalCord"]["tolerance_mm"] == 2.93
        assert log.structure_results(cases[1]["case_id"])["Parotid_L"]["active_s"] is None  # no times given

        # a third case written through the API while the log is open: the WAL holds it
        key = load_site_key(key_file)
        add_case(log, ai_path=work / "ai.dcm", final_path=work / "final.dcm", ct=load_ct(work / "ct"), key=key,
                 site="Aarhus", started_at="2026-03-01T08:00:00Z")
        wal = db.with_name(db.name + "-wal")
        assert wal.exists() and wal.stat().st_size > 0
        _assert_no_phi(wal.read_bytes(), secrets_in_clear, "the log's WAL")
        _assert_no_phi(db.read_bytes(), secrets_in_clear, "the log")
    _assert_no_phi(db.read_bytes(), secrets_in_clear, "the log")

    report = tmp_path / "report.html"
    result = dkoar("report", "--log", db, "--out", report)
    assert result.returncode == 0, result.stderr
    _assert_no_phi(report.read_bytes(), secrets_in_clear, "the report")
    _assert_no_phi(report.with_suffix(".csv").read_bytes(), secrets_in_clear, "the aggregates CSV")
    # nor the pseudonyms: the report is aggregates only
    assert case["patient_key"].encode() not in report.read_bytes() + report.with_suffix(".csv").read_bytes()


def test_log_add_errors_are_one_line(patient_case, tmp_path, monkeypatch):
    work, _ = patient_case
    env = {k: v for k, v in __import__("os").environ.items() if k != "DKOAR_SITE_KEY"}
    result = dkoar("log", "add", "--log", tmp_path / "l.sqlite", "--ai", work / "ai.dcm", "--final", work / "final.dcm",
                   "--ct", work / "ct", env=env)
    assert result.returncode == 2 and "DKOAR_SITE_KEY" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "bad.json").write_text('{"structures": {"Parotid_L": {"active_s": -3}}}')
    result = dkoar("log", "add", "--log", tmp_path / "l.sqlite", "--ai", work / "ai.dcm", "--final", work / "final.dcm",
                   "--ct", work / "ct", "--site-key", tmp_path / "k", "--times", tmp_path / "bad.json", env=env)
    assert result.returncode == 2 and "active_s" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    work = tmp_path_factory.mktemp("sites")
    a = synthetic_log(work / "aarhus.sqlite", 240, site="Aarhus", months=12, drift=("Parotid_L", 8, 0.25))
    b = synthetic_log(work / "odense.sqlite", 120, site="Odense", seed=1, start="2025-03", months=8,
                      models=(("DK-OAR", "1.1"),))
    return work, a, b


def test_logs_of_several_sites_merge(two_sites):
    work, a, b = two_sites
    data = load_logs([a, b, a])  # the same log twice: its cases count once
    assert data.n_cases == 360 and data.duplicates == 240
    assert set(data.case_site.tolist()) == {"Aarhus", "Odense"}
    assert set(data.case_model.tolist()) == {"DK-OAR 1.0", "DK-OAR 1.1"}
    html, csv_path, _ = write_report([a, b], work / "merged.html")
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    sites = {r["group"]: r for r in rows if r["grouping"] == "site" and r["structure"] == "Brainstem"}
    assert set(sites) == {"Aarhus", "Odense"}
    assert int(sites["Aarhus"]["n"]) == 240 and int(sites["Odense"]["n"]) == 120
    overall = next(r for r in rows if r["grouping"] == "all" and r["structure"] == "Brainstem")
    assert int(overall["n"]) == 360
    # pooled mean = n-weighted mean of the sites' means
    pooled = (240 * float(sites["Aarhus"]["active_s_mean"]) + 120 * float(sites["Odense"]["active_s_mean"])) / 360
    assert float(overall["active_s_mean"]) == pytest.approx(pooled, rel=1e-5)
    assert {"grouping", "group", "structure", "n"} <= set(rows[0])
    page = html.read_text()
    assert "Aarhus" in page and "Odense" in page and "DK-OAR 1.1" in page


def test_drift_is_flagged_on_the_control_chart(two_sites):
    work, a, b = two_sites
    charts = {c.structure: c for c in control_charts(load_logs([a]), "surface_dice", baseline_months=3)}
    parotid = charts["Parotid_L"]
    flagged = [m for m, f in zip(parotid.months, parotid.flagged) if f]
    assert flagged and all(m >= "2025-09" for m in flagged)
    assert len(flagged) >= 3  # the months after the drift
    assert parotid.baseline_months == ["2025-01", "2025-02", "2025-03"]
    quiet = sum(int(c.flagged.sum()) for name, c in charts.items() if name != "Parotid_L")
    assert quiet <= 4  # 31 stable structures x 12 months: few false alarms


def test_report_is_self_contained(two_sites):
    work, a, b = two_sites
    html, _, _ = write_report([a, b], work / "selfcontained.html")
    page = html.read_text()
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|iframe|object|embed)\b", page, re.I)
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "url(" not in page and "@import" not in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make validators installs it)")
def test_report_shows_its_plots_in_headless_chromium_without_network(two_sites):
    import io

    import matplotlib.image
    from playwright.sync_api import sync_playwright

    work, a, b = two_sites
    html, _, _ = write_report([a, b], work / "browser.html")
    asked = []  # every request beyond the file itself: a self-contained report makes none

    def only_the_file(route):
        if route.request.url == html.as_uri():
            route.continue_()
        else:
            asked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 3000})
            page.route("**/*", only_the_file)
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            shot = page.screenshot()
        finally:
            browser.close()
    assert asked == []
    image = matplotlib.image.imread(io.BytesIO(shot), format="png")[..., :3]
    assert image.shape[:2] == (3000, 1400)
    not_white = np.any(image < 0.9, axis=2)
    coloured = (image.max(axis=2) - image.min(axis=2)) > 0.25  # the plots' bars, boxes and lines
    assert not_white.mean() > 0.05, "the page looks blank"
    assert coloured.mean() > 0.01, "no plot is visible"
    # the plots are below the title: colour in the upper and the lower half of the page
    assert coloured[:1500].mean() > 0.005 and coloured[1500:].mean() > 0.005


def test_report_errors_and_an_empty_log(tmp_path):
    result = dkoar("report", "--log", tmp_path / "missing.sqlite", "--out", tmp_path / "r.html")
    assert result.returncode == 2 and "no such correction log" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.html").exists()
    (tmp_path / "notes.sqlite").write_text("these are notes, not a database " * 50)
    result = dkoar("report", "--log", tmp_path / "notes.sqlite", "--out", tmp_path / "r.html")
    assert result.returncode == 2 and "not a correction log" in result.stderr and "Traceback" not in result.stderr
    with open_log(tmp_path / "empty.sqlite") as log:
        log.start_case(site="Vejle")  # started, never finished: not reported
    result = dkoar("report", "--log", tmp_path / "empty.sqlite", "--out", tmp_path / "r.html")
    assert result.returncode == 0, result.stderr
    assert "No finished cases" in (tmp_path / "r.html").read_text()

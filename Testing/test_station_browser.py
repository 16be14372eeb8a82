"""The browser station end to end, in Debian's chromium driven by playwright with real mouse events.

One station (``.venv-station/bin/dkoar station``, trame-slicer on slicer-core 5.11) serves a small
phantom CT series; the tests follow the clinician's work in order on one page: open the series, run
the demo model on the CPU (and cancel a run), see the structures, paint one of them in the slice
view, Finish, export the RTSTRUCT and download it. The RTSTRUCT is then read back: exactly the
painted structure differs from the AI result, and the correction log holds the case with active
time for it. Refusals: a path outside the data folder (traversal, absolute, symbolic link), and a
station bound to another host than 127.0.0.1 without its token; no patient identifier in the
station's log or in any address the page asks for. Screenshots of each step go to
``DKOAR_STATION_SCREENSHOTS`` (the README's, in Resources/Screenshots) or a temporary folder.

Small phantom (96 x 96 pixels of 2.6 mm, 4 mm slices); the model run dominates the time.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from DKOARSegmentationLib.phantom import write_phantom
from Testing.conftest import QUICK_GRID
from Testing.station_driver import (
    VIEWPORT,
    StationPage,
    launch_browser,
    screenshot_folder,
    start_station,
    station_args,
    station_missing,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(station_missing() is not None, reason=str(station_missing()))]

PAINTED = "Parotid_L"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("station")


@pytest.fixture(scope="module")
def phantom(workdir):
    return write_phantom(workdir / "data" / "patient", seed=5, position="HFS", grid=QUICK_GRID)


@pytest.fixture(scope="module")
def station(workdir, phantom):
    outside = workdir / "outside"
    outside.mkdir()
    (workdir / "data" / "escape").symlink_to(outside)  # a link inside the data folder leading out of it
    (workdir / "data" / "notes").mkdir()
    (workdir / "data" / "notes" / "readme.txt").write_text("not DICOM")
    running = start_station(station_args(workdir, "--data", str(workdir / "data")), workdir)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_browser(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def requested():
    """Every address the page asked the station for."""
    return []


@pytest.fixture(scope="module")
def page(browser, station, workdir, requested):
    tab = browser.new_page(viewport=VIEWPORT)
    tab.on("request", lambda request: requested.append(request.url))
    tab.on("websocket", lambda socket: requested.append(socket.url))
    shots = StationPage(tab, screenshot_folder(workdir / "screenshots"))
    shots.open(station.url)
    yield shots
    tab.close()


def _identifiers(phantom) -> list[str]:
    header = phantom.ct.dicom.header
    return [str(header.PatientName), str(header.PatientID), str(header.StudyInstanceUID),
            str(header.SeriesInstanceUID), str(header.FrameOfReferenceUID)]


def _ai_rtstruct(workdir: Path) -> Path:
    runs = sorted((workdir / "out").glob("run-*/rtstruct.dcm"))
    assert runs, "the run wrote no RTSTRUCT"
    return runs[-1]


# ---------------------------------------------------------------------------------------------
# the clinician's work, in order


def test_the_page_lists_the_data_folders_series_and_shows_the_demo_banner(page):
    page.page.wait_for_selector("#st-open-0")
    rows = page.state("st_series")
    assert [(r["modality"], r["slices"]) for r in rows] == [("CT", QUICK_GRID.n_slices)]
    assert page.page.locator("#st-demo-banner").inner_text().strip().endswith("Demo model: not for clinical use")
    page.screenshot("1-series")


def test_a_series_opens_in_the_slice_views_with_ct_window_presets(page):
    page.open_series(0)
    assert page.message()[1] == "success" and f"{QUICK_GRID.n_slices} slices" in page.message()[0]
    assert page.state("st_window") == "Soft tissue"
    page.click("#st-window-Bone")
    page.wait_for("s('st_window') === 'Bone'")
    page.click("#st-window-Softtissue")
    page.wait_for("s('st_window') === 'Soft tissue'")
    axial = page.view_pixels(0)
    assert axial.std() > 10, "the axial view shows no CT"
    # scrolling as in Slicer: the mouse wheel over a slice view moves through the slices
    slider = "Red__SliderState__value"
    before = page.state(slider)
    box = page.view_box(0)
    page.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(3):
        page.page.mouse.wheel(0, -100)
        page.page.wait_for_timeout(100)
    page.wait_for(f"s({slider!r}) !== {before!r}")
    page.screenshot("2-ct")


def test_a_run_can_be_cancelled_and_leaves_nothing_loaded(page):
    page.apply()
    page.click("#st-apply")  # the same button cancels
    page.wait_for("!s('st_running')", 120)
    text, kind = page.message()
    assert kind == "error" and "cancelled" in text
    assert page.state("st_structures") == []


def test_the_demo_model_runs_in_the_background_and_its_structures_are_listed(page):
    page.apply()
    page.wait_for("s('st_progress') > 0", 300)
    page.screenshot("3-running")
    page.wait_for_structures()
    names = page.structure_names()
    assert {"Brainstem", "Parotid_L", "Parotid_R", "SpinalCord", "Mandible"} <= set(names)
    assert len(names) == 32, names
    groups = [g["group"] for g in page.state("st_structures")]
    assert groups[:2] == ["Brain and optic pathway", "Spinal cord and bone"]
    parotid = next(r for g in page.state("st_structures") for r in g["rows"] if r["name"] == PAINTED)
    assert parotid["color"].startswith("#") and parotid["volume_ml"] > 0 and "Parotid" in parotid["terminology"]
    assert page.state("st_correcting"), "correcting starts with the AI result as the baseline"
    page.screenshot("4-structures", focus="#st-structures")


def test_the_model_card_opens_on_request(page):
    page.click("#st-model-card")
    page.wait_for("s('st_card_visible')")
    assert "not for clinical use" in page.state("st_card").lower()
    page.page.wait_for_selector("#st-card", state="visible")
    page.press("Escape")
    page.wait_for("!s('st_card_visible')")


def test_visibility_and_3d_surfaces_on_request(page):
    page.click("#st-structure-Mandible .v-btn")  # the eye
    page.wait_for("!s('st_structures').flatMap(g => g.rows).find(r => r.name === 'Mandible').visible")
    page.click("#st-structure-Mandible .v-btn")
    page.wait_for("s('st_structures').flatMap(g => g.rows).find(r => r.name === 'Mandible').visible")
    empty = page.view_pixels(1).std()
    page.click("#st-show3d")
    page.wait_for("s('st_message') === '3D surfaces shown.'", 120)
    page.page.wait_for_timeout(1500)
    assert page.view_pixels(1).std() > empty + 10, "the 3D view shows no surfaces"
    page.screenshot("4-surfaces", focus="#st-structures")
    page.click("#st-show3d")  # off again: each edit would rebuild every surface
    page.wait_for("!s('st_show3d')")


def test_a_structure_is_painted_with_real_mouse_events_and_timed(page):
    page.select_structure(PAINTED)
    page.choose_effect("1", "Paint")  # Slicer's key for Paint
    before = page.structure(PAINTED)["volume_ml"]
    page.paint_in_background(0)
    times = {t["name"]: t for t in page.state("st_times")}
    assert times[PAINTED]["edits"] == 1 and times[PAINTED]["active_s"] > 0
    page.wait_for(f"s('st_structures').flatMap(g => g.rows).find(r => r.name === {PAINTED!r}).volume_ml > {before}")
    # Slicer's undo and redo keys: each is an edit of the structure it changes
    page.press("Control+z")
    page.wait_for("s('st_edits') === 2")
    page.wait_for(f"s('st_structures').flatMap(g => g.rows).find(r => r.name === {PAINTED!r}).volume_ml === {before}")
    page.press("Control+y")
    page.wait_for("s('st_edits') === 3")
    assert {t["name"]: t["edits"] for t in page.state("st_times")}[PAINTED] == 3
    page.screenshot("5-painted", focus="#st-times")


def test_finish_stores_the_case_in_the_correction_log(page, workdir):
    from DKOARSegmentationLib.monitoring.correction_log import open_log

    summary = page.finish()
    assert summary.startswith("1 structures corrected")
    with open_log(workdir / "corrections.sqlite") as log:
        case = log.cases()[-1]
        assert case["finished_at"] and case["model_name"] == "DKOAR demo phantom model"
        results = log.structure_results(case["case_id"])
        assert results[PAINTED]["unchanged"] == 0 and results[PAINTED]["active_s"] > 0
        assert [name for name, r in results.items() if not r["unchanged"]] == [PAINTED]
        assert len(case["patient_key"]) == 64  # a keyed pseudonym, never the ID


def test_the_exported_rtstruct_differs_from_the_ai_result_in_the_painted_structure_only(page, workdir, phantom):
    import pydicom

    from DKOARSegmentationLib.input.ct_loader import load_ct
    from DKOARSegmentationLib.output.rtstruct_reader import read_rtstruct_masks

    entry = page.export("RTSTRUCT")
    assert entry is not None, page.message()
    written = workdir / "out" / entry["folder"] / entry["file"]
    assert written.is_file()
    downloaded = page.download("RTSTRUCT", workdir / "downloaded-rtstruct.dcm")
    assert downloaded.read_bytes() == written.read_bytes()
    page.screenshot("6-exported", focus="#st-download-RTSTRUCT")

    ct = load_ct(workdir / "data" / "patient" / "ct")
    ai = read_rtstruct_masks(_ai_rtstruct(workdir), ct)
    final = read_rtstruct_masks(downloaded, ct)
    assert set(final) == set(ai)
    differing = [name for name in ai if not np.array_equal(ai[name], final[name])]
    assert differing == [PAINTED]
    added = final[PAINTED] & ~ai[PAINTED]
    assert added.any() and not (ai[PAINTED] & ~final[PAINTED]).any()
    assert not any((ai[name] & added).any() for name in ai if name != PAINTED), "painted over another structure"
    ds = pydicom.dcmread(downloaded)
    assert [r.ROIName for r in ds.StructureSetROISequence if r.ROIGenerationAlgorithm == "SEMIAUTOMATIC"] == [PAINTED]
    assert ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[
        0].SeriesInstanceUID == ct.dicom.series_instance_uid


def test_the_other_exports_are_written_and_downloadable(page, workdir):
    for kind, name in (("DICOM SEG", "seg.dcm"), (".seg.nrrd", "segmentation.seg.nrrd")):
        entry = page.export(kind)
        assert entry is not None and entry["file"] == name, page.message()
        assert page.download(kind, workdir / f"downloaded-{name}").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize("given, says", [
    ("../outside", "outside the data folder"),
    ("/etc", "outside the data folder"),
    ("escape", "outside the data folder"),
    ("patient/nothing-here", "no such file or folder"),
    ("notes", "no DICOM files found"),  # inside, but the core refuses it: its message, as the CLI's
])
def test_a_path_outside_the_data_folder_is_refused_with_one_message(page, given, says):
    page.open_path(given)
    text, kind = page.message()
    assert kind == "error" and says in text and "Traceback" not in text
    if given == "escape":
        page.screenshot("7-refused", focus="#st-message")


def test_the_stations_log_and_addresses_hold_no_patient_identifier(station, phantom, requested):
    log = station.log
    assert "opened series 1" in log and "correcting finished" in log
    for identifier in [*_identifiers(phantom), "Traceback"]:
        assert identifier not in log, identifier
    assert len(requested) > 3
    for url in requested:
        assert not any(identifier in url for identifier in _identifiers(phantom)), url


def test_a_station_on_another_host_needs_its_token(workdir, phantom, browser):
    """Bound to all interfaces the station asks for the token it printed (traffic stays on loopback);
    in a browser the token opens it, and --ct opens that CT at start."""
    other = workdir / "other"
    other.mkdir()
    running = start_station(["--ct", str(workdir / "data" / "patient" / "ct"), "--out", str(other / "out"),
                             "--host", "0.0.0.0"], other)
    try:
        assert "?token=" in running.url
        base, token = running.url.split("?token=")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base, timeout=30)
        assert refused.value.code == 403
        assert "access token" in refused.value.read().decode()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}?token={token[:-2]}xx", timeout=30)
        browser_like = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        opened = browser_like.open(running.url, timeout=30)  # the token becomes a cookie; the address loses it
        assert "token" not in opened.url
        assert opened.status == 200 and b"<html" in opened.read().lower()
        tab = browser.new_page(viewport=VIEWPORT)
        try:
            station_page = StationPage(tab)
            station_page.open(running.url)
            station_page.wait_for("s('st_ct_label') !== '' && !s('st_busy')", 120)
            assert "token" not in tab.url and station_page.message()[1] == "success"
            assert station_page.state("st_series") == [] and tab.locator("#st-open-path").count() == 0
        finally:
            tab.close()
        assert token not in running.log
    finally:
        running.stop()


"""The review guidance in the browser station (Debian's chromium, playwright, real mouse events):
an earlier run of the output folder, made from a phantom's truth with one structure deleted (no
model run), opens again on its CT; the deleted structure has a flag icon with its sentence; a
click on a "Review first" entry moves the slice views there; Check again after drawing the
structure back clears its flag. Screenshots as the other station tests (DKOAR_STATION_SCREENSHOTS)."""

from __future__ import annotations

import pytest

from DKOARSegmentationLib.input.ct_loader import load_ct
from DKOARSegmentationLib.phantom import write_phantom
from Testing.conftest import QUICK_GRID
from Testing.run_folder_factory import review_entry, without, write_run_folder
from Testing.station_driver import open_station_page, start_station, station_args, station_missing

pytestmark = [pytest.mark.slow, pytest.mark.skipif(station_missing() is not None, reason=str(station_missing()))]

DELETED = "Parotid_R"
AXIAL_OFFSET = "Red__SliderState__value"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("station_review")


@pytest.fixture(scope="module")
def run(workdir):
    """The phantom's CT series under --data and, in the output folder, a run of it without one structure."""
    phantom = write_phantom(workdir / "data" / "patient", seed=5, position="HFS", grid=QUICK_GRID)
    truth = phantom.truth
    ct = load_ct(workdir / "data" / "patient" / "ct")
    review = [review_entry(truth, "Lens_R", 1), review_entry(truth, "SpinalCord", 2)]
    return write_run_folder(workdir / "out" / "run-earlier", ct, without(truth, DELETED), review)


@pytest.fixture(scope="module")
def station(workdir, run):
    running = start_station(station_args(workdir, "--data", str(workdir / "data")), workdir)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(station, workdir):
    with open_station_page(station.url, workdir) as opened:
        yield opened


def test_an_earlier_run_opens_again_with_a_flag_beside_the_damaged_structure(page, run):
    page.page.wait_for_selector("#st-open-0")
    page.open_series(0)
    assert page.state("st_runs") == ["run-earlier"]
    page.click("#st-open-run")
    page.wait_for_structures(120)
    text, kind = page.message()
    assert kind == "success" and "run-earlier is open" in text, text
    flag = page.page.locator(f"#st-flag-{DELETED}")
    flag.wait_for(state="visible", timeout=30000)
    expected = next(f for f in run["flags"] if f["structure"] == DELETED)
    assert expected["message"] in flag.get_attribute("title")
    row = page.structure(DELETED)
    assert row["flag"] == expected["severity"] and row["flag_color"].startswith("#")
    flagged = {f["structure"] for f in run["flags"]}
    assert {r["name"] for g in page.state("st_structures") for r in g["rows"] if r["flag"]} == flagged
    assert page.page.locator("#st-structures .st-flag").count() == len(flagged)
    assert page.page.locator("#st-flag-summary").inner_text().startswith(f"{len(flagged)} structure(s) flagged")
    page.screenshot("8-flags", focus=f"#st-structure-{DELETED}")


def test_a_click_on_a_review_entry_moves_the_slice_views_there(page, run):
    entries = page.state("st_review")
    assert [(e["rank"], e["structure"]) for e in entries] == [(1, "Lens_R"), (2, "SpinalCord")]
    for rank, entry in ((1, run["review"][0]), (2, run["review"][1])):
        before = page.state(AXIAL_OFFSET)
        page.click(f"#st-review-{rank}")
        page.wait_for(f"s({AXIAL_OFFSET!r}) !== {before!r}", 30)
        # the axial view's offset is the entry's height (S = z in LPS and RAS alike)
        assert page.state(AXIAL_OFFSET) == pytest.approx(entry["centre_lps"][2], abs=0.5)
        assert page.state("st_selected") == entry["structure"]
    assert "slices" in page.message()[0]
    page.click("#st-review-1")
    page.wait_for("s('st_selected') === 'Lens_R'")
    page.page.wait_for_timeout(800)
    page.screenshot("9-review-first", focus="#st-review")


def test_check_again_after_drawing_the_structure_drops_its_missing_flag(page, run):
    missing = next(f["message"] for f in run["flags"] if f["structure"] == DELETED)
    page.click("#st-review-2")  # the neck, where the slice shows background to paint in
    page.wait_for("s('st_selected') === 'SpinalCord'")
    page.select_structure(DELETED)
    page.choose_effect("1", "Paint")
    page.paint_in_background(0)
    page.click("#st-check-again")
    page.wait_for("s('st_message').startsWith('Checked again')", 60)
    # a stroke is not a parotid: other flags may follow (its volume), never "not found" again
    assert missing not in page.structure(DELETED)["flag_text"]
    page.wait_for(f"s('st_structures').flatMap(g => g.rows).find(r => r.name === {DELETED!r}).volume_ml > 0", 30)

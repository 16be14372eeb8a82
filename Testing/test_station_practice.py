"""Trainee mode in the browser station (Debian's chromium, playwright, real mouse events): a phantom
round on one structure with its guideline card beside it, a stroke painted in the slice view,
Submit shows the Dice and the borders in words and the overlay; the attempt is in the practice
history; the reference then shows; End round. Screenshots as the other station tests
(DKOAR_STATION_SCREENSHOTS)."""

from __future__ import annotations

import numpy as np
import pytest

from DKOARSegmentationLib.phantom import PhantomGrid, generate_phantom
from Testing.station_driver import open_station_page, start_station, station_args, station_missing

pytestmark = [pytest.mark.slow, pytest.mark.skipif(station_missing() is not None, reason=str(station_missing()))]

SEED = 1
QUICK = PhantomGrid(matrix=96, pixel_mm=2.6, slice_mm=4.0)  # the station's quick phantom


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("station_practice")


@pytest.fixture(scope="module")
def station(workdir):
    running = start_station(station_args(workdir), workdir)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def page(station, workdir):
    with open_station_page(station.url, workdir) as opened:
        yield opened


def _structure_at_the_centre() -> str:
    """The structure under the middle of the phantom's middle slice: where the views start."""
    truth = generate_phantom(SEED, "HFS", QUICK).truth
    k, j, i = (n // 2 for n in truth.labels.shape)
    labels, counts = np.unique(truth.labels[k, j - 4:j + 4, i - 4:i + 4], return_counts=True)
    label = max((c, v) for v, c in zip(labels, counts) if v)[1]
    return next(s.name for s in truth.structures if s.label == label)


def test_a_phantom_round_starts_with_the_guideline_card_beside_the_structure(page):
    name = _structure_at_the_centre()
    page.page.locator("#st-practice").scroll_into_view_if_needed()
    page.click("#st-practice-structures")
    page.page.locator(".v-overlay .v-list-item", has_text=name).first.click()
    page.wait_for(f"s('st_practice_structures').includes({name!r})")
    page.press("Escape")
    page.page.locator("#st-practice-card").wait_for(state="visible", timeout=30000)
    assert name in page.page.locator("#st-practice-card h3").inner_text()
    assert page.state("st_practice_size").startswith("quick")
    page.click("#st-practice-start")
    page.wait_for("s('st_practice_running') && !s('st_busy')", 120)
    text, kind = page.message()
    assert kind == "success" and text.startswith(f"Draw {name}"), text
    assert page.state("st_ct_label") == f"Practice: phantom seed {SEED} HFS"
    assert page.state("st_selected") == name and page.state("st_structures") == []


def test_a_stroke_painted_and_submitted_shows_the_dice_and_the_borders_in_words(page, workdir):
    from DKOARSegmentationLib.practice.history import read_history

    name = page.state("st_selected")
    page.choose_effect("1", "Paint")
    page.shrink_brush(steps=5)
    box = page.view_box(0)
    page.stroke(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, length_px=16)
    page.wait_for("s('st_practice_edits') > 0", 30)
    page.click("#st-practice-submit")
    page.wait_for("s('st_practice_scored')", 120)
    scores = page.state("st_practice_scores")
    assert [s["structure"] for s in scores] == [name] and scores[0]["volume_attempt_ml"] > 0
    feedback = page.page.locator("#st-practice-feedback").inner_text()
    assert f"{name}: Dice {scores[0]['dice']:.3f}" in feedback
    assert scores[0]["feedback"] and all(sentence in feedback for sentence in scores[0]["feedback"])
    assert any("border" in sentence for sentence in scores[0]["feedback"])
    assert "orange = drawn but not in the reference" in feedback
    text, kind = page.message()
    assert kind == "success" and "stored in the practice history" in text, text
    rows = read_history([workdir / "practice.sqlite"])
    assert [(r["structure"], r["case_label"]) for r in rows] == [(name, f"phantom seed {SEED} HFS")]
    assert rows[0]["dice"] == pytest.approx(scores[0]["dice"], abs=1e-6) and rows[0]["edits"] >= 1
    page.page.wait_for_timeout(800)
    page.screenshot("10-practice", focus="#st-practice-feedback")


def test_the_reference_shows_after_submitting_and_the_round_ends(page):
    before = page.view_pixels(0)
    page.click("#st-practice-reference-btn")
    page.wait_for("s('st_message') === 'The reference is shown.'", 60)
    page.page.wait_for_timeout(1500)
    assert np.abs(page.view_pixels(0) - before).sum() > 0, "the reference changed nothing in the axial view"
    page.click("#st-practice-end")
    page.wait_for("!s('st_practice_running')", 30)
    assert page.message() == ("Round ended.", "info")

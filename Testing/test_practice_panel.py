"""The panel's practice section, checked without Slicer: its .ui has every widget the code asks for,
the logic has every method it calls, its Slicer calls exist, and the panel stays within its size."""

from __future__ import annotations

import re

import pytest

from Testing.test_slicer_house import MAIN, MODULE_DIR, SLICER_API, UI, api_problems, ui_problems, ui_widgets

SECTION = MODULE_DIR / "DKOARSegmentationQt" / "practice_section.py"
SECTION_UI = MODULE_DIR / "Resources" / "UI" / "PracticeSection.ui"


def test_the_section_ui_matches_its_code():
    source = SECTION.read_text(encoding="utf-8")
    problems = ui_problems(SECTION_UI.read_text(encoding="utf-8"), source, set())
    assert not problems, "\n".join(problems)
    widgets = ui_widgets(SECTION_UI.read_text(encoding="utf-8"))
    for name in ("startRoundButton", "submitButton", "showReferenceButton", "endRoundButton", "guidelineCardBrowser",
                 "feedbackBrowser", "practiceEditorFrame", "practiceStructuresList", "traineeLineEdit"):
        assert name in widgets, name
    # what it takes from the panel's own .ui
    panel = ui_widgets(UI.read_text(encoding="utf-8"))
    for name in set(re.findall(r"\bself\.widget\.ui\.(\w+)", source)):
        assert name in panel, f"the panel's .ui has no {name}"


def test_the_section_calls_only_what_the_logic_has():
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    assert slicer
    from DKOARSegmentationMRML.practice import PracticeLogic

    logic = PracticeLogic()
    source = SECTION.read_text(encoding="utf-8")
    called = set(re.findall(r"\bself\.logic\.(\w+)", source))
    assert called and not [name for name in called if not hasattr(logic, name)]
    shared = set(re.findall(r"\bself\.widget\.shared\.(\w+)", source))
    from DKOARSegmentationMRML.logic import SegmentationLogic

    assert not [name for name in shared if not hasattr(SegmentationLogic(), name)]


def test_the_section_slicer_calls_exist():
    if not SLICER_API.is_file():
        pytest.skip(f"{SLICER_API} is absent")
    assert not api_problems(SECTION.read_text(encoding="utf-8"), SLICER_API.read_text(encoding="utf-8"))


def test_the_panel_makes_the_section_and_stays_within_650_lines():
    source = MAIN.read_text(encoding="utf-8")
    assert "PracticeSection(self)" in source
    assert len(source.splitlines()) <= 650

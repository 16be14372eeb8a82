"""The practice history (SQLite, keyed pseudonyms) and its report, rendered in headless Chromium."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from DKOARSegmentationLib.cli.main import main
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.monitoring.pseudonym import SiteKey
from DKOARSegmentationLib.practice.history import SCHEMA_VERSION, PracticeCase, open_history, read_history, trainee_key
from DKOARSegmentationLib.practice.report import (
    border_statistics,
    build_practice_report,
    hardest_structures,
    learning_curves,
    trainee_summary,
)
from DKOARSegmentationLib.practice.scoring import PracticeScore
from Testing.practice_factory import make_example_history

KEY = SiteKey(b"k" * 32)


def _score(structure="Parotid_L", dice=0.8, caudal=4.0, laterality="L"):
    borders = {"cranial": 0.5, "caudal": caudal, "anterior": -3.0, "posterior": 0.2, "left": 1.0, "right": -0.3}
    return PracticeScore(structure, laterality, dice, dice - 0.05, 2.85, 6.0, 1.5, 300.0, 27.3, 31.0, borders,
                         ["caudal border 4.0 mm too low"])


def test_attempts_are_stored_keyed_in_a_versioned_wal_history(tmp_path):
    path = tmp_path / "practice.sqlite"
    with open_history(path) as history:
        history.check_site_key(KEY.fingerprint)
        case = PracticeCase.of_study(KEY, "1.2.826.0.1.3680043.8.498.1", "rtstruct")
        first = history.add_attempt(trainee_key=trainee_key(KEY, "Anna Jensen"), case=case, score=_score(),
                                    active_s=95.0, wall_s=180.0, edits=12, started_at="2026-03-01T09:00",
                                    submitted_at="2026-03-01T09:03")
        history.add_attempt(trainee_key=trainee_key(KEY, "Anna Jensen"), case=PracticeCase.of_phantom(KEY, 3, "HFS"),
                            score=_score(dice=0.9), submitted_at="2026-03-02T10:00")
        with pytest.raises(ValueError, match="keyed pseudonym"):
            history.add_attempt(trainee_key="Anna Jensen", case=case, score=_score())
        rows = history.attempts()
    assert first == 1 and len(rows) == 2
    row = rows[0]
    assert row["trainee_key"] == trainee_key(KEY, "Anna Jensen") == trainee_key(KEY, " Anna Jensen ")
    assert row["case_key"] == KEY.pseudonym("study", "1.2.826.0.1.3680043.8.498.1") and row["case_label"] == ""
    assert row["border_caudal_mm"] == 4.0 and row["volume_attempt_ml"] == 31.0 and row["active_s"] == 95.0
    assert row["submitted_at"].endswith("Z") and rows[1]["case_label"] == "phantom seed 3 HFS"
    data = path.read_bytes() + (tmp_path / "practice.sqlite-wal").read_bytes() \
        if (tmp_path / "practice.sqlite-wal").exists() else path.read_bytes()
    assert b"Anna" not in data and b"1.2.826.0.1.3680043.8.498.1" not in data
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_another_site_key_and_a_newer_schema_are_refused(tmp_path):
    path = tmp_path / "practice.sqlite"
    with open_history(path) as history:
        history.check_site_key(KEY.fingerprint)
        with pytest.raises(DKOARError, match="another site key"):
            history.check_site_key(SiteKey(b"z" * 32).fingerprint)
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(DKOARError, match="newer than this dkoar knows"):
        open_history(path)
    with pytest.raises(DKOARError, match="not a practice history"):
        (tmp_path / "junk.sqlite").write_bytes(b"not sqlite at all" * 100)
        open_history(tmp_path / "junk.sqlite")


def test_histories_merge_and_a_copied_attempt_counts_once(tmp_path):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    for path, dice in ((a, 0.7), (b, 0.9)):
        with open_history(path) as history:
            history.add_attempt(trainee_key=trainee_key(KEY, "bo"), case=PracticeCase.of_phantom(KEY, 1, "HFS"),
                                score=_score(dice=dice))
    (tmp_path / "copy.sqlite").write_bytes(a.read_bytes())
    rows = read_history([a, b, tmp_path / "copy.sqlite"])
    assert len(rows) == 2
    with pytest.raises(DKOARError, match="no such practice history"):
        read_history([tmp_path / "missing.sqlite"])


def test_the_report_figures(tmp_path):
    keys = make_example_history(tmp_path / "p.sqlite", KEY, attempts=3, trainees={"anna": 1.0, "bo": 2.0},
                                structures=("Parotid_L", "Brainstem"))
    rows = read_history([tmp_path / "p.sqlite"])
    assert len(rows) == 3 * 2 * 2
    curves = learning_curves(rows)
    assert [a["n"] for a in curves["Parotid_L"][keys["anna"]]] == [1, 2, 3]
    assert curves["Parotid_L"][keys["anna"]][-1]["surface_dice"] > 0.9  # the habit has faded
    hardest = hardest_structures(rows)
    medians = [h["surface_dice_median"] for h in hardest]
    assert medians == sorted(medians) and {h["structure"] for h in hardest} == {"Parotid_L", "Brainstem"}
    borders = border_statistics(rows)
    assert [b["median_abs_mm"] for b in borders] == sorted((b["median_abs_mm"] for b in borders), reverse=True)
    assert {b["border"] for b in borders if b["structure"] == "Parotid_L"} >= {"lateral", "medial"}
    assert {b["border"] for b in borders if b["structure"] == "Brainstem"} >= {"left", "right"}
    summary = trainee_summary(rows, keys["bo"])
    assert summary[0]["trainee"] == "you" and summary[1]["trainee"] == f"trainee {keys['anna'][:8]}"
    page = build_practice_report(rows, keys["bo"])
    assert "Learning curves" in page and "hardest borders" in page and "bo" not in page.split("<body>")[1].split()
    assert "http://" not in page and "https://" not in page
    assert "No attempts" in build_practice_report([])


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium(tmp_path):
    """The README's screenshot is made by this code path (python -m tools.practice_report_screenshot)."""
    from tools.practice_report_screenshot import render_example

    png = tmp_path / "practice-report.png"
    seen = render_example(tmp_path, png)
    assert seen["title"] == "DKOAR practice report"
    assert seen["headings"] == ["Learning curves", "Trainees", "The cohort's hardest structures",
                                "The cohort's hardest borders"]
    assert len(seen["images"]) == 2 and all(loaded for _, loaded in seen["images"]), seen["images"]
    assert seen["refused"] == []  # nothing but the page itself was asked for
    from PIL import Image

    with Image.open(png) as image:
        width, height = image.size
        assert width == 1400 and height > 1200
        assert len(np.unique(np.asarray(image.convert("L")))) > 20  # not blank


def test_the_report_command_marks_the_trainee_as_you(tmp_path, capsys, monkeypatch):
    key_file = tmp_path / "site.key"
    key_file.write_text(KEY.secret.hex() + "\n", encoding="ascii")
    key_file.chmod(0o600)
    make_example_history(tmp_path / "p.sqlite", KEY, attempts=2, trainees={"anna": 1.0, "bo": 1.0},
                         structures=("Lens_L",))
    out = tmp_path / "trainee.html"
    assert main(["practice", "report", "--log", str(tmp_path / "p.sqlite"), "--out", str(out), "--trainee", "anna",
                 "--site-key", str(key_file)]) == 0
    assert "4 attempts by 2 trainee(s)" in capsys.readouterr().out
    assert "<td>you</td>" in out.read_text(encoding="utf-8")
    monkeypatch.delenv("DKOAR_SITE_KEY", raising=False)
    assert main(["practice", "report", "--log", str(tmp_path / "p.sqlite"), "--out", str(out),
                 "--trainee", "anna"]) == 2
    assert "no site key" in capsys.readouterr().err
    assert main(["practice", "report", "--log", str(tmp_path / "missing.sqlite"), "--out", str(out)]) == 2

"""Review guidance end to end: a run's flags and review list in run.json and the RTSTRUCT (valid
for dciodvfy), the uncertainty measured without changing the label map, the guidance kept in the
correction log (schema 3, old logs upgraded) and the report's section rendered in Chromium."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess

import numpy as np
import pydicom
import pytest
import torch

from DKOARSegmentationLib.model.bundle import load_bundle
from DKOARSegmentationLib.model.loading import load_model
from DKOARSegmentationLib.model.predict_options import PredictOptions
from DKOARSegmentationLib.model.predictor import predict
from DKOARSegmentationLib.monitoring.correction_log import SCHEMA_VERSION, open_log, read_only_copy
from DKOARSegmentationLib.monitoring.guidance_log import read_guidance, record_guidance
from DKOARSegmentationLib.monitoring.report import write_report
from DKOARSegmentationLib.review.flags import Flag
from DKOARSegmentationLib.review.guidance import ReviewGuidance
from Testing.conftest import require_tool
from Testing.log_factory import synthetic_log
from Testing.nnunet_factory import make_nnunet_folder


@pytest.fixture(scope="module")
def guided_run(demo_result):
    return demo_result(3, "HFS")


@pytest.mark.slow
def test_a_run_writes_its_flags_and_review_list_into_run_json_and_the_rtstruct(guided_run):
    result, folder = guided_run
    run = json.loads((folder / "run.json").read_text())
    assert {"flags", "review", "uncertainty"} <= set(run) and "review" in run["seconds"]
    assert run["uncertainty"]["method"] == "entropy of the averaged probabilities"
    assert set(run["uncertainty"]["structures"]) >= {"Brain", "Parotid_L"}
    assert 1 <= len(run["review"]) <= 8 and [e["rank"] for e in run["review"]] == list(range(1, len(run["review"]) + 1))
    scores = [e["score"] for e in run["review"]]
    assert scores == sorted(scores, reverse=True)
    for entry in run["review"]:
        assert 0 <= entry["first_slice"] <= entry["last_slice"] < result.ct.shape[0]
        assert entry["z_mm"][0] <= entry["centre_lps"][2] + 3 and entry["centre_lps"][2] - 3 <= entry["z_mm"][1]
    for flag in run["flags"]:
        assert set(flag) == {"structure", "kind", "severity", "message"}
    ds = pydicom.dcmread(folder / "rtstruct.dcm")
    names = {r.ROINumber: r.ROIName for r in ds.StructureSetROISequence}
    notes = {names[o.ReferencedROINumber]: o for o in ds.RTROIObservationsSequence if "ROIObservationLabel" in o}
    expected = {f["structure"] for f in run["flags"]} | {e["structure"] for e in run["review"]}
    assert set(notes) == expected
    first = run["review"][0]
    assert f"Review rank 1: the model is least sure on slices {first['first_slice'] + 1}-" in \
        notes[first["structure"]].ROIObservationDescription
    assert all(len(o.ROIObservationLabel) <= 16 for o in notes.values())
    report = subprocess.run([require_tool("dciodvfy"), str(folder / "rtstruct.dcm")], capture_output=True, text=True)
    assert not [line for line in (report.stdout + report.stderr).splitlines() if "Error" in line]


@pytest.mark.parametrize("folds", [1, 2])
def test_the_uncertainty_leaves_the_label_map_as_it_was(tmp_path, folds):
    from DKOARSegmentationLib.phantom import PhantomGrid, generate_phantom

    folder = make_nnunet_folder(tmp_path / "model", folds=tuple(range(folds)), seed=3,
                                trainer="nnUNetTrainerNoMirroring")
    model = load_model(load_bundle(folder), torch.device("cpu"))
    ct = generate_phantom(6, "FFS", PhantomGrid(matrix=96, pixel_mm=2.6, slice_mm=4.0)).ct
    plain = predict(model, ct, uncertainty=False)
    measured = predict(model, ct, uncertainty=True)
    assert plain.uncertainty is None and np.array_equal(plain.labels, measured.labels)
    u = measured.uncertainty
    assert u.values.shape == (model.num_outputs, ct.shape[0], 2) and u.values.sum() > 0
    assert u.method == ("disagreement of the folds" if folds == 2 else "entropy of the averaged probabilities")
    if folds == 1:
        exact = predict(model, ct, options=PredictOptions(mode="nnunet"))
        assert exact.uncertainty is None  # the nnU-Net mode, a reference for checking, measures none


def _guided_logs(tmp_path):
    """Two sites' synthetic logs, and guidance for each case: the edited structures flagged or
    listed more often than the others (as a guidance that predicts the work would be)."""
    rng = np.random.default_rng(5)
    paths = [synthetic_log(tmp_path / f"{site}.sqlite", 24, seed=n, site=site) for n, site in
             enumerate(("Aarhus", "Odense"))]
    for path in paths:
        with open_log(path) as log:
            for case in log.cases():
                results = log.structure_results(case["case_id"])
                flags, review, structures = [], [], {}
                for name, row in results.items():
                    edited = row["unchanged"] == 0
                    score = float(rng.uniform(0.4, 1.2) if edited else rng.uniform(0.0, 0.6))
                    structures[name] = {"score": score, "uncertain_ml": score}
                    if edited and rng.random() < 0.3:
                        flags.append(Flag(name, "volume" if rng.random() < 0.5 else "fragmented", "warning", "x."))
                ranked = sorted(structures, key=lambda n: -structures[n]["score"])[:8]
                review = [{"rank": r + 1, "structure": n, "first_slice": 3, "last_slice": 5,
                           "score": structures[n]["score"], "uncertain_ml": 1.0} for r, n in enumerate(ranked)]
                record_guidance(log, case["case_id"], ReviewGuidance(flags, review, {"structures": structures}))
    return paths


def test_the_band_is_the_uncertain_volume_over_the_structures_own_surface(catalogue):
    from DKOARSegmentationLib.model.uncertainty import SliceUncertainty
    from DKOARSegmentationLib.monitoring.surface_metrics import surface_area
    from DKOARSegmentationLib.review.uncertainty import structure_uncertainty
    from DKOARSegmentationLib.structures.model_labels import map_model_labels
    from DKOARSegmentationLib.volume import Segmentation

    # on 1 mm voxels: a compact 20 mm cube, a 2 mm thin sheet of the same volume, and no brainstem;
    # the model is unsure of 2 ml on each parotid's slices
    names = {0: "background", 1: "Parotid_L", 2: "Parotid_R", 3: "Brainstem"}
    left, right, brainstem = (catalogue.find(names[v]) for v in (1, 2, 3))
    labels = np.zeros((40, 120, 120), np.uint8)
    labels[10:30, 20:40, 70:90] = left.label
    labels[10:12, 20:100, 10:60] = right.label  # 2 x 80 x 50 voxels = 8 ml, as the cube
    segmentation = Segmentation(labels, np.eye(4), tuple(catalogue.core_structures))
    values = np.zeros((4, 40, 2))
    values[1, 10:30, 1] = 2.0 / 20
    values[2, 10:12, 0] = 2.0 / 2
    values[3, 5:8, :] = 0.05
    scores = structure_uncertainty(SliceUncertainty(values, "entropy"), map_model_labels(names, catalogue),
                                   segmentation)
    for structure in (left, right):
        u = scores[structure.name]
        area = surface_area(labels == structure.label, (1.0, 1.0, 1.0))
        assert u.uncertain_ml == pytest.approx(2.0)
        assert u.band_mm == pytest.approx(2000.0 / area) and u.score == pytest.approx(u.band_mm / structure.tolerance_mm)
    # the same uncertain volume spread over a sheet's large surface is a thin band
    assert scores["Parotid_R"].band_mm < 0.5 * scores["Parotid_L"].band_mm
    # not found: counted on every slice, over the surface of a 1 mm^3 ball
    assert scores["Brainstem"].uncertain_ml == pytest.approx(0.3)
    assert scores["Brainstem"].band_mm == pytest.approx(300.0 / (4 * np.pi * (3 / (4 * np.pi)) ** (2 / 3)), rel=1e-3)


def test_the_correction_log_keeps_the_guidance_and_upgrades_old_logs(tmp_path):
    old = tmp_path / "old.sqlite"
    connection = sqlite3.connect(old)
    from DKOARSegmentationLib.monitoring.correction_log import MIGRATIONS

    for version in (1, 2):
        connection.executescript(MIGRATIONS[version])
    connection.execute("PRAGMA user_version = 2")
    connection.commit()
    connection.close()
    assert SCHEMA_VERSION == 3
    assert int(read_only_copy(old).execute("PRAGMA user_version").fetchone()[0]) == 3
    with open_log(old) as log:
        case = log.start_case(site="x")
        guidance = ReviewGuidance([Flag("Lens_L", "side", "error", "Lens_L lies on the patient's right.")],
                                  [{"rank": 1, "structure": "Lens_L", "first_slice": 2, "last_slice": 4, "score": 2.0,
                                    "uncertain_ml": 0.1}], {"structures": {"Lens_L": {"score": 2.0, "uncertain_ml": 0.1}}})
        record_guidance(log, case, guidance)
        record_guidance(log, case, guidance)  # again: replaced, not doubled
        back = read_guidance(log.connection, case)
    assert back.flags == guidance.flags and back.review == guidance.review
    assert back.uncertainty == guidance.uncertainty


def test_the_report_section_says_how_the_guidance_predicted_the_edits(tmp_path):
    from DKOARSegmentationLib.monitoring.aggregates import load_logs
    from DKOARSegmentationLib.monitoring.guidance_aggregates import guidance_section

    section = guidance_section(load_logs(_guided_logs(tmp_path)))
    groups = {g["group"]: g for g in section["groups"]}
    assert section["cases"] == 48 and section["auc"] > 0.9
    assert groups["in the review list (uncertain)"]["edit_rate"] > groups["neither (the rest)"]["edit_rate"]
    assert groups["flagged (warning or error)"]["edit_rate"] == 1.0
    kinds = {k["group"]: k for k in section["by_kind"]}
    assert set(kinds) == {"volume", "fragmented", "no flag above info"}
    assert kinds["volume"]["active_s_median"] > kinds["no flag above info"]["active_s_median"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (make validators installs it)")
def test_the_report_section_renders_in_headless_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    html, _, _ = write_report(_guided_logs(tmp_path), tmp_path / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:")
                       else route.continue_())  # nothing from the network
            page.goto(html.as_uri())
            heading = page.locator("#review-guidance")
            assert heading.is_visible() and "does it predict the work" in heading.inner_text()
            section = page.locator("#review-guidance ~ table").first
            rows = section.locator("tr").all_inner_texts()
            assert any(r.startswith("flagged (warning or error)") for r in rows), rows
            assert "AUC" in page.locator("#review-guidance ~ p").all_inner_texts()[-1] or \
                any("AUC" in t for t in page.locator("#review-guidance ~ p").all_inner_texts())
            plot = page.locator("#review-guidance ~ img").first
            assert plot.is_visible() and plot.evaluate("img => img.naturalWidth") > 300
            heading.scroll_into_view_if_needed()
            shot = page.screenshot(path=str(tmp_path / "section.png"))
        finally:
            browser.close()
    assert len(shot) > 10000


def test_log_add_takes_the_runs_guidance(tmp_path):
    from Testing.test_cli import dkoar

    bad = dkoar("log", "add", "--log", tmp_path / "l.sqlite", "--ai", tmp_path / "a.dcm", "--final",
                tmp_path / "b.dcm", "--ct", tmp_path, "--run", tmp_path / "run.json")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

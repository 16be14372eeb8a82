"""A site's structure set: rename, recolour, reorder, choose the subset, ROI types; applied to a run."""

import json

import numpy as np
import pytest

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.structures.model_labels import map_model_labels, to_catalogue_labels
from DKOARSegmentationLib.structures.site_config import apply_site_config, load_site_config, parse_site_config
from DKOARSegmentationLib.volume import Volume
from Testing.conftest import QUICK_GRID

SITE_JSON = {
    "structures": [
        {"structure": "Parotid_R", "name": "Parotis_dxt", "color": "#ff8000", "roi_type": "AVOIDANCE"},
        {"structure": "Parotid_L", "name": "Parotis_sin", "color": [0, 128, 255], "roi_type": "avoidance"},
        "Brainstem",
        {"structure": "SpinalCord", "roi_type": "OAR"},
        {"structure": "Lens_L"},
        {"structure": "Lens_R"},
        {"structure": "Brain", "include": False},
    ],
}


def test_json_renames_recolours_reorders_and_chooses(catalogue, tmp_path):
    (tmp_path / "site.json").write_text(json.dumps(SITE_JSON))
    site = apply_site_config(catalogue, load_site_config(tmp_path / "site.json"))
    assert [s.name for s in site] == ["Parotis_dxt", "Parotis_sin", "Brainstem", "SpinalCord", "Lens_L", "Lens_R"]
    dxt = site.by_name("Parotis_dxt")
    assert dxt.label == catalogue.by_name("Parotid_R").label  # label numbers do not change
    assert dxt.rgb == (255, 128, 0) and dxt.rt_roi_type == "AVOIDANCE"
    assert site.find("Parotid_R") is dxt  # the old name stays an alias: models still map to it
    assert site.by_name("SpinalCord").rt_roi_type == "OAR"
    assert site.by_name("Brainstem").rgb == catalogue.by_name("Brainstem").rgb
    assert site.excluded.find("Brain") is not None and site.excluded.find("Mandible") is not None


def test_csv_is_the_same(catalogue, tmp_path):
    (tmp_path / "site.csv").write_text("structure,name,color,roi_type,include\n"
                                       "Parotid_R,Parotis_dxt,#ff8000,AVOIDANCE,yes\n"
                                       "Parotid_L,Parotis_sin,#0080ff,AVOIDANCE,\n"
                                       "Brainstem,,,,\nSpinalCord,,,OAR,\nLens_L,,,,\nLens_R,,,,\nBrain,,,,no\n")
    from_csv = apply_site_config(catalogue, load_site_config(tmp_path / "site.csv"))
    from_json = apply_site_config(catalogue, parse_site_config(json.dumps(SITE_JSON), "json"))
    assert tuple(from_csv) == tuple(from_json)


def test_model_labels_on_a_site_catalogue(catalogue):
    site = apply_site_config(catalogue, parse_site_config(json.dumps(SITE_JSON), "json"))
    model = {1: "Brain", 2: "Parotid_LR", 3: "Brainstem", 4: "Lens_L", 5: "Tumour", 6: "SpinalCord", 7: "Cochlea_LR"}
    mapping = map_model_labels(model, site)
    assert mapping.excluded == {1: "Brain", 7: "Cochlea_LR"}  # left out by the site, not unknown
    assert mapping.unmapped == {5: "Tumour"}
    assert [s.name for s in mapping.structures] == ["Parotis_dxt", "Parotis_sin", "Brainstem", "SpinalCord", "Lens_L"]
    assert [s.name for s in mapping.missing] == ["Lens_R"]

    # a merged label with one side left out: only the chosen side is written
    only_right = apply_site_config(catalogue, parse_site_config('{"structures": ["Parotid_R", "Brainstem"]}', "json"))
    m2 = map_model_labels({2: "Parotid_LR"}, only_right)
    labels = np.zeros((4, 4, 8), np.uint8)
    labels[:, :, :] = 2
    ct = Volume(np.zeros((4, 4, 8), np.int16) + 40, np.diag([1.0, 1.0, 1.0, 1.0]))
    seg = to_catalogue_labels(labels, m2, ct)
    right = catalogue.by_name("Parotid_R").label
    assert set(np.unique(seg.labels)) == {0, right}  # +x (patient left) half left out
    assert np.all(seg.labels[:, :, :3] == right)


@pytest.mark.parametrize("text,fmt,match", [
    ('{"structures": ["Nonsense"]}', "json", "not a structure of the catalogue"),
    ('{"structures": ["Brain", "brain"]}', "json", "listed twice"),
    ('{"structures": [{"structure": "Brain", "color": "#ff00"}]}', "json", "#rrggbb"),
    ('{"structures": [{"structure": "Brain", "roi_type": "ORGANISM"}]}', "json", "RTROIInterpretedType"),
    ('{"structures": [{"structure": "Brain", "colur": "#ff0000"}]}', "json", "unknown keys colur"),
    ('{"structures": [{"structure": "Brain", "include": false}]}', "json", "no structure is chosen"),
    ("name,color\nBrain,#ff0000\n", "csv", "'structure' column"),
    ('{"structures": [{"structure": "Brain", "name": "' + "x" * 65 + '"}]}', "json", "at most 64"),
    ("{", "json", "not valid JSON"),
])
def test_bad_site_configurations_are_refused(catalogue, text, fmt, match):
    with pytest.raises(DKOARError, match=match):
        apply_site_config(catalogue, parse_site_config(text, fmt))


def test_segment_with_site_config(tmp_path, phantom_factory, capsys):
    """``dkoar segment --site-config``: the RTSTRUCT carries the site's names, colours, ROI types and
    order, and only its structures."""
    import pydicom

    from DKOARSegmentationLib.cli import main
    from Testing.model_factory import make_model_folder

    out, _ = phantom_factory(3, "HFS", QUICK_GRID)
    model = make_model_folder(tmp_path / "model")
    (tmp_path / "site.json").write_text(json.dumps(SITE_JSON))
    assert main(["segment", str(out / "ct"), "--out", str(tmp_path / "run"), "--model", str(model), "--device", "cpu",
                 "-q", "--site-config", str(tmp_path / "site.json")]) == 0
    ds = pydicom.dcmread(tmp_path / "run" / "rtstruct.dcm")
    names = [r.ROIName for r in ds.StructureSetROISequence]
    assert names == ["Parotis_dxt", "Parotis_sin", "Brainstem", "SpinalCord", "Lens_L", "Lens_R"]
    types = {o.ReferencedROINumber: o.RTROIInterpretedType for o in ds.RTROIObservationsSequence}
    by_name = {r.ROIName: types[r.ROINumber] for r in ds.StructureSetROISequence}
    assert by_name["Parotis_dxt"] == "AVOIDANCE" and by_name["SpinalCord"] == "OAR"
    colours = {c.ReferencedROINumber: list(c.ROIDisplayColor) for c in ds.ROIContourSequence}
    first = ds.StructureSetROISequence[0].ROINumber
    assert colours[first] == [255, 128, 0]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert any("left out by the site configuration" in w for w in run["warnings"])


def test_choose_structures_keeps_the_catalogue_order_and_refuses_unknown_names(catalogue):
    from DKOARSegmentationLib.structures.site_config import choose_structures, parse_structure_names

    chosen = choose_structures(catalogue, parse_structure_names("Parotid_R; brain_stem, Lens_L,"))
    assert [s.name for s in chosen] == ["Brainstem", "Lens_L", "Parotid_R"]
    assert len(chosen.excluded) == len(catalogue) - 3
    with pytest.raises(DKOARError, match="'Parotis' is not a structure"):
        choose_structures(catalogue, ["Parotis"])
    with pytest.raises(DKOARError, match="no structure is chosen"):
        choose_structures(catalogue, parse_structure_names(" , "))
    # after a site configuration: its names, and what it left out stays left out
    site = apply_site_config(catalogue, parse_site_config(json.dumps(SITE_JSON), "json"))
    both = choose_structures(site, ["Parotis_sin", "Brainstem"])
    assert [s.name for s in both] == ["Parotis_sin", "Brainstem"]
    assert {s.name for s in both.excluded} >= {"Brain", "Parotis_dxt"}


def test_catalogue_groups_are_the_panels_six_national_groups(catalogue):
    groups = catalogue.groups()
    national = {g: [s.name for s in members if s.core] for g, members in groups.items()}
    assert [g for g, names in national.items() if names] == [
        "Brain and optic pathway", "Spinal cord and bone", "Eyes and ears", "Glands", "Oral cavity and pharynx",
        "Larynx and oesophagus"]
    assert sum(len(names) for names in national.values()) == 32
    assert [s.name for s in groups["Vessels (optional)"]] == ["Carotid_L", "Carotid_R"]


def test_segment_with_chosen_structures(tmp_path, phantom_factory):
    """``dkoar segment --structures``: only those, in the catalogue's order; an unknown name is
    refused in one line with exit code 2 before anything runs."""
    import pydicom

    from DKOARSegmentationLib.cli import main
    from Testing.model_factory import make_model_folder

    out, _ = phantom_factory(3, "HFS", QUICK_GRID)
    model = make_model_folder(tmp_path / "model")
    common = [str(out / "ct"), "--model", str(model), "--device", "cpu", "-q"]
    assert main(["segment", *common, "--out", str(tmp_path / "run"), "--structures", "Lens_R,Brainstem"]) == 0
    ds = pydicom.dcmread(tmp_path / "run" / "rtstruct.dcm")
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["Brainstem", "Lens_R"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert any("left out by the site configuration" in w for w in run["warnings"])
    assert main(["segment", *common, "--out", str(tmp_path / "bad"), "--structures", "Brainstem,Parotis"]) == 2
    assert not (tmp_path / "bad").exists()

"""Guideline cards: one for every structure of the catalogue, complete, cited, and a site's own
text over the project's."""

from __future__ import annotations

import json

import pytest

from DKOARSegmentationLib.cli.main import main
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.practice.cards import BORDERS, guideline_card, load_cards
from DKOARSegmentationLib.resources import resources_dir


def test_every_one_of_the_32_structures_and_the_carotids_has_a_guideline_card(catalogue):
    cards = load_cards(catalogue=catalogue)
    core = [s.name for s in catalogue.core_structures]
    assert len(core) == 32
    assert [name for name in core if name in cards] == core, "structures without a card"
    assert len([name for name in cards if name in core]) == 32
    assert {"Carotid_L", "Carotid_R"} <= set(cards)
    assert list(cards) == [s.name for s in catalogue if s.name in cards]  # catalogue order


def test_each_card_has_its_borders_pitfalls_volume_tolerance_and_sources(catalogue):
    for name, card in load_cards(catalogue=catalogue).items():
        structure = catalogue.by_name(name)
        needed = BORDERS if structure.laterality else BORDERS[:5]
        assert all(card.borders[b] and len(card.borders[b]) > 15 for b in needed), name
        assert len(card.pitfalls) >= 2 and card.summary and card.title, name
        assert 0 < card.volume.low_ml <= card.volume.high_ml and card.volume.source, name
        assert card.tolerance_mm == structure.tolerance_mm and card.tolerance_source, name
        assert any("Radiother Oncol 2015;117:83-90" in s for s in card.sources), f"{name} does not cite the consensus"
        assert any("DAHANCA" in s for s in card.sources), name
        if card.borders["medial"] is None:  # only midline structures may go without a medial border
            assert not structure.laterality and "medial    none: a midline structure" in card.text(), name
    # a paired structure's card speaks of lateral and medial, and both sides share it
    assert load_cards()["Parotid_L"].borders == load_cards()["Parotid_R"].borders


def test_volume_ranges_say_where_they_come_from():
    cards = load_cards()
    assert "NOT patient data" in cards["Parotid_L"].volume.source
    assert "ICRP Publication 89" in cards["Brain"].adult_reference
    assert "1450 g" in cards["Brain"].adult_reference
    sources = json.loads((resources_dir() / "guidelines" / "sources.json").read_text(encoding="utf-8"))
    assert "doi:10.1016/j.radonc.2015.07.041" in sources["brouwer2015"]


def test_a_site_folder_overrides_and_adds_text(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "parotid.json").write_text(json.dumps({
        "structures": ["parotid l"],
        "borders": {"caudal": "Our rule: to the lower edge of C3."},
        "site_note": "Draw the deep lobe with MRI at hand.",
        "sources": ["local"]}), encoding="utf-8")
    (site / "sources.json").write_text(json.dumps({"local": "Aarhus local instruction 2026"}), encoding="utf-8")
    card = guideline_card("Parotid_L", site)
    assert card.borders["caudal"] == "Our rule: to the lower edge of C3."
    assert card.borders["cranial"] == load_cards()["Parotid_L"].borders["cranial"]  # the rest is kept
    assert card.site_note.startswith("Draw the deep lobe") and card.sources == ("Aarhus local instruction 2026",)
    assert "Site note: Draw the deep lobe" in card.text() and "Site note" in card.html()
    assert load_cards()["Parotid_R"].site_note == ""  # only what the site named
    monkeypatch.setenv("DKOAR_SITE_GUIDELINES", str(site))
    assert load_cards()["Parotid_L"].site_note.startswith("Draw")
    (site / "bad.json").write_text(json.dumps({"structures": ["Spleen"], "title": "x"}), encoding="utf-8")
    with pytest.raises(DKOARError, match="'Spleen' is not a structure of the catalogue"):
        load_cards(site)
    (site / "bad.json").write_text(json.dumps({"structures": ["Lens_L"], "colour": "red"}), encoding="utf-8")
    with pytest.raises(DKOARError, match="unknown fields colour"):
        load_cards(site)


def test_the_card_command_prints_a_card(capsys):
    assert main(["practice", "card", "Chiasm"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Chiasm: Optic chiasm") and "cranial" in text and "Surface tolerance: 2.5 mm" in text
    assert main(["practice", "card", "OpticNrv_L", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["structure"] == "OpticNerve_L" and set(card["borders"]) == set(BORDERS)
    assert main(["practice", "card", "Spleen"]) == 2

"""Synthetic correction logs for the report's tests and benchmark: plausible effort and metrics
per structure, months of cases, sites and model versions, and an optional drift to be caught."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from DKOARSegmentationLib.monitoring.correction_log import CTProperties, StructureResult, open_log
from DKOARSegmentationLib.monitoring.pseudonym import SiteKey
from DKOARSegmentationLib.structures.catalogue import default_catalogue


def synthetic_log(path: Path | str, n_cases: int, *, seed: int = 0, site: str = "Aarhus", start: str = "2025-01",
                  months: int = 12, models=(("DK-OAR", "1.0"), ("DK-OAR", "1.1")), model_switch_month: int = 6,
                  drift: tuple[str, int, float] | None = None, key: SiteKey | None = None) -> Path:
    """Write ``n_cases`` finished cases spread evenly over ``months`` months from ``start``.

    The second model is used from month ``model_switch_month`` on. ``drift`` = (structure, month,
    drop): from that month the structure's surface Dice drops by ``drop`` (and its APL rises)."""
    rng = np.random.default_rng(seed)
    key = key or SiteKey(bytes(range(32)))
    structures = default_catalogue().core_structures
    year, month = (int(v) for v in start.split("-"))
    base_sdice = {s.name: rng.uniform(0.75, 0.97) for s in structures}
    edit_prob = {s.name: rng.uniform(0.1, 0.9) for s in structures}
    with open_log(path, durable=False) as log:
        for case in range(n_cases):
            m = case * months // max(n_cases, 1)
            y, mo = year + (month - 1 + m) // 12, (month - 1 + m) % 12 + 1
            when = _dt.datetime(y, mo, 1 + case % 27, 9, 0, tzinfo=_dt.timezone.utc)
            name, version = models[1] if (len(models) > 1 and m >= model_switch_month) else models[0]
            case_id = log.start_case(
                site=site, model_name=name, model_version=version, model_hash="0" * 64,
                patient_key=key.pseudonym("patient", f"{site}-{case}"), study_key=key.pseudonym("study", f"{site}-{case}"),
                ct=CTProperties("Siemens SOMATOM go.Open Pro", "Br40", 2.0, bool(case % 2)), started_at=when,
                source="synthetic")
            results = {}
            for s in structures:
                edited = rng.random() < edit_prob[s.name]
                sdice = 1.0
                apl = 0.0
                if edited:
                    sdice = float(np.clip(base_sdice[s.name] + rng.normal(0, 0.04), 0, 1))
                    apl = float(rng.gamma(2.0, 40.0))
                if drift and s.name == drift[0] and m >= drift[1]:
                    edited = True
                    sdice = float(np.clip(sdice - drift[2], 0, 1))
                    apl += 150.0
                active = float(rng.lognormal(3.0, 0.6)) if edited else float(rng.uniform(1, 5))
                results[s.name] = StructureResult(
                    active_s=active, wall_s=active * 1.5, edits=int(rng.integers(1, 8)) if edited else 0,
                    unchanged=not edited, dice=1.0 - (1 - sdice) / 2, hd95_mm=0.0 if not edited else float(rng.gamma(2, 1.5)),
                    msd_mm=0.0 if not edited else float(rng.gamma(2, 0.3)), surface_dice=sdice,
                    tolerance_mm=s.tolerance_mm, apl_mm=apl, volume_ai_ml=10.0, volume_final_ml=10.0)
            log.finish_case(case_id, results, final_contours_sha256="1" * 64, finished_at=when)
    return Path(path)


def clinician_edits(labels: np.ndarray, catalogue=None, grow: str = "Parotid_L", shrink: str = "Mandible",
                    move: str = "SpinalCord", shift_voxels: int = 3) -> np.ndarray:
    """A "final" label map made from a truth: one structure grown (2 voxels in-plane, into
    background only), one shrunk (1 voxel), one moved (``shift_voxels`` columns); the rest kept."""
    from scipy import ndimage

    catalogue = catalogue or default_catalogue()
    out = labels.copy()
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    g = catalogue.by_name(grow).label
    grown = ndimage.binary_dilation(labels == g, in_plane, iterations=2)
    out[grown & (labels == 0)] = g
    s = catalogue.by_name(shrink).label
    mask = labels == s
    out[mask & ~ndimage.binary_erosion(mask)] = 0
    m = catalogue.by_name(move).label
    mask = out == m
    out[mask] = 0
    moved = np.roll(mask, shift_voxels, axis=2)
    out[moved & (out == 0)] = m
    return out

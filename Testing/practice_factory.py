"""A practice history as a small cohort would leave it: real scores of simulated attempts.

Each simulated trainee draws a structure of a small phantom with a habit (a border too low, a
contour too generous) that fades attempt after attempt; every attempt is scored by the real
``practice.scoring`` and stored with the real ``practice.history``. The report's tests and its
README screenshot (``tools/practice_report_screenshot.py``) use it.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
from scipy import ndimage

from DKOARSegmentationLib.monitoring.contour_sets import contour_set_from_masks
from DKOARSegmentationLib.monitoring.pseudonym import SiteKey
from DKOARSegmentationLib.phantom import PhantomGrid, generate_phantom
from DKOARSegmentationLib.practice.history import PracticeCase, open_history, trainee_key
from DKOARSegmentationLib.practice.scoring import score_contour_sets

GRID = PhantomGrid(matrix=160, pixel_mm=1.5, slice_mm=3.0)
STRUCTURES = ("Parotid_L", "Submandibular_R", "Brainstem", "OpticNerve_L", "LarynxG")
# name -> how fast the habits fade (1: evenly over the attempts; larger: sooner)
TRAINEES = {"anna": 1.0, "bo": 2.0, "carl": 0.6}


def _moved(mask: np.ndarray, axis: int, steps: int) -> np.ndarray:
    return np.roll(mask, steps, axis=axis) if steps else mask


def make_example_history(path, key: SiteKey, attempts: int = 4, seed: int = 3, trainees=TRAINEES,
                         structures=STRUCTURES) -> dict[str, str]:
    """Write the history; returns trainee name -> keyed pseudonym.

    Each trainee has a habit per structure (a shift of 1-4 voxels along one array axis, a contour
    0-2 voxels too generous) that fades over the attempts at the trainee's pace, plus a voxel of
    jitter now and then."""
    phantom = generate_phantom(seed=seed, position="HFS", grid=GRID)
    truth = phantom.truth
    case = PracticeCase.of_phantom(key, seed, "HFS")
    rng = np.random.default_rng(seed)
    start = _dt.datetime(2026, 9, 1, 9, 0, tzinfo=_dt.timezone.utc)
    keys = {name: trainee_key(key, name) for name in trainees}
    habits = {(name, structure): (int(rng.integers(0, 3)), int(rng.choice([-4, -3, -2, -1, 1, 2, 3, 4])),
                                  int(rng.integers(0, 3)))
              for name in trainees for structure in structures}
    references = {}
    for structure in structures:
        label = next(x.label for x in truth.structures if x.name == structure)
        references[structure] = truth.labels == label
    with open_history(path, durable=False) as history:
        history.check_site_key(key.fingerprint)
        for n in range(attempts):
            for name, pace in trainees.items():
                fade = max(0.0, 1.0 - n / max(1, attempts - 1)) ** pace  # the habit is gone by the last attempt
                for s, structure in enumerate(structures):
                    axis, shift, growth = habits[name, structure]
                    reference = references[structure]
                    attempt = _moved(reference, axis, int(round(shift * fade)))
                    if rng.random() < 0.5:
                        attempt = _moved(attempt, int(rng.integers(0, 3)), int(rng.choice([-1, 1])))
                    grow = int(round(growth * fade))
                    if grow:
                        attempt = ndimage.binary_dilation(attempt, iterations=grow)
                    ref_set, _ = contour_set_from_masks({structure: reference}, truth.affine)
                    att_set, _ = contour_set_from_masks({structure: attempt}, truth.affine)
                    score = score_contour_sets(ref_set, att_set, structure)
                    when = start + _dt.timedelta(days=7 * n, minutes=5 * s)
                    active = float(rng.uniform(60, 240)) * (1.0 - 0.4 * (n / attempts))
                    history.add_attempt(trainee_key=keys[name], case=case, score=score, site="Example",
                                        active_s=active, wall_s=active * 1.5, edits=int(rng.integers(5, 40)),
                                        started_at=when, submitted_at=when + _dt.timedelta(seconds=active * 1.5))
    return keys

"""Two models on the same cases: the metrics ``dkoar compare`` computes, per structure, for each
model against the clinicians' contours, and B's paired difference from A with a bootstrap interval.

Per case and structure (``monitoring.comparison``: model output as "AI", the reference as
"final"): Dice, surface Dice at the catalogue's tolerance, HD95 and added path length. Only the
structures a case's reference holds are scored (a structure nobody drew is unknown, not absent);
a structure a model does not provide is not scored for it, and the paired difference uses the
cases where both models have a value.

The paired difference (B - A) is averaged over cases; its 95 % interval is the 2.5th and 97.5th
percentile of that mean over bootstrap resamples of the cases (the same resample for both
models, which keeps the pairing). Verdict of B against A per metric: "better" when the whole
interval lies on the good side of zero (higher Dice and surface Dice, lower HD95 and APL),
"worse" when it lies on the bad side, else "no clear difference"; with fewer than three cases
"too few cases". A structure's verdict is its Dice verdict.

Each model's label map per case is kept in the work folder under the model's manifest hash and
reused by the next evaluation (a model changed in any file gets a new hash, so a new run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DKOARError
from ..monitoring.comparison import compare_segmentations
from ..structures.catalogue import Catalogue, default_catalogue
from ..volume import Segmentation
from .cohort import Cohort, CohortCase, read_cohort
from .names import NameMapper
from .reference import case_ct, reference_segmentation

METRICS = ("dice", "surface_dice", "hd95_mm", "apl_mm")
HIGHER_IS_BETTER = {"dice": True, "surface_dice": True, "hd95_mm": False, "apl_mm": False}
MIN_CASES = 3


@dataclass
class ModelRuns:
    folder: Path
    identity: str
    sha256: str
    reused: int = 0
    computed: int = 0


@dataclass
class Evaluation:
    models: tuple[ModelRuns, ModelRuns]
    cases: list[str]
    scores: dict[str, dict[str, dict[str, dict[str, float | None]]]]  # case -> structure -> "A"/"B" -> metric
    summary: dict[str, dict] = field(default_factory=dict)  # structure -> means, differences, verdicts
    resamples: int = 2000
    seed: int = 0

    def summary_lines(self) -> list[str]:
        a, b = self.models
        lines = [f"A = {a.identity} ({a.computed} cases run, {a.reused} reused); "
                 f"B = {b.identity} ({b.computed} run, {b.reused} reused); {len(self.cases)} cases",
                 f"{'structure':<16} {'n':>2} {'Dice A':>7} {'Dice B':>7} {'B-A':>7} {'95% interval':>17}  verdict"]
        for name, s in self.summary.items():
            d = s["difference"]["dice"]
            interval = f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d["ci95"] else "-"
            lines.append(f"{name:<16} {s['cases']:>2} {_fmt(s['A']['dice'])} {_fmt(s['B']['dice'])} "
                         f"{_fmt(d['mean'], '+')} {interval:>17}  {s['verdict']}")
        return lines


def _fmt(value, sign: str = "") -> str:
    return f"{value:{sign}7.3f}" if value is not None else f"{'-':>7}"


def bootstrap_interval(differences: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[float, float]:
    """The 95 % percentile interval of the mean of ``differences`` over resamples of the cases."""
    picks = rng.integers(0, len(differences), size=(resamples, len(differences)))
    means = differences[picks].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def verdict(metric: str, interval: tuple[float, float] | None, n: int) -> str:
    if n < MIN_CASES or interval is None:
        return "too few cases"
    low, high = interval
    good = HIGHER_IS_BETTER[metric]
    if (low > 0 and good) or (high < 0 and not good):
        return "better"
    if (high < 0 and good) or (low > 0 and not good):
        return "worse"
    return "no clear difference"


def _cases(cohort: Cohort, cases_file: Path | None) -> list[CohortCase]:
    usable = [c for c in cohort.cases if c.usable]
    if cases_file is None:
        return usable
    try:
        wanted = [line.strip() for line in Path(cases_file).read_text(encoding="utf-8").splitlines()
                  if line.strip() and not line.startswith("#")]
    except OSError as exc:
        raise DKOARError(f"{cases_file}: cannot read the case list ({exc.strerror})") from None
    by_id = {c.case_id: c for c in usable}
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        raise DKOARError(f"{cases_file}: {', '.join(unknown[:5])} {'is' if len(unknown) == 1 else 'are'} not a usable "
                         f"case of the cohort (ids as in cohort.json: case_0001, ...)")
    return [by_id[w] for w in wanted]


class _Runner:
    """One model: its output per case, from the work folder when it was computed before."""

    def __init__(self, folder: Path, work: Path, device: str, catalogue: Catalogue):
        from ..model.bundle import load_bundle

        self.bundle = load_bundle(folder)
        self.runs = ModelRuns(folder, self.bundle.identity, self.bundle.manifest_sha256)
        self.cache = work / self.runs.sha256[:16]
        self.device, self.catalogue, self._model = device, catalogue, None

    def labels(self, case: CohortCase, ct) -> Segmentation:
        import hashlib

        from ..output.label_maps import read_labelmap, write_labelmap_nifti

        # the case id and a hash of its series: ids repeat across cohorts, UIDs stay out of file names
        series = hashlib.sha256(case.series_uid.encode()).hexdigest()[:12]
        path = self.cache / f"{case.case_id}-{series}.nii.gz"
        if path.is_file():
            self.runs.reused += 1
            return read_labelmap(path, self.catalogue)
        segmentation = self._predict(ct)
        write_labelmap_nifti(segmentation, path)
        self.runs.computed += 1
        return segmentation

    def _predict(self, ct) -> Segmentation:
        from ..model.devices import resolve_device
        from ..model.loading import load_model
        from ..model.predictor import predict_labels
        from ..structures.model_labels import map_model_labels, to_catalogue_labels

        if self._model is None:
            self._model = load_model(self.bundle, resolve_device(self.device))
        mapping = map_model_labels(self.bundle.labels, self.catalogue)
        return to_catalogue_labels(predict_labels(self._model, ct), mapping, ct)

    def provides(self) -> set[str]:
        from ..structures.model_labels import map_model_labels

        return {s.name for s in map_model_labels(self.bundle.labels, self.catalogue).structures}


def evaluate_models(model_a: Path, model_b: Path, cohort_path: Path, cases_file: Path | None = None,
                    work: Path | None = None, device: str = "auto", resamples: int = 2000, seed: int = 0,
                    catalogue: Catalogue | None = None, site_map: Path | None = None) -> Evaluation:
    from ..structures.added import with_model_structures

    cohort = read_cohort(cohort_path)
    cases = _cases(cohort, cases_file)
    if not cases:
        raise DKOARError(f"{cohort_path}: no usable case to evaluate on")
    catalogue = catalogue or default_catalogue()
    work = Path(work) if work else Path(cohort_path).with_name(Path(cohort_path).stem + "_runs")
    runners = []
    for folder in (model_a, model_b):
        runner = _Runner(Path(folder), work, device, catalogue)
        catalogue = with_model_structures(catalogue, runner.bundle.card.get("structures"))
        runners.append(runner)
    for runner in runners:
        runner.catalogue = catalogue
    provided = [r.provides() for r in runners]
    mapper = NameMapper(catalogue, site_map or cohort.site_map or None)
    scores: dict = {}
    for case in cases:
        ct = case_ct(cohort, case)
        reference, _ = reference_segmentation(cohort, case, ct, mapper, catalogue)
        drawn = {s.name for s in reference.structures}
        scores[case.case_id] = {name: {} for name in sorted(drawn, key=lambda n: catalogue.by_name(n).label)}
        for key, runner, provides in zip("AB", runners, provided):
            results = compare_segmentations(runner.labels(case, ct), reference, catalogue)
            for name in drawn:
                r = results.get(name)
                scores[case.case_id][name][key] = ({m: getattr(r, m) for m in METRICS}
                                                   if r is not None and name in provides else None)
    evaluation = Evaluation((runners[0].runs, runners[1].runs), [c.case_id for c in cases], scores,
                            resamples=resamples, seed=seed)
    evaluation.summary = _summary(scores, catalogue, resamples, seed)
    return evaluation


def _summary(scores: dict, catalogue: Catalogue, resamples: int, seed: int) -> dict:
    names = sorted({n for per_case in scores.values() for n in per_case}, key=lambda n: catalogue.by_name(n).label)
    summary = {}
    for name in names:
        rng = np.random.default_rng(seed)
        entry = {"cases": 0, "A": {}, "B": {}, "difference": {}}
        pairs = [v for per_case in scores.values() if name in per_case for v in [per_case[name]]]
        entry["cases"] = sum(1 for p in pairs if p.get("A") is not None and p.get("B") is not None)
        for metric in METRICS:
            for key in "AB":
                values = [p[key][metric] for p in pairs if p.get(key) and p[key][metric] is not None]
                entry[key][metric] = float(np.mean(values)) if values else None
            diffs = np.array([p["B"][metric] - p["A"][metric] for p in pairs if p.get("A") and p.get("B")
                              and p["A"][metric] is not None and p["B"][metric] is not None], dtype=float)
            diffs = diffs[np.isfinite(diffs)]
            interval = bootstrap_interval(diffs, resamples, rng) if len(diffs) else None
            entry["difference"][metric] = {"n": int(len(diffs)), "mean": float(diffs.mean()) if len(diffs) else None,
                                           "ci95": list(interval) if interval else None,
                                           "verdict": verdict(metric, interval, len(diffs))}
        entry["verdict"] = entry["difference"]["dice"]["verdict"]
        summary[name] = entry
    return summary


def evaluation_document(evaluation: Evaluation) -> dict:
    def clean(value):
        if isinstance(value, float):
            return round(value, 6) if math.isfinite(value) else None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    a, b = evaluation.models
    return clean({
        "format": "dkoar-evaluation/1",
        "models": {key: {"identity": m.identity, "manifest_sha256": m.sha256, "folder": str(m.folder),
                         "cases_run": m.computed, "cases_reused": m.reused} for key, m in (("A", a), ("B", b))},
        "cases": evaluation.cases,
        "comparison": "B - A, paired by case; 95 % bootstrap percentile interval of the mean difference",
        "bootstrap": {"resamples": evaluation.resamples, "seed": evaluation.seed},
        "metrics": {"dice": "higher is better", "surface_dice": "at the catalogue's tolerance; higher is better",
                    "hd95_mm": "lower is better", "apl_mm": "added path length; lower is better"},
        "structures": evaluation.summary,
        "per_case": evaluation.scores,
    })

"""The volume range of each structure over the synthetic phantoms, for the guideline cards.

The cards give a typical volume range with its source; where no guideline or adult reference
gives one, the range is the phantom's (said so on the card). This script measures it: the
smallest and largest volume (ml) of each structure over the phantoms of the given seeds (head-first
supine, the default full-size grid), rounded outwards. ``--write`` puts the ranges into the cards
whose ``volume_ml.source`` is ``phantom`` (Resources/guidelines/*.json); others are left alone.

    python -m tools.phantom_volume_ranges --seeds 0 1 2 3 4 5 6 7 8 9 --write
"""

from __future__ import annotations

import argparse
import json
import math

from DKOARSegmentationLib.phantom import generate_phantom
from DKOARSegmentationLib.resources import resources_dir


def _outwards(value: float, up: bool) -> float:
    """Rounded to two significant digits, away from the range's middle."""
    if value <= 0:
        return 0.0
    step = 10 ** (math.floor(math.log10(value)) - 1)
    return round((math.ceil if up else math.floor)(value / step) * step, 6)


def measure(seeds: list[int]) -> dict[str, tuple[float, float]]:
    ranges: dict[str, list[float]] = {}
    for seed in seeds:
        for name, ml in generate_phantom(seed=seed).truth.volumes_ml().items():
            ranges.setdefault(name, []).append(ml)
    return {name: (_outwards(min(v), False), _outwards(max(v), True)) for name, v in ranges.items()}


def write(ranges: dict[str, tuple[float, float]]) -> list[str]:
    changed = []
    for path in sorted((resources_dir() / "guidelines").glob("*.json")):
        if path.name == "sources.json":
            continue
        card = json.loads(path.read_text(encoding="utf-8"))
        if card.get("volume_ml", {}).get("source") != "phantom":
            continue
        lows, highs = zip(*(ranges[name] for name in card["structures"]))
        card["volume_ml"].update(low=min(lows), high=max(highs))
        path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        changed.append(path.name)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--write", action="store_true", help="update the cards whose volume source is the phantom")
    args = parser.parse_args(argv)
    ranges = measure(args.seeds)
    for name, (low, high) in ranges.items():
        print(f"{name:<16} {low:>9g} - {high:<9g} ml")
    if args.write:
        print("updated:", ", ".join(write(ranges)) or "no card")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

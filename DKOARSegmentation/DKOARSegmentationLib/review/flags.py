"""A plausibility flag: which structure, what kind of problem, how serious, in one sentence.

The JSON form (run.json, ``dkoar check --out``, the correction log) is
``{"structure": "Parotid_R", "kind": "side", "severity": "error", "message": "..."}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import DKOARError

KINDS = ("missing", "volume", "fragmented", "side", "outside_body", "order")
SEVERITIES = ("info", "warning", "error")  # in increasing order


@dataclass(frozen=True)
class Flag:
    structure: str
    kind: str
    severity: str
    message: str

    def __post_init__(self):
        if self.kind not in KINDS or self.severity not in SEVERITIES:
            raise ValueError(f"flag kind {self.kind!r} / severity {self.severity!r} unknown")

    @property
    def rank(self) -> int:
        """0 info, 1 warning, 2 error."""
        return SEVERITIES.index(self.severity)

    def as_dict(self) -> dict:
        return asdict(self)


def severity_rank(severity: str | None) -> int:
    """-1 for no flag, else the rank of ``severity``."""
    return -1 if severity is None else SEVERITIES.index(severity)


def worst_severity(flags) -> str | None:
    """The highest severity among ``flags`` (None without flags)."""
    ranks = [f.rank for f in flags]
    return SEVERITIES[max(ranks)] if ranks else None


def by_structure(flags) -> dict[str, list[Flag]]:
    out: dict[str, list[Flag]] = {}
    for flag in flags:
        out.setdefault(flag.structure, []).append(flag)
    return out


def flags_document(flags) -> dict:
    """The JSON document of ``dkoar check --out``: ``{"flags": [...]}``, most serious first."""
    ordered = sorted(flags, key=lambda f: (-f.rank, f.structure, KINDS.index(f.kind)))
    return {"flags": [f.as_dict() for f in ordered]}


def flags_from_json(items, where: str = "flags") -> list[Flag]:
    """Flags back from their JSON form (run.json's ``flags``, a flags file's ``flags``)."""
    out = []
    for item in items or ():
        try:
            out.append(Flag(str(item["structure"]), str(item["kind"]), str(item["severity"]), str(item["message"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise DKOARError(f"{where}: not a plausibility flag ({exc})") from None
    return out

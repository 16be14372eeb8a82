"""Reading a JSON file a user gives (a cohort, a times file): one-line errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import DKOARError


def read_json_file(path: Path | str, what: str):
    """The parsed content of ``path``; DKOARError when it cannot be read or is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DKOARError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except ValueError as exc:
        raise DKOARError(f"{path}: not JSON ({exc})") from None

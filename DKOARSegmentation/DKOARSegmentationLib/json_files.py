"""Reading a JSON file a user gives (a cohort, a times file): one-line errors that name the file, and
a size cap, since a hostile or mistaken file must not fill the memory."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import DKOARError


def read_json_file(path: Path | str, what: str, max_bytes: int | None = None):
    """The parsed content of ``path``; DKOARError when it cannot be read, is larger than
    ``max_bytes``, is not JSON, or is nested too deeply to parse."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise DKOARError(f"{path}: {size} bytes, more than a {what} can be ({max_bytes // 1024} KiB); "
                             f"give the {what}")
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DKOARError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except ValueError as exc:
        raise DKOARError(f"{path}: not JSON ({' '.join(str(exc).split())})") from None
    except RecursionError:  # Python's JSON parser recurses once per level of nesting
        raise DKOARError(f"{path}: nested too deeply to be a {what}") from None

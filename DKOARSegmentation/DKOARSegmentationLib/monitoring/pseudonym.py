"""Keyed pseudonyms for patients and studies: HMAC-SHA256 with a secret kept by the site.

The correction log and everything made from it never hold a patient name, CPR number, birth
date or DICOM UID in clear. A patient is known by HMAC-SHA256(site key, "patient:" + PatientID),
a study by HMAC-SHA256(site key, "study:" + StudyInstanceUID): the same patient gets the same key
at the same site, and nobody without the site key can go back from the key or test a guessed CPR
number against it (a plain hash of a CPR number could be reversed by trying all of them).

The site key is a file of 64 hexadecimal characters (32 random bytes) kept OUTSIDE the log, given
by ``--site-key FILE`` or the environment variable ``DKOAR_SITE_KEY`` (a file path). A missing key
file is created (permissions 0600) and the caller says so: losing it means new pseudonyms for old
patients, so it belongs in the site's backup, not beside the log it protects.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import create_exclusive
from ..errors import DKOARError

ENV_VARIABLE = "DKOAR_SITE_KEY"
_KEY_BYTES = 32
# a key file found short or empty this soon after it was changed may still be being written by
# another process (on a file system without hard links): read it again until then
_WRITING_GRACE_S = 2.0


@dataclass(frozen=True)
class SiteKey:
    secret: bytes
    path: Path | None = None
    created: bool = False  # this call made the key file

    def pseudonym(self, kind: str, value: str) -> str:
        """The keyed hash (hex) of an identifier of the given kind ("patient", "study", ...)."""
        message = f"{kind}:{str(value).strip()}".encode("utf-8")
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    @property
    def fingerprint(self) -> str:
        """A short check value telling keys apart (stored in the log; reveals nothing of the key)."""
        return hmac.new(self.secret, b"dkoar site key fingerprint", hashlib.sha256).hexdigest()[:16]


def key_path_from(argument: Path | str | None) -> Path:
    """The key file named on the command line, else by ``DKOAR_SITE_KEY``."""
    if argument:
        return Path(argument).expanduser()
    env = os.environ.get(ENV_VARIABLE, "").strip()
    if env:
        return Path(env).expanduser()
    raise DKOARError(f"no site key: give --site-key FILE or set {ENV_VARIABLE}=FILE (a missing file is created; "
                     "keep it outside the log and in the site's backup)")


def load_site_key(path: Path | str, create: bool = True) -> SiteKey:
    """Read the site key file, creating it (0600) when missing and ``create`` is true.

    Several processes may start a new log at once: the key file is created whole or not at all
    (``atomic.create_exclusive``), one of them makes it and the others read theirs."""
    path = Path(path)
    if path.is_dir():
        raise DKOARError(f"{path}: a folder; the site key is a file")
    if not path.exists():
        if not create:
            raise DKOARError(f"{path}: no such site key file")
        secret = secrets.token_bytes(_KEY_BYTES)
        if create_exclusive(path, (secret.hex() + "\n").encode("ascii"), mode=0o600):
            os.chmod(path, 0o600)
            return SiteKey(secret, path, created=True)
        # another process made it meanwhile: use theirs
    return _read_key(path)


def _read_key(path: Path) -> SiteKey:
    deadline = time.monotonic() + _WRITING_GRACE_S
    while True:
        try:
            text = path.read_text(encoding="ascii").strip()
            secret = bytes.fromhex(text)
            problem = None if len(secret) >= 16 else f"the site key is too short ({len(secret)} bytes; at least 16)"
        except FileNotFoundError:
            raise DKOARError(f"{path}: no such site key file") from None
        except (OSError, UnicodeDecodeError, ValueError):
            problem = f"not a site key (expected {2 * _KEY_BYTES} hexadecimal characters)"
        if problem is None:
            return SiteKey(secret, path)
        if time.monotonic() > deadline or not _recently_changed(path):
            raise DKOARError(f"{path}: {problem}; give the site key file this log was started with")
        time.sleep(0.05)


def _recently_changed(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < _WRITING_GRACE_S
    except OSError:
        return False


def key_is_private(path: Path | str) -> bool:
    """Whether the key file is readable by its owner only."""
    mode = Path(path).stat().st_mode
    return not (mode & (stat.S_IRWXG | stat.S_IRWXO))

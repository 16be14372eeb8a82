"""The node's settings: a TOML file whose keys are the command's flags (``--ae-title`` is
``ae_title``), every flag given on the command line overriding the file.

    ae_title = "DKOAR"
    host = "127.0.0.1"            # listen on loopback unless the department opens it
    port = 11112
    allow = ["CT_SIM", "PACS"]    # calling AE titles accepted; "*" accepts any caller
    send_to = ["TPS@10.1.2.3:104"]
    work = "/var/lib/dkoar-node"  # queue, received CTs, results, log
    idle_seconds = 30             # a series is complete when no slice came for this long
    model = "/opt/models/national-hn"
    tls_certificate = "/etc/dkoar/node.crt"  # with tls_key: callers must speak TLS

Checked before the node starts, each problem named with its key, so that a typing error in a
file that runs unattended for months is found on the first start, not on the first patient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import DKOARError

ORDERS = ("oldest", "newest", "smallest")
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII without backslash, at most 16


@dataclass(frozen=True)
class Destination:
    """A DICOM peer the results are stored to (C-STORE)."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass
class NodeConfig:
    ae_title: str = "DKOAR"
    host: str = "127.0.0.1"
    port: int = 11112
    allow: list[str] = field(default_factory=list)
    send_to: list[Destination] = field(default_factory=list)
    work: Path = Path("dkoar-node")
    idle_seconds: float = 30.0
    model: Path | None = None  # None: the bundled demonstration model
    device: str = "auto"
    # limits
    max_associations: int = 10
    max_study_mb: float = 4000.0
    min_free_mb: float = 1000.0  # refuse slices when the work folder's disk has less free space left
    # which waiting series is contoured first: callers listed here first (in this order), then `order`
    priority_callers: list[str] = field(default_factory=list)
    order: str = "oldest"
    # what is sent
    send_seg: bool = False  # also a DICOM SEG beside the RTSTRUCT
    failure_rtstruct: bool = True  # a failed series gets an RTSTRUCT whose only ROI names the failure
    missing_slices: str = "fail"  # "fail": a series with a gap is not contoured; "warn": contoured anyway
    keep_input: bool = False  # keep the received CT after its results were delivered
    # delivery: first retry after retry_seconds, doubling up to retry_max_seconds, given up after max_attempts
    retry_seconds: float = 10.0
    retry_max_seconds: float = 900.0
    max_attempts: int = 10
    # TLS for callers (both files, or neither); with tls_ca, callers must show a certificate signed by it
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    site_key: Path | None = None  # keyed pseudonyms of series in the log and status (default: work/site.key)

    @property
    def database(self) -> Path:
        return self.work / "queue.sqlite3"

    def accepts_any_caller(self) -> bool:
        return "*" in self.allow


_PATHS = {"work", "model", "tls_certificate", "tls_key", "tls_ca", "site_key"}
_LISTS = {"allow", "send_to", "priority_callers"}
_NUMBERS = {"idle_seconds", "max_study_mb", "min_free_mb", "retry_seconds", "retry_max_seconds"}
_INTEGERS = {"port", "max_associations", "max_attempts"}
_BOOLEANS = {"send_seg", "failure_rtstruct", "keep_input"}


def parse_destination(text: str, where: str = "--send-to") -> Destination:
    """``AE@HOST:PORT`` as a Destination."""
    match = re.fullmatch(r"(?P<ae>[^@]+)@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d+)", str(text).strip())
    if match is None:
        raise DKOARError(f"{where}: {text!r} is not AE@HOST:PORT (for example TPS@10.1.2.3:104)")
    ae = match["ae"].strip()
    _check_ae_title(ae, where)
    port = int(match["port"])
    if not 0 < port < 65536:
        raise DKOARError(f"{where}: port {port} of {text!r} is not between 1 and 65535")
    return Destination(ae, match["host"].strip("[]"), port)


def _check_ae_title(title: str, where: str) -> None:
    if not _AE_TITLE.match(title) or not title.strip():
        raise DKOARError(f"{where}: {title!r} is not an AE title (1 to 16 printable ASCII characters, no backslash)")


def read_config_file(path: Path | str) -> dict:
    """The file's settings as a dict, unknown keys refused."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise DKOARError("reading a TOML configuration needs Python 3.11 or later; give the settings as "
                         "flags") from None
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DKOARError(f"{path}: cannot be read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DKOARError(f"{path}: not valid TOML ({exc})") from None
    known = {f.name for f in fields(NodeConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise DKOARError(f"{path}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    # relative paths in the file are relative to the file, not to wherever the service starts
    for key in _PATHS & set(values):
        if isinstance(values[key], str) and values[key]:
            candidate = Path(values[key]).expanduser()
            values[key] = candidate if candidate.is_absolute() else path.parent / candidate
    return values


def node_config(file_values: dict | None = None, flags: dict | None = None) -> NodeConfig:
    """The settings: defaults, then the file's, then the flags given (None means not given)."""
    values = dict(file_values or {})
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    config = NodeConfig()
    for key, value in values.items():
        setattr(config, key, _converted(key, value))
    _check(config)
    return config


def _converted(key: str, value):
    where = key
    if key in _LISTS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise DKOARError(f"{where}: a list is expected, not {value!r}")
        if key == "send_to":
            return [v if isinstance(v, Destination) else parse_destination(v, where) for v in value]
        return [str(v).strip() for v in value]
    if key in _PATHS:
        return Path(value).expanduser() if value not in ("", None) else None
    try:
        if key in _INTEGERS:
            if isinstance(value, bool) or int(value) != float(value):
                raise ValueError
            return int(value)
        if key in _NUMBERS:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
    except (TypeError, ValueError):
        raise DKOARError(f"{where}: {value!r} is not a number") from None
    if key in _BOOLEANS:
        if not isinstance(value, bool):
            raise DKOARError(f"{where}: true or false, not {value!r}")
        return value
    return str(value)


def _check(config: NodeConfig) -> None:
    _check_ae_title(config.ae_title, "ae_title")
    for title in config.allow + config.priority_callers:
        if title != "*":
            _check_ae_title(title, "allow" if title in config.allow else "priority_callers")
    if not config.allow:
        raise DKOARError("no caller is allowed: give the calling AE titles of the scanners and systems that send CTs "
                         "(--allow CT_SIM, repeatable, or allow = [...] in the configuration; \"*\" accepts any)")
    if not 0 < config.port < 65536:
        raise DKOARError(f"port: {config.port} is not between 1 and 65535")
    positive = {"idle_seconds": config.idle_seconds, "max_associations": config.max_associations,
                "max_study_mb": config.max_study_mb, "retry_seconds": config.retry_seconds,
                "max_attempts": config.max_attempts}
    for key, value in positive.items():
        if value <= 0:
            raise DKOARError(f"{key}: must be more than 0, not {value}")
    if config.min_free_mb < 0:
        raise DKOARError(f"min_free_mb: must be 0 or more, not {config.min_free_mb}")
    if config.order not in ORDERS:
        raise DKOARError(f"order: {config.order!r} is not one of {', '.join(ORDERS)}")
    if config.missing_slices not in ("fail", "warn"):
        raise DKOARError(f"missing_slices: {config.missing_slices!r} is not fail or warn")
    if (config.tls_certificate is None) != (config.tls_key is None):
        raise DKOARError("TLS needs both tls_certificate and tls_key (or neither)")
    if config.tls_ca is not None and config.tls_certificate is None:
        raise DKOARError("tls_ca checks callers' certificates over TLS: give tls_certificate and tls_key too")
    for key in ("tls_certificate", "tls_key", "tls_ca", "model"):
        path = getattr(config, key)
        if path is not None and not path.exists():
            raise DKOARError(f"{key}: {path}: no such file or folder")

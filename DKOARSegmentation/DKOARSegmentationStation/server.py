"""Starting the station: its options checked before anything starts, who may connect, the server.

Bound to 127.0.0.1 (the default) the station is reachable from this machine only. Bound to any
other address every request needs the access token printed once at start: the first page load
carries it as ``?token=...``, the station answers with a cookie (HttpOnly, SameSite=Strict) and
sends the browser on to the same page without the token in its address, and every later request
(the page's files, its websocket) is checked against the cookie. A request without it gets one
sentence saying what to do.

The station's own log (stderr) says what happens in general words: never a patient name, an ID,
a UID or a path the browser named.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.serving.access import TOKEN_COOKIE, TOKEN_PARAMETER, needs_token, new_token, token_matches

log = logging.getLogger("dkoar.station")

READY_LINE = "dkoar station: ready at"  # the line tests and scripts wait for


@dataclass
class StationOptions:
    data: Path | None = None
    ct: Path | None = None
    model: Path | None = None
    out: Path = Path("station_output")
    log: Path | None = None
    site_key: Path | None = None
    site: str = ""
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8080

    @property
    def log_path(self) -> Path:
        return self.log if self.log is not None else self.out / "corrections.sqlite"


def check_options(options: StationOptions) -> StationOptions:
    """Refuse, before anything starts, what cannot work (DKOARError, one line each)."""
    from DKOARSegmentationLib.atomic import prepare_output_folder

    if options.data is not None and not options.data.is_dir():
        raise DKOARError(f"{options.data}: --data must be a folder")
    if options.ct is not None and not options.ct.exists():
        raise DKOARError(f"{options.ct}: no such file or folder (--ct)")
    if options.model is not None:
        from DKOARSegmentationLib.model.bundle import load_bundle

        load_bundle(options.model, verify=False)  # a folder without its manifest is refused here
    if options.site_key is not None and not options.site_key.parent.is_dir():  # a missing key file is made
        raise DKOARError(f"{options.site_key.parent}: the site key's folder does not exist (--site-key)")
    if not 0 <= options.port <= 65535:
        raise DKOARError(f"--port {options.port}: a port is 0 to 65535")
    try:
        socket.getaddrinfo(options.host, None)
    except (socket.gaierror, UnicodeError):
        raise DKOARError(f"--host {options.host}: not an address of this machine") from None
    prepare_output_folder(options.out)
    if not options.log_path.parent.is_dir():
        raise DKOARError(f"{options.log_path.parent}: the correction log's folder does not exist (--log)")
    return options


def access_middleware(token: str):
    """An aiohttp middleware admitting only requests that carry ``token`` (cookie or first query)."""
    from aiohttp import web

    refusal = ("This DKOAR station needs its access token: open the address it printed when it started "
               "(it ends in ?token=...).")

    @web.middleware
    async def check(request, handler):
        if token_matches(request.cookies.get(TOKEN_COOKIE), token):
            return await handler(request)
        if token_matches(request.query.get(TOKEN_PARAMETER), token):
            # the token leaves the address bar: the cookie carries it from now on
            query = {k: v for k, v in request.query.items() if k != TOKEN_PARAMETER}
            location = request.rel_url.with_query(query)
            response = web.HTTPFound(str(location))
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
            raise response
        log.warning("a request without the access token was refused")
        return web.Response(status=403, text=refusal)

    return check


class _ClosedPage(logging.Filter):
    """A page closed while the server was sending to it: nothing to report."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        text = record.getMessage() + (repr(error) if error is not None else "")
        return not any(sign in text for sign in ("ClientConnectionResetError", "Cannot write to closing transport"))


def _prepare_environment() -> None:
    """Before trame and VTK are imported: only the station's own lines on stderr (the web server's
    access log would print addresses), images sent as they are (JPEG does not compress further;
    deflating every frame costs CPU the slice views need), and without an X display VTK renders
    through EGL directly rather than after a warning that X is missing."""
    import ctypes.util

    for name in ("aiohttp.access", "wslink", "trame_server", "trame_client", "trame_rca"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("asyncio").addFilter(_ClosedPage())
    os.environ.setdefault("WSLINK_WS_COMPRESS", "0")
    if not os.environ.get("DISPLAY") and ctypes.util.find_library("EGL"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    # trame would read sys.argv (dkoar's own options); it gets no options of its own
    os.environ["TRAME_ARGS"] = ""


def serve(options: StationOptions) -> int:
    """Check the options, build the station, print its address (with the token when one is needed)
    once, and serve until interrupted. Returns the exit code."""
    check_options(options)
    logging.basicConfig(level=logging.INFO, format="dkoar station: %(message)s", stream=sys.stderr, force=True)
    _prepare_environment()
    from .app import StationApp

    app = StationApp(options)
    token = new_token() if needs_token(options.host) else None
    server = app.server
    if token is not None:
        def bind(wslink_server) -> None:
            wslink_server.app.middlewares.append(access_middleware(token))

        server.controller.on_server_bind.add(bind)

    def announce(**_) -> None:
        shown = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
        address = f"http://{shown}:{server.port}/"
        if token is not None:
            address += f"?{TOKEN_PARAMETER}={token}"
        print(f"{READY_LINE} {address}", flush=True)  # stdout, once: the token is never logged

    server.controller.on_server_ready.add(announce)
    log.info("starting on %s (%s)", options.host, "access token required" if token else "this machine only")
    server.start(host=options.host, port=options.port, open_browser=False, show_connection_info=False,
                 disable_logging=True, timeout=0)
    app.shutdown()
    return 0

"""Every control of the station's page goes through ``guarded``: a refused input becomes one
message in the page, never a traceback.

A DKOARError (a path outside the data folder, a CT the core refuses, a structure name it does not
know) is shown as it is, as the command line prints it. Anything unexpected becomes one sentence in
the page and, in the station's log, its type and code locations: no message and no values, which
could carry a patient's name or a path.
"""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
from pathlib import Path

from DKOARSegmentationLib.errors import DKOARError

log = logging.getLogger("dkoar.station")


def guarded(method):
    """Run a handler; a refusal or a failure becomes the page's message (see the module docstring)."""
    def report(self, exc: BaseException) -> None:
        if isinstance(exc, DKOARError):
            log.info("%s: refused (the page says why)", method.__name__)
            self.say(str(exc), "error")
            return
        frames = "; ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                           for f in traceback.extract_tb(exc.__traceback__))
        log.error("%s failed with %s at %s", method.__name__, type(exc).__name__, frames)
        self.say(f"Something went wrong ({type(exc).__name__}); the station's log says where. "
                 "Nothing was written.", "error")

    if inspect.iscoroutinefunction(method):
        @functools.wraps(method)
        async def run_async(self, *args, **kwargs):
            try:
                with self.state:
                    self.state.st_busy = True
                return await method(self, *args, **kwargs)
            except Exception as exc:
                with self.state:
                    report(self, exc)
            finally:
                with self.state:
                    self.state.st_busy = False
        return run_async

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            report(self, exc)
    return run

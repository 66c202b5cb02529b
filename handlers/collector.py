"""Garbage collection paused while an entry point loads, and what it loaded frozen out of later collections.

Loading the service allocates what lives as long as the process: modules, classes, the app, the images. The
collections this sets off traverse all of it to free next to nothing — some 15 ms of a Lambda cold start, and
in the server's start-up a full collection on top (30 ms more). Frozen afterwards (`gc.freeze`), those objects
are left out of every later collection too; the collector then runs as usual.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No collection inside the block; on leaving it, what exists is frozen and collection resumes."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()

"""What keeps the operator's memory down at 1,000 sessions: slim live bodies, few malloc arenas."""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import Any

# glibc's mallopt parameter for the most arenas malloc may create (malloc.h).
M_ARENA_MAX = -8
ARENA_MAX = 2


def slim_body(body: Mapping[str, Any]) -> None:
    """Drops metadata.managedFields from the raw body behind kopf's live view of it.

    kopf keeps each session's latest body for its daemon and hands event handlers that same
    body; managedFields (field ownership of every writer: the user, the operator's status
    patches) is the larger part of it and nothing here reads it. Called on every watch event
    of a session, so the body kopf holds never keeps them.
    """
    raw = getattr(body, "_src", body)  # kopf.Body is a view of the raw dict in `_src`
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    if isinstance(meta, dict):
        meta.pop("managedFields", None)


def limit_malloc_arenas(arenas: int = ARENA_MAX) -> bool:
    """Caps glibc's malloc arenas (default 8 per core): False where malloc is not glibc's.

    Each of the pass threads that allocates gets an arena of its own, and freed memory in
    one cannot serve another: at 1,000 sessions that fragmentation was tens of MiB of peak
    RSS. Two arenas serve the event loop and the pool; passes wait on the API server, not
    on malloc's locks. Call it before the threads start.
    """
    # The process's own symbols include its C library's, as app/terminal/heap.py finds
    # malloc_trim: no find_library, which may run ldconfig in a subprocess at start-up.
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))

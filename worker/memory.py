"""The worker's native heap: hand the pages glibc malloc keeps after a burst back to the system.

Much of what a cached rollout costs the worker lives outside Python's heap: the SDK's Rust core
keeps every state machine of a cached run (with each activity's input) until the run ends or is
evicted, and glibc malloc keeps the pages freed after a burst of work (rollouts starting
together, a wave of steps) inside its arenas, where they still count as resident memory.
``malloc_trim(0)`` gives every whole free page back; the worker runs it on a daemon thread every
``TRIM_INTERVAL`` seconds. ``bench.memory_probe`` measures what it saves and how long it takes
(BENCHMARKS.md, "Memory"). Limiting arenas (``M_ARENA_MAX``/``MALLOC_ARENA_MAX`` 1 or 2), the
trim and mmap thresholds and jemalloc were measured too and saved nothing (most of a cached
rollout is live memory), so glibc keeps its defaults.

On a C library without ``malloc_trim`` (musl, macOS) all of this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable
from functools import cache

log = logging.getLogger("coalmine.worker.memory")

TRIM_INTERVAL = 60.0
"""Seconds between two trims: a trim of a worker holding 1,000 rollouts takes milliseconds
(it runs without the GIL), so once a minute costs nothing measurable."""
THREAD_NAME = "coalmine-malloc-trim"

_lock = threading.Lock()
_running: list[threading.Thread] = []  # the process's one trimming thread, once started


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except AttributeError:  # not glibc
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim_function: Callable[[int], int] = function
    return trim_function


def trim() -> bool:
    """Give every whole free page of malloc's arenas back to the system now.

    Returns whether this C library can (glibc); ctypes releases the GIL for the call.
    """
    function = _malloc_trim()
    if function is None:
        return False
    function(0)
    return True


def start_trimming(interval: float = TRIM_INTERVAL) -> threading.Thread | None:
    """Trim every ``interval`` seconds on a daemon thread, one per process.

    Later calls return the running thread (every worker built in a process shares it); None
    where the C library cannot trim.
    """
    if _malloc_trim() is None:
        log.info("malloc_trim is not available: freed native memory stays with the allocator")
        return None
    with _lock:
        if not _running or not _running[0].is_alive():
            thread = threading.Thread(
                target=_trim_every, args=(interval,), name=THREAD_NAME, daemon=True
            )
            thread.start()
            _running[:] = [thread]
        return _running[0]


def _trim_every(interval: float) -> None:
    stop = threading.Event()  # never set: the daemon thread ends with the process
    while not stop.wait(interval):
        trim()

"""The worker gives the native memory freed after a burst back to the system (``worker.memory``).

Each check runs in a fresh interpreter so its resident memory is its own: it frees a large block
of malloc'd memory kept from the top of the heap by one live allocation (as the Rust core's and
Python's live objects keep it in a worker), which ``free`` alone never returns.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

from temporalio.testing import WorkflowEnvironment

from worker import memory
from worker.app import build_worker
from worker.settings import Settings, TemporalSettings

FREED_MB = 64
_SCRIPT = """
import ctypes, sys, time
from pathlib import Path

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
blocks = []
for _ in range({freed_mb} * 256):
    block = libc.malloc(4000)
    ctypes.memset(block, 1, 4000)  # touched: resident
    blocks.append(block)
pin = libc.malloc(4000)  # keeps the freed blocks from the top of the heap
for block in blocks:
    libc.free(block)
before = rss_mb()
{action}
print(before, rss_mb())
"""


def _freed_then(action: str) -> tuple[float, float]:
    """RSS (MB) after freeing FREED_MB of small blocks, and after ``action``."""
    code = _SCRIPT.format(freed_mb=FREED_MB, action=action)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = (float(v) for v in out.stdout.split())
    return before, after


def test_freed_memory_stays_resident_without_a_trim() -> None:
    before, after = _freed_then("time.sleep(0.3)")
    assert after > before - FREED_MB / 4, (before, after)


def test_trim_gives_freed_memory_back() -> None:
    before, after = _freed_then("from worker.memory import trim; assert trim()")
    assert after < before - FREED_MB * 3 / 4, (before, after)


def test_the_trimming_thread_gives_freed_memory_back_on_its_own() -> None:
    action = (
        "from worker.memory import start_trimming\n"
        "assert start_trimming(interval=0.05).daemon\n"
        "time.sleep(0.5)"
    )
    before, after = _freed_then(action)
    assert after < before - FREED_MB * 3 / 4, (before, after)


def _trim_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == memory.THREAD_NAME]


async def test_building_a_worker_starts_one_trimming_thread(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    workers: list[Any] = []
    for queue in ("memory-test-1", "memory-test-2"):
        settings = Settings(temporal=TemporalSettings(task_queue=queue))
        worker = build_worker(time_skipping_env.client, settings, api_client=None, activities=[])
        workers.append(worker)
    threads = _trim_threads()
    assert len(threads) == 1
    assert threads[0].is_alive()
    assert threads[0].daemon

"""The worker's memory of its last writes: bounded, least recently written forgotten first."""

from __future__ import annotations

from activities.kubernetes.last_writes import LastWrites


def test_beyond_the_limit_the_least_recently_written_is_forgotten() -> None:
    writes = LastWrites(limit=2)
    writes.put(("ns", "a"), {"v": 1})
    writes.put(("ns", "b"), {"v": 2})
    writes.put(("ns", "a"), {"v": 3})  # written again: now the most recent
    writes.put(("ns", "c"), {"v": 4})
    assert writes.get(("ns", "b")) is None
    assert writes.get(("ns", "a")) == {"v": 3}
    assert writes.get(("ns", "c")) == {"v": 4}
    writes.forget(("ns", "a"))
    assert writes.get(("ns", "a")) is None

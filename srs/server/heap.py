"""The garbage collector of a long-running srs process.

The RTP path allocates a few short-lived objects per packet; with CPython's default
thresholds (a young collection every 700 allocations, a full one every 100 young ones)
a media process spends about 1.5 us a packet collecting (bench/bench_receive.py), most
of it walking the objects that live as long as the process: modules, settings, tables.
So, once start-up is done, those are frozen out of every later collection
(``gc.freeze``), and young collections run less often.  Reference cycles are still
collected; srs's own data has few.
"""

from __future__ import annotations

import gc

__all__ = ["settle_heap", "YOUNG_THRESHOLD"]

YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Call once the process has started (imports done, listeners bound)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)

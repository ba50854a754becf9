"""The garbage collector as a long-running server of this runtime wants it.

CPython runs a collection of its youngest generation after every 700 container objects
allocated and not yet freed, and a full one every hundred of those. A relay answering a
POST allocates hundreds (the request, its headers, models, JSON, the answer), so the
defaults collected every two or three messages and scanned every object the process holds
(~65k: modules, classes, schemas, caches) every ~200: 15% of the relay's CPU a message at
~1800 messages a second (bench/relay_e2e.py; README, "The relay"). Almost nothing a request
allocates is cyclic garbage: it is freed by reference counting, so collecting less often
costs little memory.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "tune_for_serving"]

# A young collection after this many container objects allocated and not yet freed.
YOUNG_THRESHOLD = 10_000


def tune_for_serving() -> None:
    """For a process about to serve until it is stopped (the daemon, the relay, the relay's
    writer): call once, after its imports. What exists now (modules, classes, functions)
    lives as long as the process and is never scanned again; collections run ~14 times
    less often (a full one still every hundred young ones, and only when the objects
    surviving since the last one are a quarter of those it kept)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)

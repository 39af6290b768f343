"""The garbage collector set for a long-running server process.

CPython's cycle collector runs a young-generation pass every 700 net allocations
and a full pass over every tracked object now and then. A server process holds
tens of thousands of objects from start-up (modules, functions, the registry)
that never become garbage, and each request or job allocates dozens of short-
lived ones. In the ingress under load (bench/ingress.py) the collector took a
share of the process's time worth saving: young passes over the objects of the
requests in flight, and full passes over every start-up object, each a latency
spike (bench/README.md has the figures).

So, once start-up is done: the start-up objects are frozen (moved to a
generation no collection looks at), and a young pass waits for 10,000 net
allocations instead of 700. Reference counting still frees nearly everything
at once; only objects in reference cycles wait a little longer for the
collector.
"""

from __future__ import annotations

import gc

# Net allocations of tracked objects between young-generation passes.
YOUNG_THRESHOLD = 10_000


def tune_collector() -> None:
    """Freeze what start-up made and space the young passes out; call once, when
    the process has loaded everything and before it starts serving."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)

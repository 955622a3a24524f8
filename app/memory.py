"""What the process does about memory once, at start: where large blocks come from, and
how often Python's cyclic garbage collector runs."""

import ctypes
import gc
import threading

# Objects allocated (less those freed) between two young-generation collections. CPython's
# 700 runs one every few deltas at load; each costs little, but the full collections they
# lead to scanned every object the SDK and the framework made at import.
GC_THRESHOLD = 10_000


def return_large_blocks() -> None:
    """Have glibc's malloc serve blocks of 128 KiB and more (request bodies, up to 32 MB
    each, and their parsed copies) straight from the OS and give them straight back.

    By default its threshold for that rises to the size of the largest block freed, so after
    a few large uploads later ones come from the heap, which does not shrink: measured with
    eight 8 MB bodies at once, the peak was 2.4-3.0 bodies' worth per body with up to 127 MB
    kept after they were dropped, against 2.1 and nothing with a fixed threshold
    (tests/test_body.py). The same as `MALLOC_MMAP_THRESHOLD_=131072`; not glibc, a no-op.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD


def settle_gc() -> None:
    """Move everything alive after start-up (modules, the SDK's types, the app) out of the
    collector's sight, and collect the young generation less often.

    py-spy put the cyclic collector at 18% of the CPU per delta at 500 streams, and full
    collections were the tail of cancellation latency. What start-up made lives as long as
    the process: scanning it again and again finds nothing. Only for a process of its own
    (the main thread's): the tests run many relays in one process, on another thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, older, oldest)

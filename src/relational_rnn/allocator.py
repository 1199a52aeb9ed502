"""Keep freed memory in the process for reuse, instead of handing it back to the system.

A training step frees and allocates the same large tensors every step. With its default
settings glibc's malloc returns much of that memory to the system when it is freed
(blocks above an adaptive threshold are unmapped, and the free top of the heap is
trimmed), so the next step faults the same pages in afresh: thousands of page faults
per step, each with a page to zero. ``keep_freed_memory`` makes malloc keep the memory
instead; docs/performance.md measures what that gains.
"""

from __future__ import annotations

import ctypes
import platform
import sys

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: about 2 GiB


def keep_freed_memory(top_pad_mib: int = 64) -> bool:
    """Make glibc's malloc keep freed memory for reuse; process-wide, for later allocations.

    Sets ``M_MMAP_MAX`` to 0 (every block comes from the heap, none from a mapping of its
    own that is unmapped when freed; a cap on the mapping threshold would not do, since
    glibc caps it at 32 MiB and an LSTM's buffers are larger), ``M_TRIM_THRESHOLD`` to
    about 2 GiB (the free top of the heap is not returned) and ``M_TOP_PAD`` to
    ``top_pad_mib`` MiB (the heap grows in steps of at least that much). The resident
    set then stays near its peak instead of shrinking between steps.

    Returns True if glibc accepted the settings, False where the C library is not glibc
    (nothing is changed there).
    """
    if not isinstance(top_pad_mib, int) or isinstance(top_pad_mib, bool) or top_pad_mib < 0:
        raise ValueError(f"top_pad_mib must be an int >= 0, got {top_pad_mib!r}")
    if top_pad_mib << 20 > TRIM_THRESHOLD:
        raise ValueError(f"top_pad_mib must be below 2048, got {top_pad_mib}")
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this process already uses
    settings = (
        (M_MMAP_MAX, 0),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, top_pad_mib << 20),
    )
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)

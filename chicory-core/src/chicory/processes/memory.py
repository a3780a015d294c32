"""How much memory this process holds: its resident set size (RSS), from the standard library.

On Linux, ``/proc/self/statm`` gives the current RSS. Elsewhere the standard library only
knows the *peak* RSS (``resource.getrusage``), which is what recycling then compares: a
process that once grew past the limit is recycled. Nothing here needs psutil.
"""

from __future__ import annotations

import os
import sys

__all__ = ["rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident set size in bytes (the peak where the current is unknown)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)

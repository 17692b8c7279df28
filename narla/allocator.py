"""Keep freed tensor memory in the process: glibc's malloc otherwise makes the CPU hot path page-fault.

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks above its *mmap threshold* with fresh ``mmap``
pages and gives the top of the heap back to the system once more than its *trim threshold* is free there. Both
thresholds adapt to the sizes seen so far, so whether a tick's megabyte-sized activations (``[n, B, H]``, 2 MB
for 15 neurons × 256 copies × 128 units) land on reused heap memory or on new pages that must be faulted in and
zeroed depends on what the process allocated before. Measured on this project's 5-layer network at B = 256, the
same tick ran 1.3M or 2.2M neuron-steps/s depending only on allocations made earlier in the process.

:func:`hold_freed_memory` fixes both thresholds (blocks under 256 MiB from the heap, the heap trimmed only past
1 GiB free), which makes the speed independent of history. The cost is that up to about 1 GiB of freed memory
may stay mapped in the process. :class:`narla.engine.Engine` calls it once per process; set
``NARLA_MALLOC=system`` to keep glibc's own policy. Elsewhere than Linux with glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

MMAP_THRESHOLD = 256 << 20  # bytes: smaller blocks come from the heap, which is reused without new page faults
TRIM_THRESHOLD = 1 << 30  # bytes of free memory at the heap's top before malloc gives it back to the system
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter codes, from glibc's malloc.h
ENV = "NARLA_MALLOC"
_state: dict[str, bool] = {}


def hold_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process (see the module doc); True when they are set.

    Does nothing (False) off Linux/glibc, or when the environment variable ``NARLA_MALLOC`` is ``system``.
    """
    if "applied" in _state:
        return _state["applied"]
    applied = False
    choice = os.environ.get(ENV, "hold")
    if choice not in ("hold", "system"):
        raise ValueError(f"{ENV}: unknown value {choice!r}; allowed: hold (the default), system")
    if choice == "hold" and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    _state["applied"] = applied
    return applied

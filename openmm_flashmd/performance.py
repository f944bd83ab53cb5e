"""Process settings that make the networks' CPU evaluations cheaper.

A PET forward allocates tens of MB of temporaries (token features of every edge). glibc's
``malloc`` serves blocks above its mmap threshold (128 KiB, raised dynamically) with fresh
``mmap`` pages and returns them with ``munmap`` when freed, so every large tensor of every
forward pass page-faults again (``benchmarks/malloc_tuning.py`` measures a FlashMD step with
and without this tuning: page faults, system and user time, wall time).
:func:`tune_malloc` tells glibc to serve every block from its heap (``M_MMAP_MAX`` 0) and to
return freed memory at the top of the heap to the system only beyond 1 GiB
(``M_TRIM_THRESHOLD``), so freed blocks are reused by the next forward pass. The process keeps up
to that much freed memory instead of returning it. (Raising only the mmap threshold is not
enough: glibc caps it at 32 MiB, and at 3,000 atoms most temporaries are larger.)

Every ``TorchForce`` this package builds (stride force, PET MLIP, metatomic MLIP) calls it, through
:func:`openmm_flashmd._plugins.torch_force`, and so does the trainer; it acts once per process.
Set ``OPENMM_FLASHMD_MALLOC_TUNING=0`` to leave glibc's defaults alone. It does nothing where the
C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Optional

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: Freed memory at the top of the heap above this is returned to the system (bytes).
TRIM_THRESHOLD_BYTES = 2**30
#: Environment variable: "0" disables :func:`tune_malloc`.
ENVIRONMENT_SWITCH = "OPENMM_FLASHMD_MALLOC_TUNING"

_state: Optional[bool] = None


def tune_malloc() -> bool:
    """Keep freed memory in glibc's heap (see the module docstring); idempotent.

    Returns True when glibc accepted both settings (now or at an earlier call), False where
    it is disabled by ``OPENMM_FLASHMD_MALLOC_TUNING=0``, the C library is not glibc, or
    ``mallopt`` refused.
    """
    global _state
    if _state is not None:
        return _state
    _state = False
    if os.environ.get(ENVIRONMENT_SWITCH, "1").strip() == "0":
        return _state
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: raises AttributeError elsewhere)
    except (OSError, AttributeError):
        return _state
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _state = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _state

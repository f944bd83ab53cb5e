"""Tests of openmm_flashmd.performance (process-level malloc tuning)."""

import os
import subprocess
import sys

import pytest

PROBE = ("import openmm_flashmd.performance as p; first = p.tune_malloc(); print(first, p.tune_malloc() == first)")


def run_probe(**env):
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_tune_malloc_applies_once_and_can_be_switched_off():
    assert run_probe(OPENMM_FLASHMD_MALLOC_TUNING="1") == ["True", "True"]  # glibc accepts; idempotent
    assert run_probe(OPENMM_FLASHMD_MALLOC_TUNING="0") == ["False", "True"]


MALLINFO = """
import ctypes, sys, torch, openmm_flashmd.performance as p
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "1":
    p.tune_malloc()
before = libc.mallinfo2().hblkhd
x = torch.empty(25_000_000)  # 100 MB, alive
live = libc.mallinfo2().hblkhd - before  # bytes the tensor added to mmapped blocks
del x
print(live, libc.mallinfo2().fordblks)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallinfo2: Linux only")
def test_large_tensors_come_from_the_heap_and_stay_there():
    """glibc's own accounting (mallinfo2): untuned, a live 100 MB tensor is an mmapped block
    (returned to the system when freed, so the next one page-faults again); tuned, it comes from
    the heap and its memory stays there, free for the next allocation."""
    out = {}
    for tuned in ("0", "1"):
        result = subprocess.run([sys.executable, "-c", MALLINFO, tuned], capture_output=True, text=True, check=True)
        out[tuned] = [int(v) for v in result.stdout.split()]
    mapped_untuned, _ = out["0"]
    mapped_tuned, free_in_heap_tuned = out["1"]
    assert mapped_untuned >= 100_000_000
    assert mapped_tuned == 0
    assert free_in_heap_tuned >= 100_000_000

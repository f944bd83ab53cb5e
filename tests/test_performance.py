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


def test_large_tensors_stop_page_faulting_after_tuning():
    """Freed large blocks are reused: after a few warm-up rounds, 100 MB temporaries cost
    (almost) no new page faults once tuned, and about one per page without the tuning."""
    code = ("import resource, torch, openmm_flashmd.performance as p, sys\n"
            "if sys.argv[1] == '1': p.tune_malloc()\n"
            "for _ in range(5):\n    x = torch.full((25_000_000,), 1.0); del x\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(3):\n    y = torch.full((25_000_000,), 1.0); del y\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)")
    faults = {}
    for tuned in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", code, tuned], capture_output=True, text=True, check=True)
        faults[tuned] = int(out.stdout.split()[-1])
    pages = 3 * 100_000_000 // 4096
    assert faults["0"] > 0.5 * pages  # glibc maps fresh pages for each 100 MB tensor
    assert faults["1"] < 0.01 * pages

"""Long runs keep their memory: two FlashMD runs sharing the cores stay flat over thousands of strides."""

import pytest

from flashmd_data_helpers import load_benchmark


@pytest.mark.slow
def test_two_concurrent_alanine_runs_keep_a_flat_resident_set():
    """benchmarks/memory_watch.py's protocol (about a minute on 2 cores). With the stride force
    evaluated in grad mode, runs like these grew by about 530 MiB per 1000 strides; under
    ``torch.no_grad`` they stay within a few MiB, and identical runs give identical energies."""
    bench = load_benchmark("memory_watch")
    runs = bench.watch("alanine-dipeptide-implicit-hbonds-8fs", strides=3000, every=750, runs=2)
    for run in runs:
        assert run["growth_mib_per_1000_strides"] < 5.0, [s["rss_mib"] for s in run["samples"]]
    energies = [[s["kinetic_kjmol"] for s in run["samples"]] for run in runs]
    assert energies[0] == energies[1]

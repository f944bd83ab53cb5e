"""Benchmark: a FlashMD step with and without :func:`openmm_flashmd.performance.tune_malloc`.

For lattice-built flexible-water boxes with a PET MLIP as the only potential (the set-up of
``benchmarks/step_profile.py``: default hypers, random weights, float32, 16 fs, "O F E O" with
the energy filter), runs child processes that build the System and integrator and time
``--steps`` steps, alternately with the tuning (the default) and without it
(``OPENMM_FLASHMD_MALLOC_TUNING=0``), ``--rounds`` times each, and reports per step the median
over rounds of wall time, user and system CPU time and minor page faults, and the ratios
tuned / untuned. Child processes are needed because the setting is process-wide.

    python benchmarks/malloc_tuning.py [--sizes 32 100 333 1000] [--rounds 3] [--steps 5] [--threads 1]
                                       [--output benchmarks/results/malloc_tuning.json] [--overwrite]

Times in ms per step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import stack_info, write_json  # noqa: E402

FIELDS = ("wall_ms", "user_ms", "sys_ms", "minor_faults")


def child(n_molecules: int, steps: int, threads: int) -> None:
    """Build one size, warm up, time ``steps`` steps; print one JSON line."""
    import torch

    torch.set_num_threads(threads)
    import openmm_flashmd  # noqa: F401
    from openmm_flashmd.performance import tune_malloc
    from step_profile import build

    calls = build(n_molecules, "CPU", 0, parts=False)
    for _ in range(3):
        calls["step"]()
    walls = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        start = time.perf_counter()
        calls["step"]()
        walls.append((time.perf_counter() - start) * 1e3)
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"tuned": tune_malloc(), "wall_ms": statistics.median(walls),
                      "user_ms": (after.ru_utime - before.ru_utime) / steps * 1e3,
                      "sys_ms": (after.ru_stime - before.ru_stime) / steps * 1e3,
                      "minor_faults": (after.ru_minflt - before.ru_minflt) / steps}))


def run_child(n_molecules: int, steps: int, threads: int, tuned: bool) -> dict:
    env = dict(os.environ, OPENMM_FLASHMD_MALLOC_TUNING="1" if tuned else "0")
    out = subprocess.run([sys.executable, __file__, "--child", str(n_molecules), "--steps", str(steps),
                          "--threads", str(threads)], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["tuned"] != tuned:
        raise RuntimeError(f"the child reports tuned={result['tuned']}, expected {tuned}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 100, 333, 1000], help="water molecules")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per setting and size (alternated)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per child")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the children")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "malloc_tuning.json")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.steps, args.threads)
        return 0
    if args.output.exists() and not args.overwrite:
        print(f"{args.output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    start = time.perf_counter()
    rows = []
    for n in args.sizes:
        samples = {True: [], False: []}
        for _ in range(args.rounds):
            for tuned in (False, True):
                samples[tuned].append(run_child(n, args.steps, args.threads, tuned))
        medians = {("tuned" if t else "untuned"): {f: statistics.median(s[f] for s in samples[t]) for f in FIELDS}
                   for t in (True, False)}
        ratios = {f: medians["tuned"][f] / medians["untuned"][f] for f in ("wall_ms", "user_ms")}
        ratios["cpu_ms"] = ((medians["tuned"]["user_ms"] + medians["tuned"]["sys_ms"])
                            / (medians["untuned"]["user_ms"] + medians["untuned"]["sys_ms"]))
        rows.append({"n_molecules": n, "n_atoms": 3 * n, **medians, "ratio_tuned_over_untuned": ratios,
                     "samples": {("tuned" if t else "untuned"): samples[t] for t in (True, False)}})
        print(f"{3 * n:6d} atoms: " + "; ".join(
            f"{k}: " + ", ".join(f"{f} {v:.1f}" for f, v in medians[k].items()) for k in medians)
            + "; tuned/untuned " + ", ".join(f"{f} {v:.3f}" for f, v in ratios.items()), flush=True)
    write_json(args.output, {
        "benchmark": "malloc_tuning", "description": __doc__.split("\n\n")[1].replace("\n", " "),
        "rounds": args.rounds, "steps": args.steps, "threads": args.threads, "results": rows,
        "wall_s": time.perf_counter() - start, "stack": stack_info(), "command": "python " + " ".join(sys.argv),
    }, args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())

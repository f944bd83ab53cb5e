"""Resident memory of long FlashMD runs: does a run's memory stay flat over thousands of strides?

    python benchmarks/memory_watch.py [MODEL] [--strides 4000] [--every 1000] [--runs 2] [--label L] [--overwrite]

Starts ``--runs`` identical child processes at once (the same model on its built-in system,
"O F E O" at 300 K, the stride monitor on, CPU platform, one thread each, integrator seed 7)
and records each child's resident set size (VmRSS, MiB) every ``--every`` strides. Running
two at once is part of the protocol: before 2026-12-03 a stride force evaluated in grad mode
made TorchScript's graph executor accumulate memory in some runs (alanine 8 fs: about 0.53 MB
per stride, every time two runs shared the two cores; 23 GB after 4,000 strides of a
258-water run), and a lone run often stayed flat. Writes ``benchmarks/results/memory_watch.json``: per run the RSS series, the
growth per 1,000 strides after the first sample (a least-squares slope), the kinetic energy
at each sample (identical runs must agree), the git commit of the code measured, with machine
and stack; ``--label`` names the entry (default: the model).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import single_thread_env, stack_info, write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "memory_watch.json"

CHILD = r"""
import json, sys
import openmm_flashmd  # noqa: F401  (torch before openmm)
import openmm, torch
from openmm import unit
from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd.model.bundled import split_model_name
from openmm_flashmd.systems import get_system

torch.set_num_threads(1)
model, strides, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


built = get_system(split_model_name(model)[0])
integrator = FlashMDIntegrator(built.system, model, temperature=300 * unit.kelvin, splitting="O F E O")
integrator.setRandomNumberSeed(7)
context = openmm.Context(built.system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
context.setPositions(built.positions)
context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
for done in range(every, strides + 1, every):
    integrator.step(every)
    ke = context.getState(getEnergy=True).getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
    print(json.dumps({"strides": done, "rss_mib": rss_mib(), "kinetic_kjmol": ke}), flush=True)
"""


def watch(model: str, strides: int, every: int, runs: int) -> List[dict]:
    """Run ``runs`` children at once; their samples (strides, rss_mib, kinetic_kjmol)."""
    env = single_thread_env()
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, model, str(strides), str(every)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(runs)]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a child run failed:\n{err[-2000:]}")
        samples = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        x = np.array([s["strides"] for s in samples], dtype=float)
        y = np.array([s["rss_mib"] for s in samples])
        slope = float(np.polyfit(x, y, 1)[0] * 1000) if len(x) > 2 else None
        results.append({"samples": samples, "growth_mib_per_1000_strides": slope})
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="alanine-dipeptide-implicit-hbonds-8fs",
                        help="bundled model name (default %(default)s)")
    parser.add_argument("--strides", type=int, default=4000)
    parser.add_argument("--every", type=int, default=1000, help="strides between samples")
    parser.add_argument("--runs", type=int, default=2, help="identical runs started together")
    parser.add_argument("--label", help="name of the entry in the JSON (default: the model)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    merged = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "memory_watch", "models": {}}
    label = args.label or args.model
    if label in merged["models"] and not args.overwrite:
        raise SystemExit(f"{args.out} has a result for {label}; pass --overwrite to replace it")
    began = time.perf_counter()
    runs = watch(args.model, args.strides, args.every, args.runs)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip() or None
    merged["models"][label] = {
        "model": args.model, "commit": commit, "strides": args.strides, "every": args.every, "concurrent_runs": args.runs,
        "protocol": "O F E O, 300 K, stride monitor on, CPU platform, 1 thread per run, integrator seed 7",
        "runs": runs, "wall_s": time.perf_counter() - began, "threads_per_run": 1, "stack": stack_info(),
    }
    write_json(args.out, merged, overwrite=True)
    for k, run in enumerate(runs):
        rss = [round(s["rss_mib"]) for s in run["samples"]]
        print(f"run {k}: RSS {rss} MiB, growth {run['growth_mib_per_1000_strides']:.1f} MiB per 1000 strides")
    return 0


if __name__ == "__main__":
    sys.exit(main())

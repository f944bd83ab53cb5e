"""How often reference MD itself passes `simulate`'s temperature trust check.

    python benchmarks/trust_check_power.py [--system water-rigid] [--time 10 40 ...] [--seeds 20] [--threads 1]
                                           [--overwrite]

Runs reference MD (LangevinMiddleIntegrator, friction 1/ps, the built-in system's reference
timestep, CPU platform) under the start protocol of ``openmm-flashmd simulate`` (200
iterations of energy minimisation, velocities drawn at the temperature with the seed) for
``--time`` ps, once per seed; samples every 0.16 ps (simulate's report interval) and applies
the report's temperature check (:func:`openmm_flashmd.analysis.report.temperature_check`:
overall and per-element means of the second half within 5 K of what reference MD reads)
to each run. A check that a run of exact dynamics fails most of the time cannot tell a good
stride model from a bad one at that length. Writes ``benchmarks/results/trust_check_power.json``:
per-run deviations (K), the pass fraction and the spread of the deviations per element.
Units: ps, K.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import stack_info, write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "trust_check_power.json"
REPORT_INTERVAL_PS = 0.16  # simulate's default


def run_once(built, seed: int, duration_ps: float, timestep_ps: float, threads: int):
    """Per-column mean temperatures (K) of the second half of one reference run."""
    import openmm
    from openmm import unit

    from openmm_flashmd.analysis.thermo import kinetic_temperature, temperature_by_element

    system = built.system
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
    elements = [atom.element.symbol for atom in built.topology.atoms()]
    integrator = openmm.LangevinMiddleIntegrator(built.temperature * unit.kelvin, 1.0 / unit.picosecond,
                                                 timestep_ps * unit.picoseconds)
    integrator.setRandomNumberSeed(seed + 1)  # OpenMM draws a fresh seed for 0
    platform = openmm.Platform.getPlatformByName("CPU")
    context = openmm.Context(system, integrator, platform, {"Threads": str(threads)})
    context.setPositions(built.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    context.setVelocitiesToTemperature(built.temperature * unit.kelvin, seed + 1)
    steps = int(round(REPORT_INTERVAL_PS / timestep_ps))
    n_samples = int(round(duration_ps / REPORT_INTERVAL_PS))
    frames = []
    for _ in range(n_samples):
        integrator.step(steps)
        frames.append(context.getState(getVelocities=True).getVelocities(asNumpy=True).value_in_unit(
            unit.nanometer / unit.picosecond))
    second = np.asarray(frames[n_samples // 2:])
    dof = 3 * len(masses) - system.getNumConstraints()
    means = {"all": float(np.mean(kinetic_temperature(second, masses, dof)))}
    means.update({e: float(np.mean(v)) for e, v in temperature_by_element(second, masses, elements).items()})
    return means


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="water-rigid", help="built-in system with a reference record")
    parser.add_argument("--time", type=float, nargs="+", default=[10.0, 40.0],
                        help="ps per run, one or more lengths (simulate's default: 10)")
    parser.add_argument("--seeds", type=int, default=20, help="number of runs (seeds 0..N-1)")
    parser.add_argument("--timestep", type=float, default=0.002, help="reference MD timestep, ps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing result")
    args = parser.parse_args(argv)

    from openmm_flashmd.analysis.report import MAX_TEMPERATURE_DEVIATION, expected_temperatures, temperature_check
    from openmm_flashmd.systems import get_system
    from openmm_flashmd.systems.references import reference_temperatures

    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"{args.out} exists; pass --overwrite to replace it")
    if reference_temperatures(args.system) is None:
        raise SystemExit(f"{args.system} has no bundled reference temperatures")
    built = get_system(args.system)
    elements = sorted({atom.element.symbol for atom in built.topology.atoms()})
    expected = expected_temperatures(built.temperature, ["all"] + elements,  # what simulate's report expects
                                     {"system": args.system, "constraints": built.system.getNumConstraints()})
    start, lengths = time.perf_counter(), []
    for duration in args.time:
        runs = []
        for seed in range(args.seeds):
            means = run_once(built, seed, duration, args.timestep, args.threads)
            passed, text, _ = temperature_check(means, expected)
            runs.append({"seed": seed, "passed": passed,
                         "deviation_K": {k: means[k] - expected[k] for k in expected if k in means}})
            print(f"{duration:g} ps, seed {seed}: {'pass' if passed else 'FAIL'} {text}", flush=True)
        deviations = {k: [r["deviation_K"][k] for r in runs] for k in expected}
        lengths.append({"time_ps": duration, "judged_window_ps": duration / 2,
                        "pass_fraction": float(np.mean([r["passed"] for r in runs])),
                        "deviation_sd_K": {k: float(np.std(v, ddof=1)) for k, v in deviations.items()},
                        "deviation_mean_K": {k: float(np.mean(v)) for k, v in deviations.items()}, "runs": runs})
        print(f"reference MD passed the check in {lengths[-1]['pass_fraction']:.0%} of {args.seeds} runs of "
              f"{duration:g} ps; SD of the deviations: "
              + ", ".join(f"{k} {v:.1f} K" for k, v in lengths[-1]["deviation_sd_K"].items()), flush=True)
    result = {"benchmark": "trust-check-power", "system": args.system, "timestep_ps": args.timestep,
              "friction_per_ps": 1.0, "threshold_K": MAX_TEMPERATURE_DEVIATION, "expected_K": expected,
              "seeds": args.seeds, "lengths": lengths, "wall_s": time.perf_counter() - start,
              "threads": args.threads, "stack": stack_info()}
    write_json(args.out, result, overwrite=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

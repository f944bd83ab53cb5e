"""How often reference MD itself, or a stride model, passes `simulate`'s temperature trust check.

    python benchmarks/trust_check_power.py [--system water-rigid] [--time 10 40 ...] [--seeds 20] [--threads 1]
                                           [--model NAME] [--overwrite] [--first-seed F] [--add-to EARLIER.json]
    python benchmarks/trust_check_power.py --merge EARLIER.json LATER.json --out OUT.json

Runs reference MD (LangevinMiddleIntegrator, friction 1/ps, the built-in system's reference
timestep, CPU platform) under the start protocol of ``openmm-flashmd simulate`` (200
iterations of energy minimisation, velocities drawn at the temperature with the seed), once
per seed for the longest ``--time``, and judges each shorter length on the run's first part
(a run of that length with the same start and seed); samples every 0.16 ps (simulate's report
interval) and applies the report's temperature check
(:func:`openmm_flashmd.analysis.report.temperature_check`: the second half's mean temperature
overall, per element and, in a solvent, of the molecules' translation and rotation, within 5 K
of what each should read, not judged where the window's statistical error is too large to
resolve 5 K) to each run.
A check that a run of exact dynamics fails most of the time cannot tell a good stride model
from a bad one at that length. Writes ``benchmarks/results/trust_check_power.json``: per-run
deviations and standard errors (K) and verdicts; per length the fractions passed, failed and
not judged, the spread of the deviations across runs per element and the mean of the runs'
own standard errors (which should match that spread if the report's error estimate is
right). With ``--model`` the runs are ``openmm-flashmd simulate`` runs of that bundled model or
model file instead (:func:`openmm_flashmd.simulate.simulate`, its defaults, the seed), judged the
same way from their logs, and the result goes to ``trust_check_power-<model>.json``, with each
run's other failed trust checks. ``--first-seed F --add-to EARLIER.json`` runs seeds F, F+1, ...
and adds them to an earlier result of the same settings; ``--merge`` adds the runs of one
finished result to another's (two processes, one per core) without running anything. Units: ps, K.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import refuse_existing, stack_info, write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "trust_check_power.json"
REPORT_INTERVAL_PS = 0.16  # simulate's default
VERDICTS = {True: "passed", False: "failed", None: "not_judged"}  # temperature_check's verdicts


def reference_series(built, seed: int, duration_ps: float, timestep_ps: float, threads: int,
                     platform_name: str = "CPU") -> Dict[str, np.ndarray]:
    """The temperature series (K) one reference run gives every ``REPORT_INTERVAL_PS``, under the
    names the report reads from simulate's log: ``all``, each element and, in a solvent, the
    molecules' ``translation`` and ``rotation`` (computed as :class:`FlashMDReporter` does).
    The Reference platform repeats a run bit for bit; the CPU platform's minimiser does not."""
    import openmm
    from openmm import unit

    from openmm_flashmd.analysis.molecules import solvent_molecules
    from openmm_flashmd.analysis.thermo import (degrees_of_freedom, kinetic_temperature, molecule_temperatures,
                                                removes_centre_of_mass_motion, system_masses,
                                                temperature_by_element)

    system = built.system
    masses = system_masses(system)
    elements = [atom.element.symbol for atom in built.topology.atoms()]
    integrator = openmm.LangevinMiddleIntegrator(built.temperature * unit.kelvin, 1.0 / unit.picosecond,
                                                 timestep_ps * unit.picoseconds)
    integrator.setRandomNumberSeed(seed + 1)  # OpenMM draws a fresh seed for 0
    platform = openmm.Platform.getPlatformByName(platform_name)
    context = openmm.Context(system, integrator, platform, {"Threads": str(threads)} if platform_name == "CPU" else {})
    context.setPositions(built.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    context.setVelocitiesToTemperature(built.temperature * unit.kelvin, seed + 1)
    molecules = solvent_molecules(context)
    steps = int(round(REPORT_INTERVAL_PS / timestep_ps))
    positions, velocities, boxes = [], [], []
    for _ in range(int(round(duration_ps / REPORT_INTERVAL_PS))):
        integrator.step(steps)
        state = context.getState(getPositions=bool(molecules), getVelocities=True)
        velocities.append(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))
        if molecules:
            positions.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
            boxes.append(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
    velocities = np.asarray(velocities)
    series = {"all": kinetic_temperature(velocities, masses, degrees_of_freedom(system))}
    series.update(temperature_by_element(velocities, masses, elements))
    if molecules:
        box = np.asarray(boxes) if system.usesPeriodicBoundaryConditions() else None
        motion = molecule_temperatures(np.asarray(positions), velocities, masses, molecules, box,
                                       removes_centre_of_mass_motion(system))
        series.update({k: v for k, v in motion.items() if v is not None})
    return series


def prefix(series: Dict[str, np.ndarray], duration_ps: float) -> Dict[str, np.ndarray]:
    """The first ``duration_ps`` (ps) of series sampled every ``REPORT_INTERVAL_PS``: a run of
    that length under the same start protocol and seed."""
    n = int(round(duration_ps / REPORT_INTERVAL_PS))
    return {k: v[:n] for k, v in series.items()}


def run_model_once(system: str, model: str, seed: int, duration_ps: float, threads: int):
    """Per-column mean temperatures and standard errors (K) over the second half of one
    ``simulate`` run of ``model``, and the report's other failed trust checks."""
    import tempfile

    import openmm

    from openmm_flashmd.analysis.report import failed_checks, read_log, second_half_statistics, temperature_series
    from openmm_flashmd.simulate import simulate

    # simulate() takes the CPU platform's default threads (OPENMM_CPU_THREADS is read only when openmm loads)
    openmm.Platform.getPlatformByName("CPU").setPropertyDefaultValue("Threads", str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        run = simulate(Path(tmp) / "run", system=system, model=model, duration=duration_ps, seed=seed,
                       platform="CPU", progress=False)
        columns = read_log(run.log)
        others = [c for c in failed_checks(run.report) if not c.startswith("temperature within")]
    return (*second_half_statistics(temperature_series(columns)), others)


def summarize_length(duration_ps: float, runs: List[Dict]) -> Dict:
    """One length's entry: its runs, the shares of verdicts, and per column the mean and spread
    (SD across runs) of the deviations and the mean of the runs' own standard errors (K)."""
    columns = list(runs[0]["deviation_K"])
    deviations = {k: [r["deviation_K"][k] for r in runs] for k in columns}
    return {"time_ps": duration_ps, "judged_window_ps": duration_ps / 2,
            "within_threshold_fraction": float(np.mean([r["within_threshold"] for r in runs])),
            **{f"{v}_fraction": float(np.mean([r["verdict"] == v for r in runs])) for v in VERDICTS.values()},
            "deviation_sd_K": {k: float(np.std(v, ddof=1)) if len(v) > 1 else None for k, v in deviations.items()},
            "mean_standard_error_K": {k: float(np.mean([r["standard_error_K"][k] for r in runs])) for k in columns},
            "deviation_mean_K": {k: float(np.mean(v)) for k, v in deviations.items()}, "runs": runs}


#: What two results must share for the runs of one to be added to the other.
SAME_SETTINGS = ("system", "model", "timestep_ps", "friction_per_ps", "threshold_K", "confidence_standard_errors",
                 "expected_K", "threads")


def refuse_other_settings(earlier: Dict, current: Dict, keys, name: str) -> None:
    """Stop with one line when ``earlier`` (read from ``name``) differs from ``current`` in any of ``keys``."""
    differ = [k for k in keys if earlier.get(k) != current.get(k)]
    if differ:
        raise SystemExit(f"{name} was measured with other settings ({', '.join(differ)})")


def add_runs(result: Dict, earlier: Dict, name: str) -> Dict:
    """``result`` with the runs of ``earlier`` (a result of the same settings, :data:`SAME_SETTINGS`,
    read from ``name``) added length by length, their summaries recomputed and wall times summed;
    lengths only ``earlier`` has are kept. A seed in both is refused (the same run twice)."""
    refuse_other_settings(earlier, result, SAME_SETTINGS, name)
    by_length = {row["time_ps"]: row["runs"] for row in earlier["lengths"]}
    for row in result["lengths"]:
        runs = by_length.get(row["time_ps"], []) + row["runs"]
        seeds = [r["seed"] for r in runs]
        if len(set(seeds)) < len(seeds):
            raise SystemExit(f"{name} already holds runs of {row['time_ps']:g} ps with seed(s) "
                             + ", ".join(str(s) for s in sorted({s for s in seeds if seeds.count(s) > 1})))
        by_length[row["time_ps"]] = runs
    lengths = [summarize_length(t, runs) for t, runs in sorted(by_length.items())]
    return {**result, "lengths": lengths, "seeds": max(len(row["runs"]) for row in lengths),
            "wall_s": result["wall_s"] + earlier["wall_s"]}


def _read(path: Path) -> Dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot read {path}: {error}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="water-rigid", help="built-in system with a reference record")
    parser.add_argument("--time", type=float, nargs="+", default=[10.0, 40.0],
                        help="ps per run, one or more lengths (simulate's default: 400 for water-rigid, else 10)")
    parser.add_argument("--seeds", type=int, default=20, help="number of runs (seeds F..F+N-1)")
    parser.add_argument("--first-seed", type=int, default=0, help="F, the first seed (default 0)")
    parser.add_argument("--timestep", type=float, default=0.002, help="reference MD timestep, ps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", help="judge `simulate` runs of this bundled model or model file instead")
    parser.add_argument("--out", type=Path, help="JSON to write (default: benchmarks/results/"
                                                 "trust_check_power.json, or trust_check_power-<model>.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing result")
    parser.add_argument("--add-to", type=Path, help="add these runs (other seeds: --first-seed) to this earlier "
                                                    "result of the same settings; the whole goes to --out (default: "
                                                    "that file)")
    parser.add_argument("--merge", type=Path, nargs=2, metavar=("EARLIER", "LATER"),
                        help="run nothing: write EARLIER with LATER's runs added (two processes' results) to --out")
    args = parser.parse_args(argv)
    if args.merge:
        if args.out is None:
            raise SystemExit("--merge needs --out")
        refuse_existing(args.out, args.overwrite)
        earlier, later = (_read(path) for path in args.merge)
        write_json(args.out, add_runs(later, earlier, str(args.merge[0])), overwrite=True)
        return 0

    from openmm_flashmd.analysis.report import (MAX_TEMPERATURE_DEVIATION, TEMPERATURE_CONFIDENCE,
                                                expected_temperatures, second_half_statistics, temperature_check)
    from openmm_flashmd.systems import get_system
    from openmm_flashmd.systems.references import reference_temperatures

    args.out = args.out or args.add_to or (OUT if args.model is None
                                           else OUT.with_name(f"{OUT.stem}-{Path(args.model).stem}.json"))
    earlier = None
    if args.add_to is not None:  # read before the runs: a file that cannot take them fails now, not hours later
        earlier = _read(args.add_to)
        given = {"system": args.system, "model": args.model, "timestep_ps": None if args.model else args.timestep,
                 "threads": args.threads}  # the settings known before any run; the rest are checked after
        refuse_other_settings(earlier, given, given, str(args.add_to))
    if args.out != args.add_to:
        refuse_existing(args.out, args.overwrite)
    if reference_temperatures(args.system) is None:
        raise SystemExit(f"{args.system} has no bundled reference temperatures")
    built = get_system(args.system)
    settings = {"system": args.system, "constraints": built.system.getNumConstraints()}
    start, lengths, reference_runs = time.perf_counter(), [], {}
    for duration in args.time:
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if args.model is None:  # one run per seed, as long as the longest length, judged on its prefixes
                if seed not in reference_runs:
                    reference_runs[seed] = reference_series(built, seed, max(args.time), args.timestep, args.threads)
                (means, errors), others = second_half_statistics(prefix(reference_runs[seed], duration)), None
            else:
                means, errors, others = run_model_once(args.system, args.model, seed, duration, args.threads)
            expected = expected_temperatures(built.temperature, list(means), settings)  # what the report expects
            verdict, text, _ = temperature_check(means, expected, errors, duration / 2)
            runs.append({"seed": seed, "verdict": VERDICTS[verdict],
                         **({} if others is None else {"other_failed_checks": others}),
                         "within_threshold": verdict is not False,  # only a deviation beyond it fails
                         "deviation_K": {k: means[k] - expected[k] for k in expected},
                         "standard_error_K": {k: errors[k] for k in expected}})
            print(f"{duration:g} ps, seed {seed}: {VERDICTS[verdict]}: {text}", flush=True)
        lengths.append(summarize_length(duration, runs))
        row = lengths[-1]
        print(f"{duration:g} ps, {args.seeds} runs of {args.model or 'reference MD'}: "
              f"within {MAX_TEMPERATURE_DEVIATION:g} K "
              f"{row['within_threshold_fraction']:.0%}; verdicts passed {row['passed_fraction']:.0%}, failed "
              f"{row['failed_fraction']:.0%}, not judged {row['not_judged_fraction']:.0%}; SD of the deviations "
              + ", ".join(f"{k} {v:.1f}" if v is not None else f"{k} -" for k, v in row["deviation_sd_K"].items())
              + " K; mean standard error "
              + ", ".join(f"{k} {v:.1f}" for k, v in row["mean_standard_error_K"].items()) + " K", flush=True)
    result = {"benchmark": "trust-check-power", "system": args.system, "model": args.model,
              "timestep_ps": None if args.model else args.timestep,
              "friction_per_ps": 1.0, "threshold_K": MAX_TEMPERATURE_DEVIATION,
              "confidence_standard_errors": TEMPERATURE_CONFIDENCE, "expected_K": expected,
              "seeds": args.seeds, "lengths": lengths, "wall_s": time.perf_counter() - start,
              "threads": args.threads, "stack": stack_info()}
    if earlier is not None:
        result = add_runs(result, earlier, str(args.add_to))
    write_json(args.out, result, overwrite=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Translation and rotation of rigid water molecules: FlashMD models against reference MD.

    python benchmarks/molecule_motion.py [--models water-rigid-16fs water-rigid-8fs ...]
        [--seeds 1 2 3] [--lengths quick|full] [--threads N] [--out FILE] [--overwrite]

The built-in ``water-rigid`` System (64 TIP3P waters, SETTLE) at 300 K, Langevin friction 1/ps:
minimise, draw velocities, equilibrate, then sample every 96 fs. Reference MD
(LangevinMiddleIntegrator at the System's reference timestep) runs once per seed; each model
runs FlashMD with the energy filter ("O F E O", the default splitting) from the same start.
Reported per run (means ± standard errors of 10 blocks, K): the molecules' translational and
rotational temperatures (:func:`openmm_flashmd.analysis.thermo.molecule_temperatures`; in
equilibrium both equal the thermostat's, reference MD's included) and the per-element kinetic
temperatures the validation judges. In rigid water the hydrogens' temperature is mostly the
molecules' rotation and the oxygens' mostly their translation: energy moving from one to the
other shows as hot hydrogens and cold oxygens with the overall temperature unchanged.

Writes ``benchmarks/results/molecule_motion.json`` (rendered into the README by
``benchmarks/report.py``). Units: ps, K, s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_run_options, refuse_existing, stack_info, write_json  # noqa: E402

from openmm_flashmd.validation import compare  # noqa: E402
from openmm_flashmd.validation.runs import fallback_record  # noqa: E402
from openmm_flashmd.validation.sampling import advance  # noqa: E402
from openmm_flashmd.validation.target import COLLISION_RATE, Target  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "molecule_motion.json"
SYSTEM = "water-rigid"
SPLITTING = "O F E O"
LENGTHS = {"full": dict(equil_ps=5.0, run_ps=60.0, sample_ps=0.096, blocks=10),
           "quick": dict(equil_ps=0.096, run_ps=0.384, sample_ps=0.032, blocks=4)}


def measure(target: Target, model, seed: int, lengths: Dict[str, float]) -> Dict[str, Any]:
    """One run of ``model`` (None: reference MD) from the minimised start with velocities drawn with
    ``seed``: its temperatures (K) and wall time (s)."""
    import copy

    import openmm
    from openmm import unit

    system = copy.deepcopy(target.system)
    if model is None:
        integrator, dt = target.langevin(), target.timestep
    else:
        integrator = target.flashmd(system, model, SPLITTING, COLLISION_RATE)
        dt = integrator.stride
    integrator.setRandomNumberSeed(seed)
    context = target.start_context(system, integrator)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    context.setVelocitiesToTemperature(target.temperature * unit.kelvin, seed)
    interval = max(1, int(round(lengths["sample_ps"] / dt)))
    label = "reference MD" if model is None else f"FlashMD {SPLITTING}"
    advance(context, integrator, dt, lengths["equil_ps"], interval, f"{label} equilibration", progress=target.progress)
    recorder = target.recorder(molecules=True)
    run = advance(context, integrator, dt, lengths["run_ps"], interval, label, recorder,
                  t0=lengths["equil_ps"], progress=target.progress)
    blocks = int(lengths["blocks"])
    out = {"seed": seed, "timestep_ps": dt, "completed_ps": run["done_ps"], "failed_at_ps": run["failed_at_ps"],
           "error": run["error"], "wall_s": run["wall_s"],
           "temperature_K": compare.temperature_summary(recorder.temperatures(), blocks, target.temperature),
           "molecule_temperature_K": compare.temperature_summary(recorder.molecule_temperatures(), blocks,
                                                                 target.temperature)}
    if model is not None:
        out["fallback"] = fallback_record(integrator)
    return out


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["water-rigid-16fs", "water-rigid-8fs"],
                        help="bundled model names or .pt files")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3],
                        help="reference MD runs once per seed; each model with the first seed")
    parser.add_argument("--model-seeds", type=int, default=1, help="how many of the seeds each model runs")
    add_run_options(parser, LENGTHS, OUT)
    args = parser.parse_args(argv)
    refuse_existing(args.out, args.overwrite)
    from openmm_flashmd import load_model

    lengths = LENGTHS[args.lengths]
    target = Target.builtin(SYSTEM, threads=args.threads, progress=not args.no_progress)
    runs: List[Dict[str, Any]] = []
    started = time.time()
    for seed in args.seeds:
        runs.append({"model": "reference MD", **measure(target, None, seed, lengths)})
    for name in args.models:
        model = load_model(name)
        for seed in args.seeds[:args.model_seeds]:
            runs.append({"model": Path(name).stem, **measure(target, model, seed, lengths)})
    write_json(args.out, {"benchmark": "molecule_motion", "system": SYSTEM, "splitting": SPLITTING,
                          "collision_rate_per_ps": COLLISION_RATE, "temperature_K": target.temperature,
                          "lengths_mode": args.lengths, "lengths": lengths, "threads": args.threads,
                          "wall_s": time.time() - started, "stack": stack_info(), "runs": runs}, args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How a stride model's NVE energy moves with the size of the water box it runs in.

    python benchmarks/nve_box_size.py [--models water-rigid-16fs ...] [--sizes 64 128 256] [--seeds 1 2 3]
        [--cutoff NM] [--lengths quick|full] [--threads 1] [--out FILE] [--overwrite]

The built-in ``water-rigid`` box (rigid TIP3P, PME, cutoff ``min(0.9, 0.49 x edge)`` nm) at each
``--sizes`` number of waters (``--cutoff``: one nonbonded cutoff, nm, for every size instead): minimise, draw velocities at 300 K with the seed, Langevin MD
(reference timestep, friction 1/ps) for ``equil_ps``, then NVE from that state for ``nve_ps``:
FlashMD without the energy filter and without the stride monitor ("F", what the blog protocol
runs, so nothing holds the energy), and reference velocity Verlet at 1 fs as the control. Reported
per run: the total energy's change from the start per water (kJ/mol), averaged over the last
``end_ps``, and the kinetic temperature there (K); per model and size, their mean and spread.

``--random-rotation on off`` runs every model twice from the same starts: as the integrator runs
by default (the system turned by a random orthogonal matrix around every stride) and without
that rotation ("<model> (no rotation)"). PET is not equivariant by construction, so the part of
a stride that depends on the frame becomes noise under the rotation; this shows whether that
noise, rather than the frame-fixed error it replaces, moves the energy.

A model whose strides are the same function of an atom's neighbourhood in every box (they are:
a box and its periodic replica give one stride the same numbers per atom) can still gain energy
in one box size and lose it in another, through the states its own trajectories visit; a model
trained on 64-water boxes and run on the blog's 258 waters is judged there.

Writes ``benchmarks/results/nve_box_size.json``. Units: ps, K, kJ/mol.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_run_options, refuse_existing, stack_info, write_json  # noqa: E402
from blog_nve import nve_run  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "nve_box_size.json"
TEMPERATURE = 300.0  # K
REFERENCE_NVE_TIMESTEP = 0.001  # ps, velocity Verlet
LENGTHS = {"full": dict(equil_ps=5.0, nve_ps=2.0, end_ps=0.5, sample_ps=0.016),
           "quick": dict(equil_ps=0.05, nve_ps=0.096, end_ps=0.032, sample_ps=0.016)}


def box_target(n_waters: int, threads: int, progress: bool, cutoff: Optional[float] = None):
    """The built-in rigid water box with ``n_waters`` molecules (nonbonded ``cutoff`` in nm, the
    built-in's default when None) as a validation target, no fallback."""
    from openmm import unit

    from openmm_flashmd.systems import get_system
    from openmm_flashmd.validation.target import Target

    built = get_system("water-rigid", n_molecules=n_waters, cutoff=cutoff)
    target = Target(f"water-rigid-{n_waters}", built.system, built.topology,
                    built.positions.value_in_unit(unit.nanometer), TEMPERATURE, float(built.reference_timestep),
                    threads=threads, fallback=False, progress=progress)
    return target, built.options["cutoff"]


def start_state(target, seed: int, lengths: Dict[str, float]):
    """Minimise, velocities at 300 K with ``seed``, Langevin MD for ``equil_ps``: the NVE start."""
    import openmm
    from openmm import unit

    from openmm_flashmd.validation.sampling import State, advance

    integrator = target.langevin()
    integrator.setRandomNumberSeed(seed)
    context = target.start_context(copy.deepcopy(target.system), integrator)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 1000)
    context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, seed)
    advance(context, integrator, target.timestep, lengths["equil_ps"], 1000, "equilibration", progress=target.progress)
    return State.from_context(context)


def nve(target, start, model, lengths: Dict[str, float], n_waters: int, random_rotation: bool = True
        ) -> Dict[str, Any]:
    """NVE from ``start`` (blog_nve's run): FlashMD "F" with ``model`` (with or without the per-stride
    random rotation), or velocity Verlet when ``model`` is None."""
    from openmm_flashmd.data.generate import velocity_verlet_integrator

    system = copy.deepcopy(target.system)
    if model is None:
        integrator, dt, groups = velocity_verlet_integrator(REFERENCE_NVE_TIMESTEP, 1e-6), REFERENCE_NVE_TIMESTEP, None
    else:
        integrator = target.flashmd(system, model, "F", random_rotation=random_rotation)
        dt, groups = integrator.stride, integrator.energy_force_groups
    run = nve_run(system, integrator, start, dt, {**lengths, "start_ps": lengths["end_ps"]}, target, "NVE", groups)
    series = run.pop("series")
    t, total = np.asarray(series["time"]), np.asarray(series["E_total"])
    end = t >= t[-1] - lengths["end_ps"]
    return {key: run[key] for key in ("completed_ps", "failed_at_ps", "error", "wall_s")} | {
        "energy_change_per_water_kjmol": float((total[end].mean() - total[0]) / n_waters),
        "T_start_K": float(series["T"][0]), "T_end_K": run["T_end_K"]}


def summary(values: List[float]) -> Dict[str, Any]:
    values = [v for v in values if np.isfinite(v)]
    return {"mean": float(np.mean(values)) if values else None,
            "min": float(np.min(values)) if values else None,
            "max": float(np.max(values)) if values else None,
            "positive": int(sum(v > 0 for v in values)), "runs": len(values)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["water-rigid-16fs", "water-rigid-8fs"],
                        help="bundled model names or .pt files")
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256], help="waters per box")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--cutoff", type=float, default=None,
                        help="nonbonded cutoff (nm) of every box; default: the built-in's min(0.9, 0.49 x edge)")
    parser.add_argument("--random-rotation", nargs="+", choices=["on", "off"], default=["on"],
                        help="run FlashMD with the per-stride random rotation (on, the integrator's default), "
                             "without it (off), or both from the same starts")
    add_run_options(parser, LENGTHS, OUT)
    args = parser.parse_args(argv)
    refuse_existing(args.out, args.overwrite)

    from openmm_flashmd import load_model

    lengths = LENGTHS[args.lengths]
    models = {}  # result name -> (model, random rotation)
    for name in args.models:
        model = load_model(name)
        for setting in args.random_rotation:
            models[Path(name).stem + ("" if setting == "on" else " (no rotation)")] = (model, setting == "on")
    started = time.time()
    runs: List[Dict[str, Any]] = []
    cutoffs = {}
    for n_waters in args.sizes:
        target, cutoffs[n_waters] = box_target(n_waters, args.threads, not args.no_progress, args.cutoff)
        for seed in args.seeds:
            start = start_state(target, seed, lengths)
            for name, (model, rotation) in [("reference MD", (None, False)), *models.items()]:
                runs.append({"model": name, "waters": n_waters, "seed": seed,
                             **nve(target, start, model, lengths, n_waters, rotation)})
    by_size = {name: {str(n): summary([r["energy_change_per_water_kjmol"] for r in runs
                                        if r["model"] == name and r["waters"] == n]) for n in args.sizes}
               for name in ["reference MD", *models]}
    write_json(args.out, {"benchmark": "nve_box_size", "system": "water-rigid", "temperature_K": TEMPERATURE,
                          "splitting": "F", "fallback": False, "random_rotation": args.random_rotation,
                          "cutoff_nm": {str(n): c for n, c in cutoffs.items()},
                          "reference_nve_timestep_ps": REFERENCE_NVE_TIMESTEP, "lengths_mode": args.lengths,
                          "lengths": lengths, "threads": args.threads, "wall_s": time.time() - started,
                          "stack": stack_info(), "energy_change_per_water_kjmol": by_size, "runs": runs},
                   args.overwrite)
    for name, sizes in by_size.items():
        print(name, "  ".join(f"{n} waters: {s['mean']:+.3f} ({s['positive']}/{s['runs']} > 0)"
                              for n, s in sizes.items() if s["mean"] is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a FlashMD step's time goes: a profile per stage on an OpenMM platform.

For lattice-built flexible-water boxes with a PET MLIP as the only potential (the set-up of
``benchmarks/speed.py``: default hypers, random weights, float32, a 16 fs stride), times in
one run, interleaved, the median of ``--repeats`` blocks:

* ``step``: one ``FlashMDIntegrator`` step, splitting "O F E O" (thermostat, stride, energy
  filter, thermostat), stride monitor on;
* ``step_no_thermostat``: the same step without the thermostat ("F E"); the difference is
  the cost of the two O half-steps (``thermostat``);
* evaluations of the stride ``TorchForce`` through the stages of the staged protocol
  (:mod:`openmm_flashmd.integrator.adapter`), which acts on a stage only after the one before
  it: ``idle`` (stage 0, returns zeros: the cost of a ``TorchForce`` call itself), ``probe``
  (stage 1, stores ``x + s v``), ``probe_stride`` (stages 1 and 2: the model runs) and
  ``probe_stride_return`` (stages 1-3); their differences are the ``stride`` and the
  ``velocity_return`` stage;
* ``filter_energy``: the MLIP's potential energy alone (energy-only ``TorchForce``
  evaluation, what the filter needs);
* ``bare_stride_forward`` and ``bare_energy_forward``: the same two networks called from
  PyTorch under ``torch.no_grad`` (the physical limit of a stride).

Derived per size: ``program_rest`` = step without thermostat − (probe + stride + velocity
return + filter energy), the integrator program's own arithmetic (per-dof updates, sums,
monitor); ``overhead_ratio`` = step / (bare stride forward + bare energy forward) (issue 14's
goal: ≤ 1.05). Stage evaluations go through ``Context.getState`` on the stride's force group,
so each includes one ``getState`` call (``idle`` measures that floor).

    python benchmarks/step_profile.py [--sizes 32 100 333 1000] [--repeats 5] [--threads 1]
                                      [--output benchmarks/results/step_profile_cpu.json] [--overwrite]

Times in ms per call; sizes in water molecules (3 atoms each).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fit_exponent, stack_info, write_json  # noqa: E402

STRIDE = 0.016  # ps
TEMPERATURE = 300.0  # K


def build(n_molecules: int, platform_name: str, seed: int, parts: bool = True) -> Dict[str, Callable[[], object]]:
    """The timed calls of one box size, by name (each call does one unit of work); ``parts=False``:
    the full step only. The networks are ``benchmarks/speed.py``'s (same hypers and seeds)."""
    import openmm
    from openmm import unit

    from openmm_flashmd import FlashMDIntegrator
    from openmm_flashmd.analysis.thermo import system_masses
    from openmm_flashmd.integrator.flashmd import STRIDE_FORCE_NAME
    from openmm_flashmd.model.mlip import create_mlip_system
    from openmm_flashmd.systems import water_box
    from speed import make_models

    stride_models, energy, _ = make_models([STRIDE], torch.float32, torch.device("cpu"), seed)
    model = stride_models[STRIDE]
    water = water_box(n_molecules=n_molecules, seed=seed)
    platform = openmm.Platform.getPlatformByName(platform_name)
    calls: Dict[str, Callable[[], object]] = {}
    keep = []
    for name, splitting in (("step", "O F E O"), ("step_no_thermostat", "F E"))[: 2 if parts else 1]:
        system = create_mlip_system(water.topology, energy)
        groups = {f.getForceGroup() for f in system.getForces() if not isinstance(f, openmm.CMMotionRemover)}
        integrator = FlashMDIntegrator(system, model, temperature=TEMPERATURE * unit.kelvin if "O" in splitting
                                       else None, collision_rate=1.0 / unit.picosecond, splitting=splitting,
                                       energy_force_groups=groups, topology=water.topology, random_seed=seed + 2,
                                       max_displacement=None, random_rotation=False)
        context = openmm.Context(system, integrator, platform)
        context.setPositions(water.positions)
        context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, seed + 3)
        integrator.step(2)
        keep.append(context)
        calls[name] = lambda integrator=integrator: integrator.step(1)
        if name != "step" or not parts:
            continue
        stride_group = next(f.getForceGroup() for f in system.getForces() if f.getName() == STRIDE_FORCE_NAME)

        def stages(*ks: int, context=context, group=stride_group) -> None:
            for k in ks:  # the adapter acts on a stage only after the one before it (its phase)
                context.setParameter("flashmd_stage", k)
                context.getState(getForces=True, groups={group})
            context.setParameter("flashmd_stage", 0)

        calls["idle"] = lambda: stages(0)
        calls["probe"] = lambda: stages(1)
        calls["probe_stride"] = lambda: stages(1, 2)
        calls["probe_stride_return"] = lambda: stages(1, 2, 3)
        calls["filter_energy"] = lambda context=context, groups=groups: context.getState(getEnergy=True,
                                                                                          groups=groups)
        state = context.getState(getPositions=True, getVelocities=True)
        x = torch.tensor(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        v = torch.tensor(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))
        box = torch.tensor(np.array(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))
        masses = torch.tensor(system_masses(system), dtype=torch.float64)
        numbers = torch.tensor([a.element.atomic_number for a in water.topology.atoms()])

        def bare_stride() -> None:
            with torch.no_grad():
                model(x, v, masses, numbers, box)

        def bare_energy() -> None:
            with torch.no_grad():
                energy(x.float(), numbers, box.float())

        calls["bare_stride_forward"] = bare_stride
        calls["bare_energy_forward"] = bare_energy
    calls["_keep"] = keep  # the Contexts must outlive the calls
    return calls


def time_calls(calls: Dict[str, Callable[[], object]], repeats: int, inner: int) -> Dict[str, Dict[str, float]]:
    """Median / min / max ms per call, the calls interleaved within each of ``repeats`` rounds."""
    names = [k for k in calls if not k.startswith("_")]
    for name in names:  # warm-up: TorchScript's profiling executor optimises during the first calls
        for _ in range(3):
            calls[name]()
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            start = time.perf_counter()
            for _ in range(inner):
                calls[name]()
            samples[name].append((time.perf_counter() - start) / inner * 1e3)
    return {name: {"median": statistics.median(s), "min": min(s), "max": max(s)} for name, s in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 100, 333, 1000], help="water molecules")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median reported)")
    parser.add_argument("--inner", type=int, default=3, help="calls per timed block")
    parser.add_argument("--platform", default="CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "step_profile_cpu.json")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if args.output.exists() and not args.overwrite:
        print(f"{args.output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    import openmm_flashmd  # noqa: F401  (torch before the openmm-torch plugins)

    start = time.perf_counter()
    rows = []
    for n in args.sizes:
        calls = build(n, args.platform, args.seed)
        ms = time_calls(calls, args.repeats, args.inner)
        med = {k: v["median"] for k, v in ms.items()}
        derived = {
            "stride": med["probe_stride"] - med["probe"],
            "velocity_return": med["probe_stride_return"] - med["probe_stride"],
            "thermostat": med["step"] - med["step_no_thermostat"],
            "program_rest": med["step_no_thermostat"] - med["probe_stride_return"] - med["filter_energy"],
            "overhead_ratio": med["step"] / (med["bare_stride_forward"] + med["bare_energy_forward"]),
            "stride_over_bare": (med["probe_stride"] - med["probe"]) / med["bare_stride_forward"],
            "filter_over_bare": med["filter_energy"] / med["bare_energy_forward"],
        }
        rows.append({"n_molecules": n, "n_atoms": 3 * n, "ms": ms, "derived": derived})
        print(f"{3 * n:6d} atoms: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items())
              + " ms; " + ", ".join(f"{k} {v:.2f}" for k, v in derived.items()), flush=True)
    sizes = [r["n_atoms"] for r in rows]
    exponents = {k: fit_exponent(sizes, [r["ms"][k]["median"] for r in rows]) for k in rows[0]["ms"]}
    write_json(args.output, {
        "benchmark": "step_profile", "description": __doc__.split("\n\n")[1].replace("\n", " "),
        "platform": args.platform, "stride_ps": STRIDE, "model": "PET default hypers, random weights, float32",
        "repeats": args.repeats, "inner": args.inner, "results": rows, "scaling_exponents": exponents,
        "threads": torch.get_num_threads(), "wall_s": time.perf_counter() - start, "stack": stack_info(),
        "command": "python " + " ".join(sys.argv),
    }, args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())

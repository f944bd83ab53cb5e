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
* ``filter_energy``: the MLIP's potential energy alone, as the filter asks for it: a
  ``CustomIntegrator`` step that reads ``energy`` with the MLIP force's
  ``flashmd_energy_only`` parameter at 1 (no autograd graph; see
  :mod:`openmm_flashmd.model.energy`); ``filter_energy_graph`` the same without the
  parameter (the graph is built and dropped: what every filter evaluation cost before);
* ``step_graph``: the ``step`` on a System whose MLIP force does not declare the parameter
  (A/B of the energy-only evaluations inside the full step);
* ``bare_stride_forward`` and ``bare_energy_forward``: the same two networks called from
  PyTorch under ``torch.no_grad``, frozen TorchScript as openmm-torch runs them (the
  physical limit of a stride).

Every ``step`` is one ``integrator.step(1)`` call; ``step_pair`` (``step_graph_pair``) one
``integrator.step(2)`` call. Each call starts with one potential-energy evaluation that the
steps inside a call reuse (``FlashMDIntegrator.step`` cannot know whether the Context changed
since its last call), so a step inside a run costs ``step_in_run`` = step_pair − step and each
call ``call_overhead`` = 2 step − step_pair more.

Derived per size: ``program_rest`` = step without thermostat − (probe + stride + velocity
return + filter energy), the rest of a single-step call (the call's energy evaluation, the
integrator program's own arithmetic); ``overhead_ratio`` = step / (bare stride forward + bare
energy forward) and ``overhead_ratio_in_run`` = step_in_run / (the same) (issue 14's goal:
≤ 1.05); ``energy_only_gain`` = step_graph / step and ``energy_only_gain_in_run`` the same
for steps inside a run. Stage evaluations go through
``Context.getState`` on the stride's force group, so each includes one ``getState`` call
(``idle`` measures that floor). Each sample records wall time and the process's CPU time
(``cpu_ms``; every computation here runs on one thread, so it is robust to other jobs on
the machine).

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


def mlip_system(topology, energy, declare_energy_only: bool):
    """The PET MLIP System of ``topology``; ``declare_energy_only=False``: its MLIP force without the
    energy-only parameter (as every MLIP force was before it existed)."""
    import openmm

    from openmm_flashmd._plugins import torch_force
    from openmm_flashmd.model.mlip import MLIP_FORCE_NAME, MLIPForceModule, create_mlip_system

    system = create_mlip_system(topology, energy)
    if not declare_energy_only:
        index = next(i for i, f in enumerate(system.getForces()) if f.getName() == MLIP_FORCE_NAME)
        group = system.getForce(index).getForceGroup()
        system.removeForce(index)
        numbers = torch.tensor([a.element.atomic_number for a in topology.atoms()])
        force = torch_force(torch.jit.script(MLIPForceModule(energy, numbers, None)))
        force.setUsesPeriodicBoundaryConditions(True)
        force.setForceGroup(group)
        system.addForce(force)
    return system, {f.getForceGroup() for f in system.getForces() if not isinstance(f, openmm.CMMotionRemover)}


def energy_reader(system, groups, platform, positions, declare_energy_only: bool):
    """A Context whose integrator step only reads the potential energy of ``groups`` (as the
    filter does, with the energy-only parameter at 1 when the force declares it)."""
    import openmm

    from openmm_flashmd.model.energy import ENERGY_ONLY_PARAMETER

    (group,) = groups
    integrator = openmm.CustomIntegrator(0.001)
    integrator.addGlobalVariable("e", 0.0)
    integrator.addComputePerDof("x", "x")  # invalidates the cached energy
    if declare_energy_only:
        integrator.addComputeGlobal(ENERGY_ONLY_PARAMETER, "1")
    integrator.addComputeGlobal("e", f"energy{group}")
    if declare_energy_only:
        integrator.addComputeGlobal(ENERGY_ONLY_PARAMETER, "0")
    context = openmm.Context(system, integrator, platform)
    context.setPositions(positions)
    return context, integrator


def build(n_molecules: int, platform_name: str, seed: int, parts: bool = True) -> Dict[str, Callable[[], object]]:
    """The timed calls of one box size, by name (each call does one unit of work); ``parts=False``:
    the full step only. The networks are ``benchmarks/speed.py``'s (same hypers and seeds)."""
    import openmm
    from openmm import unit

    from openmm_flashmd import FlashMDIntegrator
    from openmm_flashmd.analysis.thermo import system_masses
    from openmm_flashmd.integrator.flashmd import STRIDE_FORCE_NAME
    from openmm_flashmd.systems import water_box
    from speed import make_models

    stride_models, energy, _ = make_models([STRIDE], torch.float32, torch.device("cpu"), seed)
    model = stride_models[STRIDE]
    water = water_box(n_molecules=n_molecules, seed=seed)
    platform = openmm.Platform.getPlatformByName(platform_name)
    calls: Dict[str, Callable[[], object]] = {}
    keep = []
    variants = (("step", "O F E O", True), ("step_graph", "O F E O", False), ("step_no_thermostat", "F E", True))
    for name, splitting, declare in variants[: 3 if parts else 1]:
        system, groups = mlip_system(water.topology, energy, declare)
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
        if name != "step_no_thermostat" and parts:
            calls[name + "_pair"] = lambda integrator=integrator: integrator.step(2)
        if name == "step_no_thermostat" or not parts:
            continue
        reader, reader_integrator = energy_reader(system, groups, platform, water.positions, declare)
        keep.append(reader)
        calls["filter_energy" if declare else "filter_energy_graph"] = lambda i=reader_integrator: i.step(1)
        if name != "step":
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
        state = context.getState(getPositions=True, getVelocities=True)
        x = torch.tensor(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        v = torch.tensor(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))
        box = torch.tensor(np.array(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))
        masses = torch.tensor(system_masses(system), dtype=torch.float64)
        numbers = torch.tensor([a.element.atomic_number for a in water.topology.atoms()])

        frozen_model, frozen_energy = (torch.jit.freeze(m.eval()) for m in (model, energy))  # as openmm-torch runs them

        def bare_stride() -> None:
            with torch.no_grad():
                frozen_model(x, v, masses, numbers, box)

        def bare_energy() -> None:
            with torch.no_grad():
                frozen_energy(x.float(), numbers, box.float())

        calls["bare_stride_forward"] = bare_stride
        calls["bare_energy_forward"] = bare_energy
    calls["_keep"] = keep  # the Contexts must outlive the calls
    return calls


def time_calls(calls: Dict[str, Callable[[], object]], repeats: int, inner: int) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Median / min / max ms per call of wall time (``wall``) and process CPU time (``cpu``), the
    calls interleaved within each of ``repeats`` rounds."""
    names = [k for k in calls if not k.startswith("_")]
    for name in names:  # warm-up: TorchScript's profiling executor optimises during the first calls
        for _ in range(3):
            calls[name]()
    samples: Dict[str, Dict[str, List[float]]] = {clock: {name: [] for name in names} for clock in ("wall", "cpu")}
    for _ in range(repeats):
        for name in names:
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(inner):
                calls[name]()
            samples["cpu"][name].append((time.process_time() - cpu) / inner * 1e3)
            samples["wall"][name].append((time.perf_counter() - wall) / inner * 1e3)
    return {clock: {name: {"median": statistics.median(s), "min": min(s), "max": max(s)} for name, s in by.items()}
            for clock, by in samples.items()}


def derive(med: Dict[str, float]) -> Dict[str, float]:
    """The stage costs and ratios of one size from its medians (ms)."""
    return {
        "stride": med["probe_stride"] - med["probe"],
        "velocity_return": med["probe_stride_return"] - med["probe_stride"],
        "thermostat": med["step"] - med["step_no_thermostat"],
        "program_rest": med["step_no_thermostat"] - med["probe_stride_return"] - med["filter_energy"],
        "overhead_ratio": med["step"] / (med["bare_stride_forward"] + med["bare_energy_forward"]),
        "step_in_run": med["step_pair"] - med["step"],
        "call_overhead": 2 * med["step"] - med["step_pair"],
        "overhead_ratio_in_run": (med["step_pair"] - med["step"]) / (med["bare_stride_forward"]
                                                                      + med["bare_energy_forward"]),
        "stride_over_bare": (med["probe_stride"] - med["probe"]) / med["bare_stride_forward"],
        "filter_over_bare": med["filter_energy"] / med["bare_energy_forward"],
        "filter_graph_over_bare": med["filter_energy_graph"] / med["bare_energy_forward"],
        "energy_only_gain": med["step_graph"] / med["step"],
        "energy_only_gain_in_run": (med["step_graph_pair"] - med["step_graph"]) / (med["step_pair"] - med["step"]),
    }


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
        times = time_calls(calls, args.repeats, args.inner)
        derived = {clock: derive({k: v["median"] for k, v in ms.items()}) for clock, ms in times.items()}
        rows.append({"n_molecules": n, "n_atoms": 3 * n, "ms": times["wall"], "cpu_ms": times["cpu"],
                     "derived": derived["wall"], "derived_cpu": derived["cpu"]})
        print(f"{3 * n:6d} atoms: " + ", ".join(f"{k} {v['median']:.1f}" for k, v in times["cpu"].items())
              + " ms CPU; " + ", ".join(f"{k} {v:.2f}" for k, v in derived["cpu"].items()), flush=True)
        del calls
    sizes = [r["n_atoms"] for r in rows]
    exponents = {k: fit_exponent(sizes, [r["ms"][k]["median"] for r in rows]) for k in rows[0]["ms"]}
    exponents_cpu = {k: fit_exponent(sizes, [r["cpu_ms"][k]["median"] for r in rows]) for k in rows[0]["cpu_ms"]}
    write_json(args.output, {
        "benchmark": "step_profile", "description": __doc__.split("\n\n")[1].replace("\n", " "),
        "platform": args.platform, "stride_ps": STRIDE, "model": "PET default hypers, random weights, float32",
        "repeats": args.repeats, "inner": args.inner, "results": rows, "scaling_exponents": exponents,
        "scaling_exponents_cpu": exponents_cpu,
        "threads": torch.get_num_threads(), "wall_s": time.perf_counter() - start, "stack": stack_info(),
        "command": "python " + " ".join(sys.argv),
    }, args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())

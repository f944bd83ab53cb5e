"""Overhead of running a stride through OpenMM: FlashMDIntegrator step vs bare parts.

For flexible TIP3P water boxes, times (a) one ``FlashMDIntegrator`` step with the
energy filter (splitting "F E") on an OpenMM platform and (b) the bare TorchScript
model forward plus one potential-energy evaluation of the same System on the same
platform, in the same run (both without the stride monitor: the random-weight model's
strides are arbitrary and the monitor would reject some). It also times (c) a step of the
same network (with the Verlet-guess input) with its learned parts scaled to nothing over a
0.5 fs stride (the frozen-force Verlet guess: nearly exact MD, which the monitor accepts)
with the monitor (the default) and without (``fallback=False``): the ratio is the monitor's
own cost on accepted strides. Last, (d) the adapter's check that SETTLE can constrain a
stride's output (:mod:`openmm_flashmd.integrator.settle`), timed on a rigid box with as
many waters, as a share of the step (a): every stride of a rigid-water System pays it.

    python benchmarks/integrator_overhead.py --platform CPU --output benchmarks/results/integrator_overhead_cpu.json
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import openmm
import torch
from openmm import unit

import openmm_flashmd  # noqa: F401  (torch plugins)
from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd.model.pet import PETHypers, PETStrideModel
from openmm_flashmd.analysis.thermo import system_masses
from openmm_flashmd.integrator.settle import settle_clusters, settle_solvable
from openmm_flashmd.systems import rigid_water_box, water_box
from openmm_flashmd.systems.loading import make_platform

from _common import median_time, refuse_existing, stack_info, summarize, write_json

STRIDE = 0.016  # ps
BENIGN_STRIDE = 0.0005  # ps, the monitor-cost pair


def measure(n_molecules: int, platform_name: str, repeats: int, steps: int) -> dict:
    water = water_box(n_molecules=n_molecules)
    plain_system = copy.deepcopy(water.system)
    model = torch.jit.script(PETStrideModel(PETHypers(), STRIDE, [1, 8], {1: 1.008, 8: 15.999}, periodic=True))
    masses = torch.tensor(system_masses(water.system))
    numbers = torch.tensor([a.element.atomic_number for a in water.topology.atoms()])
    platform = make_platform(platform_name)

    # FlashMD step: random weights give an arbitrary but smooth map; the filter keeps it bounded.
    integrator = FlashMDIntegrator(water.system, model, splitting="F E", topology=water.topology,
                                   max_displacement=None, fallback=False)
    context = openmm.Context(water.system, integrator, platform)
    context.setPositions(water.positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(2)

    # The stride monitor's cost: the same network (plus the Verlet guess input) with its learned
    # parts scaled down to nothing over a 0.5 fs stride: the frozen-force Verlet guess, nearly
    # exact MD, which the monitor accepts; with and without the monitor.
    benign = PETStrideModel.build(PETHypers(verlet_guess=True, guess_substeps=1), BENIGN_STRIDE, [1, 8],
                                  {1: 1.008, 8: 15.999}, periodic=True)
    benign.set_scales(1.0, 1e-9, 1e-9, 1.0, 1.0)
    benign = torch.jit.script(benign)
    pair = {}
    for monitored in (True, False):
        system = copy.deepcopy(plain_system)
        pair[monitored] = FlashMDIntegrator(system, benign, splitting="F E", topology=water.topology,
                                            fallback=monitored)
        pair_context = openmm.Context(system, pair[monitored], platform)
        pair_context.setPositions(water.positions)
        openmm.LocalEnergyMinimizer.minimize(pair_context, 10.0, 200)
        pair_context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
        pair[monitored].step(2)
        pair[monitored].context = pair_context  # keep the Context alive

    # Bare parts on the same platform: model forward + one potential energy.
    plain = openmm.Context(plain_system, openmm.VerletIntegrator(0.0005), platform)
    state = context.getState(getPositions=True, getVelocities=True, enforcePeriodicBox=False)
    plain.setPeriodicBoxVectors(*state.getPeriodicBoxVectors())
    x = torch.tensor(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    v = torch.tensor(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))
    box = torch.tensor(np.array(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))

    def bare():
        with torch.no_grad():
            model(x, v, masses.double(), numbers, box)
        plain.setPositions(state.getPositions())  # invalidates the cached energy
        plain.getState(getEnergy=True)

    bare()

    # The SETTLE check of a rigid box with as many waters, on an output 1 pm off the start.
    rigid = rigid_water_box(n_molecules=n_molecules)
    settle_atoms, settle_distances = (torch.from_numpy(a) for a in settle_clusters(rigid.system))
    start = torch.tensor(np.asarray(rigid.positions.value_in_unit(unit.nanometer)))
    output = start + 1e-3 * torch.randn(start.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rigid_masses = torch.tensor(system_masses(rigid.system), dtype=torch.float64)
    check = torch.jit.script(settle_solvable)

    def settle_check():
        if not bool(check(start, output, settle_atoms, settle_distances, rigid_masses).all()):
            raise RuntimeError("a 1 pm displacement should never defeat SETTLE")

    settle_check()
    # Interleave the two measurements so machine noise hits both alike.
    step_samples, bare_samples, monitored_samples, unmonitored_samples, settle_samples = [], [], [], [], []
    for _ in range(repeats):
        step_samples.append(median_time(lambda: integrator.step(steps), 1)["median"] / steps)
        bare_samples.append(median_time(bare, 1, inner=steps)["median"])
        monitored_samples.append(median_time(lambda: pair[True].step(steps), 1)["median"] / steps)
        unmonitored_samples.append(median_time(lambda: pair[False].step(steps), 1)["median"] / steps)
        settle_samples.append(median_time(settle_check, 1, inner=steps)["median"])
    step_time, bare_time, settle_time = summarize(step_samples), summarize(bare_samples), summarize(settle_samples)
    monitored_time, unmonitored_time = summarize(monitored_samples), summarize(unmonitored_samples)
    stats = pair[True].fallback_statistics
    if stats["rejected"]:
        raise RuntimeError(f"{stats['rejected']} strides were rejected ({stats['by_reason']}): "
                           "the monitor's timing would include fallback MD")
    return {
        "n_molecules": n_molecules,
        "n_atoms": water.num_particles,
        "stride_step_s": step_time,
        "model_plus_energy_s": bare_time,
        "overhead_ratio": step_time["median"] / bare_time["median"],
        "monitored_step_s": monitored_time,
        "step_without_monitor_s": unmonitored_time,
        "monitor_ratio": monitored_time["median"] / unmonitored_time["median"],
        "settle_check_s": settle_time,
        "settle_check_share": settle_time["median"] / step_time["median"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", default="CPU", help="OpenMM platform (Reference, CPU, CUDA)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 512], help="water molecules per box")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="strides per timed repeat")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/integrator_overhead_cpu.json"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    refuse_existing(args.output, args.overwrite)
    rows = []
    for n in args.sizes:
        row = measure(n, args.platform, args.repeats, args.steps)
        print(f"{row['n_atoms']:6d} atoms: step {row['stride_step_s']['median'] * 1e3:8.2f} ms, "
              f"model+energy {row['model_plus_energy_s']['median'] * 1e3:8.2f} ms, ratio {row['overhead_ratio']:.3f}, "
              f"with/without monitor {row['monitor_ratio']:.3f}, SETTLE check {100 * row['settle_check_share']:.2f} %")
        rows.append(row)
    write_json(args.output, {"benchmark": "integrator_overhead", "platform": args.platform, "stride_ps": STRIDE,
                             "splitting": "F E", "model": "PET default hypers, random weights, float32",
                             "stack": stack_info(), "results": rows}, args.overwrite)


if __name__ == "__main__":
    main()

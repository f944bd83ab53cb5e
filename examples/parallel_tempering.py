"""Parallel tempering of alanine dipeptide with FlashMD strides, in openmmtools' multistate machinery.

    python examples/parallel_tempering.py OUT_DIR [--iterations 100] [--strides 50]
        [--min-temperature 300] [--max-temperature 450] [--replicas 4] [--platform CPU] [--overwrite]

    mpiexec -n 2 python examples/parallel_tempering.py OUT_DIR ...   # replicas spread over 2 ranks

The built-in ``alanine-dipeptide-implicit-hbonds`` System (amber14 + OBC2, X-H bonds
constrained) with the bundled ``alanine-dipeptide-implicit-hbonds-8fs`` stride model:
every iteration propagates each replica by ``--strides`` strides of 8 fs with a
:class:`~openmm_flashmd.mcmc.FlashMDMove` (Langevin at the replica's temperature, energy
filter, stride monitor), then openmmtools' ``ParallelTemperingSampler`` proposes exchanges
between all temperatures (geometric ladder). The run is stored in ``OUT_DIR/pt.nc``
(openmmtools' NetCDF format), read back with ``MultiStateSamplerAnalyzer``, and summarised
in ``OUT_DIR/summary.json``: exchange acceptance between neighbouring temperatures, the
mixing statistics, the mean potential energy (kJ/mol) and alpha_R / beta-PPII / alpha_L
basin populations per temperature, and the stride monitor's counts. Under MPI the replicas
are distributed over the ranks (mpi4py and an MPI library, e.g. ``pip install mpich mpi4py``);
rank 0 writes the files. ``--reference-md`` propagates with 1 fs Langevin MD instead (the
same simulated time per iteration), to compare the model's ensemble with the force field's.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

import mdtraj
import numpy as np
import openmm
from openmm import unit

from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd._plugins import quiet_import
from openmm_flashmd.analysis.dihedrals import basin_populations, ramachandran
from openmm_flashmd.mcmc import FlashMDMove
from openmm_flashmd.systems import get_system

MODEL = "alanine-dipeptide-implicit-hbonds-8fs"
SYSTEM = "alanine-dipeptide-implicit-hbonds"
STRIDE, REFERENCE_TIMESTEP = 0.008, 0.001  # ps


def run(out: Path, args) -> None:
    cache = quiet_import("openmmtools.cache")
    multistate = quiet_import("openmmtools.multistate")
    states = quiet_import("openmmtools.states")

    mcmc = quiet_import("openmmtools.mcmc")

    alanine = get_system(SYSTEM)
    if args.reference_md:  # the same time per iteration in 1 fs Langevin steps, no model
        move = mcmc.LangevinDynamicsMove(timestep=REFERENCE_TIMESTEP * unit.picosecond,
                                         collision_rate=1.0 / unit.picosecond,
                                         n_steps=int(round(args.strides * STRIDE / REFERENCE_TIMESTEP)))
    else:
        integrator = FlashMDIntegrator(alanine.system, MODEL, temperature=args.min_temperature * unit.kelvin,
                                       topology=alanine.topology)  # adds the stride force to alanine.system
        move = FlashMDMove(integrator, n_steps=args.strides)
    cache.global_context_cache.platform = openmm.Platform.getPlatformByName(args.platform)

    reference = states.ThermodynamicState(alanine.system, args.min_temperature * unit.kelvin)
    sampler = multistate.ParallelTemperingSampler(mcmc_moves=move, number_of_iterations=args.iterations)
    reporter = multistate.MultiStateReporter(str(out / "pt.nc"), checkpoint_interval=1)
    sampler.create(reference, states.SamplerState(alanine.positions), reporter,
                   min_temperature=args.min_temperature * unit.kelvin,
                   max_temperature=args.max_temperature * unit.kelvin, n_temperatures=args.replicas)
    sampler.run()
    statistics = [m.statistics for m in sampler.mcmc_moves] if not args.reference_md else []
    reporter.close()
    return statistics


def summarise(out: Path, move_statistics, reference_md: bool) -> dict:
    """Read ``pt.nc`` back and write ``summary.json``."""
    multistate = quiet_import("openmmtools.multistate")

    reporter = multistate.MultiStateReporter(str(out / "pt.nc"), open_mode="r")
    try:
        analyzer = multistate.MultiStateSamplerAnalyzer(reporter)
        temperatures = [s.temperature.value_in_unit(unit.kelvin) for s in reporter.read_thermodynamic_states()[0]]
        n_accepted, n_proposed = reporter.read_mixing_statistics()
        accepted, proposed = np.sum(n_accepted, axis=0), np.sum(n_proposed, axis=0)
        neighbours = [float(accepted[i, i + 1] / proposed[i, i + 1]) if proposed[i, i + 1] else float("nan")
                      for i in range(len(temperatures) - 1)]
        mixing = analyzer.generate_mixing_statistics()
        # potential energy and backbone basins of each temperature, over the stored iterations after the first
        energies, _, _ = reporter.read_energies()
        replica_states = reporter.read_replica_thermodynamic_states()
        n_iterations = energies.shape[0]
        per_state = {k: {"potential_kJ_mol": [], "positions": []} for k in range(len(temperatures))}
        for iteration in range(1, n_iterations):
            sampler_states = reporter.read_sampler_states(iteration)
            for replica, state_index in enumerate(replica_states[iteration]):
                kT = (unit.MOLAR_GAS_CONSTANT_R * temperatures[state_index] * unit.kelvin).value_in_unit(
                    unit.kilojoule_per_mole)
                record = per_state[int(state_index)]
                record["potential_kJ_mol"].append(float(energies[iteration, replica, state_index]) * kT)
                record["positions"].append(sampler_states[replica].positions.value_in_unit(unit.nanometer))
    finally:
        reporter.close()
    topology = mdtraj.Topology.from_openmm(get_system(SYSTEM).topology)
    for record in per_state.values():
        phi, psi = ramachandran(mdtraj.Trajectory(np.array(record.pop("positions")), topology))
        record["phi"], record["psi"] = phi.ravel(), psi.ravel()
    summary = {
        "propagator": "reference MD (Langevin 1 fs, 1/ps)" if reference_md else f"FlashMD {MODEL}",
        "iterations": n_iterations - 1,
        "temperatures_K": temperatures,
        "neighbour_acceptance": neighbours,
        "transition_matrix": np.asarray(mixing.transition_matrix).tolist(),
        "mixing_eigenvalues": np.asarray(mixing.eigenvalues).tolist(),
        "per_temperature": [
            {"temperature_K": temperatures[k], "samples": len(r["phi"]),
             "mean_potential_kJ_mol": float(np.mean(r["potential_kJ_mol"])) if len(r["phi"]) else float("nan"),
             "basins": basin_populations(r["phi"], r["psi"]) if len(r["phi"]) else {}}
            for k, r in per_state.items()
        ],
        "stride_monitor": move_statistics,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output directory (pt.nc, summary.json)")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--strides", type=int, default=50, help="8 fs strides per replica and iteration")
    parser.add_argument("--min-temperature", type=float, default=300.0, help="K")
    parser.add_argument("--max-temperature", type=float, default=450.0, help="K")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--platform", default="CPU", help="OpenMM platform (Reference, CPU, CUDA, ...)")
    parser.add_argument("--reference-md", action="store_true",
                        help="propagate with 1 fs Langevin MD instead of the model (the same time per iteration), "
                             "for comparison")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    args = parser.parse_args()
    logging.getLogger("openmmtools").setLevel(logging.ERROR)

    mpiplus = quiet_import("mpiplus")
    root = mpiplus.get_mpicomm() is None or mpiplus.get_mpicomm().rank == 0
    if root:
        if args.out.exists() and any(args.out.iterdir()):
            if not args.overwrite:
                print(f"error: {args.out} exists and is not empty; pass --overwrite to replace it", file=sys.stderr)
                return 1
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True, exist_ok=True)
    if mpiplus.get_mpicomm() is not None:
        mpiplus.get_mpicomm().barrier()

    move_statistics = run(args.out, args)
    if not root:
        return 0
    summary = summarise(args.out, move_statistics, args.reference_md)
    ranks = 1 if mpiplus.get_mpicomm() is None else mpiplus.get_mpicomm().size
    print(f"{summary['iterations']} iterations x {len(summary['temperatures_K'])} replicas x {args.strides} strides "
          f"({summary['propagator']}) on {ranks} MPI rank(s); storage {args.out / 'pt.nc'}")
    print("neighbour exchange acceptance: " + ", ".join(
        f"{a:.0f}-{b:.0f} K {p:.2f}" for a, b, p in zip(summary["temperatures_K"], summary["temperatures_K"][1:],
                                                        summary["neighbour_acceptance"])))
    for row in summary["per_temperature"]:
        basins = ", ".join(f"{k} {v:.2f}" for k, v in row["basins"].items())
        print(f"{row['temperature_K']:.0f} K: <V> {row['mean_potential_kJ_mol']:.1f} kJ/mol, basins {basins}")
    if move_statistics:
        rejected = sum(s["rejected"] for s in move_statistics)
        strides = sum(s["strides"] for s in move_statistics)
        print(f"stride monitor: {rejected} of {strides} strides integrated with MD instead")
    return 0


if __name__ == "__main__":
    sys.exit(main())

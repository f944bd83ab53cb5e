"""The whole FlashMD chain on a small system, from a classical force field to a FlashMD
run whose energy filter uses a machine-learned potential (MLIP) trained here.

1. classical reference: NVE segments of Lennard-Jones argon (64 atoms, periodic);
2. ``train_mlip``: a small PET energy model on the reference energies and forces;
3. ``create_mlip_system``: an OpenMM System whose only potential is that MLIP
   (an openmm-torch ``TorchForce``);
4. ``generate`` on the MLIP System: MLIP-MD reference trajectories;
5. ``train``: a PET stride model on the MLIP-MD data;
6. ``FlashMDIntegrator`` on a fresh MLIP System, splitting "O F E O" with the energy
   filter on the MLIP's force group: a short NVT run printing the temperature and the
   filter statistics.

Run (a few minutes on 2 CPU cores)::

    python examples/mlip_chain.py chain-run            # refuses an existing directory
    python examples/mlip_chain.py chain-run --overwrite
    python examples/mlip_chain.py chain-run --quick    # tiny settings (seconds; used by the tests)

Everything goes into the directory given on the command line: ``reference.h5``,
``mlip/`` (training run, ``mlip/model.pt``), ``mlip_md.h5``, ``stride/`` (training run,
``stride/model.pt``) and ``flashmd_log.csv``. Units: nm, ps, K, kJ/mol.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import openmm_flashmd  # noqa: F401  (loads torch before the openmm-torch plugins)
import openmm
from openmm import unit

from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd.data import generate, load_trajectories
from openmm_flashmd.model.mlip import create_mlip_system
from openmm_flashmd.systems import argon_box
from openmm_flashmd.train import evaluate, evaluate_mlip, format_mlip_table, format_table, train, train_mlip

KB = 0.008314462618  # kJ/mol/K

#: (full, quick) settings
SETTINGS = {
    "reference_segments": (16, 4),
    "reference_segment_length": (0.4, 0.1),          # ps
    "mlip_steps": (500, 30),
    "mlip_md_segments": (12, 3),
    "mlip_md_segment_length": (0.24, 0.08),          # ps
    "stride_steps": (600, 30),
    "flashmd_strides": (200, 10),
}

SMALL_PET = {"model.cutoff": 0.6, "model.cutoff_width": 0.1, "model.d_pet": 32, "model.d_node": 64,
             "model.d_feedforward": 64, "model.num_heads": 2, "model.num_attention_layers": 1,
             "model.num_gnn_layers": 2}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", type=Path, help="directory for everything the chain writes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the chain, learns little")
    parser.add_argument("--stride", type=float, default=0.032, help="FlashMD stride, ps (a multiple of 0.004)")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform")
    args = parser.parse_args(argv)

    out: Path = args.output_dir
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            print(f"{out} exists and is not empty; pass --overwrite to replace it", file=sys.stderr)
            return 1
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    s = {key: value[1 if args.quick else 0] for key, value in SETTINGS.items()}
    start = time.time()

    def stage(text: str) -> None:
        print(f"\n[{time.time() - start:6.1f} s] {text}", flush=True)

    # 1. classical reference -------------------------------------------------------
    argon = argon_box(n_atoms=64)
    temperature = argon.temperature
    stage(f"1. classical reference: {argon.description}")
    generate(out / "reference.h5", argon, n_segments=s["reference_segments"],
             segment_length=s["reference_segment_length"], timestep=0.002, record_interval=0.004,
             thermalize=2.0 if not args.quick else 0.2, decorrelate=0.2, platform=args.platform, progress=False)

    # 2. the MLIP --------------------------------------------------------------------
    stage("2. train_mlip: PET energy model on the reference energies and forces")
    mlip_overrides = dict(SMALL_PET)
    mlip_overrides.update({"training.max_steps": s["mlip_steps"], "training.validate_every": max(10, s["mlip_steps"] // 4),
                           "training.checkpoint_every": s["mlip_steps"], "training.warmup_steps": 50,
                           "training.learning_rate": 3e-3, "training.batch_size": 8,
                           "data.validation_fraction": 0.25, "data.frame_interval": 2})
    mlip = train_mlip(out / "reference.h5", out / "mlip", overrides=mlip_overrides, device="cpu", progress=False)
    print(format_mlip_table(evaluate_mlip(mlip.model_path, out / "reference.h5")))

    # 3. + 4. MLIP-MD data -------------------------------------------------------------
    stage("3. create_mlip_system, 4. generate MLIP-MD trajectories with it")
    mlip_system = create_mlip_system(argon.topology, str(mlip.model_path))
    generate(out / "mlip_md.h5", mlip_system, argon.positions, temperature=temperature,
             n_segments=s["mlip_md_segments"], segment_length=s["mlip_md_segment_length"], timestep=0.002,
             record_interval=0.004, thermalize=1.0 if not args.quick else 0.1, decorrelate=0.1,
             platform=args.platform, progress=False)

    # 5. the stride model ----------------------------------------------------------
    stage(f"5. train: PET stride model, {args.stride * 1000:g} fs, on the MLIP-MD data")
    stride_overrides = dict(SMALL_PET)
    stride_overrides.update({"training.max_steps": s["stride_steps"],
                             "training.validate_every": max(10, s["stride_steps"] // 4),
                             "training.checkpoint_every": s["stride_steps"], "training.warmup_steps": 50,
                             "training.learning_rate": 3e-3, "training.batch_size": 16,
                             "data.validation_fraction": 0.25})
    stride = train(out / "mlip_md.h5", out / "stride", args.stride, overrides=stride_overrides, device="cpu",
                   progress=False)
    print(format_table(evaluate(stride.model_path, out / "mlip_md.h5", batch_size=16)))

    # 6. FlashMD with the MLIP energy filter -------------------------------------------
    stage("6. FlashMDIntegrator, 'O F E O', energy filter on the MLIP force group")
    system = create_mlip_system(argon.topology, str(mlip.model_path), force_group=0)
    integrator = FlashMDIntegrator(system, str(stride.model_path), temperature=temperature * unit.kelvin,
                                   collision_rate=1.0 / unit.picosecond, splitting="O F E O",
                                   energy_force_groups={0}, topology=argon.topology, random_seed=1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(args.platform))
    data = load_trajectories(out / "mlip_md.h5")
    context.setPeriodicBoxVectors(*data.box[-1, -1])
    context.setPositions(data.positions[-1, -1])
    context.setVelocities(data.velocities[-1, -1])
    dof = 3 * system.getNumParticles() - 3  # the MLIP System removes the centre-of-mass motion
    report_every = max(1, s["flashmd_strides"] // 10)
    temperatures = []
    with open(out / "flashmd_log.csv", "w", newline="") as handle:
        log = csv.writer(handle)
        log.writerow(["time_ps", "temperature_K", "potential_kJ_mol", "filter_mean_scale", "filter_clamped"])
        print(f"{'time (ps)':>10} {'T (K)':>8} {'E_pot (kJ/mol)':>15}")
        for _ in range(0, s["flashmd_strides"], report_every):
            integrator.step(report_every)
            state = context.getState(getEnergy=True)
            kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
            potential = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            t_now = 2 * kinetic / (dof * KB)
            temperatures.append(t_now)
            stats = integrator.filter_statistics
            log.writerow([state.getTime().value_in_unit(unit.picosecond), t_now, potential, stats["mean"],
                          stats["clamped"]])
            print(f"{state.getTime().value_in_unit(unit.picosecond):10.3f} {t_now:8.1f} {potential:15.2f}")
    stats = integrator.filter_statistics
    print(f"\nmean temperature {np.mean(temperatures):.1f} K (target {temperature:g} K); energy filter: "
          f"{int(stats['count'])} strides, mean scale {stats['mean']:.4f}, range [{stats['min']:.4f}, "
          f"{stats['max']:.4f}], clamped {int(stats['clamped'])}")
    stage(f"done; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: a metatrain FlashMD model (metatomic export, run through openmm_flashmd.metatomic)
against our PET stride model of about the same parameter count, on a flexible-water box.

    python benchmarks/metatomic_speed.py [--waters 64 256] [--repeats 20] [--threads 2] [--overwrite]

Needs the optional extra (``pip install ".[metatomic]"``). Both models are untrained (random
weights: timings only) with a 0.45 nm cutoff and a 16 fs stride. Per size: the bare forward of
the stride-model protocol (``forward`` under ``torch.no_grad``; the metatomic one includes its
unit conversion, System construction and vesin neighbour list) and the in-context step
(``FlashMDIntegrator`` "F", no monitor, no random rotation, OpenMM CPU platform), each the
median of ``--repeats`` calls, A and B interleaved in one run. Writes
``benchmarks/results/metatomic_speed.json``. Times in ms.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import refuse_existing, stack_info, write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "metatomic_speed.json"
MASSES = {1: 1.007947, 8: 15.99943}
STRIDE_FS = 16.0
#: metatrain FlashMD widths (its PET defaults otherwise) and ours, chosen for equal parameter counts
METATRAIN_HYPERS = dict(cutoff=4.5, cutoff_width=0.5, d_pet=48, d_head=48, d_node=96, d_feedforward=96, num_heads=4,
                        num_attention_layers=1, num_gnn_layers=2)


def metatrain_model(folder: Path) -> Path:
    """An untrained metatrain FlashMD for H and O, exported to ``folder/flashmd.pt``."""
    from metatensor.torch import Labels, TensorBlock, TensorMap
    from metatrain.experimental.flashmd.model import FlashMD
    from metatrain.utils.architectures import get_default_hypers
    from metatrain.utils.data import DatasetInfo
    from metatrain.utils.data.target_info import TargetInfo

    hypers = get_default_hypers("experimental.flashmd")["model"]
    hypers.update(METATRAIN_HYPERS)
    layout = TensorMap(Labels.single(), [TensorBlock(
        torch.empty((0, 3, 1), dtype=torch.float64), Labels(["system", "atom"], torch.empty((0, 2), dtype=int)),
        [Labels.range("xyz", 3)], Labels.range("length", 1))])
    targets = {name: TargetInfo(layout=layout, quantity=quantity, unit=unit)
               for name, quantity, unit in (("position", "position", "angstrom"),
                                            ("momentum", "momentum", "(eV*u)^(1/2)"))}
    torch.manual_seed(0)
    model = FlashMD(hypers, DatasetInfo(length_unit="angstrom", atomic_types=[1, 8], targets=targets))
    model.set_timestep(STRIDE_FS)
    model.set_masses(MASSES)
    path = folder / "flashmd.pt"
    model.export().save(str(path))
    return path


def our_model(target_parameters: int):
    """Our PET stride model for H and O with the parameter count nearest ``target_parameters``."""
    from openmm_flashmd import load_model
    from openmm_flashmd.model.pet import PETHypers, PETStrideModel

    best = None
    for d_pet in range(16, 257, 8):
        torch.manual_seed(0)
        model = PETStrideModel(PETHypers(cutoff=0.45, d_pet=d_pet, d_node=2 * d_pet, d_feedforward=2 * d_pet,
                                         num_heads=4, num_attention_layers=1, num_gnn_layers=2),
                               STRIDE_FS / 1000, [1, 8], MASSES, periodic=True)
        count = sum(p.numel() for p in model.parameters())
        if best is None or abs(count - target_parameters) < abs(best[1] - target_parameters):
            best = (model, count)
    return load_model(best[0]), best[1]


def median_ms(call, repeats: int, setup=None) -> float:
    """Median wall time (ms) of ``call``; ``setup`` runs before each call, outside the timing."""
    samples = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        call()
        samples.append(1000 * (time.perf_counter() - start))
    return statistics.median(samples)


def measure(models, n_waters: int, repeats: int):
    """Bare-forward and in-context step medians (ms) of each model on ``n_waters`` flexible waters."""
    import openmm

    from openmm_flashmd import FlashMDIntegrator
    from openmm_flashmd.systems import water_box

    built = water_box(n_molecules=n_waters)
    positions = torch.tensor(built.positions.value_in_unit(built.positions.unit))
    box = torch.tensor([[v.x, v.y, v.z] for v in built.system.getDefaultPeriodicBoxVectors()]).double()
    masses = torch.tensor([built.system.getParticleMass(i)._value for i in range(built.system.getNumParticles())])
    numbers = torch.tensor([a.element.atomic_number for a in built.topology.atoms()])
    velocities = 0.3 * torch.randn_like(positions)
    contexts = {}
    for name, model in models.items():
        system = copy.deepcopy(built.system)
        integrator = FlashMDIntegrator(system, model, splitting="F", fallback=False, random_rotation=False,
                                       topology=built.topology)
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
        for _ in range(3):  # TorchScript profiling runs
            context.setPositions(built.positions)
            context.setVelocities(velocities.numpy())
            integrator.step(1)
        with torch.no_grad():
            for _ in range(3):
                model(positions, velocities, masses, numbers, box)
        contexts[name] = (context, integrator)
    row = {"n_atoms": int(len(positions)), "forward_ms": {}, "step_ms": {}}
    for _ in range(2):  # A, B, A, B: both see the same machine load
        for name, model in models.items():
            with torch.no_grad():
                row["forward_ms"].setdefault(name, []).append(median_ms(
                    lambda: model(positions, velocities, masses, numbers, box), repeats))
            context, integrator = contexts[name]

            def restart():  # random weights: every timed stride starts from the same state
                context.setPositions(built.positions)
                context.setVelocities(velocities.numpy())

            row["step_ms"].setdefault(name, []).append(median_ms(lambda: integrator.step(1), repeats, restart))
    for key in ("forward_ms", "step_ms"):
        row[key] = {name: min(values) for name, values in row[key].items()}
    row["ratio_metatrain_over_ours"] = {key: row[key]["metatrain"] / row[key]["ours"]
                                        for key in ("forward_ms", "step_ms")}
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waters", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    refuse_existing(args.out, args.overwrite)
    if args.threads:
        torch.set_num_threads(args.threads)
    from openmm_flashmd.metatomic import load_metatomic_stride_model

    with tempfile.TemporaryDirectory() as folder:
        metatrain = load_metatomic_stride_model(metatrain_model(Path(folder)))
        import metatomic.torch as mta

        count = sum(p.numel() for p in mta.load_atomistic_model(metatrain.path).module.parameters())
        ours, our_count = our_model(count)
        rows = [measure({"metatrain": metatrain, "ours": ours}, n, args.repeats) for n in args.waters]
    result = {"benchmark": "metatomic_speed", "description": " ".join(__doc__.split("\n\n")[0].split()),
              "parameters": {"metatrain": count, "ours": our_count}, "metatrain_hypers": METATRAIN_HYPERS,
              "stride_fs": STRIDE_FS, "repeats": args.repeats, "rows": rows, "stack": stack_info()}
    write_json(args.out, result, overwrite=args.overwrite)
    for row in rows:
        print(f"{row['n_atoms']} atoms: forward {row['forward_ms']}, step {row['step_ms']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

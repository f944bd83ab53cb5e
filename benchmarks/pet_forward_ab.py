"""Benchmark: the PET forward of an earlier revision (A) against the working tree (B), same weights.

Loads ``openmm_flashmd/model/pet.py`` as it was at ``--base`` (git) next to today's, builds
both stride models from the bundled model's metadata, loads its weights into both, scripts
them, and times the forward on lattice-built rigid-water boxes, A and B interleaved, the
median of ``--repeats`` calls each: wall time and the calling thread's CPU time (steadier on a
shared machine). Records the largest output difference (float32 round-off when B only
reorganises the arithmetic). Runs after :func:`openmm_flashmd.performance.tune_malloc`.

    python benchmarks/pet_forward_ab.py --base 35212c9 [--model water-rigid-8fs] [--sizes 64 256 1000]
                                        [--repeats 10] [--threads 1] [--output FILE] [--overwrite]

Times in ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import stack_info, write_json  # noqa: E402


def module_at(revision: str, folder: Path):
    """``openmm_flashmd.model.pet`` as it was at ``revision``, imported under another name."""
    source = subprocess.run(["git", "show", f"{revision}:openmm_flashmd/model/pet.py"], cwd=HERE.parent,
                            capture_output=True, text=True, check=True).stdout
    path = folder / "pet_base.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("pet_base", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pet_base"] = module  # TorchScript resolves the classes through sys.modules
    spec.loader.exec_module(module)
    return module


def working_tree_label() -> str:
    """The B side's code: HEAD's short hash, with "+changes" when pet.py differs from HEAD."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True)

    changed = git("diff", "--quiet", "HEAD", "--", "openmm_flashmd/model/pet.py").returncode != 0
    return git("rev-parse", "--short", "HEAD").stdout.strip() + ("+changes" if changed else "")


def inputs(n_waters: int, stride: float):
    """Positions, velocities (300 K), masses, atomic numbers, box and a free-flight guess."""
    import openmm.unit as u

    from openmm_flashmd.systems import rigid_water_box

    water = rigid_water_box(n_waters)
    pos = torch.tensor(np.asarray(water.positions.value_in_unit(u.nanometer)), dtype=torch.float64)
    box = torch.tensor([[x.value_in_unit(u.nanometer) for x in v]
                        for v in water.system.getDefaultPeriodicBoxVectors()], dtype=torch.float64)
    masses = torch.tensor([water.system.getParticleMass(i).value_in_unit(u.dalton)
                           for i in range(water.system.getNumParticles())], dtype=torch.float64)
    numbers = torch.tensor([1 if m < 2 else 8 for m in masses.tolist()])
    gen = torch.Generator().manual_seed(0)
    vel = torch.randn(pos.shape, generator=gen, dtype=torch.float64) * (2.494 / masses.sqrt()).unsqueeze(1)
    return pos, vel, masses, numbers, box, vel * stride, vel.clone()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision of the A side")
    parser.add_argument("--model", default="water-rigid-8fs", help="bundled model whose weights both sides use")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1000], help="rigid waters")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "pet_forward_ab.json")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if args.output.exists() and not args.overwrite:
        print(f"{args.output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    from openmm_flashmd import load_model
    from openmm_flashmd.model import pet as today
    from openmm_flashmd.model.protocol import read_metadata
    from openmm_flashmd.performance import tune_malloc

    tuned = tune_malloc()
    source = load_model(args.model)
    metadata = read_metadata(source)
    if not metadata.get("hypers", {}).get("verlet_guess"):
        raise SystemExit(f"{args.model} takes no Verlet guess; this benchmark feeds one")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        base = module_at(args.base, Path(folder))
        models = {}
        for side, module in (("A", base), ("B", today)):
            model = module.PETStrideModel.from_metadata(metadata)
            model.load_state_dict(source.state_dict())
            models[side] = torch.jit.script(model.eval())
        for n in args.sizes:
            call_inputs = inputs(n, float(metadata["stride"]))
            wall = {k: [] for k in models}
            cpu = {k: [] for k in models}
            out = {}
            with torch.no_grad():
                for side, model in models.items():
                    for _ in range(3):  # TorchScript's profiling executor optimises during the first calls
                        out[side] = model(*call_inputs)
                for _ in range(args.repeats):
                    for side, model in models.items():
                        t_wall, t_cpu = time.perf_counter(), time.thread_time()
                        model(*call_inputs)
                        cpu[side].append((time.thread_time() - t_cpu) * 1e3)
                        wall[side].append((time.perf_counter() - t_wall) * 1e3)
            row = {"n_waters": n, "n_atoms": 3 * n,
                   "wall_ms": {k: statistics.median(v) for k, v in wall.items()},
                   "thread_cpu_ms": {k: statistics.median(v) for k, v in cpu.items()},
                   "max_abs_difference": {"positions_nm": float((out["A"][0] - out["B"][0]).abs().max()),
                                          "velocities_nm_per_ps": float((out["A"][1] - out["B"][1]).abs().max())}}
            row["ratio_b_over_a"] = {"wall": row["wall_ms"]["B"] / row["wall_ms"]["A"],
                                     "thread_cpu": row["thread_cpu_ms"]["B"] / row["thread_cpu_ms"]["A"]}
            rows.append(row)
            print(f"{3 * n:6d} atoms: wall A {row['wall_ms']['A']:.1f} B {row['wall_ms']['B']:.1f} ms, thread CPU "
                  f"A {row['thread_cpu_ms']['A']:.1f} B {row['thread_cpu_ms']['B']:.1f} ms, B/A "
                  f"{row['ratio_b_over_a']['wall']:.3f} / {row['ratio_b_over_a']['thread_cpu']:.3f}", flush=True)
    write_json(args.output, {
        "benchmark": "pet_forward_ab", "base": args.base,
        "head": working_tree_label(),
        "model": args.model, "repeats": args.repeats, "threads": args.threads, "malloc_tuned": tuned,
        "results": rows, "stack": stack_info(), "command": "python " + " ".join(sys.argv)}, args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())

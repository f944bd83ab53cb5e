"""Benchmark: PET stride-model forward time per atom versus system size (CPU).

Builds water-like random periodic boxes (O, H, H composition, ~100 atoms/nm^3, each
H 0.09572 nm from its O in a random direction), runs the *scripted* model's
protocol ``forward`` under ``torch.no_grad`` and records the median wall time of
several repeats per size, the time of the neighbour list alone, the neighbour-list
method used, the mean neighbour count, and a fitted scaling exponent
``time ~ N^alpha`` (least squares in log-log).

Usage::

    python benchmarks/pet_forward.py [--output benchmarks/results/pet_forward.json]
        [--sizes 96 300 ...] [--repeats 3] [--threads T] [--dtype float32] [--tune-malloc]
        [--overwrite]

Wall times are sensitive to other processes on the machine: the JSON records the load
average before and after, and the user/system CPU seconds and page faults per call.

Times in seconds; per-atom times in microseconds.
"""

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from openmm_flashmd.model.neighbors import AUTO_CELL_THRESHOLD, auto_method, neighbor_list
from openmm_flashmd.model.pet import PETHypers, PETStrideModel
from openmm_flashmd.performance import tune_malloc

from _common import fit_exponent, stack_info, write_json

DEFAULT_SIZES = [96, 300, 999, 3000, 9999]
MASSES = {1: 1.008, 8: 15.999}


def water_like_box(n_atoms: int, density: float = 100.0, seed: int = 0, dtype=torch.float32):
    """Random water-like periodic system: positions (nm), velocities (nm/ps), masses (Da), Z, box (nm)."""
    n_mol = n_atoms // 3
    n_atoms = 3 * n_mol
    length = (n_atoms / density) ** (1.0 / 3.0)
    gen = torch.Generator().manual_seed(seed)
    oxygen = torch.rand(n_mol, 1, 3, generator=gen, dtype=torch.float64) * length
    d = torch.randn(n_mol, 2, 3, generator=gen, dtype=torch.float64)
    hydrogen = oxygen + 0.09572 * d / d.norm(dim=-1, keepdim=True)
    pos = torch.cat([oxygen, hydrogen], dim=1).reshape(n_atoms, 3)
    z = torch.tensor([8, 1, 1] * n_mol, dtype=torch.long)
    m = torch.tensor([MASSES[8], MASSES[1], MASSES[1]] * n_mol, dtype=torch.float64)
    vel = torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64) * torch.sqrt(2.494 / m).unsqueeze(1)
    box = torch.eye(3, dtype=torch.float64) * length
    return pos.to(dtype), vel.to(dtype), m.to(dtype), z, box.to(dtype)


def time_call(fn, repeats, warmup):
    """Median wall time (s), all samples, and mean user / system CPU seconds per call."""
    for _ in range(warmup):
        fn()
    samples = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = {
        "user_s": (after.ru_utime - before.ru_utime) / repeats,
        "sys_s": (after.ru_stime - before.ru_stime) / repeats,
        "minor_page_faults": (after.ru_minflt - before.ru_minflt) / repeats,
    }
    return statistics.median(samples), samples, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="benchmarks/results/pet_forward.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES, help="atom counts (rounded to 3n)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per size (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per size (TorchScript profiling)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune-malloc", action="store_true",
                        help="openmm_flashmd.performance.tune_malloc() first (what the TorchForces do)")
    args = parser.parse_args(argv)

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        print(f"{output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    malloc_tuned = tune_malloc() if args.tune_malloc else False
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    hypers = PETHypers()
    torch.manual_seed(args.seed)
    model = PETStrideModel(hypers, 0.016, [1, 8], MASSES, periodic=True).to(dtype).eval()
    scripted = torch.jit.script(model)
    nl = torch.jit.script(neighbor_list)

    load_before = os.getloadavg()
    rows = []
    t_start = time.perf_counter()
    for size in args.sizes:
        pos, vel, m, z, box = water_like_box(size, seed=args.seed, dtype=dtype)
        n = pos.shape[0]
        with torch.no_grad():
            edges, _ = nl(pos, box, hypers.cutoff, hypers.neighbor_method)
            t_nl, _, _ = time_call(lambda: nl(pos, box, hypers.cutoff, hypers.neighbor_method), args.repeats, 1)
            t_fwd, samples, cpu = time_call(lambda: scripted(pos, vel, m, z, box), args.repeats, args.warmup)
        row = {
            "n_atoms": n,
            "box_length_nm": float(box[0, 0]),
            "neighbor_method": auto_method(n) if hypers.neighbor_method == "auto" else hypers.neighbor_method,
            "mean_neighbors": edges.shape[1] / n,
            "max_neighbors": int(torch.bincount(edges[0], minlength=n).max()),
            "forward_median_s": t_fwd,
            "forward_samples_s": samples,
            "forward_per_atom_us": 1e6 * t_fwd / n,
            "forward_cpu_user_s": cpu["user_s"],
            "forward_cpu_sys_s": cpu["sys_s"],
            "forward_minor_page_faults": cpu["minor_page_faults"],
            "neighbor_list_median_s": t_nl,
        }
        rows.append(row)
        print(
            f"N={n:6d}  {row['neighbor_method']:5s}  forward {t_fwd:8.4f} s  "
            f"{row['forward_per_atom_us']:8.1f} us/atom  (neighbour list {t_nl:.4f} s)",
            flush=True,
        )
    elapsed = time.perf_counter() - t_start

    sizes = [r["n_atoms"] for r in rows]
    times = [r["forward_median_s"] for r in rows]
    large = [(n, t) for n, t in zip(sizes, times) if n >= 999]
    result = {
        "benchmark": "pet_forward",
        "description": "scripted PETStrideModel.forward (no_grad), water-like random periodic boxes",
        "model": {"hypers": hypers.to_dict(), "dtype": args.dtype, "stride_ps": 0.016,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "density_atoms_per_nm3": 100.0,
        "auto_cell_threshold": AUTO_CELL_THRESHOLD,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "results": rows,
        "scaling_exponent_all_sizes": fit_exponent(sizes, times),
        "scaling_exponent_n_ge_999": fit_exponent([n for n, _ in large], [t for _, t in large]),
        "stack": dict(stack_info(), load_average_before=load_before, load_average_after=os.getloadavg()),
        "malloc_tuned": malloc_tuned,
        "total_wall_s": elapsed,
    }
    write_json(output, result, args.overwrite)
    print(f"scaling exponent (all sizes) {result['scaling_exponent_all_sizes']:.3f}; "
          f"(N >= 999) {result['scaling_exponent_n_ge_999']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

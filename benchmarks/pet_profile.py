"""Benchmark: where the PET stride model's forward spends its time (CPU), part by part.

Runs the eager ``PETStrideModel.forward`` (no_grad) under ``torch.profiler`` and attributes the CPU time of one call to the
model's parts, each measured inclusively through a ``record_function`` label:

- ``neighbor_list``: the periodic neighbour list and edge vectors;
- ``sequence_layout``: where each token goes in the padded attention buffer;
- per message-passing layer, summed over layers: ``attention.qkv`` and ``attention.out`` (the
  two projections), ``attention.core`` (the rest of the attention: padding, fused
  ``scaled_dot_product_attention``, gather, division), ``feedforward``, ``norms`` (RMSNorm),
  ``centre_embed``, and ``gnn_other`` (edge-token embedding, reverse-edge messages, node sums);
- ``backbone_other`` (geometry features) and ``heads_and_rest`` (output heads, scaling,
  constraint projection, input checks): what the forward spends outside the parts above.

Two set-ups: the default hypers with random weights on the water-like random boxes of
``benchmarks/pet_forward.py`` (the network of ``benchmarks/speed.py``), or with ``--model`` a
bundled model's architecture and weights on lattice-built rigid water (``--sizes`` then counts
atoms rounded to whole waters), fed a free-flight guess where the model takes one.

It also lists the operators with the most self CPU time, and times the attention's ``qkv``
projection alone on as many tokens as the call has, at its trained width ``2 d + heads
(head_dim - 1)`` and at the aligned width ``3 d`` the model evaluates it at (thread CPU time,
best of ``--repeats``). The profiler times wall clock, so a
call that loses its core to another process charges the wait to whatever operator was running:
each part (and each operator) is reported as its minimum over ``--repeats`` profiled calls,
fractions are of the sum of those parts. The profiler's own overhead is included in each part
(compare ``profiled_total_ms`` with ``unprofiled_ms``, the fastest call without the profiler).

Usage::

    python benchmarks/pet_profile.py [--model water-rigid-16fs] [--sizes 96 999 3000] [--threads 1]
                                     [--output FILE] [--overwrite]

Times in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import openmm_flashmd.model.pet as pet
from openmm_flashmd.model.pet import PETHypers, PETStrideModel
from openmm_flashmd.performance import tune_malloc

from _common import stack_info, write_json
from pet_forward import MASSES, water_like_box
from pet_forward_ab import inputs as rigid_water_inputs

DEFAULT_SIZES = [96, 999, 3000]

#: module class -> profile label (every instance of the class is summed under its label)
MODULE_LABELS = {pet.FeedForward: "feedforward", pet.RMSNorm: "norms", pet.CutoffAttention: "attention",
                 pet.GNNLayer: "gnn_layer", pet.PETBackbone: "backbone"}


def _label_modules(model: torch.nn.Module) -> List[torch.utils.hooks.RemovableHandle]:
    """Wrap the forward of every labelled submodule (and the attention's projections and the
    GNN layers' centre MLPs) in a ``record_function`` of its label."""
    handles = []

    def wrap(module, label):
        scopes = []

        def enter(_module, _inputs):
            scope = record_function(label)
            scope.__enter__()
            scopes.append(scope)

        def leave(_module, _inputs, _output):
            scopes.pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))

    for module in model.modules():
        for cls, label in MODULE_LABELS.items():
            if type(module) is cls:
                wrap(module, label)
        if isinstance(module, pet.CutoffAttention):
            module._qkv = _labelled(module._qkv, "attention.qkv")  # the aligned projection (eager: per instance)
            wrap(module.out, "attention.out")
        if isinstance(module, pet.GNNLayer):
            wrap(module.centre_embed, "centre_embed")
    return handles


def _labelled(function, label):
    def run(*args, **kwargs):
        with record_function(label):
            return function(*args, **kwargs)
    return run


def _profile_once(model, inputs) -> Dict[str, object]:
    """Profile one forward; inclusive CPU ms per label and the top operators by self time."""
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("forward"):
            model(*inputs)
    totals: Dict[str, float] = {}
    operators = []
    for event in prof.key_averages():
        if event.key in ("forward", "neighbor_list", "sequence_layout", "attention.qkv", "attention.out",
                         "centre_embed") or event.key in MODULE_LABELS.values():
            totals[event.key] = event.cpu_time_total / 1e3
        elif event.key.startswith("aten::"):
            operators.append({"op": event.key, "self_ms": event.self_cpu_time_total / 1e3, "calls": event.count})
    return {"totals": totals, "operators": operators}


def _projection_ms(attention: pet.CutoffAttention, n_tokens: int, repeats: int) -> Dict[str, float]:
    """Thread CPU ms of ``attention``'s qkv projection on ``n_tokens`` random tokens, trained width
    against the aligned width of :meth:`CutoffAttention._aligned_qkv`."""
    x = torch.randn(n_tokens, attention.dim)
    aligned = attention._aligned_qkv()
    times = {}
    with torch.no_grad():
        for key, (weight, bias) in (("trained_width", (attention.qkv.weight, attention.qkv.bias)),
                                    ("aligned_width", aligned)):
            samples = []
            for _ in range(repeats + 1):
                start = time.thread_time()
                torch.nn.functional.linear(x, weight, bias)
                samples.append(1e3 * (time.thread_time() - start))
            times[key] = min(samples[1:])
    times["widths"] = [attention.qkv.weight.shape[0], aligned[0].shape[0]]
    return times


def _parts(totals: Dict[str, float]) -> Dict[str, float]:
    """Exclusive parts (ms) from the inclusive label totals."""
    get = totals.get
    attention = get("attention", 0.0)
    parts = {
        "neighbor_list": get("neighbor_list", 0.0),
        "sequence_layout": get("sequence_layout", 0.0),
        "attention.qkv": get("attention.qkv", 0.0),
        "attention.out": get("attention.out", 0.0),
        "attention.core": attention - get("attention.qkv", 0.0) - get("attention.out", 0.0),
        "feedforward": get("feedforward", 0.0),
        "norms": get("norms", 0.0),
        "centre_embed": get("centre_embed", 0.0),
    }
    parts["gnn_other"] = (get("gnn_layer", 0.0) - attention - get("feedforward", 0.0) - get("norms", 0.0)
                          - get("centre_embed", 0.0))
    parts["backbone_other"] = (get("backbone", 0.0) - get("gnn_layer", 0.0) - get("neighbor_list", 0.0)
                               - get("sequence_layout", 0.0))
    parts["heads_and_rest"] = get("forward", 0.0) - get("backbone", 0.0)
    return parts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a bundled model (default: default hypers, random weights)")
    parser.add_argument("--output", default=None,
                        help="default: benchmarks/results/pet_profile[-MODEL].json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES, help="atom counts (rounded to 3n)")
    parser.add_argument("--repeats", type=int, default=5, help="profiled calls per size (each part's minimum is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    output = Path(args.output or f"benchmarks/results/pet_profile{'-' + args.model if args.model else ''}.json")
    if output.exists() and not args.overwrite:
        print(f"{output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    malloc_tuned = tune_malloc()
    torch.set_num_threads(args.threads)
    if args.model:
        from openmm_flashmd import load_model
        from openmm_flashmd.model.protocol import read_metadata

        source = load_model(args.model)
        metadata = read_metadata(source)
        model = PETStrideModel.from_metadata(metadata)
        model.load_state_dict(source.state_dict())
        model.eval()
        hypers, stride = PETHypers.from_dict(metadata["hypers"]), float(metadata["stride"])
    else:
        hypers, stride = PETHypers(), 0.016
        torch.manual_seed(args.seed)
        model = PETStrideModel(hypers, stride, [1, 8], MASSES, periodic=True).eval()
    _label_modules(model)
    pet.batched_neighbor_list = _labelled(pet.batched_neighbor_list, "neighbor_list")
    pet._sequence_layout = _labelled(pet._sequence_layout, "sequence_layout")

    rows = []
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    for size in args.sizes:
        if args.model:
            inputs = rigid_water_inputs(max(1, size // 3), stride)
            if not model.uses_guess:
                inputs = inputs[:5]
        else:
            inputs = water_like_box(size, seed=args.seed)
        with torch.no_grad():
            model(*inputs)  # warm-up
            unprofiled = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                model(*inputs)
                unprofiled.append(1e3 * (time.perf_counter() - start))
        runs = [_profile_once(model, inputs) for _ in range(args.repeats)]
        per_run = [_parts(run["totals"]) for run in runs]
        parts = {key: min(run[key] for run in per_run) for key in per_run[0]}
        total = sum(parts.values())
        operators: Dict[str, Dict[str, float]] = {}
        for run in runs:
            for op in run["operators"]:
                best = operators.setdefault(op["op"], dict(op))
                best["self_ms"] = min(best["self_ms"], op["self_ms"])
        with torch.no_grad():
            n_tokens = int(inputs[0].shape[0]) + int(pet.batched_neighbor_list(
                inputs[0].unsqueeze(0), inputs[4].unsqueeze(0), hypers.cutoff, hypers.neighbor_method)[0].shape[1])
        attention = next(module for module in model.modules() if isinstance(module, pet.CutoffAttention))
        row = {
            "n_atoms": int(inputs[0].shape[0]),
            "n_tokens": n_tokens,
            "qkv_projection_ms": _projection_ms(attention, n_tokens, args.repeats),
            "unprofiled_ms": min(unprofiled),
            "profiled_total_ms": total,
            "parts_ms": parts,
            "parts_fraction": {key: value / total for key, value in parts.items()},
            "top_operators_self_ms": sorted(operators.values(), key=lambda op: op["self_ms"], reverse=True)[:12],
        }
        rows.append(row)
        largest = sorted(parts.items(), key=lambda item: item[1], reverse=True)[:4]
        projection = row["qkv_projection_ms"]
        print(f"N={row['n_atoms']:5d}  {total:8.1f} ms profiled ({row['unprofiled_ms']:.1f} without)  "
              + ", ".join(f"{key} {100 * value / total:.0f} %" for key, value in largest)
              + f"; qkv projection {projection['trained_width']:.1f} ms at width {projection['widths'][0]}, "
              f"{projection['aligned_width']:.1f} ms at {projection['widths'][1]}", flush=True)

    result = {
        "benchmark": "pet_profile",
        "description": "CPU time of one eager PETStrideModel forward (no_grad), by part, torch.profiler; "
                       + (f"the bundled {args.model} on lattice-built rigid water" if args.model else
                          "default hypers with random weights on water-like random periodic boxes as in "
                          "pet_forward.py"),
        "model": {"name": args.model, "hypers": hypers.to_dict(), "dtype": "float32", "stride_ps": stride,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "repeats": args.repeats,
        "results": rows,
        "malloc_tuned": malloc_tuned,
        "stack": dict(stack_info(), load_average_before=load_before, load_average_after=os.getloadavg()),
        "total_wall_s": time.perf_counter() - t_start,
        "command": "python benchmarks/pet_profile.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_json(output, result, args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())

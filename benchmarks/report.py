"""Render benchmarks/results/*.json as markdown tables and put them into README.md.

    python benchmarks/report.py            # rewrite the block between the README markers
    python benchmarks/report.py --print    # only print the markdown

Every number in the README's benchmark section comes from here; nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def _stack_line(stack: Dict) -> str:
    cpu = stack.get("cpu_model") or stack.get("processor") or stack.get("machine", "")
    parts = [f"{stack.get('cpu_count')} CPU cores ({cpu})" if stack.get("cpu_count") else cpu,
             f"torch {stack.get('torch') or stack.get('torch_version')}",
             f"{stack.get('torch_threads')} torch threads" if stack.get("torch_threads") else None,
             f"OpenMM {stack['openmm']}" if stack.get("openmm") else None,
             f"openmmtorch {stack['openmmtorch']}" if stack.get("openmmtorch") else None,
             f"GPU {stack['gpu']}" if stack.get("gpu") else None]
    return "Measured on " + ", ".join(p for p in parts if p) + "."


def render_pet_forward(data: Dict, name: str) -> List[str]:
    stack = dict(data.get("machine", {}))
    stack.update(torch=data.get("torch_version"), torch_threads=data.get("torch_threads"))
    tuned = " with glibc malloc thresholds raised (`--tune-malloc`)" if data.get("malloc_tuned") else ""
    lines = [f"### PET forward time{tuned} (`{name}`)", "",
             f"{data['description']}; {data['model']['parameters']} parameters, {data['model']['dtype']}, "
             f"median of {data['repeats']} runs.", "",
             "| atoms | neighbour list | forward (ms) | per atom (µs) |", "|---:|---|---:|---:|"]
    for row in data["results"]:
        lines.append(f"| {row['n_atoms']} | {row['neighbor_method']} | {row['forward_median_s'] * 1e3:.1f} | "
                     f"{row['forward_per_atom_us']:.0f} |")
    lines += ["", f"Fitted exponent (time ∝ N^a): a = {data['scaling_exponent_all_sizes']:.2f} over all sizes, "
                  f"{data['scaling_exponent_n_ge_999']:.2f} for N ≥ 999. " + _stack_line(stack), ""]
    return lines


def render_integrator_overhead(data: Dict, name: str) -> List[str]:
    lines = [f"### Integrator overhead on the {data['platform']} platform (`{name}`)", "",
             f"One `FlashMDIntegrator` step (splitting \"{data['splitting']}\", {data['stride_ps'] * 1000:g} fs, "
             f"{data['model']}) against the bare model forward plus one energy evaluation of the same System, "
             "interleaved in one run.", "",
             "| atoms | step (ms) | model + energy (ms) | ratio |", "|---:|---:|---:|---:|"]
    for row in data["results"]:
        lines.append(f"| {row['n_atoms']} | {row['stride_step_s']['median'] * 1e3:.1f} | "
                     f"{row['model_plus_energy_s']['median'] * 1e3:.1f} | {row['overhead_ratio']:.2f} |")
    lines += ["", _stack_line(data["stack"]), ""]
    return lines


RENDERERS: Dict[str, Callable[[Dict, str], List[str]]] = {
    "pet_forward": render_pet_forward,
    "integrator_overhead": render_integrator_overhead,
}


def render_all() -> str:
    lines: List[str] = []
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        renderer = RENDERERS.get(data.get("benchmark", ""))
        if renderer is not None and not data.get("exclude_from_readme"):
            lines += renderer(data, path.name)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print", action="store_true", help="print the markdown instead of editing README.md")
    args = parser.parse_args()
    markdown = render_all()
    if args.print:
        print(markdown)
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + markdown + "\n" + END + tail)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()

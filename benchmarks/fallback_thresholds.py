"""How often the stride monitor rejects a bundled model's strides from reference states.

    python benchmarks/fallback_thresholds.py MODEL DATA [--frames 300] [--threads 1] [--overwrite]

Starts one NVE stride (splitting "F E", the monitor on, CPU platform) of
``MODEL`` from each of up to ``--frames`` reference frames of ``DATA`` (a trajectory file
from ``openmm-flashmd generate`` with the model's System; the model's held-out segments when
it was trained on that file, else every segment) and records the energy filter's squared
scale ``α² = (H - V') / K'`` (percentiles over every stride the model completed), the largest
displacement of a particle in an accepted stride (nm), and how many strides the monitor
rejects at the defaults and why; and how many frames of the whole file are above the
temperature ceiling of thermostatted runs (1.75 x the data's temperature; kinetic
temperature with 3N - constraints degrees of freedom). The false-rejection rate at the
defaults should be about zero: these are states from the
model's own training distribution. Writes the entry ``MODEL`` of
``benchmarks/results/fallback_thresholds.json`` (rendered into the README by ``benchmarks/report.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import stack_info, write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "fallback_thresholds.json"


def measure(model_name: str, data_path: Path, frames: int, seed: int = 0) -> Dict[str, Any]:
    """One monitored stride from each of ``frames`` reference frames; see the module docstring."""
    import openmm
    from openmm import unit

    from openmm_flashmd import FlashMDIntegrator, load_model, read_metadata
    from openmm_flashmd.data.dataset import load_trajectories
    from openmm_flashmd.data.guess import data_system

    model = load_model(model_name)
    metadata = read_metadata(model)
    data = load_trajectories(data_path)
    provenance = metadata.get("provenance", {})
    trained_here = data.sha256 == provenance.get("dataset_sha256")
    segments = (np.asarray(provenance["validation_segments"]) if trained_here
                else np.arange(data.n_segments))
    rng = np.random.default_rng(seed)
    picks = [(int(s), int(f)) for s in segments for f in range(data.frames_per_segment)]
    picks = [picks[i] for i in sorted(rng.choice(len(picks), size=min(frames, len(picks)), replace=False))]

    system = data_system(data)
    integrator = FlashMDIntegrator(system, model, splitting="F E", random_seed=seed)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    alpha2, displacement = [], []
    began = time.perf_counter()
    for s, f in picks:
        if data.periodic:
            context.setPeriodicBoxVectors(*data.box[s, f])
        context.setPositions(data.positions[s, f])
        context.setVelocities(data.velocities[s, f])
        before = integrator.fallback_statistics["by_reason"]
        integrator.step(1)
        after = integrator.fallback_statistics["by_reason"]
        if all(after[k] == before[k] for k in after if k != "energy"):  # the filter ran on the model's stride
            alpha2.append(integrator.getGlobalVariableByName("flashmd_alpha2"))
        if after == before:  # accepted
            x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
            displacement.append(float(np.linalg.norm(x - data.positions[s, f], axis=1).max()))
    wall = time.perf_counter() - began
    stats = integrator.fallback_statistics
    # the temperature ceiling of thermostatted runs, on every frame of the reference data
    from openmm_flashmd.analysis.thermo import degrees_of_freedom, kinetic_temperature

    from openmm_flashmd.integrator.fallback import DEFAULT_MAX_TEMPERATURE_RATIO

    frames_t = kinetic_temperature(data.velocities.reshape(-1, data.n_atoms, 3), data.masses,
                                   degrees_of_freedom(system))
    ceiling = DEFAULT_MAX_TEMPERATURE_RATIO * data.temperature
    lo, hi = (integrator.getGlobalVariableByName(n) for n in ("flashmd_scale_lo", "flashmd_scale_hi"))
    a2 = np.asarray(alpha2)
    return {"model": model_name, "data": data_path.name, "held_out": "validation segments" if trained_here
            else "every segment (the model was trained on another file of the same System)",
            "strides": stats["strides"], "rejected": stats["rejected"], "by_reason": stats["by_reason"],
            "false_rejection_rate": stats["rejected"] / stats["strides"],
            "scale_bounds": [lo, hi],
            "alpha2_percentiles": {str(p): float(np.percentile(a2, p)) for p in (0.1, 1, 50, 99, 99.9)}
            if len(a2) else {},
            "alpha2_range": [float(a2.min()), float(a2.max())] if len(a2) else None,
            "max_displacement_nm": float(max(displacement)) if displacement else None,
            "temperature_ceiling_K": ceiling, "reference_frames": int(frames_t.size),
            "reference_frames_above_ceiling": int((frames_t > ceiling).sum()),
            "reference_max_temperature_K": float(frames_t.max()),
            "fallback_substeps": integrator.fallback_substeps, "wall_s": wall, "stack": stack_info()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("data", type=Path)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    record = json.loads(OUT.read_text()) if OUT.exists() else {"benchmark": "fallback_thresholds", "models": {}}
    if args.model in record["models"] and not args.overwrite:
        raise SystemExit(f"{OUT} already has {args.model}; pass --overwrite")
    entry = record["models"][args.model] = measure(args.model, args.data, args.frames)
    write_json(OUT, record, overwrite=True)
    print(f"{args.model}: {entry['rejected']} of {entry['strides']} reference strides rejected "
          f"{entry['by_reason']}; alpha^2 range {entry['alpha2_range']}, "
          f"max displacement {entry['max_displacement_nm']} nm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

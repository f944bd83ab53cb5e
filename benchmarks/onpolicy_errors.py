"""A stride model's errors on the states it visits, next to its errors on reference states.

    python benchmarks/onpolicy_errors.py MODEL DATA [--burst-ps 4] [--segments 16] [--name NAME]
        [--reference-segments 1,5,13] [--threads 1] [--work-dir bundled-work/onpolicy-errors] [--overwrite]

Held-out errors are measured on states of reference MD. A simulation runs on the states the model
itself produces, and where its errors differ there, the held-out numbers do not predict the run.
For each of ``--segments`` starts (random frames of DATA) the model runs ``--burst-ps`` of NVT
(Langevin 1/ps with the energy filter, no fallback MD: :func:`openmm_flashmd.data.onpolicy.onpolicy_data`),
then reference MD (the data's own System and settings) records three strides from where it ended.
``openmm_flashmd.train.evaluate`` then compares the model with that reference: per element the
Δq (nm) and v′ (nm/ps) RMSE and the kinetic-energy ratio, all after the constraint projection when
the System has constraints, and the energy error per stride (kJ/mol: potential, kinetic, total after
the projection); the same on the reference states of DATA (``--reference-segments``, default the
model's validation segments when it was trained on DATA, else all). The on-policy trajectory file is
kept in ``--work-dir`` (an interrupted run reuses it once complete).

Writes the entry ``NAME`` (default: the model's file stem) of ``benchmarks/results/onpolicy_errors.json``
(rendered into the README by ``benchmarks/report.py``), with machine and stack.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import stack_info, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "onpolicy_errors.json"
#: reference strides recorded after each burst
STRIDES_AFTER = 3


def _summary(result: Dict[str, Any]) -> Dict[str, Any]:
    """What the table shows of an :func:`openmm_flashmd.train.evaluate` result."""
    keys = ("dq_rmse", "v_rmse", "dq_constrained_rmse", "v_constrained_rmse", "kinetic_energy_ratio",
            "kinetic_energy_ratio_constrained", "n_atom_samples")
    out = {"n_pairs": result["n_pairs"],
           "per_element": {e["symbol"]: {k: e[k] for k in keys if k in e} for e in result["per_element"].values()},
           "energy_error_per_stride": result["energy_error_per_stride"]["model"]}
    if "molecule_kinetic_energy_ratio" in result:
        out["molecule_kinetic_energy_ratio"] = result["molecule_kinetic_energy_ratio"]
    return out


def measure(model: str, data: str, burst_ps: float, n_segments: int, reference_segments: Optional[str],
            work_dir: Path, name: str, seed: int = 0) -> Dict[str, Any]:
    """On-policy and reference-state errors of ``model`` (see the module docstring)."""
    from openmm_flashmd.data.dataset import load_trajectories
    from openmm_flashmd.data.onpolicy import onpolicy_data
    from openmm_flashmd.model.protocol import load_model, read_metadata
    from openmm_flashmd.train import evaluate

    stride = float(read_metadata(load_model(model))["stride"])
    strides = max(1, round(burst_ps / stride))
    path = work_dir / f"{name}-{strides}.h5"
    began = time.perf_counter()
    complete = False
    if path.exists():
        try:
            complete = load_trajectories(path).n_segments == n_segments
        except Exception:  # noqa: BLE001 (an interrupted file: written again)
            complete = False
    if not complete:
        work_dir.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        onpolicy_data(model, data, path, n_segments, burst_strides=(strides, strides), seed=seed,
                      segment_length=(STRIDES_AFTER + 0.5) * stride)
    generated_s = time.perf_counter() - began
    onpolicy = evaluate(model, path, segments="all", max_pairs=None, batch_size=8)
    chosen = None if reference_segments is None else [int(i) for i in reference_segments.split(",")]
    reference = evaluate(model, data, segments=chosen, max_pairs=n_segments * STRIDES_AFTER * 8,
                         batch_size=8)
    return {"model": model, "data": str(data), "stride_ps": stride, "burst_ps": strides * stride,
            "burst_strides": strides, "segments": n_segments, "seed": seed, "onpolicy_file": str(path),
            "generation_wall_s": generated_s, "onpolicy": _summary(onpolicy), "reference": _summary(reference),
            "reference_segments": reference["segments_used"]}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="stride model (bundled name or model.pt)")
    parser.add_argument("data", help="the reference trajectory file (its System, settings and starting frames)")
    parser.add_argument("--burst-ps", type=float, default=4.0, help="ps of FlashMD before each reference (default %(default)s)")
    parser.add_argument("--segments", type=int, default=16, help="bursts (default %(default)s)")
    parser.add_argument("--reference-segments", help="segments of DATA for the reference-state errors")
    parser.add_argument("--name", help="entry name (default: the model's file stem)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch and OpenMM CPU threads")
    parser.add_argument("--work-dir", type=Path, default=Path("bundled-work") / "onpolicy-errors")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing entry")
    args = parser.parse_args(argv)
    import json

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.name or Path(args.model).stem
    results = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "onpolicy_errors", "models": {}}
    if name in results["models"] and not args.overwrite:
        raise SystemExit(f"{args.out} already has {name!r}; pass --overwrite to measure it again")
    results["models"][name] = measure(args.model, args.data, args.burst_ps, args.segments, args.reference_segments,
                                      args.work_dir, name, args.seed)
    results["models"][name]["stack"] = stack_info()
    write_json(args.out, results, overwrite=True)
    print(json.dumps({k: v for k, v in results["models"][name].items() if k in ("onpolicy", "reference")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

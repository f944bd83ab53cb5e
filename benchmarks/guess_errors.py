"""How close is each Verlet guess to reference MD, with no model at all?

For frames of a reference trajectory file (``openmm-flashmd generate``), compares the state
one stride later with three guesses from the same frame, per element (RMS over atoms and
frames): free flight (``x + tau v``, velocities unchanged), the frozen-force Verlet guess
(every force frozen at the start, ``guess_substeps`` substeps) and the multiple-time-step guess
(the forces of ``--fast-forces`` recomputed at every substep, the rest frozen;
``openmm_flashmd.integrator.guess``). Guesses are computed by the very program the integrator
and the training data use (``openmm_flashmd.data.guess.verlet_guesses``).

Usage (from the repository root)::

    python benchmarks/guess_errors.py DATA.h5 --stride 0.008 --substeps 4 \\
        --json benchmarks/results/guess_errors-alanine-8fs.json

Units: positions nm, velocities nm/ps, stride ps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from _common import refuse_existing, stack_info, write_json


def element_rmse(errors: np.ndarray, numbers: np.ndarray) -> Dict[str, float]:
    """RMS of the vector ``errors`` [S, F, N, 3] per element symbol (over atoms and frames)."""
    from openmm import app

    out = {}
    for z in sorted(set(numbers.tolist())):
        chosen = errors[:, :, numbers == z]
        out[app.Element.getByAtomicNumber(int(z)).symbol] = float(np.sqrt((chosen ** 2).sum(-1).mean()))
    return out


def guess_errors(path: Path, stride: float, substeps: Sequence[int], fast_forces: Sequence[str],
                 segments: int) -> Dict[str, object]:
    """Per-element RMS errors of free flight and the guesses against the data one stride later."""
    from openmm_flashmd.data.dataset import load_trajectories, stride_frames
    from openmm_flashmd.data.guess import verlet_guesses

    data = load_trajectories(path)
    k = stride_frames(stride, data.record_interval, data.frames_per_segment)
    chosen = np.linspace(0, data.n_segments - 1, min(segments, data.n_segments)).round().astype(int)
    x, v = data.positions[chosen], data.velocities[chosen]
    dq_ref, v_ref = x[:, k:] - x[:, :-k], v[:, k:]
    rows: List[Dict[str, object]] = [{
        "guess": "free flight", "substeps": None, "fast_forces": [],
        "dq_rmse": element_rmse(v[:, :-k] * stride - dq_ref, data.atomic_numbers),
        "v_rmse": element_rmse(v[:, :-k] - v_ref, data.atomic_numbers),
    }]
    for n in substeps:
        for label, fast in (("frozen forces", []), ("multiple time step", list(fast_forces))):
            start = time.perf_counter()
            g, w = verlet_guesses(data, stride, int(n), segments=chosen, fast_forces=fast, progress=False)
            g, w = g[chosen][:, :-k], w[chosen][:, :-k]
            rows.append({"guess": label, "substeps": int(n), "fast_forces": fast,
                         "dq_rmse": element_rmse(g - dq_ref, data.atomic_numbers),
                         "v_rmse": element_rmse(w - v_ref, data.atomic_numbers),
                         "wall_s": time.perf_counter() - start})
            print(f"{label}, {n} substeps: dq {rows[-1]['dq_rmse']}", flush=True)
    return {"data": str(path), "stride_ps": stride, "segments": [int(s) for s in chosen],
            "frames_per_segment_used": int(data.frames_per_segment - k), "rows": rows}


def main(argv: Optional[Sequence[str]] = None) -> int:
    from openmm_flashmd.integrator.guess import BONDED_FORCES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="reference trajectory file (openmm-flashmd generate)")
    parser.add_argument("--stride", type=float, default=0.008, help="ps")
    parser.add_argument("--substeps", type=int, nargs="+", default=[4])
    parser.add_argument("--fast-forces", nargs="+", default=list(BONDED_FORCES),
                        help="OpenMM Force classes recomputed per substep in the multiple-time-step guess")
    parser.add_argument("--segments", type=int, default=40, help="segments used, spread over the file")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.json:
        refuse_existing(args.json, args.overwrite)
    start = time.perf_counter()
    payload = guess_errors(args.data, args.stride, args.substeps, args.fast_forces, args.segments)
    payload.update(benchmark="guess_errors", wall_s=time.perf_counter() - start, stack=stack_info(),
                   command=" ".join(["python", "benchmarks/guess_errors.py", *sys.argv[1:]]))
    if args.json:
        write_json(args.json, payload, args.overwrite)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

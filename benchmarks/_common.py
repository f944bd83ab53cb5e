"""Shared helpers for benchmark scripts: machine/stack record, timing, JSON output."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional


#: The ``openmm-flashmd`` command line in a fresh process of this Python.
CLI = [sys.executable, "-m", "openmm_flashmd.cli"]

#: The trust check's limit on strides run as fallback MD (the package's
#: ``openmm_flashmd.analysis.report.MAX_FALLBACK_FRACTION``, repeated so that report.py renders without
#: importing torch; tests/test_validate.py checks that the two agree).
MAX_FALLBACK_FRACTION = 0.01
#: Standard errors by which a value must be within a goal's threshold to meet it (the package's
#: ``openmm_flashmd.analysis.report.TEMPERATURE_CONFIDENCE``, repeated for the same reason and checked
#: the same way).
GOAL_CONFIDENCE = 2.0


def met_only_by_fallback(share: Optional[float]) -> Optional[str]:
    """The note for a goal whose run took more than :data:`MAX_FALLBACK_FRACTION` of its strides as
    fallback MD (``share``, a fraction; None: not recorded): such a goal is the fallback's doing, not the
    stride model's. None when the share is within the limit or unknown."""
    if share is None or share <= MAX_FALLBACK_FRACTION:
        return None
    return f"met only by fallback MD ({share:.0%} of strides)"


def goal_cells(row: Dict[str, object]) -> List[str]:
    """Markdown cells (value ± error, must reach, aim) of a goal row of ``benchmarks/validate.py``'s
    ``evaluate_goals``: each threshold with its status (met, **not met**, not resolved, not measured)."""
    error = row.get("error")
    value = fmt_or_dash(row.get("value"), str(row.get("spec", ".3g"))) + (f" ± {error:.2g}" if isinstance(error, (int, float))
                                                    and math.isfinite(error) else "")
    bold = {"not met": "**not met**"}
    must = f"{row['must']:g}: {bold.get(row['status'], row['status'])}"
    aim = "—" if row.get("aim") is None else f"{row['aim']:g}: {bold.get(row['aim_status'], row['aim_status'] or '—')}"
    return [value, must, aim]


def single_thread_env() -> Dict[str, str]:
    """This process's environment with every thread pool (torch, MKL, OpenMM CPU) at one thread."""
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENMM_CPU_THREADS="1", PYTHONUNBUFFERED="1")


def stack_info() -> Dict[str, object]:
    """Where and on what software a benchmark ran (``openmm`` is None where it is not installed)."""
    import torch

    try:
        import openmm
    except ImportError:  # e.g. a GPU image with torch only (benchmarks/speed.py --direct)
        openmm = None

    info = {
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "openmm": openmm.__version__ if openmm is not None else None,
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        from importlib.metadata import version

        info["openmmtorch"] = version("openmmtorch")
    except Exception:
        info["openmmtorch"] = None
    return info


def fmt_or_dash(value, spec: str = ".2f", suffix: str = "") -> str:
    """``value`` formatted with ``spec`` + ``suffix``, or "—" when it is missing (None, NaN, inf)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:{spec}}{suffix}"


def fit_exponent(sizes: List[float], times: List[float]) -> Optional[float]:
    """Least-squares slope of log(time) against log(N); None with fewer than two sizes."""
    if len(sizes) < 2:
        return None
    import numpy as np

    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def summarize(samples: List[float]) -> Dict[str, float]:
    """Median, min and max of timing samples (s)."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def median_time(function: Callable[[], object], repeats: int, inner: int = 1) -> Dict[str, float]:
    """Median, min and max wall time (s) per call of ``inner`` calls, over ``repeats`` runs."""
    samples: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            function()
        samples.append((time.perf_counter() - start) / inner)
    return summarize(samples)


def add_run_options(parser, lengths: Dict[str, object], out: Path) -> None:
    """The options every model-run benchmark shares: ``--lengths``, ``--threads``, ``--out``,
    ``--overwrite`` and ``--no-progress``."""
    parser.add_argument("--lengths", choices=sorted(lengths), default="full")
    parser.add_argument("--threads", type=int, default=1, help="OpenMM CPU threads (torch's: OMP_NUM_THREADS)")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Stop before any work when ``path`` exists and ``overwrite`` is not set."""
    if Path(path).exists() and not overwrite:
        raise SystemExit(f"{path} exists; pass --overwrite to replace it")


def write_json(path: Path, payload: Dict[str, object], overwrite: bool) -> None:
    """Write ``payload`` as JSON; refuse to replace an existing file unless ``overwrite``."""
    path = Path(path)
    refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # atomic: an interrupted write leaves the old file
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")


#: Issue 14's goals, judged on one run: the OpenMM step at most this many times the bare calls at
#: every size, the measured speed-up at least this share of the limit L, and FlashMD's cost exponent
#: within this of the bare stride forward's.
MAX_STEP_OVER_BARE = 1.05
MIN_SPEEDUP_OVER_LIMIT = 0.9
MAX_EXPONENT_GAP = 0.05


def issue14_goals(rows: List[Dict[str, object]], exponents: Dict[str, Optional[float]], strides: List[float]
                  ) -> Optional[Dict[str, object]]:
    """Issue 14's goals on one OpenMM-mode run with bare calls (None otherwise): for each, the worst
    value (and where) and whether it is met."""
    if not all("integrator_overhead" in r and "speedup_over_limit" in r for r in rows):
        return None
    overhead = [(r["integrator_overhead"][f"{s:g}"], r["n_atoms"], s) for r in rows for s in strides]
    over_limit = [(r["speedup_over_limit"][f"{s:g}"], r["n_atoms"], s) for r in rows for s in strides]
    gaps = [(exponents[f"flashmd_{s:g}"] - exponents[f"bare_flashmd_{s:g}"], s) for s in strides
            if exponents.get(f"flashmd_{s:g}") is not None and exponents.get(f"bare_flashmd_{s:g}") is not None]
    worst_overhead, worst_limit = max(overhead), min(over_limit)
    worst_gap = max(gaps, key=lambda g: abs(g[0])) if len(rows) > 1 and gaps else None
    goals = {"step_over_bare": {"limit": MAX_STEP_OVER_BARE, "worst": worst_overhead[0], "n_atoms": worst_overhead[1],
                                "stride_ps": worst_overhead[2], "met": worst_overhead[0] <= MAX_STEP_OVER_BARE},
             "speedup_over_limit": {"limit": MIN_SPEEDUP_OVER_LIMIT, "worst": worst_limit[0], "n_atoms": worst_limit[1],
                                    "stride_ps": worst_limit[2], "met": worst_limit[0] >= MIN_SPEEDUP_OVER_LIMIT}}
    if worst_gap is not None:
        goals["exponent_gap"] = {"limit": MAX_EXPONENT_GAP, "worst": worst_gap[0], "stride_ps": worst_gap[1],
                                 "met": abs(worst_gap[0]) <= MAX_EXPONENT_GAP}
    return goals

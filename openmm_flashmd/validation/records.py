"""JSON and array records of a validation, written atomically (a killed run never leaves half a file)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict

import numpy as np


def clean(value: Any) -> Any:
    """JSON-ready copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def write_record(path: Path, payload: Dict[str, Any]) -> None:
    """``payload`` (cleaned) as indented JSON at ``path``, atomically."""
    from openmm_flashmd.run_files import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(clean(payload), indent=2) + "\n")


def write_arrays(path: Path, arrays: Dict[str, np.ndarray]) -> None:
    """``arrays`` as a compressed ``.npz`` at ``path``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.npz")
    np.savez_compressed(partial, **arrays)
    os.replace(partial, path)


def read_arrays(path: Path) -> Dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}

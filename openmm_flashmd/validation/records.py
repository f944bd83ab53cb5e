"""JSON and array records of a validation, written atomically (a killed run never leaves half a file)."""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, Tuple

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


#: Keys of a run checkpoint's file that hold the Context checkpoint and the JSON record.
_CONTEXT, _RECORD = "_context_checkpoint", "_record_json"


def write_run_checkpoint(path: Path, context_checkpoint: bytes, record: Dict[str, Any],
                         arrays: Dict[str, np.ndarray]) -> None:
    """A run that can resume, as one ``.npz`` at ``path``, atomically: the OpenMM Context's
    checkpoint (``Context.createCheckpoint``: positions, velocities, box, integrator variables,
    random-number state), a JSON-ready ``record`` and ``arrays``. Floats in ``record`` round-trip
    exactly (NaN becomes None)."""
    payload = dict(arrays)
    payload[_CONTEXT] = np.frombuffer(context_checkpoint, dtype=np.uint8)
    payload[_RECORD] = np.array(json.dumps(clean(record)))
    write_arrays(path, payload)


def read_run_checkpoint(path: Path) -> Tuple[bytes, Dict[str, Any], Dict[str, np.ndarray]]:
    """The Context checkpoint, record and arrays :func:`write_run_checkpoint` wrote at ``path``;
    :class:`ValueError` (one line) when the file cannot be read back."""
    try:
        arrays = read_arrays(path)
        context_checkpoint = arrays.pop(_CONTEXT).tobytes()
        record = json.loads(str(arrays.pop(_RECORD)))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot resume from {path}: unreadable ({type(err).__name__}); delete it to run that "
                         "phase again from its start") from None
    return context_checkpoint, record, arrays

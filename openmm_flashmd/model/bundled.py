"""Stride models shipped inside the package, loadable by name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional, Tuple

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models"


def bundled_models() -> Dict[str, Path]:
    """Map each bundled model name (file stem, e.g. ``water-16fs``) to its file."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.pt"))}


def split_model_name(name: str) -> Optional[Tuple[str, int]]:
    """``"water-16fs"`` -> ``("water", 16)`` (built-in system, stride in fs); None for other names."""
    match = re.fullmatch(r"(.+)-(\d+)fs", name)
    return (match.group(1), int(match.group(2))) if match else None


def bundled_model_path(name: str) -> Path:
    """Path of the bundled model ``name``; a clear error lists what exists."""
    models = bundled_models()
    if name not in models:
        known = ", ".join(models) or "none yet"
        raise FileNotFoundError(f"no model file or bundled model named {name!r} (bundled models: {known})")
    return models[name]

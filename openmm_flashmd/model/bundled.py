"""Stride models shipped inside the package, loadable by name."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models"


def bundled_models() -> Dict[str, Path]:
    """Map each bundled model name (file stem, e.g. ``water-16fs``) to its file."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.pt"))}


def bundled_model_path(name: str) -> Path:
    """Path of the bundled model ``name``; a clear error lists what exists."""
    models = bundled_models()
    if name not in models:
        known = ", ".join(models) or "none yet"
        raise FileNotFoundError(f"no model file or bundled model named {name!r} (bundled models: {known})")
    return models[name]

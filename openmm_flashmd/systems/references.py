"""Bundled reference-MD records of built-in systems: what reference MD with the same potential
measured, for the trust checks of ``openmm-flashmd simulate``.

Each record is a JSON file in ``openmm_flashmd/systems/data/`` with ``description``,
``temperature_K`` (nominal, K), ``source`` (which data, how many frames),
``measured_temperature_K`` (kinetic temperature with 3N - constraints degrees of freedom, K)
and ``temperature_by_element_K`` (kinetic temperature of each element's atoms with 3 degrees
of freedom per atom, K: with constraints these differ from the system temperature); the
water records also hold the reference RDFs (:func:`openmm_flashmd.analysis.structure.reference_rdf`)
and the NpT density at 1 bar (``density_g_cm3``: mean, sem, source; written by
``examples/models/reference_density.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"

#: Built-in system -> its reference record.
REFERENCE_RECORDS = {
    "water": DATA_DIR / "water-reference-rdf.json",
    "water-rigid": DATA_DIR / "water-rigid-reference-rdf.json",
    "alanine-dipeptide-implicit-hbonds": DATA_DIR / "alanine-dipeptide-implicit-hbonds-reference.json",
}


def reference_temperatures(system: Optional[str]) -> Optional[Dict[str, object]]:
    """``{"measured_temperature_K": float, "temperature_by_element_K": {element: K}}`` of a
    built-in system's reference MD, or None when the package has no record for it."""
    path = REFERENCE_RECORDS.get(system or "")
    if path is None:
        return None
    record = json.loads(path.read_text())
    return {key: record[key] for key in ("measured_temperature_K", "temperature_by_element_K")}


def reference_density(system: Optional[str]) -> Optional[Dict[str, object]]:
    """``{"mean", "sem", "source"}``: the density (g/cm³) of a built-in system's reference MD in
    NpT at 1 bar, or None when the package has none for it."""
    path = REFERENCE_RECORDS.get(system or "")
    return None if path is None else json.loads(path.read_text()).get("density_g_cm3")


def temperature_record(velocities: np.ndarray, masses: np.ndarray, elements: Sequence[str],
                       n_constraints: int) -> Dict[str, object]:
    """The temperature fields of a reference record from reference frames: velocities
    ``[..., N, 3]`` (nm/ps), masses ``[N]`` (Da), element symbols ``[N]``."""
    from openmm_flashmd.analysis.thermo import kinetic_temperature, temperature_by_element

    frames = np.asarray(velocities).reshape(-1, len(masses), 3)
    return {
        "measured_temperature_K": round(float(np.mean(kinetic_temperature(
            frames, masses, 3 * len(masses) - n_constraints))), 2),
        "temperature_by_element_K": {element: round(float(np.mean(values)), 2)
                                     for element, values in temperature_by_element(frames, masses, elements).items()},
    }

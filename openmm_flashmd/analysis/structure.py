"""Structural observables over mdtraj trajectories (plain functions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import mdtraj
import numpy as np


def radial_distribution(
    trajectory: mdtraj.Trajectory,
    element_a: str,
    element_b: str,
    r_max: Optional[float] = None,
    bin_width: float = 0.005,
) -> Tuple[np.ndarray, np.ndarray]:
    """g(r) between two elements (nm bins), intramolecular pairs excluded.

    ``r_max`` defaults to just under half the shortest box edge of the first frame.
    """
    top = trajectory.topology
    a = top.select(f"element {element_a}")
    b = top.select(f"element {element_b}")
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"trajectory has no {element_a} or no {element_b} atoms")
    residue = np.array([atom.residue.index for atom in top.atoms])
    pairs = np.array([(i, j) for i in a for j in b if i < j or (element_a != element_b and i != j)])
    pairs = pairs[residue[pairs[:, 0]] != residue[pairs[:, 1]]]
    if r_max is None:
        r_max = 0.49 * float(np.min(trajectory.unitcell_lengths[0]))
    r, g = mdtraj.compute_rdf(trajectory, pairs, r_range=(0.0, r_max), bin_width=bin_width)
    return r, g


def rdf_difference(r: np.ndarray, g: np.ndarray, g_reference: np.ndarray) -> float:
    """Integrated absolute difference ∫|g - g_ref| dr / ∫ g_ref dr (a fraction)."""
    dr = np.gradient(r)
    return float(np.sum(np.abs(g - g_reference) * dr) / np.sum(g_reference * dr))


#: Bundled reference RDFs of the built-in systems (made by ``examples/models/water_reference_rdf.py``).
_DATA = Path(__file__).resolve().parent.parent / "systems" / "data"
REFERENCE_RDFS = {"water": _DATA / "water-reference-rdf.json", "water-rigid": _DATA / "water-rigid-reference-rdf.json"}


def reference_rdf(system: str = "water") -> Dict[str, object]:
    """The bundled reference RDF of a built-in system from reference MD with the same potential.

    Returns the JSON record: ``r_nm`` (bin centres, nm), ``g_OO``, ``g_OH`` (arrays),
    ``temperature_K`` (nominal), ``measured_temperature_K`` (3N - constraints degrees of
    freedom), ``temperature_by_element_K`` (kinetic temperature of each element's
    atoms, 3 degrees of freedom per atom, K), ``description`` and ``source`` (which data,
    how many frames).
    """
    if system not in REFERENCE_RDFS:
        raise KeyError(f"no bundled reference RDF for {system!r}; available: {', '.join(REFERENCE_RDFS)}")
    record = json.loads(REFERENCE_RDFS[system].read_text())
    for key in ("r_nm", "g_OO", "g_OH"):
        record[key] = np.asarray(record[key], dtype=float)
    return record

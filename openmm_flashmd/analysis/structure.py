"""Structural observables over mdtraj trajectories (plain functions)."""

from __future__ import annotations

from typing import Optional, Tuple

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

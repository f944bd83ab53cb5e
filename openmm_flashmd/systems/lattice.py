"""Water molecules on a simple cubic lattice (numpy only, no OpenMM: benchmarks on a
torch-only machine build the same boxes as :func:`openmm_flashmd.systems.water_box`)."""

from __future__ import annotations

from typing import Tuple

import numpy as np

WATER_MASS_DA = 18.01528
AVOGADRO = 6.02214076e23


def water_geometry() -> np.ndarray:
    """O, H1, H2 coordinates (nm) of one TIP3P water in its own frame."""
    r, theta = 0.09572, np.deg2rad(104.52)
    return np.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0], [r * np.cos(theta), r * np.sin(theta), 0.0]])


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation matrix [3, 3]."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def water_lattice(n_molecules: int, density: float = 0.997, seed: int = 0) -> Tuple[np.ndarray, float]:
    """Positions [3 n_molecules, 3] nm (O, H, H per molecule) and the cubic box edge (nm) of
    ``n_molecules`` randomly oriented waters on a simple cubic lattice at ``density`` g/cm^3
    (no overlaps; minimise before dynamics)."""
    edge = (n_molecules * WATER_MASS_DA / AVOGADRO / density * 1e21) ** (1.0 / 3.0)
    per_side = int(np.ceil(n_molecules ** (1.0 / 3.0) - 1e-9))
    spacing = edge / per_side
    rng = np.random.default_rng(seed)
    geometry = water_geometry()
    centre = geometry.mean(axis=0)
    sites = [(ix, iy, iz) for ix in range(per_side) for iy in range(per_side) for iz in range(per_side)][:n_molecules]
    coords = [(geometry - centre) @ random_rotation(rng).T + (np.array(site) + 0.5) * spacing for site in sites]
    return np.concatenate(coords), edge

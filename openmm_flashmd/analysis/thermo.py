"""Kinetic temperatures (overall, per element, and of molecules' translation and rotation) and
mass density: plain functions over arrays."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from openmm_flashmd.analysis.molecules import centres, groups, whole

#: Boltzmann constant in kJ/mol/K.
KB = 0.00831446261815324


def system_masses(system) -> np.ndarray:
    """Particle masses of an ``openmm.System`` in Da."""
    from openmm import unit

    return np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])


def removes_centre_of_mass_motion(system) -> bool:
    """Whether an ``openmm.System`` has a ``CMMotionRemover`` (its total momentum stays zero)."""
    import openmm

    return any(isinstance(force, openmm.CMMotionRemover) for force in system.getForces())


def degrees_of_freedom(system) -> int:
    """Kinetic degrees of freedom of an ``openmm.System``: 3N - constraints, - 3 more with a
    ``CMMotionRemover`` (OpenMM's ``StateDataReporter`` convention)."""
    remover = removes_centre_of_mass_motion(system)
    return 3 * system.getNumParticles() - system.getNumConstraints() - (3 if remover else 0)


def kinetic_temperature(
    velocities: np.ndarray, masses: np.ndarray, dof: Optional[float] = None
) -> np.ndarray:
    """Kinetic temperature (K) of each frame.

    ``velocities`` [F, N, 3] or [N, 3] in nm/ps, ``masses`` [N] in Da; ``dof``
    defaults to 3N (pass 3N - constraints - 3 to match OpenMM's reporters).
    """
    v = np.asarray(velocities, dtype=float)
    single = v.ndim == 2
    v = v[None] if single else v
    m = np.asarray(masses, dtype=float)
    twice_kinetic = np.einsum("fni,n->f", v * v, m)
    temperature = twice_kinetic / ((dof if dof is not None else 3 * v.shape[1]) * KB)
    return temperature[0] if single else temperature


def temperature_by_element(
    velocities: np.ndarray, masses: np.ndarray, elements: Sequence[str]
) -> Dict[str, np.ndarray]:
    """Kinetic temperature (K) of each element's atoms (3 degrees of freedom per atom), per frame."""
    elements = np.asarray(elements)
    v = np.asarray(velocities, dtype=float)
    m = np.asarray(masses, dtype=float)
    return {
        str(symbol): kinetic_temperature(v[..., elements == symbol, :], m[elements == symbol])
        for symbol in sorted(set(elements.tolist()))
    }


def molecule_temperatures(
    positions: np.ndarray, velocities: np.ndarray, masses: np.ndarray,
    molecules: Sequence[Sequence[int]], box: Optional[np.ndarray] = None,
    centre_of_mass_removed: bool = False,
) -> Dict[str, np.ndarray]:
    """Translational and rotational kinetic temperature (K) of molecules, per frame.

    ``positions`` [F, N, 3] or [N, 3] in nm, ``velocities`` the same shape in nm/ps,
    ``masses`` [N] in Da, ``molecules`` lists of atom indices (``Context.getMolecules()``);
    ``box`` (nm, [F, 3, 3] or [3, 3]): molecules split across the box are made whole first.

    * ``translation``: ½ M |v_cm|² of each molecule's centre of mass, 3 degrees of freedom
      per molecule, 3 fewer in all with ``centre_of_mass_removed`` (a System with a
      ``CMMotionRemover``, :func:`removes_centre_of_mass_motion`, whose molecules are all of it);
    * ``rotation``: ½ Lᵀ I⁻¹ L, the angular momentum L and inertia tensor I about each
      molecule's centre of mass; 3 degrees of freedom per non-linear molecule, 2 per linear
      one, none for single atoms (None if no molecule rotates).

    For rigid molecules the two add up to the whole kinetic energy, and in equilibrium both
    equal the thermostat's temperature; for flexible ones the rest is internal motion.
    """
    x, v = np.asarray(positions, dtype=float), np.asarray(velocities, dtype=float)
    single = x.ndim == 2
    x, v = (x[None], v[None]) if single else (x, v)
    if box is not None:
        box = np.broadcast_to(np.asarray(box, dtype=float), (x.shape[0], 3, 3))
    m = np.asarray(masses, dtype=float)
    translation, rotation = np.zeros(x.shape[0]), np.zeros(x.shape[0])
    rotation_dof = 0
    for idx in groups(molecules):  # [M, n] atoms of the molecules of one size
        mm = m[idx]  # [M, n]
        total = mm.sum(1)
        xm = whole(x[:, idx], box)  # [F, M, n, 3]
        xc = centres(xm, mm)
        vc = centres(v[:, idx], mm)
        translation += 0.5 * np.einsum("fmi,m->f", vc * vc, total)
        if idx.shape[1] == 1:
            continue
        r, u = xm - xc[:, :, None], v[:, idx] - vc[:, :, None]
        angular = np.einsum("fmni,mn->fmi", np.cross(r, u), mm)
        r2 = np.einsum("fmni,fmni,mn->fm", r, r, mm)
        inertia = r2[..., None, None] * np.eye(3) - np.einsum("fmni,fmnj,mn->fmij", r, r, mm)
        eigenvalues, vectors = np.linalg.eigh(inertia)
        nonzero = eigenvalues > 1e-8 * eigenvalues[..., -1:]  # a linear molecule has one zero moment
        along = np.einsum("fmij,fmi->fmj", vectors, angular)
        rotation += 0.5 * np.where(nonzero, along ** 2 / np.where(nonzero, eigenvalues, 1.0), 0.0).sum((1, 2))
        rotation_dof += int(nonzero[0].sum())
    translation_dof = 3 * len(molecules) - (3 if centre_of_mass_removed else 0)
    out = {"translation": 2 * translation / (translation_dof * KB),
           "rotation": 2 * rotation / (rotation_dof * KB) if rotation_dof else None}
    return {k: (t[0] if single and t is not None else t) for k, t in out.items()}


#: 1 Da/nm³ in g/cm³.
DA_PER_NM3_IN_G_PER_CM3 = 1.66053906660e-3


def density(total_mass_da, volume_nm3):
    """Mass density in g/cm³ of ``total_mass_da`` (Da) in ``volume_nm3`` (nm³; arrays work)."""
    return total_mass_da * DA_PER_NM3_IN_G_PER_CM3 / np.asarray(volume_nm3, dtype=float)

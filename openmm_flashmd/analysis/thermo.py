"""Kinetic temperatures, overall and per element, and mass density (plain functions over arrays)."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

#: Boltzmann constant in kJ/mol/K.
KB = 0.00831446261815324


def system_masses(system) -> np.ndarray:
    """Particle masses of an ``openmm.System`` in Da."""
    from openmm import unit

    return np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])


def degrees_of_freedom(system) -> int:
    """Kinetic degrees of freedom of an ``openmm.System``: 3N - constraints, - 3 more with a
    ``CMMotionRemover`` (OpenMM's ``StateDataReporter`` convention)."""
    import openmm

    remover = any(isinstance(force, openmm.CMMotionRemover) for force in system.getForces())
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


#: 1 Da/nm³ in g/cm³.
DA_PER_NM3_IN_G_PER_CM3 = 1.66053906660e-3


def density(total_mass_da, volume_nm3):
    """Mass density in g/cm³ of ``total_mass_da`` (Da) in ``volume_nm3`` (nm³; arrays work)."""
    return total_mass_da * DA_PER_NM3_IN_G_PER_CM3 / np.asarray(volume_nm3, dtype=float)

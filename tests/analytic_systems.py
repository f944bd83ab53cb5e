"""OpenMM Systems whose dynamics the analytic stride models reproduce exactly."""

import numpy as np
import openmm
from openmm import unit

import openmm_flashmd  # noqa: F401  (torch plugins before any Context)

KB = (unit.MOLAR_GAS_CONSTANT_R).value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


def harmonic_system(masses, spring_constant, periodic_box=None):
    """Independent wells 0.5 k |x|^2 (k kJ/mol/nm^2) around the origin."""
    system = openmm.System()
    force = openmm.CustomExternalForce("0.5*k*(x^2+y^2+z^2)")
    force.addGlobalParameter("k", spring_constant)
    for i, m in enumerate(masses):
        system.addParticle(m)
        force.addParticle(i, [])
    system.addForce(force)
    if periodic_box is not None:
        system.setDefaultPeriodicBoxVectors(*periodic_box)
    return system


def ideal_gas_system(n, mass, box_length):
    """n free particles in a cubic periodic box (nm)."""
    system = openmm.System()
    for _ in range(n):
        system.addParticle(mass)
    system.setDefaultPeriodicBoxVectors(
        openmm.Vec3(box_length, 0, 0), openmm.Vec3(0, box_length, 0), openmm.Vec3(0, 0, box_length)
    )
    # A zero force that uses the cell, so OpenMM treats the system as periodic.
    system.addForce(openmm.CustomExternalForce("0*periodicdistance(x, y, z, 0, 0, 0)"))
    return system


def context_for(system, integrator, platform="Reference"):
    return openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))


def random_state(n, rng, position_scale=0.1, velocity_scale=1.0):
    return rng.normal(size=(n, 3)) * position_scale, rng.normal(size=(n, 3)) * velocity_scale


def total_energy(context):
    state = context.getState(getEnergy=True)
    return (state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole)


def positions_velocities(context):
    state = context.getState(getPositions=True, getVelocities=True)
    return (
        state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
        state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
    )


def block_standard_error(samples, n_blocks=20):
    """Standard error of the mean of a correlated series from block averages."""
    samples = np.asarray(samples)
    blocks = np.array_split(samples, n_blocks)
    means = np.array([b.mean() for b in blocks])
    return means.std(ddof=1) / np.sqrt(n_blocks)

"""FlashMDIntegrator with an exact stride model: Langevin sampling of harmonic wells.

Every particle sits in a well U = ½ k |x|²; HarmonicStrideModel advances it exactly
by 25 fs per step. Langevin "O F O" then samples the Boltzmann distribution exactly,
so <x²> per coordinate must be kT/k. Run: python examples/harmonic_langevin.py
"""

import numpy as np
import openmm
from openmm import unit

from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd.model import HarmonicStrideModel

N, K, TEMPERATURE = 200, 400.0, 300.0  # particles, kJ/mol/nm^2, K

system = openmm.System()
well = openmm.CustomExternalForce("0.5*k*(x^2+y^2+z^2)")
well.addGlobalParameter("k", K)
for i in range(N):
    system.addParticle(16.0)
    well.addParticle(i, [])
system.addForce(well)

integrator = FlashMDIntegrator(system, HarmonicStrideModel(stride=0.025, spring_constant=K),
                               temperature=TEMPERATURE * unit.kelvin, collision_rate=10 / unit.picosecond,
                               splitting="O F O", random_seed=1)
context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
context.setPositions(np.zeros((N, 3)))
context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, 1)

integrator.step(100)
samples = []
for _ in range(200):
    integrator.step(5)
    x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    samples.append((x**2).mean())
kT = (unit.MOLAR_GAS_CONSTANT_R * TEMPERATURE * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
print(f"step size {integrator.getStepSize()}, simulated {context.getState().getTime()}")
print(f"<x^2> = {np.mean(samples):.6f} nm^2, exact kT/k = {kT / K:.6f} nm^2")

"""FlashMDIntegrator inside openmmtools' MCMC machinery (ContextCache, IntegratorMove, states)."""

import numpy as np
import openmm
from openmm import unit

from analytic_systems import KB, harmonic_system
from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd.model import HarmonicStrideModel


def test_integrator_move_runs_and_follows_the_thermodynamic_state():
    """openmmtools hashes integrators with a standard step size on a copy (which used to raise); the
    cached Context's integrator then runs the model's stride at the ThermodynamicState's temperature
    (openmmtools requires a thermostated integrator's temperature to match the state's, so the move's
    integrator is set to it, as for any ThermostatedIntegrator)."""
    from openmmtools import cache, mcmc, states

    masses = np.full(50, 12.0)
    system = harmonic_system(masses, 400.0)
    integrator = FlashMDIntegrator(system, HarmonicStrideModel(0.02, 400.0), temperature=300.0, collision_rate=10.0,
                                   splitting="O F O", random_seed=3)
    context_cache = cache.ContextCache(platform=openmm.Platform.getPlatformByName("Reference"))
    sampler_state = states.SamplerState(np.random.default_rng(0).normal(size=(50, 3)) * 0.05 * unit.nanometer)
    move = mcmc.IntegratorMove(integrator, n_steps=50)
    for temperature in (300.0, 450.0):
        thermodynamic_state = states.ThermodynamicState(system, temperature * unit.kelvin)
        move.integrator.setTemperature(temperature * unit.kelvin)
        kinetic = []
        for _ in range(20):
            move.apply(thermodynamic_state, sampler_state, context_cache=context_cache)
            velocities = sampler_state.velocities.value_in_unit(unit.nanometer / unit.picosecond)
            kinetic.append(0.5 * (masses[:, None] * velocities**2).sum())
        context, cached = context_cache.get_context(thermodynamic_state, integrator)
        assert abs(cached.getGlobalVariableByName("kT") - KB * temperature) < 1e-9
        assert cached.getStepSize() == 0.02 * unit.picosecond
        # equipartition within 15 % over the last ten moves (150 degrees of freedom)
        assert abs(np.mean(kinetic[10:]) / (1.5 * len(masses) * KB * temperature) - 1) < 0.15

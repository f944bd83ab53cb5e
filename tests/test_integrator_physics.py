"""FlashMDIntegrator against exact flows: NVE, Langevin, Bussi, barostat, filter."""

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from analytic_systems import (
    KB,
    block_standard_error,
    context_for,
    harmonic_system,
    ideal_gas_system,
    positions_velocities,
    random_state,
    total_energy,
)
from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd.model import FreeParticleStrideModel, HarmonicStrideModel
from toy_models import EveryKthStrideFails

PLATFORMS = ["Reference", "CPU"]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("splitting", ["F", "F E"])
def test_harmonic_nve_conserves_energy_to_roundoff(platform, splitting):
    rng = np.random.default_rng(1)
    masses = [1.0, 4.0, 12.0, 16.0]
    system = harmonic_system(masses, 500.0)
    integrator = FlashMDIntegrator(system, HarmonicStrideModel(0.016, 500.0), splitting=splitting)
    context = context_for(system, integrator, platform)
    x, v = random_state(len(masses), rng)
    context.setPositions(x)
    context.setVelocities(v)
    h0 = total_energy(context)
    energies = []
    for _ in range(10):
        integrator.step(100)
        energies.append(total_energy(context))
    assert np.max(np.abs(np.array(energies) - h0)) < 1e-10 * abs(h0)


def test_free_particles_move_exactly_in_straight_lines():
    rng = np.random.default_rng(2)
    system = ideal_gas_system(8, 39.9, 3.0)
    integrator = FlashMDIntegrator(system, FreeParticleStrideModel(0.025), splitting="F")
    context = context_for(system, integrator)
    x, v = random_state(8, rng, position_scale=1.0)
    context.setPositions(x)
    context.setVelocities(v)
    integrator.step(40)
    x1, v1 = positions_velocities(context)
    assert np.allclose(v1, v, rtol=0, atol=1e-12)
    assert np.allclose(x1, x + 40 * 0.025 * v, rtol=0, atol=1e-10)
    assert integrator.getStepSize() == 0.025 * unit.picosecond


def failing_every(model, k):
    """``model``, or with ``k`` the model whose every k-th stride returns NaN (the stride monitor
    integrates those with velocity Verlet)."""
    return model if k is None else EveryKthStrideFails(model, k)


@pytest.mark.parametrize("stride, fail_every", [(0.001, None), (0.025, None), (0.1, None), (0.025, 10)])
def test_langevin_samples_exact_boltzmann(stride, fail_every):
    """<x^2> = kT/k and <v^2> = kT/m per coordinate, within 4 standard errors; also with a model
    that fails a tenth of its strides."""
    rng = np.random.default_rng(3)
    n, k, temperature = 300, 400.0, 300.0
    masses = np.where(np.arange(n) % 2 == 0, 1.0, 16.0)
    system = harmonic_system(masses, k)
    integrator = FlashMDIntegrator(
        system, failing_every(HarmonicStrideModel(stride, k), fail_every), temperature=temperature,
        collision_rate=20.0, splitting="O F O", random_seed=11, max_displacement=None, fallback_timestep=0.001,
    )
    context = context_for(system, integrator, "CPU")
    kT = KB * temperature
    context.setPositions(rng.normal(size=(n, 3)) * np.sqrt(kT / k))
    context.setVelocitiesToTemperature(temperature, 5)
    integrator.step(200)
    xs, vs = [], []
    for _ in range(300):
        integrator.step(2)
        x, v = positions_velocities(context)
        xs.append((x**2).mean(axis=1))
        vs.append((v**2).mean(axis=1) * masses)
    per_particle_x = np.mean(xs, axis=0)  # time average per particle: independent samples
    per_particle_v = np.mean(vs, axis=0)
    for values, expected in [(per_particle_x, kT / k), (per_particle_v, kT)]:
        error = values.std(ddof=1) / np.sqrt(n)
        assert abs(values.mean() - expected) < 4 * error, (values.mean(), expected, error)
        assert error < 0.05 * expected  # the test has the power to see a few-percent bias
    if fail_every:
        assert integrator.fallback_statistics["fallback_fraction"] == pytest.approx(1 / fail_every)


def test_bussi_gives_canonical_kinetic_energy():
    """Ideal gas under B F B: <K> = Nf kT / 2 and Var K = Nf (kT)^2 / 2."""
    n, temperature = 20, 300.0
    system = ideal_gas_system(n, 10.0, 4.0)
    integrator = FlashMDIntegrator(
        system, FreeParticleStrideModel(0.01), temperature=temperature, collision_rate=5.0, splitting="B F B",
        random_seed=5,
    )
    context = context_for(system, integrator, "CPU")
    context.setPositions(np.random.default_rng(0).uniform(0, 4, size=(n, 3)))
    context.setVelocitiesToTemperature(temperature, 3)
    kT = KB * temperature
    dof = 3 * n
    integrator.step(100)
    kinetic = []
    for _ in range(20000):
        integrator.step(1)
        kinetic.append(context.getState(getEnergy=True).getKineticEnergy().value_in_unit(unit.kilojoule_per_mole))
    kinetic = np.array(kinetic)
    mean_error = block_standard_error(kinetic)
    assert abs(kinetic.mean() - 0.5 * dof * kT) < 4 * mean_error
    # the variance within 4 standard errors of its blocks' estimates (correlated samples)
    ratios = np.array([block.var() for block in np.array_split(kinetic, 20)]) / (0.5 * dof * kT**2)
    ratio_error = ratios.std(ddof=1) / np.sqrt(len(ratios))
    assert abs(ratios.mean() - 1) < 4 * ratio_error and ratio_error < 0.06, (ratios.mean(), ratio_error)


@pytest.mark.parametrize("fail_every", [None, 10])
def test_ideal_gas_barostat_volume(fail_every):
    """<V> = (N + 1) kT / P for an ideal gas with MonteCarloBarostat; also with a model that
    fails a tenth of its strides."""
    n, temperature = 40, 300.0
    pressure_bar = 200.0
    kT = KB * temperature
    pressure = pressure_bar * 0.0602214076  # bar -> kJ/mol/nm^3
    expected = (n + 1) * kT / pressure
    system = ideal_gas_system(n, 20.0, expected ** (1 / 3))
    system.addForce(openmm.MonteCarloBarostat(pressure_bar * unit.bar, temperature * unit.kelvin, 1))
    integrator = FlashMDIntegrator(
        system, failing_every(FreeParticleStrideModel(0.02), fail_every), temperature=temperature, collision_rate=5.0,
        splitting="O F O", random_seed=7, fallback_timestep=0.01,
    )
    context = context_for(system, integrator, "CPU")
    context.setPositions(np.random.default_rng(1).uniform(0, expected ** (1 / 3), size=(n, 3)))
    context.setVelocitiesToTemperature(temperature, 1)
    integrator.step(500)
    volumes = []
    for _ in range(3000):
        integrator.step(5)
        volumes.append(context.getState().getPeriodicBoxVolume().value_in_unit(unit.nanometer**3))
    volumes = np.array(volumes)
    error = block_standard_error(volumes)
    assert abs(volumes.mean() - expected) < 4 * error, (volumes.mean(), expected, error)
    assert error < 0.03 * expected
    # every failed stride is counted (the temperature ceiling may add a rare stride of a 40-atom gas)
    assert integrator.fallback_statistics["by_reason"]["nan_output"] == (15500 // fail_every if fail_every else 0)


def test_energy_filter_rescues_wrong_map():
    """Velocities 3 % too large: 'F E' conserves H to 1e-6 and the statistics show the fix."""
    rng = np.random.default_rng(4)
    masses = [1.0, 12.0, 16.0, 2.0, 7.0]
    system = harmonic_system(masses, 300.0)
    model = HarmonicStrideModel(0.02, 300.0, velocity_error=0.03)
    integrator = FlashMDIntegrator(system, model, splitting="F E")
    context = context_for(system, integrator)
    x, v = random_state(len(masses), rng)
    context.setPositions(x)
    context.setVelocities(v)
    h0 = total_energy(context)
    integrator.step(1000)
    assert abs(total_energy(context) - h0) < 1e-6 * abs(h0)
    stats = integrator.filter_statistics
    assert stats["count"] == 1000 and stats["clamped"] == 0
    assert stats["max"] < 1.0 and stats["min"] > 0.9  # every stride scaled down

    # Without the filter (and without the stride monitor, which would stop the drift) the same map heats the system.
    system2 = harmonic_system(masses, 300.0)
    unfiltered = FlashMDIntegrator(system2, model, splitting="F", fallback=False)
    context2 = context_for(system2, unfiltered)
    context2.setPositions(x)
    context2.setVelocities(v)
    unfiltered.step(20)
    assert total_energy(context2) > 1.5 * h0


def test_energy_filter_clamps_instead_of_nan():
    """H - V' < 0 cannot be fixed by a real scale: clamp, count, never NaN."""
    masses = [1.0, 1.0]
    system = harmonic_system(masses, 100.0)
    model = HarmonicStrideModel(0.01, 100.0, velocity_error=1.0)  # doubles velocities
    integrator = FlashMDIntegrator(system, model, splitting="F E", filter_scale_bounds=(0.9, 1.1), fallback=False)
    context = context_for(system, integrator)
    context.setPositions(np.zeros((2, 3)))
    context.setVelocities(np.ones((2, 3)))
    integrator.step(5)
    _, v = positions_velocities(context)
    assert np.all(np.isfinite(v))
    stats = integrator.filter_statistics
    assert stats["clamped"] == 5 and stats["min"] == pytest.approx(0.9)
    integrator.reset_filter_statistics()
    assert integrator.filter_statistics["count"] == 0


class _PrintingWell(torch.nn.Module):
    """Harmonic energy 50 |x|^2 (kJ/mol) that prints a line per evaluation."""

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        print("FLASHMD-ENERGY-CALL")
        return 50.0 * (positions**2).sum()


def test_filter_reuses_the_energy_of_unchanged_positions(capfd):
    """Within one step(n) call the potential before F is the one E computed: one evaluation per stride."""
    import openmmtorch

    system = openmm.System()
    for _ in range(3):
        system.addParticle(2.0)
    energy_force = openmmtorch.TorchForce(torch.jit.script(_PrintingWell()))
    energy_force.setForceGroup(1)
    system.addForce(energy_force)
    integrator = FlashMDIntegrator(system, HarmonicStrideModel(0.01, 100.0), temperature=300, splitting="O F E O",
                                   energy_force_groups={1})
    context = context_for(system, integrator, "CPU")
    context.setPositions(np.random.default_rng(0).normal(size=(3, 3)) * 0.1)
    context.setVelocities(np.ones((3, 3)))
    capfd.readouterr()
    integrator.step(20)
    calls = capfd.readouterr().out.count("FLASHMD-ENERGY-CALL")
    assert calls == 21  # 20 after-stride energies + one fresh start of the call


def test_filter_sees_a_potential_changed_between_calls():
    """setParameter between step() calls: H before the stride uses the new potential."""
    masses = [1.0, 2.0, 3.0]
    system = harmonic_system(masses, 200.0)
    model = HarmonicStrideModel(0.01, 200.0, velocity_error=0.02)
    integrator = FlashMDIntegrator(system, model, splitting="F E")
    context = context_for(system, integrator)
    x, v = random_state(3, np.random.default_rng(5))
    context.setPositions(x)
    context.setVelocities(v)
    integrator.step(5)
    context.setParameter("k", 260.0)
    h_before = total_energy(context)
    integrator.step(3)
    assert abs(total_energy(context) - h_before) < 1e-9 * abs(h_before)

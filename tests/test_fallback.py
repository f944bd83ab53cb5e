"""The stride monitor: rejected strides are integrated with velocity Verlet, exactly."""

import numpy as np
import pytest

from analytic_systems import KB, context_for, harmonic_system, positions_velocities, random_state, total_energy
from flashmd_data_helpers import diatomics
from openmm_flashmd import FlashMDError, FlashMDIntegrator
from openmm_flashmd.integrator.fallback import fallback_substeps
from openmm_flashmd.model import FreeParticleStrideModel, HarmonicStrideModel
from toy_models import EveryKthStrideFails

K_SPRING = 500.0
MASSES = np.array([1.0, 4.0, 12.0])


def harmonic_flow(x, v, tau):
    omega = np.sqrt(K_SPRING / MASSES)[:, None]
    return (x * np.cos(omega * tau) + v / omega * np.sin(omega * tau),
            -x * omega * np.sin(omega * tau) + v * np.cos(omega * tau))


def velocity_verlet(x, v, tau, n):
    h = tau / n
    for _ in range(n):
        v = v - 0.5 * h * K_SPRING * x / MASSES[:, None]
        x = x + h * v
        v = v - 0.5 * h * K_SPRING * x / MASSES[:, None]
    return x, v


@pytest.mark.parametrize("splitting, velocity_factor, bounds", [
    ("F", 0.0, (0.8, 1.25)),      # NaN from the model: failure code
    ("F E", 0.0, (0.8, 1.25)),
    ("F E", 1.2, (0.95, 1.05)),   # +20 % velocities: the filter's scale 1/1.2 leaves the band
    ("F", 1.2, (0.95, 1.05)),     # the same energy test without a filter
    ("F E", 1e300, (0.8, 1.25)),  # velocities beyond any physical value: a failed output
])
def test_rejected_strides_are_exact_velocity_verlet(splitting, velocity_factor, bounds):
    tau, k, strides = 0.016, 4, 24
    rng = np.random.default_rng(0)
    system = harmonic_system(MASSES, K_SPRING)
    model = EveryKthStrideFails(HarmonicStrideModel(tau, K_SPRING), k, velocity_factor)
    integrator = FlashMDIntegrator(system, model, splitting=splitting, random_rotation=False, filter_scale_bounds=bounds,
                                   fallback_timestep=0.001)
    assert integrator.fallback_substeps == 16
    context = context_for(system, integrator)
    x, v = random_state(len(MASSES), rng)
    context.setPositions(x)
    context.setVelocities(v)
    for stride in range(1, strides + 1):
        integrator.step(1)
        x, v = velocity_verlet(x, v, tau, 16) if stride % k == 0 else harmonic_flow(x, v, tau)
        got_x, got_v = positions_velocities(context)
        assert np.allclose(got_x, x, rtol=0, atol=1e-12) and np.allclose(got_v, v, rtol=0, atol=1e-11), stride
    stats = integrator.fallback_statistics
    reason = "energy" if velocity_factor in (1.2,) else "nan_output"
    assert stats["strides"] == strides and stats["rejected"] == strides // k
    assert stats["by_reason"][reason] == strides // k and stats["fallback_fraction"] == pytest.approx(1 / k)
    integrator.reset_fallback_statistics()
    assert integrator.fallback_statistics["strides"] == 0


def test_fallback_substeps_cover_the_stride():
    assert fallback_substeps(0.016, 0.001) == 16
    assert fallback_substeps(0.016, 0.0015) == 11  # rounded so that no substep is longer than asked
    assert fallback_substeps(0.001, 0.002) == 1
    with pytest.raises(ValueError, match="positive"):
        fallback_substeps(0.016, 0.0)


def test_the_default_fallback_timestep_comes_from_the_model():
    from openmm_flashmd.model.protocol import make_metadata_json

    integrator = FlashMDIntegrator(harmonic_system(MASSES, K_SPRING), HarmonicStrideModel(0.016, K_SPRING))
    assert integrator.fallback_substeps == 32  # no reference-data timestep in the metadata: 0.5 fs
    model = HarmonicStrideModel(0.016, K_SPRING)
    model.metadata_json = make_metadata_json(kind="harmonic", provenance={"data_timestep": 0.002})
    assert FlashMDIntegrator(harmonic_system(MASSES, K_SPRING), model).fallback_substeps == 8


def test_nve_energy_is_conserved_across_fallbacks():
    """Every third stride fails: the energy changes only by velocity Verlet's own error."""
    rng = np.random.default_rng(1)
    system = harmonic_system(MASSES, K_SPRING)
    integrator = FlashMDIntegrator(system, EveryKthStrideFails(HarmonicStrideModel(0.016, K_SPRING), 3),
                                   splitting="F E", fallback_timestep=0.0005)
    context = context_for(system, integrator)
    x, v = random_state(len(MASSES), rng)
    context.setPositions(x)
    context.setVelocities(v)
    h0 = total_energy(context)
    energies = []
    for _ in range(60):
        integrator.step(5)
        energies.append(total_energy(context))
    # velocity Verlet's energy error for the stiffest well (omega = 22/ps) at h = 0.5 fs: ~(omega h)^2/8
    assert np.max(np.abs(np.array(energies) - h0)) < 2e-5 * abs(h0)
    assert integrator.fallback_statistics["rejected"] == 100


def test_constraints_hold_after_fallback_strides():
    system, _, positions = diatomics(constrained=True)
    model = EveryKthStrideFails(FreeParticleStrideModel(0.016), 1)  # every stride fails: pure fallback MD
    integrator = FlashMDIntegrator(system, model, splitting="F", fallback_timestep=0.001)
    context = context_for(system, integrator)
    context.setPositions(positions)
    context.setVelocitiesToTemperature(300.0, 2)
    h0 = total_energy(context)
    integrator.step(50)
    x, _ = positions_velocities(context)
    bonds = np.linalg.norm(x[1::2] - x[0::2], axis=1)
    assert np.allclose(bonds, 0.15, rtol=1e-5)
    assert abs(total_energy(context) - h0) < 1e-3 * abs(h0)
    assert integrator.fallback_statistics["rejected"] == 50


def test_checkpoint_in_a_run_with_fallbacks_is_bit_identical():
    rng = np.random.default_rng(2)
    system = harmonic_system(MASSES, K_SPRING)
    model = EveryKthStrideFails(HarmonicStrideModel(0.016, K_SPRING), 3, velocity_factor=1.3)
    integrator = FlashMDIntegrator(system, model, temperature=300.0, collision_rate=5.0, splitting="O F E O",
                                   random_seed=3, max_temperature_ratio=10.0)  # 9 degrees of freedom run hot
    context = context_for(system, integrator, "CPU")
    x, v = random_state(len(MASSES), rng)
    context.setPositions(x)
    context.setVelocities(v)
    integrator.step(9)
    checkpoint = context.createCheckpoint()
    integrator.step(12)  # a multiple of k: the model's own call counter then repeats its pattern
    first = positions_velocities(context), integrator.fallback_statistics
    context.loadCheckpoint(checkpoint)
    integrator.step(12)
    second = positions_velocities(context), integrator.fallback_statistics
    assert np.array_equal(first[0][0], second[0][0]) and np.array_equal(first[0][1], second[0][1])
    assert first[1] == second[1] and first[1]["rejected"] == 7


def test_a_state_that_is_already_nan_still_raises():
    system = harmonic_system([1.0], 1.0)
    integrator = FlashMDIntegrator(system, FreeParticleStrideModel(0.01), splitting="F")
    context = context_for(system, integrator)
    context.setPositions(np.zeros((1, 3)))
    context.setVelocities(np.array([[np.nan, 0.0, 0.0]]))
    with pytest.raises(FlashMDError, match="velocities entering the stride are NaN"):
        integrator.step(2)
    assert integrator.fallback_statistics["by_reason"]["nan_input"] == 1


def test_without_fallback_a_failed_stride_raises_and_an_out_of_band_scale_is_clamped():
    system = harmonic_system(MASSES, K_SPRING)
    model = EveryKthStrideFails(HarmonicStrideModel(0.016, K_SPRING), 2, velocity_factor=1.5)
    integrator = FlashMDIntegrator(system, model, splitting="F E", fallback=False)
    context = context_for(system, integrator)
    x, v = random_state(len(MASSES), np.random.default_rng(4))
    context.setPositions(x)
    context.setVelocities(v)
    integrator.step(4)
    assert integrator.filter_statistics["clamped"] == 2
    assert integrator.fallback_statistics["strides"] == 0


def test_nve_drift_is_held_near_the_start_and_the_anchor_follows_the_caller():
    """A map whose velocities are 3 % too large heats an NVE run at every stride, each stride well
    inside the filter band: the monitor rejects the strides that would take the total energy more
    than max_energy_drift x the starting kinetic energy away, and re-anchors when the caller sets
    a new state."""
    rng = np.random.default_rng(5)
    system = harmonic_system(MASSES, K_SPRING)
    integrator = FlashMDIntegrator(system, HarmonicStrideModel(0.016, K_SPRING, velocity_error=0.03), splitting="F",
                                   max_energy_drift=0.2, fallback_timestep=0.0005)
    context = context_for(system, integrator)
    x, v = random_state(len(MASSES), rng)
    context.setPositions(x)
    context.setVelocities(v)
    h0, k0 = total_energy(context), context.getState(getEnergy=True).getKineticEnergy()._value
    energies = []
    for _ in range(100):
        integrator.step(2)
        energies.append(total_energy(context))
    # a stride is judged on where it ends: the drift never passes the tolerance (+ Verlet's tiny error)
    assert max(abs(e - h0) for e in energies) < 0.2 * k0 * 1.001
    stats = integrator.fallback_statistics
    assert stats["by_reason"]["energy_drift"] == stats["rejected"] > 20
    context.setVelocities(2 * v)  # a new start: anchored there, not at h0
    integrator.reset_fallback_statistics()
    integrator.step(1)
    assert integrator.fallback_statistics["rejected"] == 0


def test_a_heating_model_is_held_near_the_temperature_ceiling():
    """Langevin with a map that adds 4 % to the kinetic energy at every stride: without the monitor
    the temperature runs away from the bath; with it, a stride that would end above 1.75 x the
    bath temperature is integrated with MD instead, and the temperature stays bounded (MD moves
    energy between potential and kinetic, so a state may still pass the ceiling for a while)."""
    n, k, temperature = 50, 400.0, 300.0
    masses = np.random.default_rng(0).uniform(1.0, 20.0, n)
    kT = KB * temperature
    for fallback in (False, True):
        system = harmonic_system(masses, k)
        integrator = FlashMDIntegrator(system, HarmonicStrideModel(0.02, k, velocity_error=0.02), temperature=temperature,
                                       collision_rate=1.0, splitting="O F O", random_seed=2, fallback=fallback,
                                       fallback_timestep=0.001, max_displacement=None)
        context = context_for(system, integrator)
        context.setPositions(np.random.default_rng(1).normal(size=(n, 3)) * np.sqrt(kT / k))
        context.setVelocitiesToTemperature(temperature, 3)
        ratios = []
        for _ in range(100):
            integrator.step(2)
            ratios.append(context.getState(getEnergy=True).getKineticEnergy()._value / (1.5 * n * kT))
        if fallback:
            assert max(ratios) < 2.2 and np.mean(ratios[50:]) < 1.8
            assert integrator.fallback_statistics["by_reason"]["temperature"] > 10
        else:
            assert np.mean(ratios[50:]) > 2.5


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_the_nonfinite_expression_flags_nan_and_inf_only(platform):
    """The monitor's finiteness test (``x - x`` would not do: Lepton simplifies it to 0)."""
    import openmm

    from openmm_flashmd.integrator.fallback import nonfinite

    system = openmm.System()
    for _ in range(3):
        system.addParticle(1.0)
    integrator = openmm.CustomIntegrator(0.001)
    integrator.addGlobalVariable("bad", 0.0)
    integrator.addGlobalVariable("good", 0.0)
    integrator.addPerDofVariable("y", 0.0)
    integrator.addComputeSum("good", nonfinite("x"))
    integrator.addComputePerDof("y", "x/0")  # NaN for 0/0, Inf otherwise
    integrator.addComputeSum("bad", nonfinite("y"))
    context = context_for(system, integrator, platform)
    context.setPositions(np.array([[0.0, 1.0, 2.0], [1e3, -5.0, 0.0], [0.0, 0.0, 3.0]]))
    integrator.step(1)
    assert integrator.getGlobalVariableByName("good") == 0 and integrator.getGlobalVariableByName("bad") == 9

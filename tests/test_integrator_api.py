"""FlashMDIntegrator as OpenMM users meet it: errors, reporters, checkpoints, re-wrapping."""

import copy
import io

import mdtraj
import numpy as np
import openmm
import pytest
import torch
from openmm import app, unit

from analytic_systems import KB, context_for, harmonic_system, ideal_gas_system, positions_velocities
from openmm_flashmd import FlashMDError, FlashMDIntegrator, ModelSystemMismatch, SplittingError
from openmm_flashmd.integrator import parse_splitting
from openmm_flashmd.integrator.adapter import VELOCITY_PROBE_TIME
from openmm_flashmd.integrator.reference import reference_step
from openmm_flashmd.model import FreeParticleStrideModel, HarmonicStrideModel
from openmm_flashmd.model.protocol import make_metadata_json
from toy_models import NaNAfterStrideModel, SoftPairStrideModel

TRICLINIC = [openmm.Vec3(2.0, 0, 0), openmm.Vec3(0.4, 1.9, 0), openmm.Vec3(-0.5, 0.3, 2.1)]


def soft_pair_system(n, masses=None, box=TRICLINIC):
    """Periodic particles with a harmonic tether energy, for the filter's potential."""
    system = openmm.System()
    tether = openmm.CustomExternalForce("20*periodicdistance(x, y, z, 1, 1, 1)^2")
    for i in range(n):
        system.addParticle(masses[i] if masses is not None else 12.0)
        tether.addParticle(i, [])
    system.addForce(tether)
    system.setDefaultPeriodicBoxVectors(*box)
    return system


def model_with(**metadata):
    """A free-particle model carrying the given metadata."""
    model = FreeParticleStrideModel(0.002)
    model.metadata_json = make_metadata_json(**metadata)
    return model


def potential_energy_function(system):
    """potential_energy(positions nm) -> kJ/mol, from a Reference context of ``system``."""
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))

    def energy(positions):
        context.setPositions(positions.numpy())
        return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    return energy


def rotation_uniforms(context):
    return [context.getParameter(f"flashmd_rot{k}") for k in range(1, 5)]


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("periodic", [False, True])
def test_in_context_step_equals_reference_step(platform, periodic):
    rng = np.random.default_rng(7)
    n = 12
    masses = rng.uniform(1.0, 16.0, size=n)
    if periodic:
        system = soft_pair_system(n, masses)
        model = SoftPairStrideModel(0.004)
        box = torch.tensor([[c.x, c.y, c.z] for c in TRICLINIC], dtype=torch.float64)
        x = rng.uniform(0, 2.0, size=(n, 3))
    else:
        system = harmonic_system(masses, 300.0)
        model = HarmonicStrideModel(0.004, 300.0, velocity_error=0.01)
        box = None
        x = rng.normal(size=(n, 3)) * 0.1
    v = rng.normal(size=(n, 3))
    energy = potential_energy_function(copy.deepcopy(system))  # before the stride force is added
    integrator = FlashMDIntegrator(system, model, splitting="F E", random_seed=3)
    context = context_for(system, integrator, platform)
    context.setPositions(x)
    context.setVelocities(v)
    for _ in range(3):
        x0, v0 = positions_velocities(context)
        integrator.step(1)
        x1, v1 = positions_velocities(context)
        xr, vr, scale = reference_step(
            model, torch.tensor(x0), torch.tensor(v0), torch.tensor(masses), torch.zeros(n, dtype=torch.int64), box,
            "F E", energy, rotation_uniforms(context),
        )
        assert np.abs(x1 - xr.numpy()).max() <= 1e-6 * np.abs(x1).max()
        assert np.abs(v1 - vr.numpy()).max() <= 1e-6 * np.abs(v1).max()
        assert integrator.getGlobalVariableByName("flashmd_alpha") == pytest.approx(scale, rel=1e-9)


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_positions_far_outside_the_box_give_the_same_stride(platform):
    """Particles shifted by whole cell vectors (as CUDA re-wrapping does) change nothing."""
    rng = np.random.default_rng(8)
    n = 10
    cell = np.array([[c.x, c.y, c.z] for c in TRICLINIC])
    x = rng.uniform(0, 1, size=(n, 3)) @ cell
    x[:3] = cell[0] * 0.999 + rng.normal(size=(3, 3)) * 0.05  # straddling the boundary
    shifts = rng.integers(-7, 8, size=(n, 3)) @ cell
    v = rng.normal(size=(n, 3))
    results = []
    for positions in (x, x + shifts):
        system = soft_pair_system(n)
        integrator = FlashMDIntegrator(system, SoftPairStrideModel(0.004), splitting="F", random_seed=9)
        context = context_for(system, integrator, platform)
        context.setPositions(positions)
        context.setVelocities(v)
        integrator.step(5)
        results.append(positions_velocities(context))
    (xa, va), (xb, vb) = results
    assert np.abs(va - vb).max() < 1e-9
    assert np.abs((xb - xa) - shifts).max() < 1e-9


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_adapter_survives_rewrap_and_reordering_shifts_between_stages(dtype):
    """Stage 1 and 2 inputs shifted by different cell vectors decode the same velocities."""
    rng = np.random.default_rng(9)
    n = 8
    system = soft_pair_system(n)
    FlashMDIntegrator(system, SoftPairStrideModel(0.004), splitting="F", random_rotation=False)
    import openmmtorch

    force = openmmtorch.TorchForce.cast(system.getForce(system.getNumForces() - 1))
    assert force.getName() == "FlashMDStrideForce"
    entry = force.getModule()
    cell = torch.tensor([[c.x, c.y, c.z] for c in TRICLINIC], dtype=torch.float64)
    x = torch.tensor(rng.uniform(0, 1, size=(n, 3)), dtype=torch.float64) @ cell
    v = torch.tensor(rng.normal(size=(n, 3)), dtype=torch.float64)
    zero = torch.tensor(0.0, dtype=torch.float64)

    def stride(shift1, shift2):
        p1 = (x + VELOCITY_PROBE_TIME * v + shift1).to(dtype)
        p2 = (x + shift2).to(dtype)
        entry(p1, cell.to(dtype), torch.tensor(1.0, dtype=torch.float64), zero, zero, zero, zero, zero)
        _, dq = entry(p2, cell.to(dtype), torch.tensor(2.0, dtype=torch.float64), zero, zero, zero, zero, zero)
        _, v_new = entry(p2, cell.to(dtype), torch.tensor(3.0, dtype=torch.float64), zero, zero, zero, zero, zero)
        return dq.double(), v_new.double()

    dq0, v0 = stride(0.0, 0.0)
    s1 = torch.tensor(rng.integers(-3, 4, size=(n, 3)), dtype=torch.float64) @ cell
    s2 = torch.tensor(rng.integers(-3, 4, size=(n, 3)), dtype=torch.float64) @ cell
    dq1, v1 = stride(s1, s2)
    tolerance = 1e-10 if dtype == torch.float64 else 2e-3  # float32 positions: mixed precision
    assert (v1 - v0).abs().max() < tolerance * v0.abs().max()
    assert (dq1 - dq0).abs().max() < tolerance * dq0.abs().max()


def test_nan_and_exploding_strides_raise_and_keep_the_state():
    system = harmonic_system([1.0, 1.0], 0.0)
    integrator = FlashMDIntegrator(system, NaNAfterStrideModel(0.01, 0.505), splitting="F", random_rotation=False,
                                   fallback=False)
    context = context_for(system, integrator)
    context.setPositions(np.zeros((2, 3)))
    context.setVelocities(np.array([[1.0, 0, 0], [0, 0, 0]]))
    with pytest.raises(FlashMDError, match=r"FlashMD stride 52: the stride model returned NaN") as failure:
        integrator.step(100)
    assert failure.value.stride == 52
    x, _ = positions_velocities(context)
    assert np.all(np.isfinite(x)) and x[0, 0] == pytest.approx(0.51)

    system = harmonic_system([1.0], 0.0)
    integrator = FlashMDIntegrator(system, FreeParticleStrideModel(0.01), splitting="F", max_displacement=0.1,
                                   fallback=False)
    context = context_for(system, integrator)
    context.setPositions(np.zeros((1, 3)))
    context.setVelocities(np.array([[20.0, 0, 0]]))
    with pytest.raises(FlashMDError, match=r"FlashMD stride 1: a particle moved more than max_displacement"):
        integrator.step(3)


@pytest.mark.parametrize(
    "splitting, message",
    [("F F", "exactly one F"), ("O X F", "unknown letters"), ("E F", "directly follow F"), ("O", "exactly one F"),
     ("F O E", "directly follow F"), ("O F B", "mixes")],
)
def test_bad_splittings_are_clear_errors(splitting, message):
    with pytest.raises(SplittingError, match=message):
        parse_splitting(splitting)


def test_thermostat_and_temperature_must_agree():
    with pytest.raises(SplittingError, match="temperature is None"):
        FlashMDIntegrator(harmonic_system([1.0], 1.0), FreeParticleStrideModel(0.01), splitting="O F O")
    with pytest.raises(SplittingError, match="no thermostat letter"):
        FlashMDIntegrator(harmonic_system([1.0], 1.0), FreeParticleStrideModel(0.01), temperature=300, splitting="F E")


def _topology(elements):
    topology = app.Topology()
    chain = topology.addChain()
    residue = topology.addResidue("MOL", chain)
    for symbol in elements:
        topology.addAtom(symbol, app.Element.getBySymbol(symbol), residue)
    return topology


def test_model_system_mismatches_are_clear_errors():
    water_masses = {1: 1.008, 8: 15.999}
    with pytest.raises(ModelSystemMismatch, match="model is for 3 particles, the System has 4"):
        FlashMDIntegrator(harmonic_system([1.0] * 4, 1.0), HarmonicStrideModel(0.01, 1.0, centers=torch.zeros(3, 3)))
    with pytest.raises(ModelSystemMismatch, match="matches no element"):
        FlashMDIntegrator(harmonic_system([1.008, 3.024], 1.0), model_with(masses=water_masses))
    with pytest.raises(ModelSystemMismatch, match="trained with 1.0080 Da"):
        FlashMDIntegrator(harmonic_system([3.024], 1.0), model_with(masses=water_masses), topology=_topology(["H"]))
    with pytest.raises(ModelSystemMismatch, match=r"elements \[6\]"):
        FlashMDIntegrator(harmonic_system([1.008, 12.011], 1.0), model_with(elements=[1, 8]), topology=_topology(["H", "C"]))
    with pytest.raises(ModelSystemMismatch, match="trained on periodic systems but the System is non-periodic"):
        FlashMDIntegrator(harmonic_system([1.0], 1.0), model_with(periodic=True))
    with pytest.raises(ModelSystemMismatch, match="differs from the model's stride"):
        FlashMDIntegrator(harmonic_system([1.0], 1.0), model_with(), timestep=1.0 * unit.femtosecond)
    with pytest.raises(ModelSystemMismatch, match="trained on data with constraints .* the System has no constraints"):
        FlashMDIntegrator(harmonic_system([1.0, 1.0], 1.0), model_with(provenance={"constraints_active": True}))
    constrained = harmonic_system([1.0, 1.0], 1.0)
    constrained.addConstraint(0, 1, 0.1)
    with pytest.raises(ModelSystemMismatch, match="without constraints .* the System has 1 constraints"):
        FlashMDIntegrator(constrained, model_with(provenance={"constraints_active": False}))
    with pytest.raises(ModelSystemMismatch, match="massless"):
        FlashMDIntegrator(harmonic_system([1.0, 0.0], 1.0), model_with())
    system = harmonic_system([1.0], 1.0)
    FlashMDIntegrator(system, model_with())
    with pytest.raises(ValueError, match="already carries a FlashMD stride force"):
        FlashMDIntegrator(system, model_with())


def test_masses_identify_elements_and_step_size_is_the_stride():
    model = model_with(masses={1: 1.008, 8: 15.999}, elements=[1, 8])
    integrator = FlashMDIntegrator(harmonic_system([15.999, 1.008, 1.008], 1.0), model, timestep=0.002)
    assert integrator.getStepSize() == 0.002 * unit.picosecond
    assert integrator.getTemperature() is None
    assert not (integrator.getIntegrationForceGroups() >> integrator.stride_force_group) & 1


def test_a_step_size_other_than_the_stride_never_runs():
    """openmmtools hashes integrators with a standard step size, so setting one is allowed; a stride
    that does not match the model is refused by step(), and by the program itself for a copy that
    lost the Python class (an XmlSerializer round trip)."""
    system = harmonic_system([1.0], 100.0)
    integrator = FlashMDIntegrator(system, HarmonicStrideModel(0.01, 100.0), splitting="F")
    context = context_for(system, integrator)
    context.setPositions(np.array([[0.1, 0.0, 0.0]]))
    integrator.setStepSize(0.004)
    with pytest.raises(FlashMDError, match="model advances 0.01 ps per step"):
        integrator.step(1)
    restored = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(integrator))
    system2 = harmonic_system([1.0], 100.0)
    system2.addForce(openmm.XmlSerializer.clone(system.getForce(system.getNumForces() - 1)))
    context2 = context_for(system2, restored)
    context2.setPositions(np.array([[0.1, 0.0, 0.0]]))
    restored.step(3)  # a plain CustomIntegrator: nothing raises, but nothing moves either
    assert positions_velocities(context2)[0][0, 0] == 0.1 and restored.getGlobalVariableByName("flashmd_failed") > 0
    integrator.setStepSize(0.01)
    integrator.step(1)
    assert positions_velocities(context)[0][0, 0] != 0.1


def _gas_simulation(tmp_path, seed=1):
    n = 16
    system = ideal_gas_system(n, 39.948, 2.0)
    system.addForce(openmm.MonteCarloBarostat(1 * unit.bar, 300 * unit.kelvin, 5))
    integrator = FlashMDIntegrator(system, FreeParticleStrideModel(0.01), temperature=300, random_seed=seed,
                                   splitting="O F O")
    simulation = app.Simulation(_topology(["Ar"] * n), system, integrator, openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(np.random.default_rng(seed).uniform(0, 2.0, size=(n, 3)))
    simulation.context.setVelocitiesToTemperature(300, seed)
    return simulation


def test_reporters_and_simulation_time(tmp_path):
    simulation = _gas_simulation(tmp_path)
    log = io.StringIO()
    simulation.reporters.append(app.StateDataReporter(log, 5, time=True, potentialEnergy=True, temperature=True, volume=True))
    simulation.reporters.append(app.DCDReporter(str(tmp_path / "traj.dcd"), 5))
    simulation.reporters.append(app.XTCReporter(str(tmp_path / "traj.xtc"), 5))
    simulation.step(20)
    rows = [line.split(",") for line in log.getvalue().splitlines()[1:]]
    assert [float(r[0]) for r in rows] == pytest.approx([0.05, 0.10, 0.15, 0.20])
    assert all(float(r[1]) == 0.0 for r in rows)  # the stride force adds no energy
    assert simulation.context.getState().getTime().value_in_unit(unit.picosecond) == pytest.approx(0.2)
    pdb = tmp_path / "top.pdb"
    with open(pdb, "w") as handle:
        app.PDBFile.writeFile(simulation.topology, np.zeros((16, 3)) * unit.nanometer, handle)
    for name in ("traj.dcd", "traj.xtc"):
        assert mdtraj.load(str(tmp_path / name), top=str(pdb)).n_frames == 4


def test_checkpoint_and_state_round_trip(tmp_path):
    simulation = _gas_simulation(tmp_path)
    simulation.step(10)
    simulation.saveCheckpoint(str(tmp_path / "run.chk"))
    simulation.saveState(str(tmp_path / "run.xml"))
    simulation.step(10)
    expected = simulation.context.getState(getPositions=True).getPositions(asNumpy=True)._value
    simulation.loadCheckpoint(str(tmp_path / "run.chk"))
    simulation.step(10)
    again = simulation.context.getState(getPositions=True).getPositions(asNumpy=True)._value
    assert np.array_equal(expected, again)  # same noise, same rotations: bit-identical
    simulation.loadState(str(tmp_path / "run.xml"))
    assert simulation.context.getState().getTime().value_in_unit(unit.picosecond) == pytest.approx(0.1)
    simulation.step(5)


def test_openmmtools_thermodynamic_state_sets_temperature_and_pressure():
    from openmmtools import states

    system = ideal_gas_system(8, 39.948, 2.0)
    system.addForce(openmm.MonteCarloBarostat(1 * unit.bar, 300 * unit.kelvin))
    integrator = FlashMDIntegrator(system, FreeParticleStrideModel(0.01), temperature=300)
    thermo = states.ThermodynamicState(system, 300 * unit.kelvin, 1 * unit.bar)
    context = thermo.create_context(integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.random.default_rng(0).uniform(0, 2, size=(8, 3)))
    thermo.temperature = 350 * unit.kelvin
    thermo.pressure = 2 * unit.bar
    thermo.apply_to_context(context)
    assert context.getIntegrator().getGlobalVariableByName("kT") == pytest.approx(KB * 350)
    assert context.getParameter(openmm.MonteCarloBarostat.Temperature()) == pytest.approx(350)
    assert context.getParameter(openmm.MonteCarloBarostat.Pressure()) == pytest.approx(2)
    context.getIntegrator().step(5)


@pytest.mark.parametrize("barostat", [
    lambda: openmm.MonteCarloAnisotropicBarostat(openmm.Vec3(1, 1, 1) * unit.bar, 300 * unit.kelvin, True, True, True, 1),
    lambda: openmm.MonteCarloMembraneBarostat(1 * unit.bar, 0 * unit.bar * unit.nanometer, 300 * unit.kelvin,
                                              openmm.MonteCarloMembraneBarostat.XYIsotropic,
                                              openmm.MonteCarloMembraneBarostat.ZFree, 1),
])
def test_other_barostats_run_unchanged(barostat):
    system = ideal_gas_system(20, 39.948, 3.0)
    system.addForce(barostat())
    integrator = FlashMDIntegrator(system, FreeParticleStrideModel(0.01), temperature=300, random_seed=2)
    context = context_for(system, integrator, "CPU")
    context.setPositions(np.random.default_rng(0).uniform(0, 3, size=(20, 3)))
    context.setVelocitiesToTemperature(300, 1)
    volume = context.getState().getPeriodicBoxVolume()
    integrator.step(200)
    assert context.getState().getPeriodicBoxVolume() != volume


@pytest.mark.parametrize("kind, message", [
    ("broadcast", r"new_velocities of shape \[3\] for 4 particles; it must be \[4, 3\]"),
    ("extra", r"new_positions of shape \[5, 3\] for 4 particles"),
    ("integer", "new_positions of dtype torch.int64"),
    ("nan", "non-finite new_positions for particles at rest"),
    ("raise", "raised on a probe call with this System's 4 particles: .*this model is broken"),
])
def test_a_model_whose_outputs_break_the_protocol_is_refused_at_construction(kind, message):
    from toy_models import BadOutputModel

    system = harmonic_system(np.full(4, 12.0), 100.0)
    with pytest.raises(ModelSystemMismatch, match=message):
        FlashMDIntegrator(system, BadOutputModel(0.01, kind))
    assert system.getNumForces() == 1  # nothing was added to the System


def test_energy_force_groups_must_name_populated_groups():
    system = harmonic_system(np.full(4, 12.0), 100.0)  # one force, in group 0
    with pytest.raises(ValueError, match="energy_force_groups is empty"):
        FlashMDIntegrator(system, FreeParticleStrideModel(0.01), energy_force_groups=[])
    with pytest.raises(ValueError, match=r"energy_force_groups \[3\] hold no force of this System"):
        FlashMDIntegrator(system, FreeParticleStrideModel(0.01), energy_force_groups={0, 3})
    FlashMDIntegrator(system, FreeParticleStrideModel(0.01), energy_force_groups={0})


@pytest.mark.parametrize("stride", [1e-9, float("inf"), float("nan"), -0.01, 100.0])
def test_strides_outside_the_physical_range_are_refused(stride):
    from openmm_flashmd.model.protocol import ModelProtocolError

    with pytest.raises(ModelProtocolError, match="must be between 1e-05 and 10.0 ps"):
        FlashMDIntegrator(harmonic_system(np.full(4, 12.0), 100.0), FreeParticleStrideModel(stride))


@pytest.mark.parametrize("splitting, groups, fallback", [
    ("O F E O", None, True), ("O F E O", None, False), ("F E", None, True), ("F", None, True),
    ("O F E O", {0, 1}, True),
])
@pytest.mark.parametrize("declares_energy_only", [False, True])
def test_the_filter_and_monitor_evaluate_a_torchforce_without_its_backward_pass(splitting, groups, fallback,
                                                                               declares_energy_only):
    """Energy-only evaluations skip openmm-torch's backward pass (OpenMM merges an energy step with a
    later force step at the same positions unless an x assignment separates them: the fallback MD
    must not make every stride pay for forces it only needs after a rejection). Several energy
    groups are summed one group per step (OpenMM refuses a step that depends on two). A force that
    declares ENERGY_ONLY_PARAMETER is evaluated with it at 1: no autograd graph either."""
    import openmmtorch

    from openmm_flashmd.model.energy import ENERGY_ONLY_PARAMETER
    from toy_models import PASSES, CountedWell

    system = harmonic_system(np.full(3, 2.0), 50.0)  # group 0
    well = openmmtorch.TorchForce(torch.jit.script(CountedWell()))
    well.setForceGroup(1)
    if declares_energy_only:
        well.addGlobalParameter(ENERGY_ONLY_PARAMETER, 0.0)
    system.addForce(well)
    options = {"temperature": 300.0} if "O" in splitting else {}
    integrator = FlashMDIntegrator(system, HarmonicStrideModel(0.01, 150.0), splitting=splitting,
                                   energy_force_groups=groups, fallback=fallback, **options)
    context = context_for(system, integrator, "CPU")
    context.setPositions(np.random.default_rng(0).normal(size=(3, 3)) * 0.05)
    context.setVelocities(np.full((3, 3), 0.3))
    integrator.step(1)
    PASSES.update(forward=0, backward=0, graph=0)
    integrator.step(20)
    assert integrator.fallback_statistics["rejected"] == 0
    assert PASSES["backward"] == 0
    assert PASSES["forward"] > 0 if ("E" in splitting or fallback) else PASSES["forward"] == 0
    assert PASSES["graph"] == (0 if declares_energy_only else PASSES["forward"])
    if declares_energy_only:
        assert context.getParameter(ENERGY_ONLY_PARAMETER) == 0.0  # set back within the step
    forces = context.getState(getForces=True, groups={1}).getForces(asNumpy=True)._value
    assert PASSES["backward"] == 1 and np.abs(forces).max() > 0  # forces outside the program: autograd as before

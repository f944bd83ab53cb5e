"""The frozen-force Verlet guess: on the platform, in the data, in PET stride models."""

import csv
import json

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from analytic_systems import context_for, positions_velocities
from flashmd_data_helpers import TINY_MODEL, constrained_dimer_file, diatomics
from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd.data.dataset import DataError, StridePairs, load_trajectories
from openmm_flashmd.data.guess import pair_guesses
from openmm_flashmd.integrator.guess import (
    BONDED_FORCES,
    GUESS_VARIABLE,
    GUESS_VELOCITY_VARIABLE,
    separate_fast_forces,
    verlet_guess_integrator,
)
from openmm_flashmd.integrator.reference import reference_step
from openmm_flashmd.model import PETHypers, PETStrideModel, VerletGuessStrideModel
from openmm_flashmd.model.protocol import ModelProtocolError, load_model, make_metadata_json, read_metadata
from openmm_flashmd.systems import get_system
from openmm_flashmd.train import evaluate, train

STRIDE = 0.032  # ps, as in test_train.py


def _constant_force_system(masses, field=(-3.0, 2.0, -1.0)):
    system = openmm.System()
    force = openmm.CustomExternalForce(f"{-field[0]}*x + {-field[1]}*y + {-field[2]}*z")
    for m in masses:
        system.addParticle(m)
        force.addParticle(system.getNumParticles() - 1, [])
    system.addForce(force)
    return system


def _guess_of(system, x, v, stride, substeps, box=None, platform="Reference", fast_forces=()):
    """(g, w) from the stand-alone guess program (what training data uses)."""
    integrator = verlet_guess_integrator(system, stride, substeps, fast_forces)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(x)
    context.setVelocities(v)
    integrator.step(1)
    return (np.array(integrator.getPerDofVariableByName(GUESS_VARIABLE)),
            np.array(integrator.getPerDofVariableByName(GUESS_VELOCITY_VARIABLE)))


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("substeps", [1, 3])
def test_guess_stride_is_exact_under_constant_forces(platform, substeps):
    masses = [1.0, 2.5, 12.0, 16.0]
    system = _constant_force_system(masses)
    tau = 0.01
    integrator = FlashMDIntegrator(system, VerletGuessStrideModel(tau, substeps), splitting="F", random_seed=3)
    context = context_for(system, integrator, platform)
    rng = np.random.default_rng(0)
    x, v = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    context.setPositions(x)
    context.setVelocities(v)
    integrator.step(5)
    new_x, new_v = positions_velocities(context)
    a = np.array([-3.0, 2.0, -1.0]) / np.array(masses)[:, None]
    t = 5 * tau
    np.testing.assert_allclose(new_x, x + v * t + 0.5 * a * t * t, atol=1e-12)
    np.testing.assert_allclose(new_v, v + a * t, atol=1e-11)


def test_guess_is_wrong_when_the_model_is_wrong():
    """The check above can fail: a model scaling the guess by 1.1 misses free fall."""
    system = _constant_force_system([1.0, 2.0])
    integrator = FlashMDIntegrator(system, VerletGuessStrideModel(0.01, guess_error=0.1), splitting="F")
    context = context_for(system, integrator)
    context.setPositions(np.zeros((2, 3)))
    context.setVelocities(np.ones((2, 3)))
    integrator.step(1)
    new_x, _ = positions_velocities(context)
    assert np.abs(new_x - (0.01 + 0.5 * 1e-4 * np.array([-3.0, 2.0, -1.0]) / np.array([[1.0], [2.0]]))).max() > 1e-4


def _spring_in_a_field(field=(-3.0, 2.0, -1.0)):
    """Two particles on a stiff HarmonicBondForce in a constant field (a CustomExternalForce)."""
    system = _constant_force_system([1.0, 2.5], field)
    bond = openmm.HarmonicBondForce()
    bond.addBond(0, 1, 0.1, 5.0e4)
    system.addForce(bond)
    return system


def _verlet_steps(system, x, v, h, steps):
    """Velocity Verlet (OpenMM's VerletIntegrator is leapfrog: its velocities lag half a step)."""
    integrator = openmm.CustomIntegrator(h)
    integrator.addComputePerDof("v", "v + 0.5*dt*f/m")
    integrator.addComputePerDof("x", "x + dt*v")
    integrator.addComputePerDof("v", "v + 0.5*dt*f/m")
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x)
    context.setVelocities(v)
    context.getIntegrator().step(steps)
    return positions_velocities(context)


def test_fast_forces_make_the_guess_velocity_verlet_in_substeps():
    """A constant slow force frozen at the start is exact, so with the bond recomputed per
    substep the guess is velocity Verlet in ``substeps`` steps; frozen, it is far off."""
    x = np.array([[0.0, 0.0, 0.0], [0.104, 0.01, 0.0]])
    v = np.array([[0.3, -0.2, 0.1], [-0.4, 0.5, 0.0]])
    tau, substeps = 0.008, 4
    x_vv, v_vv = _verlet_steps(_spring_in_a_field(), x, v, tau / substeps, substeps)
    g, w = _guess_of(_spring_in_a_field(), x, v, tau, substeps, fast_forces=["HarmonicBondForce"])
    np.testing.assert_allclose(x + g, x_vv, atol=1e-12)
    np.testing.assert_allclose(w, v_vv, atol=1e-10)
    g_frozen, _ = _guess_of(_spring_in_a_field(), x, v, tau, substeps)
    assert np.abs(x + g_frozen - x_vv).max() > 1e-4


def test_fast_forces_take_a_group_of_their_own_once():
    system = _spring_in_a_field()
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.array([[0.0, 0.0, 0.0], [0.104, 0.01, 0.0]]))
    before = context.getState(getEnergy=True, getForces=True)
    group = separate_fast_forces(system, ["HarmonicBondForce"])
    assert [system.getForce(i).getForceGroup() for i in range(2)] == [0, group] and group == 31
    assert separate_fast_forces(system, ["HarmonicBondForce"]) == group  # already alone: kept
    assert separate_fast_forces(system, []) is None
    context.reinitialize(preserveState=True)
    after = context.getState(getEnergy=True, getForces=True)
    assert after.getPotentialEnergy() == before.getPotentialEnergy()
    with pytest.raises(ValueError, match="PeriodicTorsionForce.*has none of them"):
        separate_fast_forces(system, ["PeriodicTorsionForce"])
    with pytest.raises(ValueError, match="in its energy force groups"):
        separate_fast_forces(system, ["HarmonicBondForce"], groups=[0])


def _assert_one_stride_is_the_guess(system, integrator, x0, v0, g, w):
    """One stride of a ``VerletGuessStrideModel`` integrator from (x0, v0) lands on (x0 + g, w); returns x."""
    context = context_for(system, integrator, "CPU")
    context.setPositions(x0)
    context.setVelocities(v0)
    integrator.step(1)
    new_x, new_v = positions_velocities(context)
    np.testing.assert_allclose(new_x, x0 + g, atol=2e-9)
    np.testing.assert_allclose(new_v, w, atol=1e-5)
    return new_x


def test_fast_force_guess_in_context_matches_the_data_program_for_alanine():
    """X-H constraints, bonded forces recomputed per substep: FlashMDIntegrator's stride of the
    guess model is the stand-alone program's guess, and the System's groups are split once."""
    built = get_system("alanine-dipeptide-implicit-hbonds")
    fast = list(BONDED_FORCES)
    probe = openmm.Context(built.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    probe.setPositions(built.positions)
    probe.setVelocitiesToTemperature(300.0, 4)
    probe.applyVelocityConstraints(1e-10)
    x0, v0 = positions_velocities(probe)
    del probe
    g, w = _guess_of(get_system("alanine-dipeptide-implicit-hbonds").system, x0, v0, 0.008, 4, platform="CPU",
                     fast_forces=fast)
    g_frozen, _ = _guess_of(get_system("alanine-dipeptide-implicit-hbonds").system, x0, v0, 0.008, 4, platform="CPU")
    assert np.abs(g - g_frozen).max() > 1e-4  # the substeps' bonded forces matter

    system = built.system
    integrator = FlashMDIntegrator(system, VerletGuessStrideModel(0.008, 4, fast_forces=fast), splitting="F",
                                   random_seed=5)
    groups = {type(f).__name__: f.getForceGroup() for f in system.getForces()}
    assert groups["HarmonicBondForce"] == groups["HarmonicAngleForce"] == groups["PeriodicTorsionForce"] != 0
    assert groups["NonbondedForce"] == groups["CustomGBForce"] == 0
    _assert_one_stride_is_the_guess(system, integrator, x0, v0, g, w)


def test_a_model_whose_fast_forces_the_system_lacks_is_refused():
    system = _constant_force_system([1.0, 2.0])
    with pytest.raises(ValueError, match="HarmonicBondForce.*has none of them"):
        FlashMDIntegrator(system, VerletGuessStrideModel(0.01, fast_forces=["HarmonicBondForce"]), splitting="F")


def test_guess_in_context_matches_the_data_program_for_rigid_water():
    """Periodic, SETTLE, random rotations: the stride of the guess model is exactly the guess
    the stand-alone program (training data) computes, and constraints hold."""
    water = get_system("water-rigid", n_molecules=32)
    system = water.system
    x0 = water.positions.value_in_unit(unit.nanometer)
    box = system.getDefaultPeriodicBoxVectors()
    rng = np.random.default_rng(2)
    v0 = rng.normal(scale=0.5, size=x0.shape)
    # start from a minimised, constrained state
    probe = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    probe.setPositions(x0)
    openmm.LocalEnergyMinimizer.minimize(probe, 10.0, 200)
    probe.setVelocities(v0)
    probe.applyVelocityConstraints(1e-10)
    state = probe.getState(getPositions=True, getVelocities=True)
    x0 = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    v0 = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
    del probe
    g, w = _guess_of(system, x0, v0, 0.008, 4, box=box, platform="CPU")
    assert np.abs(g - v0 * 0.008).max() > 1e-4  # the forces matter

    integrator = FlashMDIntegrator(system, VerletGuessStrideModel(0.008, 4), splitting="F", random_seed=5)
    new_x = _assert_one_stride_is_the_guess(system, integrator, x0, v0, g, w)
    for k in range(system.getNumConstraints()):
        i, j, d = system.getConstraintParameters(k)
        assert abs(np.linalg.norm(new_x[i] - new_x[j]) - d.value_in_unit(unit.nanometer)) < 1e-4


def test_models_declare_known_inputs_only():
    class Strange(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stride = 0.01
            self.metadata_json = make_metadata_json(inputs=["forces"])

        def forward(self, x, v, m, z, box):
            return x, v

    with pytest.raises(ModelProtocolError, match="unknown inputs"):
        read_metadata(Strange())
    meta = read_metadata(VerletGuessStrideModel(0.01, 2))
    assert meta["inputs"] == ["verlet_guess"] and meta["guess_substeps"] == 2
    bundled = read_metadata(load_model("alanine-dipeptide-implicit-hbonds-8fs"))
    assert bundled["inputs"] == ["verlet_guess"] and "HarmonicBondForce" in bundled["guess_fast_forces"]


def _tiny_guess_pet(stride=STRIDE, substeps=2):
    hypers = PETHypers(**{k.split(".")[1]: v for k, v in TINY_MODEL.items()}, verlet_guess=True,
                       guess_substeps=substeps)
    model = PETStrideModel.build(hypers, stride, [6], {6: 12.011}, periodic=False).double()
    with torch.no_grad():  # non-zero heads, so that the model is more than its guess
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_pet_guess_model_needs_the_guess():
    model = _tiny_guess_pet()
    x = torch.randn(8, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="Verlet guess"):
        model.forward_batch(x[None], x[None], torch.full((8,), 12.011), torch.full((8,), 6), torch.zeros(1, 3, 3))
    scripted = torch.jit.script(model)
    meta = read_metadata(scripted)
    assert meta["inputs"] == ["verlet_guess"] and meta["guess_substeps"] == 2
    rebuilt = PETStrideModel.from_metadata(meta)
    assert type(rebuilt).__name__ == "PETGuessStrideModel"


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_pet_guess_model_in_context_matches_reference_step(platform):
    # without constraints, so that nothing acts after F (constraint projection of the model's
    # output is covered with the exact guess model on rigid water above)
    system, topology, x0 = diatomics()
    rng = np.random.default_rng(4)
    v0 = rng.normal(scale=0.3, size=x0.shape)
    v0 -= v0.mean(axis=0)
    model = _tiny_guess_pet()
    integrator = FlashMDIntegrator(system, model, splitting="F", random_rotation=False, topology=topology)
    context = context_for(system, integrator, platform)
    context.setPositions(x0)
    context.setVelocities(v0)
    g, w = _guess_of(system, x0, v0, STRIDE, 2)
    integrator.step(1)
    new_x, new_v = positions_velocities(context)
    ref_x, ref_v, _ = reference_step(
        model, torch.tensor(x0), torch.tensor(v0), torch.full((8,), 12.011, dtype=torch.float64),
        torch.full((8,), 6), None, "F", guess=(torch.tensor(g), torch.tensor(w)),
    )
    assert np.abs(ref_x.numpy() - (x0 + g)).max() > 1e-6  # the network changed the guess
    np.testing.assert_allclose(new_x, ref_x.numpy(), atol=1e-12)
    np.testing.assert_allclose(new_v, ref_v.numpy(), atol=1e-10)


@pytest.fixture(scope="module")
def constrained_dimer_data(tmp_path_factory):
    return constrained_dimer_file(tmp_path_factory.mktemp("guess_data") / "dimers.h5", 6)


def test_stride_pairs_carry_the_right_guess(constrained_dimer_data):
    data = load_trajectories(constrained_dimer_data)
    guesses = pair_guesses(data, STRIDE, 2, time_reversal=True, progress=False)
    pairs = StridePairs(data, STRIDE, time_reversal=True, guesses=guesses)
    n = len(pairs.pairs)
    seg, a, b, _ = pairs.pairs[3]
    forward, backward = pairs.get_batch([3]), pairs.get_batch([n + 3])
    np.testing.assert_array_equal(forward["guess"][0].numpy(), guesses["forward"][0][seg, a])
    np.testing.assert_array_equal(backward["guess_velocities"][0].numpy(), guesses["reverse"][1][seg, b])
    assert not np.allclose(guesses["forward"][0][seg, b], guesses["reverse"][0][seg, b])
    # random rotations turn the guess with the pair: per-atom dot products are unchanged
    rotated = StridePairs(data, STRIDE, time_reversal=True, random_rotations=True, guesses=guesses,
                          generator=torch.Generator().manual_seed(1)).get_batch([3])
    dots = lambda batch: ((batch["new_positions"] - batch["positions"]) * batch["guess"]).sum(-1)  # noqa: E731
    torch.testing.assert_close(dots(rotated), dots(forward))
    assert not torch.allclose(rotated["guess"], forward["guess"])
    # the guess is a good start: better than free flight on these constrained dimers
    dq = (forward["new_positions"] - forward["positions"])[0].numpy()
    free = np.linalg.norm(dq - forward["velocities"][0].numpy() * STRIDE)
    assert np.linalg.norm(dq - forward["guess"][0].numpy()) < 0.5 * free


def test_train_evaluate_and_run_a_guess_model(constrained_dimer_data, tmp_path):
    overrides = dict(TINY_MODEL)
    overrides.update({"model.verlet_guess": True, "model.guess_substeps": 2, "training.max_steps": 20,
                      "training.validate_every": 10, "training.checkpoint_every": 10, "training.warmup_steps": 5,
                      "training.batch_size": 8, "data.validation_fraction": 0.34})
    result = train(constrained_dimer_data, tmp_path / "run", STRIDE, overrides=overrides, device="cpu",
                   progress=False)
    meta = read_metadata(load_model(result.model_path))
    assert meta["inputs"] == ["verlet_guess"] and meta["guess_substeps"] == 2
    assert "guess_scale" in meta["provenance"]["scales"]
    curves = json.loads((tmp_path / "run" / "curves.json").read_text())  # learning curves per validation
    assert [c["step"] for c in curves] == [10, 20] and all(c["threads"] >= 1 and c["wall_s"] > 0 for c in curves)
    carbon = curves[-1]["summary"]["per_element"]["6"]
    assert carbon["symbol"] == "C" and carbon["dq_rmse"] > 0 and carbon["kinetic_energy_ratio"] > 0
    assert carbon["dq_guess_rmse"] > 0
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    report = evaluate(result.model_path, constrained_dimer_data, max_pairs=64, batch_size=8)
    assert 0 < report["all"]["dq_guess_rmse"] < report["all"]["dq_free_flight_rmse"]
    energy = report["energy_error_per_stride"]
    assert energy["n_atoms"] == 8 and energy["model"]["total"]["sd"] > 0 and "guess" in energy
    assert energy["model"]["total"]["mean"] == pytest.approx(
        energy["model"]["potential"]["mean"] + energy["model"]["kinetic"]["mean"])
    _run_dimers_with(result.model_path, 5)


def _run_dimers_with(model_path, steps):
    """Run ``steps`` NVT strides of a trained model on the constrained dimers; return their System."""
    system, topology, x0 = diatomics(constrained=True)
    integrator = FlashMDIntegrator(system, model_path, temperature=300 * unit.kelvin, topology=topology)
    context = context_for(system, integrator)
    context.setPositions(x0)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(steps)
    x, v = positions_velocities(context)
    assert np.isfinite(x).all() and np.isfinite(v).all()
    return system


def test_train_evaluate_and_run_a_guess_model_with_fast_forces(constrained_dimer_data, tmp_path):
    """``model.guess_fast_forces`` reaches the metadata, the training guesses, evaluate and the integrator:
    the guess recomputing the external spring per substep is closer to the data than the frozen one."""
    overrides = dict(TINY_MODEL)
    overrides.update({"model.verlet_guess": True, "model.guess_substeps": 2,
                      "model.guess_fast_forces": ["CustomExternalForce"], "training.max_steps": 4,
                      "training.validate_every": 4, "training.checkpoint_every": 4, "training.warmup_steps": 2,
                      "training.batch_size": 8, "data.validation_fraction": 0.34})
    result = train(constrained_dimer_data, tmp_path / "run", STRIDE, overrides=overrides, device="cpu",
                   progress=False)
    meta = read_metadata(load_model(result.model_path))
    assert meta["guess_fast_forces"] == ["CustomExternalForce"]
    report = evaluate(result.model_path, constrained_dimer_data, max_pairs=64, batch_size=8)
    data = load_trajectories(constrained_dimer_data)
    frozen = pair_guesses(data, STRIDE, 2, time_reversal=False, progress=False)["forward"][0]
    fast = pair_guesses(data, STRIDE, 2, time_reversal=False, progress=False,
                        fast_forces=["CustomExternalForce"])["forward"][0]
    k = int(round(STRIDE / data.record_interval))
    target = data.positions[:, k:] - data.positions[:, :-k]
    assert np.abs(fast[:, :-k] - target).mean() < 0.5 * np.abs(frozen[:, :-k] - target).mean()
    assert report["all"]["dq_guess_rmse"] < report["all"]["dq_free_flight_rmse"]
    system = _run_dimers_with(result.model_path, 3)
    assert {type(f).__name__: f.getForceGroup() for f in system.getForces()}["CustomExternalForce"] != 0


def test_noisy_frames_keep_constraints_and_feed_noisy_inputs(constrained_dimer_data):
    from openmm_flashmd.data.guess import noisy_frames

    data = load_trajectories(constrained_dimer_data)
    positions, velocities = noisy_frames(data, 0.003, seed=1, segments=[0, 1], progress=False)
    moved = np.linalg.norm(positions[:2] - data.positions[:2], axis=-1)
    assert 0.001 < moved.mean() < 0.01 and np.array_equal(positions[2:], data.positions[2:])
    bonds = np.linalg.norm(positions[:2, :, 0::2] - positions[:2, :, 1::2], axis=-1)
    np.testing.assert_allclose(bonds, 0.15, atol=1e-6)  # the constraints hold after the noise
    relative = (velocities[:2, :, 0::2] - velocities[:2, :, 1::2]) * (positions[:2, :, 0::2] - positions[:2, :, 1::2])
    assert np.abs(relative.sum(-1)).max() < 1e-6  # velocities projected on the new bond directions

    noisy = {"states": (positions, velocities), "fraction": 1.0}
    always = StridePairs(data, STRIDE, segments=[0, 1], noisy=noisy, generator=torch.Generator().manual_seed(0))
    clean = StridePairs(data, STRIDE, segments=[0, 1])
    a, b = always.get_batch([0, 5]), clean.get_batch([0, 5])
    assert not torch.allclose(a["positions"], b["positions"])  # noisy inputs ...
    torch.testing.assert_close(a["new_positions"], b["new_positions"])  # ... unperturbed targets
    never = StridePairs(data, STRIDE, segments=[0, 1], noisy={**noisy, "fraction": 0.0})
    torch.testing.assert_close(never.get_batch([0, 5])["positions"], b["positions"])
    with pytest.raises(Exception, match="Verlet guesses"):
        StridePairs(data, STRIDE, segments=[0, 1], noisy=noisy,
                    guesses=pair_guesses(data, STRIDE, 2, time_reversal=False, segments=[0, 1], progress=False))


#: a tiny Verlet-guess model trained briefly on the constrained dimers
TINY_GUESS_TRAINING = dict(TINY_MODEL, **{
    "model.verlet_guess": True, "model.guess_substeps": 2, "training.max_steps": 10, "training.validate_every": 10,
    "training.warmup_steps": 1, "training.batch_size": 8, "data.validation_fraction": 0.34})


def test_training_with_noise_injection_starts_from_given_weights(constrained_dimer_data, tmp_path):
    overrides = dict(TINY_GUESS_TRAINING)
    first = train(constrained_dimer_data, tmp_path / "first", STRIDE, overrides=overrides, device="cpu",
                  progress=False)
    again = dict(overrides, **{"data.input_noise": 0.002, "training.init_from": str(first.model_path),
                               "training.learning_rate": 1e-12, "training.max_steps": 1})
    second = train(constrained_dimer_data, tmp_path / "second", STRIDE, overrides=again, device="cpu",
                   progress=False)
    before = load_model(first.model_path).state_dict()
    after = load_model(second.model_path).state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)


def test_energy_errors_use_the_kinetic_energy_of_the_velocities(constrained_dimer_data):
    """A perfect prediction has zero error; doubled velocities have three times the reference
    kinetic energy as error (OpenMM's leapfrog getKineticEnergy would shift them by half a step)."""
    from openmm_flashmd.train.evaluate import EnergyErrors

    data = load_trajectories(constrained_dimer_data)
    batch = StridePairs(data, STRIDE).get_batch([0, 7])
    errors = EnergyErrors(data)
    errors.add(batch["new_positions"], batch["new_velocities"], batch)
    errors.add(batch["new_positions"], 2 * batch["new_velocities"], batch)
    perfect, doubled = np.asarray(errors.errors["model"][:2]), np.asarray(errors.errors["model"][2:])
    np.testing.assert_allclose(perfect, 0.0, atol=1e-6)
    kinetic = 0.5 * (data.masses[:, None] * batch["new_velocities"].numpy() ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(doubled[:, 1], 3 * kinetic, rtol=1e-6)
    np.testing.assert_allclose(doubled[:, 0], 0.0, atol=1e-6)


def test_rollout_of_a_guess_model_constrains_and_guesses_each_predicted_state(constrained_dimer_data, tmp_path):
    """A rollout's later strides of a Verlet-guess model start where the integrator would: the
    prediction constrained exactly, with the Verlet guess of that constrained state (recomputed
    here with the stand-alone guess program, on rotated items)."""
    from openmm_flashmd.data.guess import data_system
    from openmm_flashmd.train.export import model_from_checkpoint
    from openmm_flashmd.train.openmm_system import OpenMMStateGuess
    from openmm_flashmd.train.trainer import _ScaledForward

    overrides = dict(TINY_GUESS_TRAINING, **{"loss.rollout": 0.5, "loss.rollout_strides": 3,
                                             "data.time_reversal": True})
    train(constrained_dimer_data, tmp_path / "run", STRIDE, overrides=overrides, device="cpu", progress=False,
          export=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert float(rows[-1]["train_loss_rollout"]) > 0 and float(rows[-1]["val_loss_rollout"]) > 0
    model = model_from_checkpoint(tmp_path / "run" / "checkpoint.pt").requires_grad_(False).double()
    data = load_trajectories(constrained_dimer_data)
    system = data_system(data)
    batch = StridePairs(data, STRIDE, time_reversal=True, random_rotations=True, rollout=3,
                        guesses=pair_guesses(data, STRIDE, 2, time_reversal=True, progress=False),
                        generator=torch.Generator().manual_seed(2)).get_batch([0, 5, 40])
    masses = torch.as_tensor(data.masses)
    numbers = torch.as_tensor(data.atomic_numbers)
    guesser = OpenMMStateGuess(system, STRIDE, 2)
    _, _, later = _ScaledForward(model, masses, numbers, guesser=guesser)(batch)
    q, v = model.forward_batch(batch["positions"], batch["velocities"], masses, numbers, batch["box"],
                               batch["guess"], batch["guess_velocities"])
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    for j in range(2):
        constrained, guesses = [], []
        for b in range(3):
            context.setPositions(q[b].numpy())
            context.setVelocities(v[b].numpy())
            context.applyConstraints(1e-5)
            context.applyVelocityConstraints(1e-5)
            x_c, v_c = positions_velocities(context)
            constrained.append((x_c, v_c))
            guesses.append(_guess_of(system, x_c, v_c, STRIDE, 2))
        x_c, v_c, g, w = (torch.as_tensor(np.stack([pair[i] for pair in rows]))
                          for rows in (constrained, guesses) for i in (0, 1))
        bonds = torch.linalg.norm(x_c[:, 0::2] - x_c[:, 1::2], dim=-1)
        torch.testing.assert_close(bonds, torch.full_like(bonds, 0.15), atol=1e-5, rtol=0)
        q, v = model.forward_batch(x_c, v_c, masses, numbers, batch["box"], g, w)
        torch.testing.assert_close(later["rollout_q"][:, j], q, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(later["rollout_v"][:, j], v, atol=1e-7, rtol=1e-7)
    # held-out rollouts of such a model run the same way
    report = evaluate(model.float(), constrained_dimer_data, max_pairs=8, batch_size=4, energy=False, rollout=3)
    errors = [r["q_rmse"] for r in report["rollout"]["per_stride"]]
    assert len(errors) == 3 and all(np.isfinite(errors)) and min(errors) > 0


def test_init_from_a_model_of_another_stride_takes_the_scales_of_its_own_data(constrained_dimer_data, tmp_path):
    """training.init_from copies the network's weights; the normalisation buffers come from the new
    training data and stride (the losses are normalised by them), not from the other model."""
    overrides = dict(TINY_GUESS_TRAINING, **{"training.max_steps": 2, "training.validate_every": 2})
    first = train(constrained_dimer_data, tmp_path / "first", STRIDE, overrides=overrides, device="cpu",
                  progress=False)
    again = dict(overrides, **{"training.init_from": str(first.model_path), "training.learning_rate": 1e-12,
                               "training.max_steps": 1})
    second = train(constrained_dimer_data, tmp_path / "second", STRIDE / 2, overrides=again, device="cpu",
                   progress=False)
    before, after = load_model(first.model_path).state_dict(), load_model(second.model_path).state_dict()
    scales = ("velocity_scale", "dq_scale", "p_scale", "guess_scale", "guess_velocity_scale")
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before if k not in scales)
    recorded = read_metadata(load_model(second.model_path))["provenance"]["scales"]
    for name in scales:
        assert float(after[name]) == pytest.approx(recorded[name], rel=1e-6)
    assert float(after["dq_scale"]) < 0.5 * float(before["dq_scale"])  # half the stride: far smaller residuals


def test_return_guess_is_the_guess_from_the_target_with_negated_velocities(constrained_dimer_data):
    """loss.reversal feeds the model its prediction with negated velocities: the pairs carry the
    guess from the reference target, and the training wrapper constrains the prediction as the
    integrator would and corrects that guess for the predicted velocities as free flight under
    frozen forces would. The guess program's answer from that start moves the correction with
    the molecules' rotation, which the wrapper does not: its correction removes about 90 % of the
    difference on these fast-rotating dimers (32 fs strides)."""
    from openmm_flashmd.train.projection import ConstraintProjector
    from openmm_flashmd.train.trainer import _ScaledForward

    data = load_trajectories(constrained_dimer_data)
    guesses = pair_guesses(data, STRIDE, 2, time_reversal=True, progress=False)
    pairs = StridePairs(data, STRIDE, time_reversal=True, guesses=guesses, return_guesses=True)
    n = len(pairs.pairs)
    seg, a, b, _ = pairs.pairs[3]
    forward, backward = pairs.get_batch([3]), pairs.get_batch([n + 3])
    np.testing.assert_array_equal(forward["return_guess"][0].numpy(), guesses["reverse"][0][seg, b])
    np.testing.assert_array_equal(backward["return_guess_velocities"][0].numpy(), guesses["forward"][1][seg, a])
    with pytest.raises(DataError, match="return guesses need"):
        StridePairs(data, STRIDE, return_guesses=True)

    class Recorder(torch.nn.Module):  # predicts the reference target plus a velocity error; records its inputs
        def __init__(self, dv):
            super().__init__()
            self.dv, self.calls = dv, []

        def forward_scaled_batch(self, q, v, masses, numbers, box, g, w):
            self.calls.append((q, v, g, w))
            sqrt_m = masses.sqrt().view(1, -1, 1)
            return (forward["new_positions"] - q) * sqrt_m, (forward["new_velocities"] + self.dv) * sqrt_m

    system, _, _ = diatomics(constrained=True)
    masses = torch.as_tensor(data.masses)
    dv = 0.02 * torch.as_tensor(np.random.default_rng(0).normal(size=forward["velocities"].shape))
    model = Recorder(dv)
    _ScaledForward(model, masses, torch.as_tensor(data.atomic_numbers), True,
                   ConstraintProjector(data.constraints, masses))(forward)
    q, v, g, w = (x[0].numpy() for x in model.calls[1])
    np.testing.assert_allclose(q, forward["new_positions"][0].numpy())
    kept = -v - forward["new_velocities"][0].numpy()  # the velocity error RATTLE keeps: tangent, not dv
    assert 0.3 * np.abs(dv.numpy()).max() < np.abs(kept).max() and not np.allclose(kept, dv[0].numpy())
    exact_g, exact_w = _guess_of(system, q, v, STRIDE, 2)
    uncorrected_g, uncorrected_w = (x[0].numpy() for x in (forward["return_guess"], forward["return_guess_velocities"]))
    assert np.abs(g - exact_g).max() < 0.15 * np.abs(uncorrected_g - exact_g).max()
    assert np.abs(w - exact_w).max() < 0.15 * np.abs(uncorrected_w - exact_w).max()


def test_reversal_loss_trains_a_guess_model(constrained_dimer_data, tmp_path):
    import csv

    overrides = dict(TINY_MODEL)
    overrides.update({"model.verlet_guess": True, "model.guess_substeps": 2, "training.max_steps": 10,
                      "training.validate_every": 10, "training.checkpoint_every": 10, "training.warmup_steps": 5,
                      "training.batch_size": 8, "data.validation_fraction": 0.34, "loss.reversal": 1.0})
    train(constrained_dimer_data, tmp_path / "run", STRIDE, overrides=overrides, device="cpu", progress=False,
          export=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert float(rows[-1]["train_loss_reversal"]) > 0
    overrides["data.time_reversal"] = False
    with pytest.raises(ValueError, match="needs data.time_reversal"):
        train(constrained_dimer_data, tmp_path / "bad", STRIDE, overrides=overrides, device="cpu", progress=False)

"""The constraint-projected loss: first-order SHAKE/SETTLE and exact RATTLE against OpenMM."""

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from analytic_systems import context_for, positions_velocities
from flashmd_data_helpers import FAST, TINY_MODEL, constrained_dimer_file, diatomics
from openmm_flashmd.data.generate import generate
from openmm_flashmd.data.dataset import load_trajectories
from openmm_flashmd.systems import water_box
from openmm_flashmd.train import evaluate, train
from openmm_flashmd.train.projection import ConstraintProjector
from openmm_flashmd.train.trainer import _Losses


def _constraints(system):
    rows = []
    for k in range(system.getNumConstraints()):
        i, j, d = system.getConstraintParameters(k)
        rows.append((i, j, d.value_in_unit(unit.nanometer)))
    return np.array(rows)


@pytest.fixture(scope="module")
def water_states():
    """8 rigid TIP3P waters: masses, constraints and two constrained states a 16 fs stride apart."""
    built = water_box(n_molecules=8, cutoff=0.3, nonbonded_method="CutoffPeriodic", rigid=True)
    system = built.system
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
    context = context_for(system, openmm.VerletIntegrator(0.001))
    context.setPositions(built.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
    context.setVelocitiesToTemperature(300, 1)
    context.applyVelocityConstraints(1e-10)
    start, _ = positions_velocities(context)
    context.getIntegrator().step(16)
    context.applyVelocityConstraints(1e-12)  # leapfrog's half-step velocities, made tangent at the end
    end, end_v = positions_velocities(context)
    return system, masses, start, end, end_v


@pytest.fixture
def dimer_free_data(tmp_path):
    system, _, positions = diatomics()
    path = tmp_path / "free.h5"
    generate(path, system, positions, n_segments=2, **FAST)
    return path


def test_position_projection_is_openmms_settle_to_first_order(water_states):
    """A stride output = the reference end + a small error e, constrained by OpenMM's SETTLE from
    the stride's start (as the integrator does): the result moves by the projected error, with a
    remainder that shrinks like e^2."""
    system, masses, start, end, _ = water_states
    integrator = openmm.CustomIntegrator(0.001)
    integrator.addPerDofVariable("dq", 0.0)
    integrator.addComputePerDof("x", "x + dq")
    integrator.addConstrainPositions()
    context = context_for(system, integrator)
    projector = ConstraintProjector(_constraints(system), torch.tensor(masses))
    sqrt_m = np.sqrt(masses)[:, None]
    rng = np.random.default_rng(1)
    direction = rng.normal(size=end.shape)
    remainders = []
    for eps in (1e-3, 1e-4):
        e = eps * direction
        context.setPositions(start)
        integrator.setPerDofVariableByName("dq", [openmm.Vec3(*row) for row in end - start + e])
        integrator.step(1)
        constrained, _ = positions_velocities(context)
        kept = (constrained - end) * sqrt_m
        predicted = projector.positions(torch.tensor(e * sqrt_m)[None], torch.tensor(start)[None],
                                        torch.tensor(end)[None])[0].numpy()
        assert np.linalg.norm(kept) < 0.99 * np.linalg.norm(e * sqrt_m)  # SETTLE removed a part
        remainders.append(np.linalg.norm(kept - predicted) / np.linalg.norm(kept))
    assert remainders[0] < 0.02
    assert remainders[1] < 0.2 * remainders[0]  # first order: the remainder falls with the error


def test_velocity_projection_is_openmms_rattle_exactly(water_states):
    system, masses, _, end, end_v = water_states
    context = context_for(system, openmm.VerletIntegrator(0.001))
    projector = ConstraintProjector(_constraints(system), torch.tensor(masses))
    sqrt_m = np.sqrt(masses)[:, None]
    e = np.random.default_rng(2).normal(scale=0.3, size=end.shape)
    context.setPositions(end)
    context.setVelocities(end_v + e)
    context.applyVelocityConstraints(1e-12)
    _, projected = positions_velocities(context)
    predicted = projector.velocities(torch.tensor(e * sqrt_m)[None], torch.tensor(end)[None])[0].numpy()
    np.testing.assert_allclose(predicted, (projected - end_v) * sqrt_m, atol=1e-9)


def test_projected_loss_ignores_exactly_what_the_constraints_remove(water_states):
    system, masses, start, end, end_v = water_states
    m = torch.tensor(masses)
    projector = ConstraintProjector(_constraints(system), m)
    scales = {"dq_scale": 1.0, "p_scale": 1.0}
    weights = {"positions": 1, "velocities": 1, "energy": 0, "constraint_removed": 0.0}
    projected, plain = (_Losses(weights, scales, m, 300.0, None, projector=p) for p in (projector, None))
    partly = _Losses(dict(weights, constraint_removed=0.25), scales, m, 300.0, None, projector=projector)
    batch = {"positions": torch.tensor(start)[None], "new_positions": torch.tensor(end)[None],
             "velocities": torch.zeros(1, *end.shape, dtype=torch.float64), "new_velocities": torch.tensor(end_v)[None]}
    sqrt_m = m.sqrt().view(1, -1, 1)
    t_q, t_p = (batch["new_positions"] - batch["positions"]) * sqrt_m, batch["new_velocities"] * sqrt_m
    # an error along every O-H bond of the end state, pushed out as the velocity constraints see it
    along = torch.zeros_like(t_q)
    for i, j, _ in _constraints(system):
        r = batch["new_positions"][0, int(j)] - batch["new_positions"][0, int(i)]
        along[0, int(j)] += 0.01 * r / sqrt_m[0, int(j)]
        along[0, int(i)] -= 0.01 * r / sqrt_m[0, int(i)]
    parts = projected(t_q, t_p + along, batch)
    full = float(plain(t_q, t_p + along, batch)["loss_p"])
    assert float(parts["loss_p"]) < 1e-20 < full
    assert float(partly(t_q, t_p + along, batch)["loss_p"]) == pytest.approx(0.25 * full, rel=1e-10)
    tangent = projector.velocities(torch.randn_like(t_p), batch["new_positions"])
    assert float(projected(t_q, t_p + tangent, batch)["loss_p"]) == pytest.approx(
        float(plain(t_q, t_p + tangent, batch)["loss_p"]), rel=1e-10)
    with pytest.raises(ValueError, match="no constraints"):
        ConstraintProjector(np.zeros((0, 3)), m)


def test_kinetic_energy_term_counts_the_velocities_rattle_keeps(water_states):
    """With constraints, each element's kinetic energy is compared after the velocity projection:
    an error that RATTLE removes entirely costs nothing (without the projection it adds kinetic
    energy); damping the hydrogens still costs."""
    system, masses, start, end, end_v = water_states
    m = torch.tensor(masses)
    numbers = torch.tensor([1 if mass < 2 else 8 for mass in masses])
    projector = ConstraintProjector(_constraints(system), m)
    scales = {"dq_scale": 1.0, "p_scale": 1.0}
    weights = {"positions": 1, "velocities": 1, "energy": 0, "kinetic_energy": 1.0}
    kept, raw = (_Losses(weights, scales, m, 300.0, None, numbers, projector=p) for p in (projector, None))
    batch = {"positions": torch.tensor(start)[None], "new_positions": torch.tensor(end)[None],
             "velocities": torch.zeros(1, *end.shape, dtype=torch.float64), "new_velocities": torch.tensor(end_v)[None]}
    sqrt_m = m.sqrt().view(1, -1, 1)
    t_q, t_p = (batch["new_positions"] - batch["positions"]) * sqrt_m, batch["new_velocities"] * sqrt_m
    along = torch.randn_like(t_p)
    along = along - projector.velocities(along, batch["new_positions"])  # only what RATTLE removes
    assert float(kept(t_q, t_p + along, batch)["loss_ke"]) < 1e-20 < float(raw(t_q, t_p + along, batch)["loss_ke"])
    damped = t_p.clone()
    damped[:, numbers == 1] *= 0.9  # not along the bonds alone: RATTLE keeps part of the damping
    assert float(kept(t_q, damped, batch)["loss_ke"]) > 1e-3


def test_training_with_the_projection_and_constrained_held_out_errors(tmp_path, dimer_free_data):
    with pytest.raises(ValueError, match="needs data with constraints"):
        train(dimer_free_data, tmp_path / "free", 0.032, overrides={**TINY_MODEL, "loss.constraint_removed": 0.5},
              device="cpu", progress=False)
    data = constrained_dimer_file(tmp_path / "dimers.h5", 6)
    overrides = dict(TINY_MODEL)
    overrides.update({"training.max_steps": 20, "training.validate_every": 10, "training.checkpoint_every": 10,
                      "training.warmup_steps": 5, "training.batch_size": 8, "data.validation_fraction": 0.34,
                      "loss.constraint_removed": 0.1})
    result = train(data, tmp_path / "run", 0.032, overrides=overrides, device="cpu", progress=False)
    assert np.isfinite(result.best_validation_loss)
    report = evaluate(result.model_path, data, max_pairs=32, batch_size=8)
    for entry in report["per_element"].values():
        assert entry["dq_constrained_rmse"] > 0 and entry["v_constrained_rmse"] > 0
    # RATTLE is an orthogonal projection in the mass metric: it never adds to the mass-weighted error
    mass = load_trajectories(data).element_masses()
    weighted = lambda key: sum(mass[int(z)] * e["n_atom_samples"] * e[key] ** 2  # noqa: E731
                               for z, e in report["per_element"].items())
    assert weighted("v_constrained_rmse") <= weighted("v_rmse") * (1 + 1e-9)

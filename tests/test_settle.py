"""SETTLE's solvability, checked before the solver runs: exact against OpenMM's own SETTLE."""

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from analytic_systems import context_for, positions_velocities
from openmm_flashmd import FlashMDError, FlashMDIntegrator
from openmm_flashmd.integrator.settle import settle_clusters, settle_solvable
from openmm_flashmd.systems import alanine_dipeptide_implicit_hbonds, water_box
from openmm_flashmd.model import FreeParticleStrideModel
from toy_models import EveryKthStrideFails


def small_rigid_water():
    return water_box(n_molecules=8, cutoff=0.3, nonbonded_method="CutoffPeriodic", rigid=True)


def test_clusters_are_the_waters_with_oxygen_first():
    built = small_rigid_water()
    atoms, distances = settle_clusters(built.system)
    elements = [atom.element.symbol for atom in built.topology.atoms()]
    assert atoms.shape == (8, 3) and distances.shape == (8, 2)
    assert all(elements[i] == "O" and elements[j] == elements[k] == "H" for i, j, k in atoms)
    assert np.allclose(distances, [0.09572, 0.15139], atol=1e-6)
    flexible = water_box(n_molecules=8, cutoff=0.3, nonbonded_method="CutoffPeriodic")
    assert settle_clusters(flexible.system)[0].shape == (0, 3)
    peptide = alanine_dipeptide_implicit_hbonds()
    assert settle_clusters(peptide.system)[0].shape == (0, 3)  # X-H bonds: CCMA, no SETTLE


def test_solvability_matches_openmms_settle_exactly():
    """Random unconstrained outputs around each water, constrained by OpenMM's SETTLE (Reference
    platform, the positions before as reference): NaN exactly where settle_solvable says no."""
    built = small_rigid_water()
    system = built.system
    atoms, distances = settle_clusters(system)
    x0 = np.asarray(built.positions.value_in_unit(unit.nanometer))
    masses = torch.tensor([system.getParticleMass(i).value_in_unit(unit.dalton)
                           for i in range(system.getNumParticles())], dtype=torch.float64)
    integrator = openmm.CustomIntegrator(0.001)
    integrator.addPerDofVariable("dq", 0.0)
    integrator.addComputePerDof("x", "x + dq")
    integrator.addConstrainPositions()
    context = context_for(system, integrator)
    rng = np.random.default_rng(0)
    failed = solvable_seen = 0
    for scale in (0.01, 0.03, 0.05, 0.08):
        for _ in range(10):
            dq = rng.normal(scale=scale, size=x0.shape)
            context.setPositions(x0)
            integrator.setPerDofVariableByName("dq", [openmm.Vec3(*row) for row in dq])
            integrator.step(1)
            x, _ = positions_velocities(context)
            nan = ~np.isfinite(x[atoms]).all(axis=(1, 2))
            predicted = settle_solvable(torch.tensor(x0), torch.tensor(x0 + dq), torch.from_numpy(atoms),
                                        torch.from_numpy(distances), masses).numpy()
            assert np.array_equal(~nan, predicted)
            failed += int(nan.sum())
            solvable_seen += int((~nan).sum())
    assert failed > 20 and solvable_seen > 20  # both outcomes were tested


def _bent_water_run(fallback):
    built = small_rigid_water()
    integrator = FlashMDIntegrator(built.system, EveryKthStrideFails(FreeParticleStrideModel(0.004), 3, bent_water=0), splitting="F",
                                   fallback=fallback, fallback_timestep=0.001, max_energy_drift=1e9)
    context = context_for(built.system, integrator)
    context.setPositions(built.positions)
    context.setVelocitiesToTemperature(300.0, 1)
    return integrator, context


def test_a_stride_settle_cannot_constrain_is_run_as_md():
    integrator, context = _bent_water_run(fallback=True)
    integrator.step(9)
    x, v = positions_velocities(context)
    assert np.isfinite(x).all() and np.isfinite(v).all()
    stats = integrator.fallback_statistics
    assert stats["by_reason"]["settle"] == 3 and stats["rejected"] == 3
    atoms, distances = settle_clusters(context.getSystem())
    oh = np.linalg.norm(x[atoms[:, 1:]] - x[atoms[:, :1]], axis=2)
    hh = np.linalg.norm(x[atoms[:, 1]] - x[atoms[:, 2]], axis=1)
    assert np.allclose(oh, distances[:, :1], rtol=1e-5) and np.allclose(hh, distances[:, 1], rtol=1e-5)


def test_without_fallback_such_a_stride_raises_and_keeps_the_state():
    integrator, context = _bent_water_run(fallback=False)
    integrator.step(2)
    before, _ = positions_velocities(context)
    with pytest.raises(FlashMDError, match="SETTLE"):
        integrator.step(1)
    after, _ = positions_velocities(context)
    assert np.allclose(after, before, rtol=0.0, atol=1e-12)  # the velocity probe's x + s v - s v: round-off

"""Built-in systems."""

import numpy as np
import pytest

import openmm_flashmd  # noqa: F401
import openmm
from openmm import unit

from openmm_flashmd.systems import (
    BuiltinSystem, alanine_dipeptide_implicit, argon_box, available_systems, get_system, water_box,
)


def _minimised_energy(built: BuiltinSystem) -> float:
    ctx = openmm.Context(built.system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(built.positions)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 200)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def test_registry():
    assert set(available_systems()) == {"water", "water-rigid", "alanine-dipeptide-implicit",
                                        "alanine-dipeptide-implicit-hbonds", "alanine-dipeptide-explicit", "argon"}
    with pytest.raises(KeyError, match="available"):
        get_system("nope")
    assert get_system("argon", n_atoms=8).num_particles == 8


def test_alanine_dipeptide_hbonds_constrains_every_bond_to_hydrogen():
    built = get_system("alanine-dipeptide-implicit-hbonds")
    assert built.name == "alanine-dipeptide-implicit-hbonds" and built.reference_timestep == 0.001
    hydrogens = {a.index for a in built.topology.atoms() if a.element.symbol == "H"}
    pairs = {tuple(sorted(built.system.getConstraintParameters(k)[:2])) for k in range(built.system.getNumConstraints())}
    bonds_to_h = {tuple(sorted((b[0].index, b[1].index))) for b in built.topology.bonds()
                  if b[0].index in hydrogens or b[1].index in hydrogens}
    assert pairs == bonds_to_h and len(pairs) == 12
    assert get_system("alanine-dipeptide-implicit").system.getNumConstraints() == 0


def test_water_box_flexible():
    w = water_box(n_molecules=27)
    assert isinstance(w, BuiltinSystem) and w.name == "water"
    assert w.num_particles == 81 and w.topology.getNumResidues() == 27
    assert w.system.getNumConstraints() == 0
    assert w.system.usesPeriodicBoundaryConditions()
    forces = {type(f).__name__ for f in w.system.getForces()}
    assert {"HarmonicBondForce", "HarmonicAngleForce", "NonbondedForce"} <= forces
    nb = [f for f in w.system.getForces() if isinstance(f, openmm.NonbondedForce)][0]
    assert nb.getNonbondedMethod() == openmm.NonbondedForce.PME
    edge = w.system.getDefaultPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
    # density 0.997 g/cm^3
    assert 27 * 18.015 / 6.022e23 / (edge * 1e-7) ** 3 == pytest.approx(0.997, rel=1e-3)
    pos = w.positions.value_in_unit(unit.nanometer)
    assert pos.shape == (81, 3)
    oh = np.linalg.norm(pos[1::3] - pos[0::3], axis=1)
    assert np.allclose(oh, 0.09572)
    assert np.isfinite(_minimised_energy(w)) and _minimised_energy(w) < 0
    assert w.reference_timestep == 0.0005 and w.temperature == 300.0


def test_water_box_options():
    rigid = water_box(n_molecules=8, cutoff=0.3, nonbonded_method="CutoffPeriodic", rigid=True)
    assert rigid.system.getNumConstraints() == 24 and rigid.reference_timestep == 0.002
    with pytest.raises(ValueError, match="half the box"):
        water_box(n_molecules=8, cutoff=0.5)
    with pytest.raises(ValueError):
        water_box(n_molecules=8, cutoff=0.3, nonbonded_method="Ewald?")


def test_alanine_dipeptide_implicit():
    ala = alanine_dipeptide_implicit()
    assert ala.num_particles == 22 and ala.system.getNumConstraints() == 0
    assert not ala.system.usesPeriodicBoundaryConditions()
    forces = {type(f).__name__ for f in ala.system.getForces()}
    assert "GBSAOBCForce" in forces or "CustomGBForce" in forces
    assert np.isfinite(_minimised_energy(ala))


def test_alanine_dipeptide_explicit_is_solvated_flexible_and_periodic():
    ala = get_system("alanine-dipeptide-explicit")
    residues = [res.name for res in ala.topology.residues()]
    assert residues[:3] == ["ACE", "ALA", "NME"] and residues.count("HOH") == 230
    assert ala.system.usesPeriodicBoundaryConditions()
    assert ala.system.getNumConstraints() == 0
    assert ala.num_particles == 22 + 3 * 230
    bonds = [f for f in ala.system.getForces() if isinstance(f, openmm.HarmonicBondForce)][0]
    assert bonds.getNumBonds() >= 21 + 2 * 230  # flexible water: two O-H bonds each
    with pytest.raises(ValueError, match="half the box edge"):
        get_system("alanine-dipeptide-explicit", padding=0.3)


def test_argon():
    ar = argon_box(n_atoms=32)
    assert ar.num_particles == 32 and ar.system.usesPeriodicBoundaryConditions()
    assert [a.element.symbol for a in ar.topology.atoms()] == ["Ar"] * 32
    assert _minimised_energy(ar) < 0


def test_topology_from_periodic_system_writes_pdb():
    """A periodic System without a topology (e.g. an MLIP System) gets one that PDB writing accepts."""
    import io

    from openmm import app

    from openmm_flashmd.systems.loading import topology_from_system

    ar = argon_box(n_atoms=8)
    topology = topology_from_system(ar.system)
    assert [a.element.symbol for a in topology.atoms()] == ["Ar"] * 8
    edge = ar.system.getDefaultPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
    assert topology.getUnitCellDimensions()[0].value_in_unit(unit.nanometer) == pytest.approx(edge)
    buffer = io.StringIO()
    app.PDBFile.writeFile(topology, ar.positions, buffer)
    assert "CRYST1" in buffer.getvalue()


def test_bundled_water_reference_rdf_has_the_liquid_first_peak():
    from openmm_flashmd.analysis.structure import reference_rdf

    ref = reference_rdf("water")
    peak = ref["r_nm"][np.argmax(ref["g_OO"])]
    assert 0.26 < peak < 0.29 and 2.3 < ref["g_OO"].max() < 3.5
    assert ref["g_OH"][ref["r_nm"] < 0.14].max() < 0.05  # intramolecular O-H excluded
    with pytest.raises(KeyError, match="no bundled reference RDF"):
        reference_rdf("argon")


def test_systems_for_a_barostat_leave_room_for_the_box_to_shrink():
    from openmm_flashmd.systems import get_system_for_barostat

    water = get_system_for_barostat("water")
    edge = water.system.getDefaultPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
    assert water.options["cutoff"] == pytest.approx(0.45 * edge)
    small = get_system_for_barostat("water", n_molecules=216, cutoff=0.5)
    assert small.options["cutoff"] == 0.5  # already fits: kept
    assert get_system_for_barostat("alanine-dipeptide-implicit").num_particles == 22  # not periodic: unchanged

"""Small built-in systems for generating reference data and testing.

Every builder returns a :class:`BuiltinSystem`. Units: positions in nm, temperature in K,
``reference_timestep`` in ps (a velocity-Verlet step that is safe for the system as built,
i.e. without constraints).

==============================  ========================================================
name (for :func:`get_system`)   builder
==============================  ========================================================
``water``                       :func:`water_box` (flexible TIP3P, periodic, PME)
``water-rigid``                 :func:`rigid_water_box` (rigid TIP3P, SETTLE, periodic, PME)
``alanine-dipeptide-implicit``  :func:`alanine_dipeptide_implicit` (amber14 + OBC2)
``alanine-dipeptide-explicit``  :func:`alanine_dipeptide_explicit` (amber14 + flexible TIP3P, PME)
``argon``                       :func:`argon_box` (Lennard-Jones argon, periodic)
==============================  ========================================================
"""

from __future__ import annotations

import openmm_flashmd._plugins  # noqa: F401  (torch before openmm; see NOTES)

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import openmm
from openmm import app, unit

from openmm_flashmd.systems.lattice import AVOGADRO, water_lattice

DATA_DIR = Path(__file__).resolve().parent / "data"

__all__ = [
    "BuiltinSystem",
    "water_box",
    "rigid_water_box",
    "alanine_dipeptide_implicit",
    "alanine_dipeptide_explicit",
    "argon_box",
    "get_system",
    "get_system_for_barostat",
    "available_systems",
]


@dataclass
class BuiltinSystem:
    """A ready-to-simulate system.

    Attributes
    ----------
    name : registry name
    topology : :class:`openmm.app.Topology`
    system : :class:`openmm.System`
    positions : positions as an OpenMM ``Quantity`` in nm, shape [N, 3]
    temperature : suggested temperature, K
    reference_timestep : velocity-Verlet step that integrates this system accurately, ps
    description : one line describing the potential
    """

    name: str
    topology: app.Topology
    system: openmm.System
    positions: unit.Quantity
    temperature: float
    reference_timestep: float
    description: str
    options: Dict[str, object] = field(default_factory=dict)

    @property
    def num_particles(self) -> int:
        return self.system.getNumParticles()


# ---------------------------------------------------------------------------- water

def water_box(
    n_molecules: int = 64,
    density: float = 0.997,
    temperature: float = 300.0,
    cutoff: float | None = None,
    nonbonded_method: str = "PME",
    rigid: bool = False,
    seed: int = 0,
) -> BuiltinSystem:
    """A cubic periodic box of TIP3P water (flexible unless ``rigid``).

    The molecules sit on a simple cubic lattice with random orientations (no overlaps);
    minimise before dynamics. Parameters come from OpenMM's ``amber14/tip3p.xml`` with
    ``rigidWater=False`` (harmonic O-H bonds and H-O-H angle) and no constraints, so a
    0.5 fs velocity-Verlet step is accurate.

    Parameters
    ----------
    n_molecules : number of waters (any positive integer; the lattice is filled row by row)
    density : g/cm^3, sets the box edge
    temperature : K, stored as the suggested temperature
    cutoff : nonbonded cutoff in nm; default ``min(0.9, 0.49 * edge)``
    nonbonded_method : ``"PME"`` or ``"CutoffPeriodic"``
    rigid : constrain the water geometry (SETTLE); the reference timestep becomes 2 fs
    seed : orientation seed
    """
    if n_molecules < 1:
        raise ValueError("n_molecules must be positive")
    coords, edge = water_lattice(n_molecules, density, seed)
    if cutoff is None:
        cutoff = min(0.9, 0.49 * edge)
    if cutoff >= 0.5 * edge:
        raise ValueError(f"cutoff {cutoff} nm must be below half the box edge ({edge:.3f} nm)")
    methods = {"PME": app.PME, "CutoffPeriodic": app.CutoffPeriodic}
    if nonbonded_method not in methods:
        raise ValueError(f"nonbonded_method must be one of {sorted(methods)}")

    topology = app.Topology()
    chain = topology.addChain()
    oxygen, hydrogen = app.Element.getBySymbol("O"), app.Element.getBySymbol("H")
    for _ in range(n_molecules):
        res = topology.addResidue("HOH", chain)
        o = topology.addAtom("O", oxygen, res)
        topology.addBond(o, topology.addAtom("H1", hydrogen, res))
        topology.addBond(o, topology.addAtom("H2", hydrogen, res))
    topology.setPeriodicBoxVectors(np.eye(3) * edge * unit.nanometer)
    positions = coords * unit.nanometer

    forcefield = app.ForceField("amber14/tip3p.xml")
    system = forcefield.createSystem(
        topology,
        nonbondedMethod=methods[nonbonded_method],
        nonbondedCutoff=cutoff * unit.nanometer,
        constraints=None,
        rigidWater=rigid,
        removeCMMotion=False,
    )
    kind = "rigid" if rigid else "flexible"
    return BuiltinSystem(
        name="water",
        topology=topology,
        system=system,
        positions=positions,
        temperature=float(temperature),
        reference_timestep=0.002 if rigid else 0.0005,
        description=(
            f"{n_molecules} {kind} TIP3P waters (OpenMM amber14/tip3p.xml), {nonbonded_method}, "
            f"cutoff {cutoff:.3f} nm, cubic box {edge:.4f} nm"
        ),
        options=dict(n_molecules=n_molecules, density=density, cutoff=cutoff,
                     nonbonded_method=nonbonded_method, rigid=rigid, seed=seed),
    )


def rigid_water_box(n_molecules: int = 64, density: float = 0.997, temperature: float = 300.0,
                    cutoff: float | None = None, nonbonded_method: str = "PME", seed: int = 0) -> BuiltinSystem:
    """A cubic periodic box of rigid TIP3P water (SETTLE constraints), otherwise as :func:`water_box`.

    Rigid water removes the stiff O-H vibrations (periods near 9 fs) that a small stride
    model cannot resolve at 8-16 fs; the reference timestep is 2 fs.
    """
    built = water_box(n_molecules=n_molecules, density=density, temperature=temperature, cutoff=cutoff,
                      nonbonded_method=nonbonded_method, rigid=True, seed=seed)
    built.name = "water-rigid"
    built.options.pop("rigid")
    return built


# ---------------------------------------------------------------- alanine dipeptide

def alanine_dipeptide_implicit(temperature: float = 300.0) -> BuiltinSystem:
    """Alanine dipeptide (ACE-ALA-NME, 22 atoms) in OBC2 implicit solvent.

    amber14 (``amber14-all.xml``) with ``implicit/obc2.xml``, no cutoff, no constraints,
    not periodic. The structure is the one bundled with openmmtools (shipped in
    ``openmm_flashmd/systems/data/alanine-dipeptide.pdb``).
    """
    pdb = app.PDBFile(str(DATA_DIR / "alanine-dipeptide.pdb"))
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    system = forcefield.createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False,
        removeCMMotion=False,
    )
    return BuiltinSystem(
        name="alanine-dipeptide-implicit",
        topology=pdb.topology,
        system=system,
        positions=pdb.getPositions(asNumpy=True).in_units_of(unit.nanometer),
        temperature=float(temperature),
        reference_timestep=0.0005,
        description="alanine dipeptide, amber14-all + implicit/obc2 (OpenMM), no cutoff, no constraints",
    )


def alanine_dipeptide_implicit_hbonds(temperature: float = 300.0) -> BuiltinSystem:
    """Alanine dipeptide in OBC2 implicit solvent with X-H bonds constrained (``constraints=HBonds``).

    As :func:`alanine_dipeptide_implicit` otherwise. Constraining the bonds to hydrogen removes
    the stiffest vibrations (C-H, N-H, periods near 11 fs), the usual biomolecular set-up;
    the reference timestep is 1 fs.
    """
    built = alanine_dipeptide_implicit(temperature)
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    built.system = forcefield.createSystem(
        built.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds, rigidWater=False,
        removeCMMotion=False,
    )
    built.name = "alanine-dipeptide-implicit-hbonds"
    built.reference_timestep = 0.001
    built.description = "alanine dipeptide, amber14-all + implicit/obc2 (OpenMM), no cutoff, X-H bonds constrained"
    return built


def alanine_dipeptide_explicit(
    temperature: float = 300.0, padding: float = 1.0, cutoff: float = 0.9, seed: int = 0
) -> BuiltinSystem:
    """Alanine dipeptide in a periodic box of flexible TIP3P water (amber14, PME).

    The solvated peptide of the FlashMD paper, for GPU-sized runs (712 atoms, 230 waters,
    a 2.0 nm box with the default ``padding``; larger ``padding`` gives larger boxes). ``amber14-all.xml`` + ``amber14/tip3p.xml`` with
    ``rigidWater=False``, no constraints, PME with ``cutoff`` (nm); ``padding`` (nm) is the
    minimum water layer between the peptide and the box faces (OpenMM ``Modeller.addSolvent``,
    cubic box). ``seed`` is accepted for a uniform interface; solvation is deterministic.
    """
    pdb = app.PDBFile(str(DATA_DIR / "alanine-dipeptide.pdb"))
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addSolvent(forcefield, model="tip3p", padding=padding * unit.nanometer, boxShape="cube")
    edge = modeller.topology.getPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
    if cutoff >= 0.5 * edge:
        raise ValueError(f"cutoff {cutoff} nm must be below half the box edge ({edge:.3f} nm)")
    system = forcefield.createSystem(
        modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=cutoff * unit.nanometer,
        constraints=None, rigidWater=False, removeCMMotion=False,
    )
    n_waters = sum(1 for res in modeller.topology.residues() if res.name == "HOH")
    return BuiltinSystem(
        name="alanine-dipeptide-explicit",
        topology=modeller.topology,
        system=system,
        positions=modeller.getPositions().value_in_unit(unit.nanometer) * unit.nanometer,
        temperature=float(temperature),
        reference_timestep=0.0005,
        description=(
            f"alanine dipeptide in {n_waters} flexible TIP3P waters, amber14-all + amber14/tip3p.xml, PME, "
            f"cutoff {cutoff:.2f} nm, cubic box {edge:.4f} nm, no constraints"
        ),
        options=dict(padding=padding, cutoff=cutoff, seed=seed),
    )


# --------------------------------------------------------------------------- argon

def argon_box(
    n_atoms: int = 64,
    density: float = 1.40,
    temperature: float = 120.0,
    cutoff: float | None = None,
    seed: int = 0,
) -> BuiltinSystem:
    """Periodic Lennard-Jones argon (sigma 0.3405 nm, epsilon 0.996 kJ/mol, 39.948 Da).

    Atoms start on a jittered simple cubic lattice. ``density`` in g/cm^3 (1.40 is the
    liquid near 90-120 K). The cutoff (nm, default ``min(1.0, 0.49 * edge)``) uses a
    switching function from 0.9 x cutoff and the long-range dispersion correction off.
    """
    if n_atoms < 2:
        raise ValueError("n_atoms must be at least 2")
    mass = 39.948
    volume_nm3 = n_atoms * mass / AVOGADRO / density * 1e21
    edge = volume_nm3 ** (1.0 / 3.0)
    if cutoff is None:
        cutoff = min(1.0, 0.49 * edge)
    if cutoff >= 0.5 * edge:
        raise ValueError(f"cutoff {cutoff} nm must be below half the box edge ({edge:.3f} nm)")
    per_side = int(np.ceil(n_atoms ** (1.0 / 3.0) - 1e-9))
    spacing = edge / per_side
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    coords = (grid[:n_atoms] + 0.5) * spacing + rng.normal(scale=0.01, size=(n_atoms, 3))

    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*row) * edge for row in np.eye(3)))
    force = openmm.NonbondedForce()
    force.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(cutoff)
    force.setUseSwitchingFunction(True)
    force.setSwitchingDistance(0.9 * cutoff)
    force.setUseDispersionCorrection(False)
    topology = app.Topology()
    chain = topology.addChain()
    element = app.Element.getBySymbol("Ar")
    for _ in range(n_atoms):
        system.addParticle(mass)
        force.addParticle(0.0, 0.3405, 0.996)
        topology.addAtom("Ar", element, topology.addResidue("AR", chain))
    system.addForce(force)
    topology.setPeriodicBoxVectors(np.eye(3) * edge * unit.nanometer)
    return BuiltinSystem(
        name="argon",
        topology=topology,
        system=system,
        positions=coords * unit.nanometer,
        temperature=float(temperature),
        reference_timestep=0.002,
        description=(
            f"{n_atoms} Lennard-Jones argon atoms (sigma 0.3405 nm, epsilon 0.996 kJ/mol), "
            f"cutoff {cutoff:.3f} nm with switch, cubic box {edge:.4f} nm"
        ),
        options=dict(n_atoms=n_atoms, density=density, cutoff=cutoff, seed=seed),
    )


_REGISTRY: Dict[str, Callable[..., BuiltinSystem]] = {
    "water": water_box,
    "water-rigid": rigid_water_box,
    "alanine-dipeptide-implicit": alanine_dipeptide_implicit,
    "alanine-dipeptide-implicit-hbonds": alanine_dipeptide_implicit_hbonds,
    "alanine-dipeptide-explicit": alanine_dipeptide_explicit,
    "argon": argon_box,
}


def available_systems() -> Dict[str, str]:
    """Map each registry name to the first line of its builder's docstring."""
    return {name: (fn.__doc__ or "").strip().splitlines()[0] for name, fn in _REGISTRY.items()}


def get_system(name: str, **options) -> BuiltinSystem:
    """Build the built-in system ``name`` (see :func:`available_systems`), passing ``options``
    to its builder."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown built-in system {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name](**options)


#: Largest nonbonded cutoff, as a fraction of the shortest box edge, of systems made for a
#: barostat: OpenMM stops a run whose box shrinks below twice the cutoff.
BAROSTAT_CUTOFF_FRACTION = 0.45


def get_system_for_barostat(name: str, **options) -> BuiltinSystem:
    """:func:`get_system`, with the nonbonded cutoff of a periodic built-in lowered to at most
    ``BAROSTAT_CUTOFF_FRACTION`` x the box edge (nm) so that a barostat can shrink the box by
    about 10 %. Small boxes (the default 64 waters: cutoff 0.609 -> 0.559 nm) are affected;
    an explicit ``cutoff`` option that already fits is kept."""
    built = get_system(name, **options)
    if not built.system.usesPeriodicBoundaryConditions() or "cutoff" not in built.options:
        return built
    box = built.system.getDefaultPeriodicBoxVectors()
    edge = min(vector[i].value_in_unit(unit.nanometer) for i, vector in enumerate(box))
    limit = BAROSTAT_CUTOFF_FRACTION * edge
    if built.options["cutoff"] <= limit + 1e-12:
        return built
    return get_system(name, **{**options, "cutoff": limit})

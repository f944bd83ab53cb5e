"""Loading Systems, structures and platforms from what users pass: names, files, objects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np
import openmm
from openmm import app, unit

from openmm_flashmd.analysis.thermo import system_masses
from openmm_flashmd.systems import _REGISTRY, BuiltinSystem, get_system


def guess_element(mass: float) -> Optional[app.Element]:
    """The element whose standard mass is nearest ``mass`` (Da), within 5 %; None if massless or none."""
    if mass <= 0.0:
        return None
    best = None
    for element in app.Element._elements_by_symbol.values():
        m = element.mass.value_in_unit(unit.dalton)
        if abs(m - mass) < 0.05 * max(1.0, mass) and (best is None or abs(m - mass) < abs(best.mass.value_in_unit(unit.dalton) - mass)):
            best = element
    return best


def topology_from_system(system: openmm.System) -> app.Topology:
    """A one-atom-per-residue Topology with elements guessed from the System's masses."""
    topology = app.Topology()
    chain = topology.addChain()
    for mass in system_masses(system):
        element = guess_element(mass)
        res = topology.addResidue("UNK", chain)
        topology.addAtom(element.symbol if element else "X", element, res)
    if system.usesPeriodicBoundaryConditions():
        # a list of Vec3 Quantities confuses Topology (PDB writing fails): one Quantity in nm
        vectors = [v.value_in_unit(unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()]
        topology.setPeriodicBoxVectors(vectors * unit.nanometer)
    return topology


def load_system(system: Any) -> Tuple[openmm.System, Optional[BuiltinSystem]]:
    """System (and the BuiltinSystem, if any) from a BuiltinSystem, System, built-in name or XML path."""
    if isinstance(system, BuiltinSystem):
        return system.system, system
    if isinstance(system, openmm.System):
        return system, None
    if isinstance(system, (str, os.PathLike)):
        if str(system) in _REGISTRY:
            built = get_system(str(system))
            return built.system, built
        path = Path(system)
        if not path.exists():
            raise FileNotFoundError(
                f"{system!r} is neither a built-in system ({', '.join(_REGISTRY)}) nor an existing System XML file"
            )
        try:
            obj = openmm.XmlSerializer.deserialize(path.read_text())
        except Exception as err:
            raise ValueError(f"{path} is not a serialized OpenMM System: {err}") from None
        if not isinstance(obj, openmm.System):
            raise ValueError(f"{path} holds a serialized {type(obj).__name__}, not a System")
        return obj, None
    raise TypeError(f"system must be a BuiltinSystem, openmm.System, built-in name or XML path, not {type(system).__name__}")


def load_structure(structure: Any, n_particles: int):
    """Return (positions [N,3] nm ndarray, box [3,3] nm or None, topology or None)."""
    topology = None
    box = None
    if isinstance(structure, openmm.State):
        state = structure
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
    elif isinstance(structure, (str, os.PathLike)):
        path = Path(structure)
        if not path.exists():
            raise FileNotFoundError(f"structure file {path} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".pdb":
            pdb = app.PDBFile(str(path))
        elif suffix in (".cif", ".pdbx"):
            pdb = app.PDBxFile(str(path))
        elif suffix == ".xml":
            try:
                state = openmm.XmlSerializer.deserialize(path.read_text())
            except Exception as err:
                raise ValueError(f"{path} is not a serialized OpenMM State: {err}") from None
            if not isinstance(state, openmm.State):
                raise ValueError(f"{path} holds a serialized {type(state).__name__}, not a State")
            return load_structure(state, n_particles)
        else:
            raise ValueError(f"structure {path}: expected .pdb, .cif/.pdbx or a State .xml file")
        topology = pdb.topology
        positions = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        vectors = topology.getPeriodicBoxVectors()
        if vectors is not None:
            box = np.array([[v.value_in_unit(unit.nanometer) for v in row] for row in vectors])
    else:
        if unit.is_quantity(structure):
            structure = structure.value_in_unit(unit.nanometer)
        positions = np.asarray(structure, dtype=float)
    positions = np.asarray(positions, dtype=float)
    if positions.shape != (n_particles, 3):
        raise ValueError(f"structure has {positions.shape} positions; the System has {n_particles} particles")
    if not np.all(np.isfinite(positions)):
        raise ValueError("structure contains non-finite positions")
    return positions, box, topology


def make_platform(platform):
    """An OpenMM Platform from a name (None: let OpenMM choose), with a clear error."""
    if platform is None or isinstance(platform, openmm.Platform):
        return platform
    try:
        return openmm.Platform.getPlatformByName(str(platform))
    except Exception:
        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        raise ValueError(f"OpenMM platform {platform!r} is not available; available: {names}") from None


def start_state(system: openmm.System, built: Optional[BuiltinSystem], structure: Any = None):
    """Where a run starts: (positions [N, 3] nm ndarray, box [3, 3] nm or None, topology).

    Positions come from ``structure`` (PDB/PDBx/State XML, see :func:`load_structure`) or
    else from the built-in system; the topology from the built-in system, else the
    structure, else :func:`topology_from_system`. Raises ``ValueError`` when there is no
    structure for a System that is not built in, or when the topology does not match.
    """
    n = system.getNumParticles()
    topology = built.topology if built else None
    box = None
    if structure is not None:
        positions, box, structure_topology = load_structure(structure, n)
        topology = topology or structure_topology
    elif built is not None:
        positions = np.asarray(built.positions.value_in_unit(unit.nanometer), dtype=float)
    else:
        raise ValueError("a System that is not built in needs a structure (PDB, PDBx or State XML)")
    topology = topology or topology_from_system(system)
    if topology.getNumAtoms() != n:
        raise ValueError(f"topology has {topology.getNumAtoms()} atoms; the System has {n} particles")
    return positions, box, topology

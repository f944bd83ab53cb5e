"""Write periodic replicas of a trajectory file's frames as a new trajectory file.

Each frame of ``source`` (a periodic openmm-flashmd trajectory file) becomes its ``nx x ny x nz``
periodic replica: positions shifted by whole box vectors, velocities and forces copied, the
potential energy times the number of copies (exact for a periodic System: every copy moves as
the original does), the box vectors multiplied. The stored System is replicated as well (same
cutoff and settings; the forces in ``ADD_COPY`` and constraints are known), so that the replica
can be merged with another file of the larger System (``openmm-flashmd train A.h5 B.h5 ...``
needs the same atoms in every file) and the Verlet guess of training runs on a System of the
right size.

    python tile.py SOURCE.h5 OUT.h5 --copies 2 2 1 [--segments N]

Units as in the trajectory format: nm, nm/ps, kJ/mol/nm, kJ/mol.
"""

from __future__ import annotations

import openmm_flashmd._plugins  # noqa: F401  (torch before openmm)

import argparse
import itertools
import sys
from pathlib import Path

import h5py
import numpy as np
import openmm

from openmm_flashmd.data import schema


def _add_nonbonded_copy(new: openmm.NonbondedForce, force: openmm.NonbondedForce, offset: int) -> None:
    for i in range(force.getNumParticles()):
        new.addParticle(*force.getParticleParameters(i))
    for e in range(force.getNumExceptions()):
        i, j, *parameters = force.getExceptionParameters(e)
        new.addException(offset + i, offset + j, *parameters)


def _add_bond_copy(new: openmm.HarmonicBondForce, force: openmm.HarmonicBondForce, offset: int) -> None:
    for b in range(force.getNumBonds()):
        i, j, *parameters = force.getBondParameters(b)
        new.addBond(offset + i, offset + j, *parameters)


def _add_angle_copy(new: openmm.HarmonicAngleForce, force: openmm.HarmonicAngleForce, offset: int) -> None:
    for a in range(force.getNumAngles()):
        i, j, m, *parameters = force.getAngleParameters(a)
        new.addAngle(offset + i, offset + j, offset + m, *parameters)


#: How one more copy of the System is added to a (cloned) force of each known type.
ADD_COPY = {openmm.NonbondedForce: _add_nonbonded_copy, openmm.HarmonicBondForce: _add_bond_copy,
            openmm.HarmonicAngleForce: _add_angle_copy, openmm.CMMotionRemover: lambda new, force, offset: None}


def replicate_system(system: openmm.System, copies: int) -> openmm.System:
    """``copies`` independent copies of ``system`` in one System (particle i of copy k is
    ``k * N + i``); every force is a clone of the original (all its settings kept) with the
    further copies' terms added. The box vectors are set by the caller."""
    n = system.getNumParticles()
    out = openmm.System()
    for _ in range(copies):
        for i in range(n):
            out.addParticle(system.getParticleMass(i))
    for k in range(copies):
        for c in range(system.getNumConstraints()):
            i, j, d = system.getConstraintParameters(c)
            out.addConstraint(k * n + i, k * n + j, d)
    for force in system.getForces():
        add_copy = ADD_COPY.get(type(force))
        if add_copy is None:
            raise SystemExit(f"tile.py: cannot replicate a {type(force).__name__}")
        new = openmm.XmlSerializer.clone(force)
        for k in range(1, copies):
            add_copy(new, force, k * n)
        out.addForce(new)
    return out


def replicate_topology_pdb(pdb_text: str, copies: int, positions: np.ndarray, box: np.ndarray) -> str:
    """PDB text of ``copies`` copies of the topology in ``pdb_text``, at ``positions`` (nm)
    in the box ``box`` (rows, nm)."""
    import io

    from openmm import app, unit

    single = app.PDBFile(io.StringIO(pdb_text)).topology
    top = app.Topology()
    for _ in range(copies):
        atoms = {}
        for chain in single.chains():
            new_chain = top.addChain(chain.id)
            for residue in chain.residues():
                new_residue = top.addResidue(residue.name, new_chain, residue.id)
                for atom in residue.atoms():
                    atoms[atom] = top.addAtom(atom.name, atom.element, new_residue)
        for a, b in single.bonds():
            top.addBond(atoms[a], atoms[b])
    top.setPeriodicBoxVectors([openmm.Vec3(*row) for row in box] * unit.nanometer)
    out = io.StringIO()
    app.PDBFile.writeFile(top, positions * unit.nanometer, out)
    return out.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--copies", type=int, nargs=3, default=[2, 2, 1], metavar=("NX", "NY", "NZ"))
    parser.add_argument("--segments", type=int, default=None, help="only the first N complete segments")
    args = parser.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"tile.py: {args.out} exists; remove it first")
    shifts = list(itertools.product(*(range(c) for c in args.copies)))
    copies = len(shifts)
    with schema.open_trajectory_file(args.source, "r") as src:
        complete = np.flatnonzero(src["segment_complete"][()] == 1)[:args.segments]
        box = src["box"][()][complete]
        frames = {name: src[name][()][complete] for name in ("positions", "velocities", "forces")}
        energy = src["potential_energy"][()][complete]
        system = openmm.XmlSerializer.deserialize(schema.read_string(src, "system_xml"))
        attrs = dict(src.attrs)
        masses, numbers, constraints = (src[k][()] for k in ("masses", "atomic_numbers", "constraints"))
        topology_pdb = schema.read_string(src, "topology_pdb")
    n = system.getNumParticles()
    positions = np.concatenate([frames["positions"] + np.einsum("i,sfij->sfj", np.asarray(s, float), box)[:, :, None]
                                for s in shifts], axis=2)
    velocities = np.concatenate([frames["velocities"]] * copies, axis=2)
    forces = np.concatenate([frames["forces"]] * copies, axis=2)
    big_box = box * np.asarray(args.copies, float)[None, None, :, None]
    big = replicate_system(system, copies)
    a, b, c = (openmm.Vec3(*row) for row in big_box[0, 0])
    big.setDefaultPeriodicBoxVectors(a, b, c)
    big_constraints = np.concatenate([constraints + np.array([k * n, k * n, 0.0]) for k in range(copies)])
    tmp = args.out.with_name(args.out.name + ".part")
    str_dt = h5py.string_dtype()
    with h5py.File(tmp, "w") as f:
        attrs.update(n_segments=len(complete), description=f"{'x'.join(map(str, args.copies))} periodic replicas of "
                     f"{args.source.name}: {attrs.get('description', '')}")
        for key, value in attrs.items():
            f.attrs[key] = value
        f.create_dataset("positions", data=positions)
        f.create_dataset("velocities", data=velocities)
        f.create_dataset("forces", data=forces)
        f.create_dataset("potential_energy", data=energy * copies)
        f.create_dataset("box", data=big_box)
        f.create_dataset("segment_complete", data=np.ones(len(complete), dtype=np.uint8))
        f.create_dataset("masses", data=np.tile(masses, copies))
        f.create_dataset("atomic_numbers", data=np.tile(numbers, copies))
        f.create_dataset("constraints", data=big_constraints.reshape(-1, 3))
        f.create_dataset("topology_pdb", data=replicate_topology_pdb(topology_pdb, copies, positions[0, 0],
                                                                     big_box[0, 0]), dtype=str_dt)
        f.create_dataset("system_xml", data=openmm.XmlSerializer.serialize(big), dtype=str_dt)
    tmp.replace(args.out)
    print(f"wrote {args.out}: {len(complete)} segments of {n * copies} particles")
    return 0


if __name__ == "__main__":
    sys.exit(main())

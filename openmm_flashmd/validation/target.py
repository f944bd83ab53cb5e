"""What a validation runs on: a System with its topology, start structure, temperature and
reference-MD timestep, from a built-in name or from the user's own files.

Units: positions and box nm, temperature K, timestep ps, pressure bar, friction 1/ps.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from openmm_flashmd.validation.sampling import EXPLOSION_FACTOR, Recorder

#: Langevin friction of reference MD and (by default) of FlashMD, 1/ps.
COLLISION_RATE = 1.0
#: NpT pressure, bar (default).
PRESSURE_BAR = 1.0
SEED = 0
#: Reference MD barostat: a move every 25 steps (OpenMM's default); FlashMD attempts moves as
#: often in simulated time (every max(1, round(25 dt_ref / stride)) strides).
REFERENCE_BAROSTAT_FREQUENCY = 25
#: Barostat forces a user's System may carry: validation removes them and adds its own for NpT.
_BAROSTATS = ("MonteCarloBarostat", "MonteCarloAnisotropicBarostat", "MonteCarloFlexibleBarostat",
              "MonteCarloMembraneBarostat")


class ValidationError(ValueError):
    """A validation cannot run as asked (bad input); the message is one line."""


def system_from_model_name(name: str) -> Optional[str]:
    """``water-rigid-16fs`` (or a path to ``water-rigid-16fs.pt``) -> ``water-rigid``; None when the
    name has no ``-<N>fs`` suffix."""
    from openmm_flashmd.model.bundled import split_model_name

    parts = split_model_name(Path(str(name)).stem)
    return parts[0] if parts else None


def system_identity(system, positions, box: Optional[np.ndarray] = None, stem: str = "system") -> str:
    """``<stem>-<hash>``: names a user's System and start structure in validation caches (the
    hash covers the serialized System, positions in nm and box in nm)."""
    import openmm

    digest = hashlib.sha256(openmm.XmlSerializer.serialize(system).encode())
    digest.update(np.asarray(positions, dtype=np.float64).tobytes())
    if box is not None:
        digest.update(np.asarray(box, dtype=np.float64).tobytes())
    return f"{stem}-{digest.hexdigest()[:12]}"


def _without_barostats(system):
    """A copy of ``system`` without Monte Carlo barostats."""
    system = copy.deepcopy(system)
    for index in reversed(range(system.getNumForces())):
        if type(system.getForce(index)).__name__ in _BAROSTATS:
            system.removeForce(index)
    return system


class Target:
    """A System to validate a stride model on, with what the measurements need.

    Parameters
    ----------
    name : label of the System in results and file names (a built-in name, or
        ``<file stem>-<hash>`` for a user's System: see :meth:`from_files`)
    system : the ``openmm.System`` (barostats are removed; NpT adds its own)
    topology : ``openmm.app.Topology`` with elements
    positions : start positions, [N, 3] nm
    box : start box vectors, [3, 3] nm (None: the System's default box)
    temperature : K
    reference_timestep : reference MD (LangevinMiddleIntegrator) timestep, ps
    pressure : NpT pressure in bar (None: no NpT; periodic Systems only)
    barostat_system : builds the System used under NpT (default: ``system``); built-ins lower a
        cutoff that a shrinking box would break (:func:`openmm_flashmd.systems.get_system_for_barostat`)
    threads : OpenMM CPU platform threads (None: OpenMM's default)
    fallback : FlashMD runs with the stride monitor (the product's default)
    progress : progress bars
    """

    def __init__(self, name: str, system, topology, positions: np.ndarray, temperature: float,
                 reference_timestep: float, box: Optional[np.ndarray] = None, pressure: Optional[float] = PRESSURE_BAR,
                 barostat_system: Optional[Callable[[], Any]] = None, threads: Optional[int] = None,
                 fallback: bool = True, progress: bool = True):
        from openmm import unit

        from openmm_flashmd.analysis.thermo import degrees_of_freedom, system_masses
        from openmm_flashmd.systems.loading import make_platform

        self.name = name
        self.system = _without_barostats(system)
        self.topology = topology
        self.positions = np.asarray(positions, dtype=float)
        self.periodic = self.system.usesPeriodicBoundaryConditions()
        if box is None and self.periodic:
            box = np.array([vector.value_in_unit(unit.nanometer) for vector in self.system.getDefaultPeriodicBoxVectors()])
        self.box = np.asarray(box, dtype=float) if box is not None else np.zeros((3, 3))
        self.temperature = float(temperature)
        self.timestep = float(reference_timestep)
        if not self.timestep > 0:
            raise ValidationError(f"the reference timestep must be positive (ps), got {reference_timestep}")
        if pressure is not None and not self.periodic:
            raise ValidationError("the System has no periodic box: NpT (a pressure) needs one")
        self.pressure = pressure
        self._barostat_system = barostat_system or (lambda: self.system)
        self.fallback = fallback
        self.progress = progress
        self.n_atoms = self.system.getNumParticles()
        if topology.getNumAtoms() != self.n_atoms:
            raise ValidationError(f"the topology has {topology.getNumAtoms()} atoms, the System "
                                  f"{self.n_atoms} particles")
        self.masses = system_masses(self.system)
        self.elements = [atom.element.symbol if atom.element is not None else "X" for atom in topology.atoms()]
        self.dof = degrees_of_freedom(self.system)
        self.platform = make_platform("CPU")
        self.properties = {"Threads": str(threads)} if threads else {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def builtin(cls, name: str, threads: Optional[int] = None, fallback: bool = True, progress: bool = True,
                temperature: Optional[float] = None) -> "Target":
        """A built-in system (:func:`openmm_flashmd.systems.get_system`) at its own temperature
        and reference timestep, NpT at 1 bar when periodic."""
        from openmm import unit

        from openmm_flashmd.systems import get_system, get_system_for_barostat

        built = get_system(name)
        periodic = built.system.usesPeriodicBoundaryConditions()
        return cls(name, built.system, built.topology, built.positions.value_in_unit(unit.nanometer),
                   float(built.temperature) if temperature is None else temperature, float(built.reference_timestep),
                   pressure=PRESSURE_BAR if periodic else None,
                   barostat_system=lambda: _without_barostats(get_system_for_barostat(name).system),
                   threads=threads, fallback=fallback, progress=progress)

    @classmethod
    def from_files(cls, system: Any, structure: Any = None, temperature: Optional[float] = None,
                   reference_timestep: Optional[float] = None, pressure: Optional[float] = None,
                   model_metadata: Optional[Dict[str, Any]] = None, threads: Optional[int] = None,
                   fallback: bool = True, progress: bool = True) -> "Target":
        """A user's System (XML file or ``openmm.System``; a built-in name works too) started from
        ``structure`` (PDB/PDBx with the topology, or a State XML). Temperature (K) and reference
        timestep (ps) default to the model's training data (``model_metadata``), else 300 K;
        ``pressure`` (bar) defaults to 1 bar for periodic Systems and is an error for others."""
        from openmm_flashmd.systems.loading import load_system, start_state, topology_from_system

        provenance = (model_metadata or {}).get("provenance") or {}
        if isinstance(system, (str, Path)) and Path(str(system)).suffix != ".xml" and structure is None:
            target = cls.builtin(str(system), threads, fallback, progress, temperature)
            if reference_timestep is not None:
                target.timestep = float(reference_timestep)
            return target
        try:
            omm_system, built = load_system(system)
            positions, box, topology = start_state(omm_system, built, structure)
        except (FileNotFoundError, ValueError, TypeError) as exc:
            raise ValidationError(str(exc).splitlines()[0]) from None
        topology = topology or topology_from_system(omm_system)
        periodic = omm_system.usesPeriodicBoundaryConditions()
        if pressure is not None and not periodic:
            raise ValidationError("the System has no periodic box: NpT (--pressure) needs one")
        timestep = reference_timestep if reference_timestep is not None else provenance.get("data_timestep")
        if timestep is None:
            raise ValidationError("no reference timestep: the model does not record its data's timestep; "
                                  "pass the reference MD timestep (ps)")
        temperature = temperature if temperature is not None else provenance.get("data_temperature", 300.0)
        stem = Path(str(system)).stem if isinstance(system, (str, Path)) else "system"
        return cls(system_identity(omm_system, positions, box, stem), omm_system, topology, positions, float(temperature),
                   float(timestep), box=box, pressure=(pressure if pressure is not None else PRESSURE_BAR)
                   if periodic else None, threads=threads, fallback=fallback, progress=progress)

    # ------------------------------------------------------------------ what runs use
    @functools.cached_property
    def has_backbone(self) -> bool:
        """Whether the topology has a protein backbone with φ/ψ dihedrals (mdtraj)."""
        import mdtraj

        frame = mdtraj.Trajectory(self.positions[None].astype(np.float32), mdtraj.Topology.from_openmm(self.topology))
        return mdtraj.compute_phi(frame)[0].shape[0] > 0

    @property
    def has_water(self) -> bool:
        return any(residue.name in ("HOH", "WAT", "SOL", "TIP3") for residue in self.topology.residues())

    def element_pairs(self) -> List[str]:
        """Element pairs of the topology ("O-O", "O-H", "H-H", ...), heavier element first; a pair
        of one element only where it has two atoms or more."""
        from collections import Counter

        masses = dict(zip(self.elements, self.masses))
        counts = Counter(self.elements)
        order = sorted(masses, key=lambda e: (-masses[e], e))
        return [f"{a}-{b}" for i, a in enumerate(order) for b in order[i:] if a != b or counts[a] > 1]

    def context(self, system, integrator):
        import openmm

        return openmm.Context(system, integrator, self.platform, self.properties)

    def start_context(self, system, integrator):
        """A Context at the start structure (box included)."""
        context = self.context(system, integrator)
        if self.periodic:
            context.setPeriodicBoxVectors(*self.box)
        context.setPositions(self.positions)
        return context

    def recorder(self, **kwargs) -> Recorder:
        """A :class:`Recorder` that calls a run exploded when its kinetic temperature, averaged
        over the last ``EXPLOSION_WINDOW_PS``, is above ``EXPLOSION_FACTOR`` x the temperature."""
        from openmm_flashmd.analysis.thermo import removes_centre_of_mass_motion

        return Recorder(self.masses, self.elements, self.dof, explosion_K=EXPLOSION_FACTOR * self.temperature,
                        centre_of_mass_removed=removes_centre_of_mass_motion(self.system), **kwargs)

    def barostat_system(self, frequency: int = REFERENCE_BAROSTAT_FREQUENCY, seed: int = SEED):
        """The System for NpT with a MonteCarloBarostat at ``pressure`` attempting a move every
        ``frequency`` steps (its random numbers from ``seed``)."""
        import openmm
        from openmm import unit

        system = copy.deepcopy(self._barostat_system())
        barostat = openmm.MonteCarloBarostat(self.pressure * unit.bar, self.temperature * unit.kelvin, int(frequency))
        barostat.setRandomNumberSeed(seed + 7)
        system.addForce(barostat)
        return system

    def langevin(self, collision_rate: float = COLLISION_RATE, seed: int = SEED):
        """Reference MD: LangevinMiddleIntegrator at the reference timestep, friction in 1/ps, its
        random numbers from ``seed``."""
        import openmm
        from openmm import unit

        integrator = openmm.LangevinMiddleIntegrator(self.temperature * unit.kelvin, collision_rate / unit.picosecond,
                                                     self.timestep * unit.picosecond)
        integrator.setRandomNumberSeed(seed + 1)
        return integrator

    def flashmd(self, system, model, splitting: str, collision_rate: float = COLLISION_RATE,
                random_rotation: bool = True, seed: int = SEED):
        """A FlashMDIntegrator for ``system`` (Langevin friction in 1/ps when the splitting has "O";
        ``random_rotation``: turn the system by a random orthogonal matrix around every stride;
        random numbers from ``seed``)."""
        from openmm import unit

        from openmm_flashmd import FlashMDIntegrator

        thermostat = splitting != "F" and "O" in splitting
        return FlashMDIntegrator(system, model, temperature=self.temperature * unit.kelvin if thermostat else None,
                                 collision_rate=collision_rate / unit.picosecond, splitting=splitting,
                                 random_seed=seed + 2, topology=self.topology, fallback=self.fallback,
                                 random_rotation=random_rotation)

    def check_model(self, model) -> None:
        """Raise :class:`ValidationError` (one line) when ``model`` cannot run on this System
        (elements, masses, periodicity, constraints, a probe call): before anything is written."""
        from openmm_flashmd import ModelSystemMismatch

        try:
            self.flashmd(copy.deepcopy(self.system), model, "F")
        except ModelSystemMismatch as exc:
            raise ValidationError(f"the model does not fit the System: {str(exc).splitlines()[0]}") from None

"""Run an energy model (a machine-learned interatomic potential) in OpenMM.

In the spirit of openmm-ml's ``MLPotential``, with one extension point: any module that
follows the *energy-model protocol* of :mod:`openmm_flashmd.model.energy`
(``forward(positions [N,3] nm, atomic_numbers [N], box [3,3] nm) -> energy kJ/mol``,
plus ``metadata_json``), such as :class:`~openmm_flashmd.model.energy.PETEnergyModel`.

* :func:`mlip_torch_force` wraps the model in an openmm-torch ``TorchForce`` (forces
  are ``-dE/dx`` by autograd, inside OpenMM);
* :func:`add_mlip_force` adds that force to an existing ``System`` for all atoms of a
  ``Topology`` or a subset;
* :func:`create_mlip_system` builds a ``System`` whose only interaction is the model.

The energy of the force can serve as the potential of the FlashMD energy filter: put it
in its own force group ``g`` and pass ``energy_force_groups={g}`` to
:class:`openmm_flashmd.FlashMDIntegrator`.

Units: nm, kJ/mol, Da.
"""

import os
from typing import Any, Dict, List, Optional, Sequence, Union

from openmm_flashmd import _plugins  # first: torch before the openmm-torch plugins; makes the TorchForce

import openmm
import torch
from openmm import app, unit

from openmm_flashmd.model.energy import ENERGY_ONLY_PARAMETER, energy_only_requested, read_energy_metadata
from openmm_flashmd.model.neighbors import cell_heights

__all__ = ["EnergyModelLike", "MLIP_FORCE_NAME", "MLIPForceModule", "NonPeriodicMLIPForceModule", "add_mlip_force",
           "create_mlip_system", "load_energy_model", "mlip_torch_force"]

#: Name given to the TorchForce that carries the energy model.
MLIP_FORCE_NAME = "FlashMDMLIPForce"

EnergyModelLike = Union[torch.nn.Module, torch.jit.ScriptModule, str, os.PathLike]


class MLIPForceModule(torch.nn.Module):
    """TorchForce entry point of a periodic System:
    ``forward(positions [P,3] nm, box [3,3] nm = None, energy_only = None) -> E kJ/mol``.

    Picks the model's atoms out of the ``P`` particles of the System (``indices``; all
    of them when None), passes their atomic numbers and the cell (zeros when not
    periodic) to the energy model. ``energy_only`` is the global parameter
    :data:`~openmm_flashmd.model.energy.ENERGY_ONLY_PARAMETER`: while it is 1 the model runs
    without an autograd graph (the energy cannot then give forces).
    """

    def __init__(self, model: torch.nn.Module, atomic_numbers: torch.Tensor, indices: Optional[torch.Tensor]):
        super().__init__()
        self.model = model
        self.register_buffer("atomic_numbers", atomic_numbers.to(torch.long))
        self.all_atoms = indices is None
        self.register_buffer("indices", torch.zeros(0, dtype=torch.long) if indices is None else indices.to(torch.long))

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None,
                energy_only: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.energy(positions, box, energy_only)

    def energy(self, positions: torch.Tensor, box: Optional[torch.Tensor],
               energy_only: Optional[torch.Tensor]) -> torch.Tensor:
        """The model's energy (kJ/mol) of ``positions`` (nm) in ``box`` (nm, None: not periodic)."""
        pos = positions if self.all_atoms else positions.index_select(0, self.indices)
        if box is None:
            cell = torch.zeros(3, 3, dtype=positions.dtype, device=positions.device)
        else:
            cell = box.to(positions.dtype)
        if energy_only_requested(energy_only):
            with torch.no_grad():
                result = self.model(pos, self.atomic_numbers, cell)
            return result
        return self.model(pos, self.atomic_numbers, cell)


class NonPeriodicMLIPForceModule(MLIPForceModule):
    """TorchForce entry point of a non-periodic System (openmm-torch passes no box there):
    ``forward(positions [P,3] nm, energy_only = None) -> E kJ/mol``; see :class:`MLIPForceModule`."""

    def forward(self, positions: torch.Tensor, energy_only: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.energy(positions, None, energy_only)


def load_energy_model(model: EnergyModelLike, map_location: str = "cpu") -> torch.jit.ScriptModule:
    """A scripted energy model from a module (scripted here if needed) or a file path."""
    if isinstance(model, torch.jit.ScriptModule):
        scripted = model
    elif isinstance(model, torch.nn.Module):
        try:
            scripted = torch.jit.script(model)
        except Exception as err:  # torch raises many types here
            raise ValueError(f"energy model cannot be scripted with torch.jit.script: {err}") from err
    else:
        path = os.fspath(model)
        if not os.path.exists(path):
            raise FileNotFoundError(f"energy model file {path} does not exist")
        try:
            scripted = torch.jit.load(path, map_location=map_location)
        except Exception as err:
            raise ValueError(f"{path} is not a TorchScript energy model: {err}") from err
    if hasattr(scripted, "stride"):
        raise ValueError("this is a stride model (it has a 'stride'); an MLIP needs an energy model")
    return scripted


def _element_names(numbers: Sequence[int]) -> str:
    names = []
    for z in numbers:
        try:
            names.append(f"{app.Element.getByAtomicNumber(int(z)).symbol} ({int(z)})")
        except KeyError:
            names.append(str(int(z)))
    return ", ".join(names)


def _check_model(meta: Dict[str, Any], numbers: Sequence[int], periodic: bool, box_vectors: Any = None) -> None:
    """Raise ``ValueError`` when the model cannot handle these atoms / this periodicity."""
    supported = {int(z) for z in meta.get("elements") or []}
    if supported:
        missing = sorted({int(z) for z in numbers} - supported)
        if missing:
            raise ValueError(
                f"the energy model does not support the elements {_element_names(missing)} "
                f"(it supports {_element_names(sorted(supported))})"
            )
    model_periodic = meta.get("periodic")
    if model_periodic is not None and bool(model_periodic) != bool(periodic):
        if model_periodic:
            raise ValueError("the energy model was trained on periodic systems but the system is not periodic")
        raise ValueError("the energy model was trained on non-periodic systems but the system is periodic")
    cutoff = meta.get("cutoff")
    if periodic and cutoff is not None and box_vectors is not None:
        box = torch.tensor([[float(v) for v in vec] for vec in box_vectors], dtype=torch.float64)
        height = float(cell_heights(box).min())
        if not float(cutoff) < 0.5 * height:
            raise ValueError(
                f"the energy model's cutoff {float(cutoff)} nm must be below half the smallest cell height "
                f"({0.5 * height:.4f} nm)"
            )


def mlip_torch_force(
    model: EnergyModelLike,
    atomic_numbers: Sequence[int],
    periodic: bool,
    atoms: Optional[Sequence[int]] = None,
    box_vectors: Optional[Sequence[Sequence[float]]] = None,
):
    """An openmm-torch ``TorchForce`` whose energy is ``model``'s (forces by autograd).

    Args:
        model: an energy-model module (scripted here), a loaded TorchScript module, or the
            path of a saved one.
        atomic_numbers: atomic number of every particle of the System (length ``P``;
            entries outside ``atoms`` are ignored and may be 0).
        periodic: whether the System is periodic (the force then receives the cell and
            ``usesPeriodicBoundaryConditions`` is set).
        atoms: indices of the particles the model acts on (default: all); only their
            positions reach the model, the other particles feel no force from it.
        box_vectors: the periodic box (three vectors, nm), when known: the model's cutoff
            must then be below half the smallest cell height.

    Raises ``ValueError`` for unsupported elements, a periodicity the model was not
    trained for, a box too small for the cutoff, or bad ``atoms``.
    """
    scripted = load_energy_model(model)
    numbers = torch.as_tensor([int(z) for z in atomic_numbers], dtype=torch.long)
    if atoms is None:
        indices = None
        selected = numbers
    else:
        atom_list = [int(a) for a in atoms]
        if not atom_list:
            raise ValueError("atoms is empty")
        if len(set(atom_list)) != len(atom_list):
            raise ValueError("atoms contains repeated indices")
        if min(atom_list) < 0 or max(atom_list) >= len(numbers):
            raise ValueError(f"atoms must be particle indices in 0..{len(numbers) - 1}")
        indices = torch.as_tensor(atom_list, dtype=torch.long)
        selected = numbers.index_select(0, indices)
    if bool((selected < 1).any()):
        raise ValueError("every atom the energy model acts on needs an element (atomic number >= 1)")
    _check_model(read_energy_metadata(scripted), selected.tolist(), periodic, box_vectors)

    entry_type = MLIPForceModule if periodic else NonPeriodicMLIPForceModule
    force = _plugins.torch_force(torch.jit.script(entry_type(scripted, selected, indices)))
    force.setName(MLIP_FORCE_NAME)
    force.setUsesPeriodicBoundaryConditions(bool(periodic))
    force.addGlobalParameter(ENERGY_ONLY_PARAMETER, 0.0)
    return force


def _topology_numbers(topology: app.Topology, atoms: Optional[Sequence[int]]) -> List[int]:
    numbers = [0 if atom.element is None else int(atom.element.atomic_number) for atom in topology.atoms()]
    chosen = range(len(numbers)) if atoms is None else atoms
    lacking = [int(i) for i in chosen if 0 <= int(i) < len(numbers) and numbers[int(i)] == 0]
    if lacking:
        raise ValueError(f"topology atoms {lacking[:10]} have no element; the energy model needs elements")
    return numbers


def add_mlip_force(
    system: openmm.System,
    topology: app.Topology,
    model: EnergyModelLike,
    force_group: int = 0,
    atoms: Optional[Sequence[int]] = None,
):
    """Add the energy model as a ``TorchForce`` (in ``force_group``) to ``system``.

    Elements come from ``topology`` (one atom per particle of ``system``); the system is
    periodic when ``topology.getPeriodicBoxVectors()`` is set. ``atoms`` restricts the
    model to those particle indices. Returns the force.
    """
    if topology.getNumAtoms() != system.getNumParticles():
        raise ValueError(
            f"topology has {topology.getNumAtoms()} atoms but the system has {system.getNumParticles()} particles"
        )
    if not 0 <= int(force_group) <= 31:
        raise ValueError(f"force_group must be in 0..31, got {force_group}")
    numbers = _topology_numbers(topology, atoms)
    box = topology.getPeriodicBoxVectors()
    vectors = None if box is None else [vec.value_in_unit(unit.nanometer) for vec in box]
    force = mlip_torch_force(model, numbers, box is not None, atoms, vectors)
    force.setForceGroup(int(force_group))
    system.addForce(force)
    return force


def create_mlip_system(
    topology: app.Topology,
    model: EnergyModelLike,
    removeCMMotion: bool = True,
    force_group: int = 0,
) -> openmm.System:
    """A ``System`` for ``topology`` whose potential is the energy model alone.

    Masses (Da) from the topology's elements, the periodic box from
    ``topology.getPeriodicBoxVectors()`` (non-periodic when None), a
    ``CMMotionRemover`` when ``removeCMMotion``, and the model's ``TorchForce`` in
    ``force_group``.
    """
    _topology_numbers(topology, None)  # every atom needs an element (for its mass)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    box = topology.getPeriodicBoxVectors()
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*box)
    if removeCMMotion:
        system.addForce(openmm.CMMotionRemover())
    add_mlip_force(system, topology, model, force_group=force_group)
    return system

"""FlashMD models exported by metatrain (metatomic ``AtomisticModel``) as stride models.

Needs the optional extra: ``pip install ".[metatomic]"`` (metatomic-torch, metatensor-torch,
vesin; metatrain to train one). A metatrain FlashMD export takes positions (Å), momenta
((eV·u)^½) and masses (u) and returns positions and momenta one stride (``module.timestep``,
fs) later. :func:`load_metatomic_stride_model` wraps it in the stride-model protocol of
:mod:`openmm_flashmd.model.protocol` (nm, nm/ps, Da, ps), applying the centre-of-mass
constraints of the ``flashmd`` package's stepper (total momentum kept, centre of mass in
uniform motion), so it runs wherever a stride model does: ``FlashMDIntegrator``,
``openmm-flashmd simulate --model``, ``evaluate``, ``validate``.

openmm-torch freezes every TorchForce module, and freezing fails on the metatensor objects an
``AtomisticModel`` holds, so the stride model does not hold the ``AtomisticModel``: it holds
the file's path and calls the operator ``torch.ops.openmm_flashmd.metatomic_stride``, which
this module registers and which runs the model (loaded once per process) in Python. Any
process that runs a System or integrator holding such a model must ``import
openmm_flashmd.metatomic`` first (a deserialized one fails otherwise, naming the operator).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch

from openmm_flashmd.model.energy import ENERGY_ONLY_PARAMETER, energy_only_requested

try:
    import metatomic.torch as _mta
    import vesin.metatomic as _vesin_mta
    from metatensor.torch import Labels, TensorBlock, TensorMap
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError('openmm_flashmd.metatomic needs the optional extra: pip install "openmm-flashmd[metatomic]" '
                      f"({_err})") from None

__all__ = ["MetatomicEnergy", "MetatomicStrideModel", "NonPeriodicMetatomicEnergy", "load_metatomic_stride_model",
           "metatomic_mlip_force", "write_metatrain_dataset"]

#: 1 fs in ASE's time unit (Å sqrt(u/eV)): metatomic momenta are in (eV·u)^½ = u Å / ASE time.
_ASE_FS = 0.09822694788464063
#: kJ/mol per eV.
_KJMOL_PER_EV = 96.48533212331002
#: nm/ps -> Å per ASE time unit: 10 Å/nm / 1000 fs/ps * (fs per ASE time unit).
_VELOCITY_TO_ASE = 0.01 / _ASE_FS


class _Runner:
    """One loaded ``AtomisticModel`` with its neighbour-list calculators and options."""

    def __init__(self, path: str):
        self.model = _mta.load_atomistic_model(path)
        self.dtype = getattr(torch, self.model.capabilities().dtype)
        self.options = _mta.ModelEvaluationOptions(length_unit="angstrom", outputs={
            "positions": _mta.ModelOutput(per_atom=True), "momenta": _mta.ModelOutput(per_atom=True)})
        self.neighbors = _vesin_mta.neighbor_lists_for_model("angstrom", self.model)

    def __call__(self, positions: torch.Tensor, velocities: torch.Tensor, masses: torch.Tensor,
                 atomic_numbers: torch.Tensor, box: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        out_dtype = positions.dtype
        n = positions.shape[0]
        m = masses.to(self.dtype)
        periodic = bool(torch.any(box != 0))
        q = (10.0 * positions).to(self.dtype)
        system = _mta.System(types=atomic_numbers.to(torch.int32), positions=q,
                             cell=(10.0 * box).to(self.dtype) if periodic else torch.zeros(3, 3, dtype=self.dtype),
                             pbc=torch.tensor([periodic] * 3))
        samples = Labels(["system", "atom"], torch.stack([torch.zeros(n, dtype=torch.int32),
                                                          torch.arange(n, dtype=torch.int32)], dim=1))
        momenta = (_VELOCITY_TO_ASE * velocities).to(self.dtype) * m[:, None]
        system.add_data("momenta", TensorMap(Labels.single(), [TensorBlock(
            momenta.unsqueeze(-1), samples, [Labels.range("xyz", 3)], Labels.single())]))
        system.add_data("masses", TensorMap(Labels.single(), [TensorBlock(
            m.unsqueeze(-1), samples, [], Labels.single())]))
        for calculator in self.neighbors:
            calculator.add_neighbor_list(system)
        outputs = self.model([system], self.options, check_consistency=False)
        new_q = outputs["positions"].block().values.reshape(n, 3)
        new_p = outputs["momenta"].block().values.reshape(n, 3)
        # the flashmd stepper's constraints: total momentum kept, centre of mass in uniform motion
        total = m.sum()
        v_com = momenta.sum(0) / total
        new_p = new_p - m[:, None] * (new_p.sum(0) / total - v_com)
        q_com = (q * m[:, None]).sum(0) / total
        new_q = new_q - (new_q * m[:, None]).sum(0) / total + q_com + v_com * float(self.model.module.timestep) * _ASE_FS
        new_positions = (new_q / 10.0).to(out_dtype)
        new_velocities = (new_p / m[:, None] / _VELOCITY_TO_ASE).to(out_dtype)
        return new_positions, new_velocities


_RUNNERS: Dict[str, _Runner] = {}


@torch.library.custom_op("openmm_flashmd::metatomic_stride", mutates_args=())
def _metatomic_stride(path: str, positions: torch.Tensor, velocities: torch.Tensor, masses: torch.Tensor,
                      atomic_numbers: torch.Tensor, box: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """One stride of the metatomic FlashMD model at ``path`` (nm, nm/ps, Da in and out)."""
    runner = _RUNNERS.get(path)
    if runner is None:
        runner = _RUNNERS[path] = _Runner(path)
    with torch.no_grad():
        return runner(positions, velocities, masses, atomic_numbers, box)


class MetatomicStrideModel(torch.nn.Module):
    """Stride-model protocol around the metatomic FlashMD model file ``path`` (see the module
    docstring); ``stride`` in ps, ``metadata_json`` as in :mod:`openmm_flashmd.model.protocol`."""

    def __init__(self, path: str, stride: float, metadata_json: str):
        super().__init__()
        self.path = path
        self.stride = stride
        self.metadata_json = metadata_json

    def forward(self, positions: torch.Tensor, velocities: torch.Tensor, masses: torch.Tensor,
                atomic_numbers: torch.Tensor, box: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        new_positions, new_velocities = torch.ops.openmm_flashmd.metatomic_stride(
            self.path, positions, velocities, masses, atomic_numbers, box)
        return new_positions, new_velocities


class _EnergyRunner:
    """One loaded metatomic MLIP evaluated in OpenMM units (nm in, kJ/mol and kJ/mol/nm out)."""

    def __init__(self, path: str):
        self.model = _mta.load_atomistic_model(path)
        self.dtype = getattr(torch, self.model.capabilities().dtype)
        self.options = _mta.ModelEvaluationOptions(length_unit="nm", outputs={
            "energy": _mta.ModelOutput(quantity="energy", unit="kJ/mol", per_atom=False)})
        self.neighbors = _vesin_mta.neighbor_lists_for_model("nm", self.model)

    def __call__(self, positions: torch.Tensor, box: torch.Tensor, atomic_numbers: torch.Tensor,
                 energy_only: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """Energy and forces; ``energy_only``: NaN forces (nothing may read them; the caller runs
        it under ``torch.no_grad``)."""
        x = positions.detach().to(self.dtype).requires_grad_(True)
        periodic = bool(torch.any(box != 0))
        system = _mta.System(types=atomic_numbers.to(torch.int32), positions=x,
                             cell=box.to(self.dtype) if periodic else torch.zeros(3, 3, dtype=self.dtype),
                             pbc=torch.tensor([periodic] * 3))
        for calculator in self.neighbors:
            calculator.add_neighbor_list(system)
        energy = self.model([system], self.options, check_consistency=False)["energy"].block().values.sum()
        if energy_only:
            return energy.detach().to(torch.float64), torch.full_like(positions, float("nan"))
        (gradient,) = torch.autograd.grad(energy, x)
        return energy.detach().to(torch.float64), (-gradient).to(positions.dtype)


_ENERGY_RUNNERS: Dict[str, _EnergyRunner] = {}


def _metatomic_energy(path: str, positions: torch.Tensor, box: torch.Tensor, atomic_numbers: torch.Tensor,
                      energy_only: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Energy (kJ/mol) and forces (kJ/mol/nm) of the metatomic MLIP at ``path`` for positions in nm
    (``energy_only``: the energy alone, forces NaN)."""
    runner = _ENERGY_RUNNERS.get(path)
    if runner is None:
        runner = _ENERGY_RUNNERS[path] = _EnergyRunner(path)
    with torch.no_grad() if energy_only else torch.enable_grad():
        return runner(positions, box, atomic_numbers, energy_only)


# Registered above autograd (CompositeImplicitAutograd), unlike torch.library.custom_op, whose
# implementation runs below it where the forces' own autograd pass cannot record.
_LIBRARY = torch.library.Library("openmm_flashmd", "FRAGMENT")
_LIBRARY.define("metatomic_energy(str path, Tensor positions, Tensor box, Tensor atomic_numbers, bool energy_only) "
                "-> (Tensor, Tensor)")
_LIBRARY.impl("metatomic_energy", _metatomic_energy, "CompositeImplicitAutograd")


class MetatomicEnergy(torch.nn.Module):
    """TorchForce module of a periodic System: the metatomic MLIP file ``path`` on the particles
    with ``atomic_numbers``; ``forward(positions, box = None, energy_only = None)`` returns energy
    in kJ/mol and forces in kJ/mol/nm (see :func:`metatomic_mlip_force`). ``energy_only`` is the
    global parameter :data:`~openmm_flashmd.model.energy.ENERGY_ONLY_PARAMETER`: while it is 1
    the model runs without autograd and the forces are NaN."""

    def __init__(self, path: str, atomic_numbers: torch.Tensor):
        super().__init__()
        self.path = path
        self.register_buffer("atomic_numbers", atomic_numbers.to(torch.int64))

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None,
                energy_only: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.energy_and_forces(positions, box, energy_only)

    def energy_and_forces(self, positions: torch.Tensor, box: Optional[torch.Tensor],
                          energy_only: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        cell = box if box is not None else torch.zeros(3, 3, dtype=positions.dtype, device=positions.device)
        energy, forces = torch.ops.openmm_flashmd.metatomic_energy(self.path, positions, cell, self.atomic_numbers,
                                                                   energy_only_requested(energy_only))
        return energy, forces


class NonPeriodicMetatomicEnergy(MetatomicEnergy):
    """:class:`MetatomicEnergy` for a non-periodic System (openmm-torch passes no box there):
    ``forward(positions, energy_only = None)``."""

    def forward(self, positions: torch.Tensor,
                energy_only: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.energy_and_forces(positions, None, energy_only)


def metatomic_mlip_force(path: Union[str, os.PathLike], system, topology, force_group: int = 0,
                         periodic: Optional[bool] = None):
    """An openmm-torch ``TorchForce`` running the metatomic MLIP at ``path`` (an energy model
    exported by metatrain, e.g. a PET-MAD) on every particle of ``system``, elements from
    ``topology``, in force group ``force_group``; periodic when ``periodic`` says so (default:
    when ``system`` is now; a System whose only force will be this one is not yet, so say
    ``periodic=True`` for a box). Add it to a System whose other forces it replaces (energy
    filter: ``FlashMDIntegrator(..., energy_force_groups={force_group})``; MLIP-MD: any
    OpenMM integrator)."""
    from openmm_flashmd import _plugins

    path = str(Path(path).resolve())
    try:
        model = _mta.load_atomistic_model(path)
    except Exception as err:  # metatomic raises several kinds
        raise ValueError(f"{path} is not a metatomic AtomisticModel: {str(err).splitlines()[0]}") from None
    if "energy" not in model.capabilities().outputs:
        raise ValueError(f"{path} has no 'energy' output (outputs: {sorted(model.capabilities().outputs)})")
    numbers = [atom.element.atomic_number if atom.element is not None else 0 for atom in topology.atoms()]
    if len(numbers) != system.getNumParticles():
        raise ValueError(f"topology has {len(numbers)} atoms, the System {system.getNumParticles()} particles")
    unsupported = sorted(set(numbers) - {int(z) for z in model.capabilities().atomic_types})
    if unsupported:
        raise ValueError(f"the MLIP does not support elements {unsupported}")
    periodic = system.usesPeriodicBoundaryConditions() if periodic is None else bool(periodic)
    module_type = MetatomicEnergy if periodic else NonPeriodicMetatomicEnergy
    force = _plugins.torch_force(torch.jit.script(module_type(path, torch.tensor(numbers))))
    force.setOutputsForces(True)
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setForceGroup(int(force_group))
    force.addGlobalParameter(ENERGY_ONLY_PARAMETER, 0.0)
    return force


def load_metatomic_stride_model(path: Union[str, os.PathLike]) -> torch.jit.ScriptModule:
    """A stride model (TorchScript, the protocol of :mod:`openmm_flashmd.model.protocol`) running
    the metatrain FlashMD export at ``path``: stride from ``module.timestep`` (fs -> ps), elements
    and masses (u = Da) from the model, cutoff from its interaction range (Å -> nm)."""
    from openmm_flashmd.model.protocol import make_metadata_json, script_model

    path = str(Path(path).resolve())
    try:
        model = _mta.load_atomistic_model(path)
    except Exception as err:  # metatomic raises several kinds
        raise ValueError(f"{path} is not a metatomic AtomisticModel: {str(err).splitlines()[0]}") from None
    outputs = model.capabilities().outputs
    if not ({"positions", "momenta"} <= set(outputs) and hasattr(model.module, "timestep")):
        raise ValueError(f"{path} is not a FlashMD model: it needs 'positions' and 'momenta' outputs and a timestep "
                         f"(outputs: {sorted(outputs)})")
    stride_ps = float(model.module.timestep) / 1000.0
    elements = [int(z) for z in model.capabilities().atomic_types]
    masses = {}
    table = getattr(model.module, "masses", None)  # metatrain: indexed by atomic number, NaN where unused
    if isinstance(table, torch.Tensor) and len(table) > max(elements):
        masses = {str(z): float(table[z]) for z in elements if torch.isfinite(table[z])}
    metadata = make_metadata_json(kind="metatomic-flashmd", elements=elements, masses=masses,
                                  cutoff=float(model.capabilities().interaction_range) / 10.0,
                                  provenance={"source": path, "metatomic_name": model.metadata().name})
    return script_model(MetatomicStrideModel(path, stride_ps, metadata))



def write_metatrain_dataset(data: Union[str, os.PathLike], output: Union[str, os.PathLike], stride: float,
                            pair_spacing: int = 1, segments: Optional[Sequence[int]] = None) -> int:
    """Write the stride pairs of an ``openmm-flashmd generate`` file as the extended-XYZ dataset
    metatrain's FlashMD trains on: per frame the positions (Å), ``momenta`` ((eV·u)^½) and masses
    (u), and ``future_positions`` / ``future_momenta`` one ``stride`` (ps, a multiple of the
    record interval) later; also the frame's ``energy`` (eV) and ``forces`` (eV/Å), so the same
    file trains a metatrain MLIP. ``pair_spacing``: record intervals between the starts of
    successive pairs; ``segments``: indices into the file's complete segments (default all).
    Refuses an existing ``output``. Returns the number of pairs written."""
    import ase
    import ase.io

    from openmm_flashmd.data.dataset import load_trajectories, stride_frames

    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output} exists")
    trajectories = load_trajectories(data)
    k = stride_frames(stride, trajectories.record_interval, trajectories.positions.shape[1])
    to_momentum = _VELOCITY_TO_ASE * trajectories.masses[:, None]
    frames = []
    for s in (range(len(trajectories.positions)) if segments is None else segments):
        for i in range(0, trajectories.positions.shape[1] - k, max(1, int(pair_spacing))):
            atoms = ase.Atoms(numbers=trajectories.atomic_numbers, positions=10.0 * trajectories.positions[s, i],
                              masses=trajectories.masses, cell=10.0 * trajectories.box[s, i],
                              pbc=trajectories.periodic)
            atoms.set_momenta(trajectories.velocities[s, i] * to_momentum)
            atoms.arrays["future_positions"] = 10.0 * trajectories.positions[s, i + k]
            atoms.arrays["future_momenta"] = trajectories.velocities[s, i + k] * to_momentum
            atoms.info["energy"] = float(trajectories.potential_energy[s, i]) / _KJMOL_PER_EV
            atoms.arrays["forces"] = trajectories.forces[s, i] / (10.0 * _KJMOL_PER_EV)
            frames.append(atoms)
    partial = output.with_name(f".{output.name}.partial")
    ase.io.write(partial, frames, format="extxyz")
    os.replace(partial, output)
    return len(frames)

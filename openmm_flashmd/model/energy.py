"""PET energy model: a machine-learned interatomic potential (MLIP) on the PET backbone.

The *energy-model protocol*: a TorchScript module with

``forward(positions, atomic_numbers, box) -> energy``

=================  =========  ======  =====================================================
argument           shape      units   meaning
=================  =========  ======  =====================================================
positions          [N, 3]     nm      atom positions
atomic_numbers     [N] int64  --      elements
box                [3, 3]     nm      periodic cell, one vector per row; all zeros when the
                                      system is not periodic
energy             []         kJ/mol  potential energy (0-d tensor, dtype of positions),
                                      differentiable with respect to positions
=================  =========  ======  =====================================================

and a ``metadata_json`` attribute (the keys of
:data:`openmm_flashmd.model.protocol.METADATA_DEFAULTS`; ``kind`` is ``"pet-energy"``
here). :mod:`openmm_flashmd.model.mlip` runs such a module in OpenMM.

*Energy-only evaluations.* openmm-torch hands a ``TorchForce`` positions that require
grad, so a module builds its autograd graph even when OpenMM asks for the energy alone
(and a module that returns its own forces runs its backward pass). A force in the System that declares
the global parameter :data:`ENERGY_ONLY_PARAMETER` promises to skip the graph while that
parameter is 1; :class:`~openmm_flashmd.FlashMDIntegrator` sets it to 1 around its
energy-only evaluations (filter and monitor) and to 0 at once after them, so forces are
never asked for while it is 1. The MLIP forces of :mod:`openmm_flashmd.model.mlip` and
:mod:`openmm_flashmd.metatomic` declare it.

:class:`PETEnergyModel` computes

``E = energy_scale * sum_i sum_l head_l(h_i^l) + sum_i composition_energies[s_i]``

with ``h_i^l`` the per-atom features of message-passing layer ``l`` of
:class:`openmm_flashmd.model.pet.PETBackbone` (no per-atom inputs besides the
species), ``energy_scale`` (kJ/mol) and ``composition_energies`` (kJ/mol per atom of
each element) buffers that a trainer sets from data (see
:meth:`PETEnergyModel.fit_composition_energies`).
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from openmm_flashmd.model.pet import ATTENTION_GROUP_ATOMS, PETBackbone, PETHypers, PETModel, _mlp
from openmm_flashmd.model.protocol import metadata_fields

__all__ = ["ENERGY_ONLY_PARAMETER", "PETEnergyModel", "energy_only_requested", "read_energy_metadata"]

#: ``kind`` recorded in the metadata of :class:`PETEnergyModel`.
ENERGY_MODEL_KIND = "pet-energy"

#: Global parameter of an energy force: 1 while only its energy is asked for (module docstring).
ENERGY_ONLY_PARAMETER = "flashmd_energy_only"


def energy_only_requested(energy_only: Optional[Tensor]) -> bool:
    """Whether the value of :data:`ENERGY_ONLY_PARAMETER` a ``TorchForce`` module received (None
    when its force does not declare it) asks for the energy alone."""
    return energy_only is not None and bool(energy_only > 0.5)


class PETEnergyModel(PETModel):
    """PET potential-energy model following the energy-model protocol (module docstring).

    Args:
        hypers: architecture hyper-parameters (:class:`PETHypers`;
            ``predict_momentum_difference`` is not used).
        elements: supported atomic numbers.
        periodic: True (the model requires a box), False (requires no box), None (both).
        provenance: free-form training provenance written into the metadata.

    Buffers (model dtype): ``composition_energies`` ``[len(elements)]`` kJ/mol per atom
    of each element (default 0); ``energy_scale`` kJ/mol, the scale of the learned part
    (default 1).
    """

    __jit_ignored_attributes__ = ["hypers", "elements", "provenance", "validation"]

    metadata_json: str

    def __init__(
        self,
        hypers: PETHypers,
        elements: List[int],
        periodic: Optional[bool] = None,
        provenance: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        hypers.validate()
        self.backbone = PETBackbone(hypers, elements, periodic, n_atom_features=0)
        self.hypers = hypers
        self.elements = list(self.backbone.elements)
        self.provenance = dict(provenance or {})
        self.validation = {}  # type: Dict[str, Any]
        self.cutoff = float(hypers.cutoff)
        # atoms per padding group of the attention (performance only, see pet._sequence_layout)
        self.attention_group_atoms = ATTENTION_GROUP_ATOMS
        self.register_buffer("composition_energies", torch.zeros(len(self.elements)))
        self.register_buffer("energy_scale", torch.tensor(1.0))
        self.heads = nn.ModuleList([_mlp(hypers.d_pet, hypers.d_node, 1) for _ in range(hypers.num_gnn_layers)])
        self.metadata_json = ""
        self.update_metadata()

    # ------------------------------------------------------------------ metadata

    @torch.jit.ignore
    def _own_metadata(self) -> Dict[str, Any]:
        return {"kind": ENERGY_MODEL_KIND}

    @classmethod
    def from_metadata(cls, metadata: Dict[str, Any]) -> "PETEnergyModel":
        """A freshly initialised model with the architecture recorded in ``metadata``
        (from :func:`read_energy_metadata`); load weights with ``load_state_dict``."""
        if metadata.get("kind") != ENERGY_MODEL_KIND:
            raise ValueError(f"metadata describes a {metadata.get('kind')!r} model, not {ENERGY_MODEL_KIND!r}")
        model = cls(
            PETHypers.from_dict(metadata["hypers"]),
            [int(z) for z in metadata["elements"]],
            periodic=metadata.get("periodic"),
            provenance=metadata.get("provenance") or {},
        )
        if metadata.get("validation"):
            model.update_metadata(validation=metadata["validation"])
        return model

    # ------------------------------------------------------------------ buffers

    @torch.jit.ignore
    def set_energy_scale(self, value: float) -> None:
        """Set ``energy_scale`` (kJ/mol, positive)."""
        if not float(value) > 0.0:
            raise ValueError(f"energy_scale must be positive (kJ/mol), got {value}")
        self.energy_scale.fill_(float(value))

    @torch.jit.ignore
    def set_composition_energies(self, energies: Union[Dict[int, float], Sequence[float], Tensor]) -> None:
        """Set ``composition_energies`` (kJ/mol per atom): a dict atomic number -> value
        (elements left out get 0) or one value per element of ``self.elements``."""
        if isinstance(energies, dict):
            unknown = sorted(set(int(z) for z in energies) - set(self.elements))
            if unknown:
                raise ValueError(f"composition energies for unsupported elements {unknown}")
            values = [float(energies.get(z, energies.get(str(z), 0.0))) for z in self.elements]
        else:
            values = [float(v) for v in torch.as_tensor(energies).reshape(-1).tolist()]
            if len(values) != len(self.elements):
                raise ValueError(f"need {len(self.elements)} composition energies (elements {self.elements})")
        self.composition_energies.copy_(torch.tensor(values, dtype=self.composition_energies.dtype))

    @torch.jit.ignore
    def fit_composition_energies(
        self,
        atomic_numbers: Union[Sequence[Any], np.ndarray, Tensor],
        energies: Union[Sequence[float], np.ndarray, Tensor],
    ) -> Dict[int, float]:
        """Least-squares per-element energies from reference energies, and set them.

        ``atomic_numbers``: one ``[N]`` array for frames of a single composition, or a
        list with one array per frame; ``energies`` ``[F]`` kJ/mol. Solves
        ``min |counts @ e - energies|`` (minimum-norm solution: for a single
        composition the mean energy is spread over the elements in proportion to their
        counts). Returns ``{atomic number: kJ/mol per atom}``.
        """
        e = np.asarray(energies, dtype=np.float64).reshape(-1)
        if isinstance(atomic_numbers, (np.ndarray, Tensor)) and np.asarray(atomic_numbers).ndim == 1:
            frames = [np.asarray(atomic_numbers)] * len(e)
        else:
            frames = [np.asarray(z) for z in atomic_numbers]
        if len(frames) != len(e) or len(e) == 0:
            raise ValueError("need one energy per frame and at least one frame")
        index = {z: k for k, z in enumerate(self.elements)}
        counts = np.zeros((len(e), len(self.elements)))
        for f, z in enumerate(frames):
            unknown = sorted(set(int(a) for a in z) - set(index))
            if unknown:
                raise ValueError(f"atomic numbers {unknown} are not among the model's elements {self.elements}")
            for a, c in zip(*np.unique(z.astype(np.int64), return_counts=True)):
                counts[f, index[int(a)]] = c
        solution = np.linalg.lstsq(counts, e, rcond=None)[0]
        result = {z: float(solution[k]) for z, k in index.items()}
        self.set_composition_energies(result)
        return result

    # ------------------------------------------------------------------ evaluation

    def _energies(
        self, positions: Tensor, atomic_numbers: Tensor, box: Tensor, twice_differentiable: bool = False
    ) -> Tensor:
        """Energies ``[B]`` (kJ/mol, model dtype) of ``positions`` ``[B, N, 3]`` nm."""
        dtype = self.energy_scale.dtype
        if positions.dim() != 3 or positions.shape[2] != 3:
            raise ValueError("positions must have shape [B, N, 3] (nm)")
        n_struct = positions.shape[0]
        n_atoms = positions.shape[1]
        if atomic_numbers.shape[0] != n_atoms:
            raise ValueError("atomic_numbers must have one entry per atom")
        if box.dim() != 3 or box.shape[0] != n_struct or box.shape[1] != 3 or box.shape[2] != 3:
            raise ValueError("box must have shape [B, 3, 3] (nm)")
        pos = positions.to(dtype)
        cell = box.to(dtype)
        self.backbone.check_box(cell)
        species = self.backbone.species(atomic_numbers)
        features = torch.zeros(n_struct, n_atoms, 0, dtype=dtype, device=pos.device)
        nodes = self.backbone(pos, species, cell, features, self.attention_group_atoms, twice_differentiable)
        atomic = torch.zeros(n_struct * n_atoms, 1, dtype=dtype, device=pos.device)
        for k, head in enumerate(self.heads):
            atomic = atomic + head(nodes[k])
        learned = atomic.view(n_struct, n_atoms).sum(dim=1)
        composition = self.composition_energies.index_select(0, species).sum()
        return self.energy_scale * learned + composition

    def forward(self, positions: Tensor, atomic_numbers: Tensor, box: Tensor) -> Tensor:
        """Potential energy (0-d, kJ/mol, dtype of ``positions``) of positions ``[N, 3]``
        nm, atomic_numbers ``[N]``, box ``[3, 3]`` nm (rows; zeros = not periodic)."""
        if positions.dim() != 2 or positions.shape[1] != 3:
            raise ValueError("positions must have shape [N, 3] (nm)")
        energy = self._energies(positions.unsqueeze(0), atomic_numbers, box.unsqueeze(0))
        return energy[0].to(positions.dtype)

    @torch.jit.export
    def forward_batch(self, positions: Tensor, atomic_numbers: Tensor, box: Tensor) -> Tensor:
        """Energies ``[B]`` (kJ/mol, model dtype) of positions ``[B, N, 3]`` nm with
        atomic_numbers ``[N]`` and box ``[B, 3, 3]`` nm."""
        return self._energies(positions, atomic_numbers, box)

    @torch.jit.export
    def energy_and_forces_batch(
        self, positions: Tensor, atomic_numbers: Tensor, box: Tensor, create_graph: bool = False
    ) -> Tuple[Tensor, Tensor]:
        """Energies ``[B]`` (kJ/mol) and forces ``-dE/dx`` ``[B, N, 3]`` (kJ/mol/nm), model dtype.

        Same inputs as :meth:`forward_batch`. Forces come from autograd (also inside
        ``torch.no_grad()``); ``create_graph=True`` keeps the graph of the forces so that
        a loss on them can be differentiated with respect to the parameters (training).
        The positions are detached: no gradient flows back into the caller's positions.
        """
        if torch.jit.is_scripting():
            # TorchScript has no enable_grad context manager (nor try/finally)
            previous = torch.is_grad_enabled()
            torch.set_grad_enabled(True)
            energies, forces = self._energy_and_forces(positions, atomic_numbers, box, create_graph)
            torch.set_grad_enabled(previous)
        else:
            with torch.enable_grad():
                energies, forces = self._energy_and_forces(positions, atomic_numbers, box, create_graph)
        return energies, forces

    def _energy_and_forces(
        self, positions: Tensor, atomic_numbers: Tensor, box: Tensor, create_graph: bool
    ) -> Tuple[Tensor, Tensor]:
        pos = positions.detach().to(self.energy_scale.dtype).requires_grad_(True)
        energies = self._energies(pos, atomic_numbers, box, create_graph)
        grads = torch.autograd.grad([energies.sum()], [pos], create_graph=create_graph)
        grad = grads[0]
        forces = torch.zeros_like(pos) if grad is None else -grad
        if not create_graph:
            energies = energies.detach()
            forces = forces.detach()
        return energies, forces


def read_energy_metadata(model: nn.Module) -> Dict[str, Any]:
    """The metadata of an energy model as a dict, defaults filled in (a module without
    ``metadata_json`` gets all defaults: any element, any periodicity).

    Raises :class:`~openmm_flashmd.model.protocol.ModelProtocolError` when
    ``metadata_json`` is not a JSON object.
    """
    return metadata_fields(model, "energy model")

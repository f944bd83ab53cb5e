"""Stride models (the protocol, the PET model, analytic models, neighbour lists) and
PET energy models (MLIPs) with their OpenMM force."""

from openmm_flashmd.model.analytic import FreeParticleStrideModel, HarmonicStrideModel, VerletGuessStrideModel
from openmm_flashmd.model.energy import PETEnergyModel, read_energy_metadata
from openmm_flashmd.model.mlip import add_mlip_force, create_mlip_system, load_energy_model, mlip_torch_force
from openmm_flashmd.model.neighbors import batched_neighbor_list, neighbor_list
from openmm_flashmd.model.pet import PETBackbone, PETGuessStrideModel, PETHypers, PETStrideModel
from openmm_flashmd.model.protocol import ModelProtocolError, load_model, read_metadata, save_model
from openmm_flashmd.model.symmetry import rotation_error, rotation_errors

__all__ = [
    "FreeParticleStrideModel",
    "HarmonicStrideModel",
    "VerletGuessStrideModel",
    "ModelProtocolError",
    "PETBackbone",
    "PETEnergyModel",
    "PETGuessStrideModel",
    "PETHypers",
    "PETStrideModel",
    "add_mlip_force",
    "batched_neighbor_list",
    "create_mlip_system",
    "load_energy_model",
    "load_model",
    "mlip_torch_force",
    "neighbor_list",
    "read_energy_metadata",
    "read_metadata",
    "rotation_error",
    "rotation_errors",
    "save_model",
]

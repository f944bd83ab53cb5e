"""Stride models: the protocol, the PET model, analytic models and neighbour lists."""

from openmm_flashmd.model.analytic import FreeParticleStrideModel, HarmonicStrideModel
from openmm_flashmd.model.neighbors import batched_neighbor_list, neighbor_list
from openmm_flashmd.model.pet import PETHypers, PETStrideModel
from openmm_flashmd.model.protocol import ModelProtocolError, load_model, read_metadata, save_model
from openmm_flashmd.model.symmetry import rotation_error, rotation_errors

__all__ = [
    "FreeParticleStrideModel",
    "HarmonicStrideModel",
    "ModelProtocolError",
    "PETHypers",
    "PETStrideModel",
    "batched_neighbor_list",
    "load_model",
    "neighbor_list",
    "read_metadata",
    "rotation_error",
    "rotation_errors",
    "save_model",
]

"""Stride models: the protocol, the PET model, analytic models and neighbour lists."""

from openmm_flashmd.model.analytic import FreeParticleStrideModel, HarmonicStrideModel
from openmm_flashmd.model.protocol import ModelProtocolError, load_model, read_metadata, save_model

__all__ = [
    "FreeParticleStrideModel",
    "HarmonicStrideModel",
    "ModelProtocolError",
    "load_model",
    "read_metadata",
    "save_model",
]

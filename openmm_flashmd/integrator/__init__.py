"""FlashMDIntegrator, its splitting mini-language and the staged TorchForce adapter."""

from openmm_flashmd.integrator.compatibility import ModelSystemMismatch
from openmm_flashmd.integrator.flashmd import FlashMDError, FlashMDIntegrator
from openmm_flashmd.integrator.splitting import SplittingError, parse_splitting

__all__ = ["FlashMDIntegrator", "FlashMDError", "ModelSystemMismatch", "SplittingError", "parse_splitting"]

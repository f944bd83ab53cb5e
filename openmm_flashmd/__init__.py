"""openmm-flashmd: FlashMD long-stride learned molecular dynamics inside OpenMM.

Importing the package loads torch before the openmm-torch plugins, so scripts
may import ``openmm`` first (see :mod:`openmm_flashmd._plugins`).
"""

from openmm_flashmd import _plugins  # noqa: F401  (must run before anything builds a TorchForce)
from openmm_flashmd.integrator import FlashMDError, FlashMDIntegrator, ModelSystemMismatch, SplittingError
from openmm_flashmd.model.protocol import load_model, read_metadata, save_model

__version__ = "0.1.0"

__all__ = [
    "FlashMDIntegrator",
    "FlashMDError",
    "ModelSystemMismatch",
    "SplittingError",
    "load_model",
    "save_model",
    "read_metadata",
    "__version__",
]

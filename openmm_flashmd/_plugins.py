"""Load the openmm-torch plugins whatever the import order of the user script.

If ``openmm`` is imported before ``torch``, OpenMM's plugin loader cannot
resolve the CUDA libraries that the openmm-torch plugins link against, and
every Context holding a ``TorchForce`` then fails with "Specified a Platform
for a Context which does not support all required kernels". Importing torch
first and loading the plugin directory again fixes it; this module does that
once, on import of :mod:`openmm_flashmd`.
"""

import contextlib
import importlib
import io
import os
import warnings

import torch  # noqa: F401  (must be loaded before the plugins)
import openmm

from openmm_flashmd.performance import tune_malloc

_loaded = False


def quiet_import(module: str):
    """Import ``module`` without the banners openmmtools' dependencies print."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def ensure_torch_plugins() -> None:
    """Make sure OpenMM's platforms know the TorchForce kernels (idempotent)."""
    global _loaded
    if _loaded:
        return
    plugin_dir = os.path.join(openmm.version.openmm_library_path, "plugins")
    if os.path.isdir(plugin_dir):
        openmm.Platform.loadPluginsFromDirectory(plugin_dir)
    quiet_import("openmmtorch")  # registers the TorchForce proxy (its SWIG module imports simtk.openmm)
    _loaded = True


def torch_force(module):
    """An openmm-torch ``TorchForce`` running the scripted ``module``. Every TorchForce of this
    package (stride force, PET MLIP, metatomic MLIP) is made here, after the plugins are loaded
    and glibc's malloc is tuned for the networks' temporaries
    (:func:`openmm_flashmd.performance.tune_malloc`)."""
    ensure_torch_plugins()
    tune_malloc()
    import openmmtorch

    return openmmtorch.TorchForce(module)


def global_parameter_names(force: openmm.Force) -> list:
    """Names of the global parameters ``force`` declares (a ``TorchForce`` from
    ``System.getForces()`` comes back as a plain ``Force`` proxy and is cast here)."""
    if not hasattr(force, "getNumGlobalParameters"):
        import openmmtorch

        if not openmmtorch.TorchForce.isinstance(force):
            return []
        force = openmmtorch.TorchForce.cast(force)
    return [force.getGlobalParameterName(i) for i in range(force.getNumGlobalParameters())]


ensure_torch_plugins()

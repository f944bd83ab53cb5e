"""The package as a user imports it: import order, quiet import, public API."""

import subprocess
import sys

SCRIPT = """
import openmm                      # imported before torch, as most scripts do
import numpy as np
from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd.model import FreeParticleStrideModel
system = openmm.System()
system.addParticle(1.0)
integrator = FlashMDIntegrator(system, FreeParticleStrideModel(0.01), splitting="F")
context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
context.setPositions(np.zeros((1, 3)))
context.setVelocities(np.ones((1, 3)))
integrator.step(3)
x = context.getState(getPositions=True).getPositions(asNumpy=True)._value
assert np.allclose(x, 0.03), x
"""


def test_openmm_imported_before_torch_still_runs_torchforce():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_import_prints_nothing():
    result = subprocess.run(
        [sys.executable, "-c", "import openmm_flashmd, openmm_flashmd.integrator"], capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == ""


def test_public_api():
    import openmm_flashmd

    for name in ("FlashMDIntegrator", "FlashMDError", "load_model", "save_model", "read_metadata"):
        assert hasattr(openmm_flashmd, name)

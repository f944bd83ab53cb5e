"""Checks that a stride model fits an OpenMM System, and the particles' elements."""

from __future__ import annotations

import copy
import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np
import openmm
import torch
from openmm import unit

from openmm_flashmd.analysis.thermo import system_masses
from openmm_flashmd.messages import error_line

#: Mass tolerance (Da) when matching system masses to a model's per-element masses.
MASS_TOLERANCE = 1e-3


class ModelSystemMismatch(ValueError):
    """A stride model cannot run on this System."""


def atomic_numbers_for(
    system: openmm.System, metadata: Dict[str, Any], topology: Optional[openmm.app.Topology] = None
) -> np.ndarray:
    """Atomic number of every particle.

    From ``topology`` when given; otherwise each mass is matched to the model's
    per-element masses (``metadata["masses"]``); a model without such a table
    (e.g. an analytic one) gets 0 (unknown) for every particle.
    """
    n = system.getNumParticles()
    if topology is not None:
        if topology.getNumAtoms() != n:
            raise ModelSystemMismatch(f"topology has {topology.getNumAtoms()} atoms but the System has {n} particles")
        return np.array([a.element.atomic_number if a.element is not None else 0 for a in topology.atoms()])
    table = {int(z): float(m) for z, m in metadata.get("masses", {}).items()}
    if not table:
        return np.zeros(n, dtype=np.int64)
    masses = system_masses(system)
    numbers = np.zeros(n, dtype=np.int64)
    for i, m in enumerate(masses):
        match = [z for z, mz in table.items() if abs(mz - m) < MASS_TOLERANCE]
        if not match:
            known = ", ".join(f"Z={z}: {mz} Da" for z, mz in sorted(table.items()))
            raise ModelSystemMismatch(
                f"particle {i} has mass {m:.4f} Da, which matches no element of the model ({known}); "
                "hydrogen-mass repartitioning or a different force field changes masses: "
                "pass topology= or use a model trained with these masses"
            )
        numbers[i] = match[0]
    return numbers


def check_model_fits_system(
    system: openmm.System, metadata: Dict[str, Any], atomic_numbers: np.ndarray, step_size: Optional[float]
) -> None:
    """Raise :class:`ModelSystemMismatch` naming the first problem.

    Checks: massless particles, particle count, periodicity, constraints (when the model's
    provenance records whether its training data had them), supported elements, masses
    per element, and the requested step size (ps) against the stride.
    """
    n = system.getNumParticles()
    masses = system_masses(system)
    massless = np.flatnonzero(masses <= 0.0)
    if len(massless):
        raise ModelSystemMismatch(
            f"particles {massless[:10].tolist()} are massless (virtual sites or fixed atoms); "
            "FlashMD strides need every particle to have a mass"
        )
    if metadata.get("num_particles") not in (None, n):
        raise ModelSystemMismatch(f"model is for {metadata['num_particles']} particles, the System has {n}")
    periodic = system.usesPeriodicBoundaryConditions()
    if metadata.get("periodic") is not None and bool(metadata["periodic"]) != periodic:
        want = "periodic" if metadata["periodic"] else "non-periodic"
        have = "periodic" if periodic else "non-periodic"
        raise ModelSystemMismatch(f"model was trained on {want} systems but the System is {have}")
    trained_constrained = (metadata.get("provenance") or {}).get("constraints_active")
    constrained = system.getNumConstraints() > 0
    if trained_constrained is None and constrained and metadata.get("kind") == "pet":
        warnings.warn("the stride model does not record whether its training data had constraints; the System has "
                      f"{system.getNumConstraints()}: make sure the model was trained on constrained data",
                      stacklevel=3)
    if trained_constrained is not None and bool(trained_constrained) != constrained:
        want = "with constraints (e.g. rigid water)" if trained_constrained else "without constraints (flexible)"
        have = f"{system.getNumConstraints()} constraints" if constrained else "no constraints"
        raise ModelSystemMismatch(f"model was trained on data {want} but the System has {have}")
    elements = set(int(z) for z in metadata.get("elements", []))
    if elements:
        missing = sorted(set(int(z) for z in atomic_numbers) - elements)
        if missing:
            raise ModelSystemMismatch(f"System contains elements {missing} the model does not support {sorted(elements)}")
    table = {int(z): float(m) for z, m in metadata.get("masses", {}).items()}
    for i, (z, m) in enumerate(zip(atomic_numbers, masses)):
        if int(z) in table and abs(table[int(z)] - m) > MASS_TOLERANCE:
            raise ModelSystemMismatch(
                f"particle {i} (Z={int(z)}) has mass {m:.4f} Da; the model was trained with {table[int(z)]:.4f} Da"
            )
    stride = float(metadata["stride"])
    if step_size is not None and abs(step_size - stride) > 1e-9 * stride:
        raise ModelSystemMismatch(f"step size {step_size} ps differs from the model's stride {stride} ps")


#: spacing (nm) of the resting grid of particles the construction-time probe call uses
PROBE_SPACING = 0.3


def probe_positions(system: openmm.System) -> Tuple[np.ndarray, np.ndarray]:
    """A benign configuration for a probe call: particles on a cubic grid (``PROBE_SPACING``
    nm apart, or filling the default cell of a periodic System), and the cell (zeros if none).
    Returns ``(positions [N, 3] nm, box [3, 3] nm)``."""
    n = system.getNumParticles()
    side = int(np.ceil(n ** (1.0 / 3.0)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)[:n].astype(float)
    if system.usesPeriodicBoundaryConditions():
        box = np.array([v.value_in_unit(unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()])
        return (grid + 0.5) / side @ box, box
    return grid * PROBE_SPACING, np.zeros((3, 3))


def check_model_outputs(model: torch.nn.Module, system: openmm.System, masses: torch.Tensor,
                        atomic_numbers: torch.Tensor, uses_guess: bool) -> None:
    """Call a copy of the stride model once on :func:`probe_positions` (particles at rest) and
    raise :class:`ModelSystemMismatch` in one line when it raises or does not return two finite
    floating-point ``[N, 3]`` tensors. The copy keeps a stateful model's state untouched."""
    positions, box = (torch.tensor(a, dtype=torch.float64) for a in probe_positions(system))
    zeros = torch.zeros_like(positions)
    arguments = [positions, zeros, masses.to(torch.float64), atomic_numbers, box]
    if uses_guess:
        arguments += [zeros, zeros]
    try:
        with torch.no_grad():
            outputs = copy.deepcopy(model)(*arguments)
    except Exception as err:  # noqa: BLE001 (any error of a user model becomes one line)
        raise ModelSystemMismatch(f"the stride model raised on a probe call with this System's "
                                  f"{system.getNumParticles()} particles: {error_line(err, last=True)}") from None
    n = system.getNumParticles()
    if not (isinstance(outputs, (tuple, list)) and len(outputs) == 2):
        raise ModelSystemMismatch("the stride model must return (new_positions, new_velocities), got "
                                  f"{type(outputs).__name__}")
    for name, value in zip(("new_positions", "new_velocities"), outputs):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (n, 3):
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ModelSystemMismatch(f"the stride model returned {name} of shape {shape} for {n} particles; "
                                      f"it must be [{n}, 3]")
        if not value.dtype.is_floating_point:
            raise ModelSystemMismatch(f"the stride model returned {name} of dtype {value.dtype}; it must be floating point")
        if not bool(torch.isfinite(value).all()):
            raise ModelSystemMismatch(f"the stride model returned non-finite {name} for particles at rest on a "
                                      f"{PROBE_SPACING} nm grid (a probe call at construction)")

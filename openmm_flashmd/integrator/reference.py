"""Pure-PyTorch reference for one deterministic FlashMD step (letters F and E).

It uses the adapter's own stride math (:meth:`StrideAdapter.stride`), so tests
can check that the CustomIntegrator program in a Context does exactly this.
Stochastic letters (O, B) have no reference: their noise lives in OpenMM.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch

from openmm_flashmd.integrator.adapter import StrideAdapter, rotation_from_uniforms
from openmm_flashmd.integrator.splitting import parse_splitting


def reference_step(
    model: torch.nn.Module,
    positions: torch.Tensor,
    velocities: torch.Tensor,
    masses: torch.Tensor,
    atomic_numbers: torch.Tensor,
    box: Optional[torch.Tensor],
    splitting: str = "F E",
    potential_energy: Optional[Callable[[torch.Tensor], float]] = None,
    rotation_uniforms: Optional[Sequence[float]] = None,
    filter_scale_bounds: Tuple[float, float] = (0.8, 1.25),
    guess: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
) -> Tuple[torch.Tensor, torch.Tensor, float]:
    """One step of a splitting made of F and E, in float64.

    Parameters: positions [N,3] nm, velocities [N,3] nm/ps, masses [N] Da,
    box [3,3] nm or None, ``potential_energy(positions) -> kJ/mol`` (needed for E),
    ``rotation_uniforms`` the four uniforms the integrator drew (None: no rotation),
    ``guess`` the Verlet guess (displacement [N,3] nm, velocities [N,3] nm/ps) for models
    with that input (None: a model without).
    Returns (new positions nm, new velocities nm/ps, applied filter scale or 1.0).
    """
    letters = parse_splitting(splitting)
    if set(letters) - {"F", "E"}:
        raise ValueError("reference_step covers the deterministic letters F and E only")
    periodic = box is not None and bool(box.abs().sum() > 0)
    adapter = StrideAdapter(
        model, masses, atomic_numbers, periodic, rotation_uniforms is not None, float("inf"), guess is not None
    )
    x = positions.to(torch.float64)
    v = velocities.to(torch.float64)
    m = masses.to(torch.float64).unsqueeze(1)
    cell = box.to(torch.float64) if periodic else torch.zeros(3, 3, dtype=torch.float64)
    rotation = (
        rotation_from_uniforms(torch.tensor(rotation_uniforms, dtype=torch.float64))
        if rotation_uniforms is not None
        else torch.eye(3, dtype=torch.float64)
    )
    h0 = None
    if "E" in letters:
        if potential_energy is None:
            raise ValueError("the E letter needs potential_energy")
        h0 = float(0.5 * (m * v * v).sum()) + potential_energy(x)
    with torch.no_grad():
        g, w = (torch.zeros_like(x), torch.zeros_like(x)) if guess is None else (t.to(torch.float64) for t in guess)
        displacement, new_v = adapter.stride(x, v, cell, rotation, g, w)
    new_x = x + displacement
    scale = 1.0
    if h0 is not None:
        kinetic = float(0.5 * (m * new_v * new_v).sum())
        alpha2 = (h0 - potential_energy(new_x)) / kinetic if kinetic != 0.0 else 1.0
        low, high = filter_scale_bounds
        scale = min(high**2, max(low**2, alpha2)) ** 0.5
        new_v = new_v * scale
    return new_x, new_v, scale


__all__ = ["reference_step"]

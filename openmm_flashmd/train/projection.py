"""Errors of a stride prediction as the integrator keeps them: after the constraint projection.

After a stride the integrator constrains the predicted positions (SHAKE/SETTLE: each atom moves
along the constraint directions of the reference positions, weighted by 1/m) and then the
velocities (RATTLE: components along the new constraint directions removed, weighted by 1/m).
Whatever a prediction gets wrong *along* those directions is thrown away, so a loss that
penalises it spends the network on errors nobody sees.

In mass-scaled coordinates ``y = x sqrt(m)`` the constraint ``|x_i - x_j| = d`` has the
gradient ``g`` with ``r_ij / sqrt(m_i)`` at atom ``i`` and ``-r_ij / sqrt(m_j)`` at ``j``
(``r_ij = x_i - x_j``, nm). To first order in the error ``e`` of a prediction whose target
satisfies the constraints:

* velocities (RATTLE, gradients ``G`` at the new positions): ``e - G (G^T G)^-1 G^T e``;
* positions (SHAKE moves along ``G_ref`` at the reference positions until the constraints at
  the new positions hold): ``e - G_ref (G^T G_ref)^-1 G^T e``.

:class:`ConstraintProjector` applies both to batches ``[B, N, 3]``; the dense ``K x K`` solve per
item is cheap next to a PET forward for the few hundred constraints of a training System.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ConstraintProjector"]


class ConstraintProjector:
    """First-order constraint projection of mass-scaled errors (see the module docstring).

    Parameters
    ----------
    constraints : ``[K, 3]`` rows ``(i, j, distance nm)`` of the System's constraints
    masses : ``[N]`` atom masses (Da), a tensor of the training dtype and device
    """

    def __init__(self, constraints: np.ndarray, masses: torch.Tensor):
        pairs = torch.as_tensor(np.asarray(constraints)[:, :2].astype(np.int64), device=masses.device)
        if pairs.numel() == 0:
            raise ValueError("the data have no constraints to project on")
        self.i, self.j = pairs[:, 0], pairs[:, 1]
        self.inv_sqrt_m = masses.rsqrt()
        self.n_atoms = int(masses.shape[0])

    def _gradients(self, x: torch.Tensor) -> torch.Tensor:
        """``G [B, 3N, K]``: the constraints' gradients in mass-scaled coordinates at ``x [B, N, 3]`` nm."""
        b, k = x.shape[0], self.i.shape[0]
        r = x[:, self.i] - x[:, self.j]  # [B, K, 3]
        g = x.new_zeros(b, self.n_atoms, k, 3)
        columns = torch.arange(k, device=x.device)
        g[:, self.i, columns] = r * self.inv_sqrt_m[self.i].view(1, -1, 1)
        g[:, self.j, columns] = -r * self.inv_sqrt_m[self.j].view(1, -1, 1)
        return g.permute(0, 1, 3, 2).reshape(b, 3 * self.n_atoms, k)

    @staticmethod
    def _remove(e: torch.Tensor, along: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
        """``e - along (normal^T along)^-1 normal^T e`` for ``e [B, N, 3]``."""
        flat = e.reshape(e.shape[0], -1, 1)
        coefficients = torch.linalg.solve(normal.transpose(1, 2) @ along, normal.transpose(1, 2) @ flat)
        return (flat - along @ coefficients).reshape(e.shape)

    def velocities(self, error: torch.Tensor, new_positions: torch.Tensor) -> torch.Tensor:
        """Mass-scaled velocity error ``[B, N, 3]`` without its components along the constraint
        directions at ``new_positions`` (nm): what RATTLE leaves of it."""
        g = self._gradients(new_positions)
        return self._remove(error, g, g)

    def positions(self, error: torch.Tensor, reference: torch.Tensor, new_positions: torch.Tensor) -> torch.Tensor:
        """Mass-scaled displacement error ``[B, N, 3]`` after SHAKE/SETTLE to first order: moved
        along the constraint directions at ``reference`` (nm; the positions the solver corrects
        from) until it is tangent to the constraints at ``new_positions`` (nm)."""
        return self._remove(error, self._gradients(reference), self._gradients(new_positions))

"""Measuring how far a stride model is from rotational equivariance.

PET-like models are not equivariant by construction; they learn it from rotated
training data. :func:`rotation_error` measures the residual error: for random proper
rotations ``R`` the whole system (positions, velocities and cell vectors) is rotated,
and the model's displacements ``new_positions - positions`` (nm) and new velocities
(nm/ps) are compared with the rotated outputs of the unrotated input.
"""

from typing import Dict, Optional

import torch
from torch import Tensor


def random_rotation(generator: Optional[torch.Generator] = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """A uniformly distributed proper rotation matrix ``[3, 3]`` (det = +1)."""
    a = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # Haar-uniform orthogonal matrix
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def _rms(x: Tensor) -> float:
    return float(torch.sqrt((x.to(torch.float64) ** 2).mean())) if x.numel() else 0.0


def rotation_errors(
    model: torch.nn.Module,
    positions: Tensor,
    velocities: Tensor,
    masses: Tensor,
    atomic_numbers: Tensor,
    box: Tensor,
    n_rotations: int = 8,
    seed: int = 0,
) -> Dict[str, float]:
    """Relative equivariance errors of ``model`` under ``n_rotations`` random rotations.

    Inputs follow the stride-model protocol (positions [N, 3] nm, velocities [N, 3]
    nm/ps, masses [N] Da, atomic_numbers [N], box [3, 3] nm rows, zeros if
    non-periodic). Rows are rotated as ``x R^T``.

    Returns a dict with

    * ``"displacement"``: mean over rotations of ``rms(dq_R - dq R^T) / rms(dq)``;
    * ``"velocity"``: the same for the new velocities;
    * ``"combined"``: the mean of the two.

    All are dimensionless; 0 for an exactly equivariant model.
    """
    if n_rotations < 1:
        raise ValueError("n_rotations must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    dtype = positions.dtype
    with torch.no_grad():
        new_pos, new_vel = model(positions, velocities, masses, atomic_numbers, box)
        dq = new_pos - positions
        scale_q = max(_rms(dq), 1e-300)
        scale_v = max(_rms(new_vel), 1e-300)
        err_q = 0.0
        err_v = 0.0
        for _ in range(n_rotations):
            rot = random_rotation(gen, dtype).to(positions.device)
            pos_r = positions @ rot.T
            new_pos_r, new_vel_r = model(pos_r, velocities @ rot.T, masses, atomic_numbers, box @ rot.T)
            err_q += _rms((new_pos_r - pos_r) - dq @ rot.T) / scale_q
            err_v += _rms(new_vel_r - new_vel @ rot.T) / scale_v
    err_q /= n_rotations
    err_v /= n_rotations
    return {"displacement": err_q, "velocity": err_v, "combined": 0.5 * (err_q + err_v)}


def rotation_error(
    model: torch.nn.Module,
    positions: Tensor,
    velocities: Tensor,
    masses: Tensor,
    atomic_numbers: Tensor,
    box: Tensor,
    n_rotations: int = 8,
    seed: int = 0,
) -> float:
    """The ``"combined"`` relative equivariance error of :func:`rotation_errors` (dimensionless)."""
    return rotation_errors(model, positions, velocities, masses, atomic_numbers, box, n_rotations, seed)["combined"]

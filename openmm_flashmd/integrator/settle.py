"""Will SETTLE accept a stride's output? OpenMM's rigid-water solver, checked before it runs.

OpenMM constrains rigid waters with SETTLE (Miyamoto & Kollman 1992), an analytic solution
that moves the unconstrained positions a stride produced back onto the rigid geometry,
along the bonds of the positions before the stride. It has a solution only while the
unconstrained triangle is close enough to a rigid motion of the old one: four square
roots in it turn negative otherwise, and the water's positions become NaN. On the
Reference and CPU platforms the solver then keeps those NaN positions as the reference of
every later constraint step of the same integrator step, so the monitor could not repair
such a stride with MD any more (see :mod:`openmm_flashmd.integrator.fallback`).

:func:`settle_solvable` repeats SETTLE's arithmetic up to those square roots (OpenMM 8.4,
``ReferenceSETTLEAlgorithm::apply``, float64, same order of operations), so the adapter
can report such a stride (failure code 12) before the solver ever sees it.
:func:`settle_clusters` finds the clusters exactly as OpenMM's ``ReferenceConstraints``
does: three particles linked by three constraints, each in no other constraint, with two
equal distances (compared in float32, as OpenMM stores them).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import openmm
import torch

#: A square root's argument below this (relative to its scale) counts as unsolvable: the
#: solver's answer there is within round-off of NaN, and far from the old geometry.
SOLVABILITY_MARGIN = 1e-9


def settle_clusters(system: openmm.System) -> Tuple[np.ndarray, np.ndarray]:
    """The System's rigid-water clusters as OpenMM's constraint solver sees them.

    Returns ``atoms`` [K, 3] int64 (the central atom first, then the two equivalent ones)
    and ``distances`` [K, 2] float64 (nm: central-to-outer, outer-to-outer), both empty
    when the System has no such cluster (CCMA handles every constraint then).
    """
    masses = [system.getParticleMass(i).value_in_unit(openmm.unit.dalton) for i in range(system.getNumParticles())]
    constraints = []
    count = [0] * system.getNumParticles()
    for i in range(system.getNumConstraints()):
        p1, p2, d = system.getConstraintParameters(i)
        if masses[p1] != 0 or masses[p2] != 0:
            constraints.append((p1, p2, float(np.float32(d.value_in_unit(openmm.unit.nanometer)))))
            count[p1] += 1
            count[p2] += 1
    partners: List[Dict[int, float]] = [{} for _ in masses]
    for p1, p2, d in constraints:
        if count[p1] == 2 and count[p2] == 2:
            partners[p1][p2] = d
            partners[p2][p1] = d
    atoms, distances = [], []
    for i, linked in enumerate(partners):
        if len(linked) != 2:
            continue
        a, b = sorted(linked)
        if len(partners[a]) != 2 or len(partners[b]) != 2 or b not in partners[a] or not i < a:
            continue
        d_ia, d_ib, d_ab = linked[a], linked[b], partners[a][b]
        # the central atom is the one whose two constraints are equally long
        cluster = ((i, a, b, d_ia, d_ab) if d_ia == d_ib else (a, i, b, d_ia, d_ib) if d_ia == d_ab
                   else (b, i, a, d_ib, d_ia) if d_ib == d_ab else None)
        if cluster is not None:
            atoms.append(cluster[:3])
            distances.append(cluster[3:])
    return np.array(atoms, dtype=np.int64).reshape(-1, 3), np.array(distances, dtype=np.float64).reshape(-1, 2)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cross product [K, 3], written out as SETTLE writes it."""
    return torch.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
                        a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                        a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], dim=1)


def settle_solvable(
    old: torch.Tensor, new: torch.Tensor, atoms: torch.Tensor, distances: torch.Tensor, masses: torch.Tensor,
    margin: float = SOLVABILITY_MARGIN,
) -> torch.Tensor:
    """[K] bool: whether SETTLE moves each cluster from the unconstrained positions ``new``
    back to its rigid geometry with ``old`` as reference (positions [N, 3] nm, float64;
    ``atoms``, ``distances`` from :func:`settle_clusters`; ``masses`` [N] Da). A square
    root's argument within ``margin`` of zero (relative) counts as unsolvable."""
    a0, a1, a2 = old[atoms[:, 0]], old[atoms[:, 1]], old[atoms[:, 2]]
    p0, p1, p2 = new[atoms[:, 0]] - a0, new[atoms[:, 1]] - a1, new[atoms[:, 2]] - a2
    m0, m1, m2 = masses[atoms[:, 0]], masses[atoms[:, 1]], masses[atoms[:, 2]]
    b0, c0 = a1 - a0, a2 - a0
    inv_total = 1.0 / (m0 + m1 + m2)
    com = (p0 * m0[:, None] + (b0 + p1) * m1[:, None] + (c0 + p2) * m2[:, None]) * inv_total[:, None]
    a1_ = p0 - com
    b1 = b0 + p1 - com
    c1 = c0 + p2 - com
    axis_z = _cross(b0, c0)
    axis_x = _cross(a1_, axis_z)
    axis_y = _cross(axis_z, axis_x)
    ex = axis_x / torch.sqrt((axis_x * axis_x).sum(1))[:, None]
    ey = axis_y / torch.sqrt((axis_y * axis_y).sum(1))[:, None]
    ez = axis_z / torch.sqrt((axis_z * axis_z).sum(1))[:, None]
    xb0d, yb0d = (ex * b0).sum(1), (ey * b0).sum(1)
    xc0d, yc0d = (ex * c0).sum(1), (ey * c0).sum(1)
    za1d = (ez * a1_).sum(1)
    xb1d, yb1d, zb1d = (ex * b1).sum(1), (ey * b1).sum(1), (ez * b1).sum(1)
    xc1d, yc1d, zc1d = (ex * c1).sum(1), (ey * c1).sum(1), (ez * c1).sum(1)

    rc = 0.5 * distances[:, 1]
    rb = torch.sqrt(distances[:, 0] * distances[:, 0] - rc * rc)
    ra = rb * (m1 + m2) * inv_total
    rb = rb - ra
    sinphi = za1d / ra
    arg_phi = 1 - sinphi * sinphi
    cosphi = torch.sqrt(arg_phi.clamp(min=0.0))
    sinpsi = (zb1d - zc1d) / (2 * rc * cosphi)
    arg_psi = 1 - sinpsi * sinpsi
    cospsi = torch.sqrt(arg_psi.clamp(min=0.0))
    xb2d = -rc * cospsi
    yb2d = -rb * cosphi - rc * sinpsi * sinphi
    yc2d = -rb * cosphi + rc * sinpsi * sinphi
    xb2d2 = xb2d * xb2d
    hh2 = 4.0 * xb2d2 + (yb2d - yc2d) * (yb2d - yc2d) + (zb1d - zc1d) * (zb1d - zc1d)
    d2 = distances[:, 1] * distances[:, 1]
    arg_delta = 4.0 * xb2d2 - hh2 + d2
    deltx = 2.0 * xb2d + torch.sqrt(arg_delta.clamp(min=0.0))
    xb2d = xb2d - deltx * 0.5
    alpha = xb2d * (xb0d - xc0d) + yb0d * yb2d + yc0d * yc2d
    beta = xb2d * (yc0d - yb0d) + xb0d * yb2d + xc0d * yc2d
    gamma = xb0d * yb1d - xb1d * yb0d + xc0d * yc1d - xc1d * yc0d
    al2be2 = alpha * alpha + beta * beta
    arg_theta = al2be2 - gamma * gamma
    sintheta = (alpha * gamma - beta * torch.sqrt(arg_theta.clamp(min=0.0))) / al2be2
    arg_cos = 1 - sintheta * sintheta
    return ((arg_phi > margin) & (arg_psi > margin) & (arg_delta > margin * d2) & (arg_theta > margin * al2be2)
            & (arg_cos > margin) & torch.isfinite(sintheta))

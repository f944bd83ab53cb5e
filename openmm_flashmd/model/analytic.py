"""Analytic stride models whose flows are exact: the integrator's test bench.

Both follow the stride-model protocol (:mod:`openmm_flashmd.model.protocol`).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from openmm_flashmd.model.protocol import make_metadata_json


class HarmonicStrideModel(torch.nn.Module):
    """Exact flow of independent isotropic wells U = ½ k |x - c|² (k in kJ/mol/nm²).

    With ω = sqrt(k/m): x' = c + (x - c) cos ωτ + (v/ω) sin ωτ and
    v' = -(x - c) ω sin ωτ + v cos ωτ. ``centers`` [N,3] nm (default: origin) ties
    the model to N particles. ``velocity_error`` multiplies the output velocities
    by (1 + velocity_error): a deliberately wrong map for filter tests.
    The matching OpenMM force is ``CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")``.
    """

    def __init__(
        self,
        stride: float,
        spring_constant: float,
        centers: Optional[torch.Tensor] = None,
        velocity_error: float = 0.0,
    ):
        super().__init__()
        self.stride = float(stride)
        self.spring_constant = float(spring_constant)
        self.velocity_error = float(velocity_error)
        n = None if centers is None else int(centers.shape[0])
        self.register_buffer("centers", torch.zeros(1, 3, dtype=torch.float64) if centers is None else centers.double())
        self.metadata_json = make_metadata_json(
            kind="harmonic",
            num_particles=n,
            hypers={"spring_constant": self.spring_constant, "velocity_error": self.velocity_error},
        )

    def forward(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        masses: torch.Tensor,
        atomic_numbers: torch.Tensor,
        box: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        x = positions.to(torch.float64)
        v = velocities.to(torch.float64)
        omega = torch.sqrt(self.spring_constant / masses.to(torch.float64)).unsqueeze(1)
        cos = torch.cos(omega * self.stride)
        sin = torch.sin(omega * self.stride)
        d = x - self.centers
        new_x = self.centers + d * cos + v / omega * sin
        new_v = (-d * omega * sin + v * cos) * (1.0 + self.velocity_error)
        return new_x.to(positions.dtype), new_v.to(positions.dtype)


class FreeParticleStrideModel(torch.nn.Module):
    """Exact flow of non-interacting particles: x' = x + v τ, v' = v (ideal gas)."""

    def __init__(self, stride: float):
        super().__init__()
        self.stride = float(stride)
        self.metadata_json = make_metadata_json(kind="free-particle")

    def forward(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        masses: torch.Tensor,
        atomic_numbers: torch.Tensor,
        box: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return positions + velocities * self.stride, velocities.clone()


class VerletGuessStrideModel(torch.nn.Module):
    """The Verlet guess as the stride: x' = x + g, v' = w, from the ``verlet_guess`` inputs
    (g nm, w nm/ps; see :mod:`openmm_flashmd.integrator.guess`) with ``substeps`` substeps.

    Without constraints that is x + τ v + τ² F / 2m and v + τ F / m: exact under constant
    forces (free fall). It tests that the integrator computes and hands over the guess.
    ``guess_error`` multiplies g and w by (1 + guess_error) (a deliberately wrong map).
    ``fast_forces``: Force classes the guess recomputes per substep (``guess_fast_forces``);
    with them, and no other force, the stride is velocity Verlet in ``substeps`` steps.
    """

    def __init__(self, stride: float, substeps: int = 1, guess_error: float = 0.0,
                 fast_forces: Sequence[str] = ()):
        super().__init__()
        self.stride = float(stride)
        self.guess_error = float(guess_error)
        self.metadata_json = make_metadata_json(
            kind="verlet-guess", inputs=["verlet_guess"], guess_substeps=int(substeps),
            guess_fast_forces=[str(name) for name in fast_forces], hypers={"guess_error": self.guess_error},
        )

    def forward(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        masses: torch.Tensor,
        atomic_numbers: torch.Tensor,
        box: torch.Tensor,
        guess_displacement: torch.Tensor,
        guess_velocities: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        factor = 1.0 + self.guess_error
        return positions + guess_displacement * factor, guess_velocities * factor

"""The data's own System in the training loop, through OpenMM.

Two training terms need the System at states the model predicts, which no data file holds:

* the energy-conservation term (``loss.energy``) compares the total energy of a predicted state
  with the start's, so it needs ``U(q')`` and ``dU/dq' = -F(q')``. :class:`OpenMMPotential`
  evaluates both with an OpenMM Context and hands them to autograd: its backward pass is
  ``-F * grad_output`` (the loss needs no second derivative);
* a rollout (``loss.rollout``) of a Verlet-guess model needs, before each later stride, what the
  integrator does there: constrain the predicted state (SHAKE/SETTLE, RATTLE) and compute its
  Verlet guess. :class:`OpenMMStateGuess` runs both with the very program the integrator runs
  (:func:`~openmm_flashmd.integrator.guess.verlet_guess_integrator`).

Any System works, rigid water with PME and TorchForce MLIPs included, with nothing rewritten in
PyTorch. Training rotates whole pairs, box included; OpenMM wants box vectors in reduced form.
The rotated box ``B'`` (rows ``a, b, c``) is split as ``B' = L Q`` with ``L`` lower triangular
with a positive diagonal (the reduced box) and ``Q`` orthogonal; positions and velocities are
evaluated as ``x Q^T`` and vectors rotated back with ``Q``.
"""

from __future__ import annotations

import openmm_flashmd._plugins  # noqa: F401  (torch before openmm; see NOTES)

from typing import Sequence, Tuple

import numpy as np
import openmm
import torch
from openmm import unit

from openmm_flashmd.integrator.guess import GUESS_VARIABLE, GUESS_VELOCITY_VARIABLE, verlet_guess_integrator
from openmm_flashmd.systems.loading import make_platform

__all__ = ["OpenMMPotential", "OpenMMStateGuess", "reduced_box"]


def reduced_box(box: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(L, Q)`` with ``box = L @ Q`` (rows are box vectors, nm): ``L`` the box in OpenMM's reduced
    form (lower triangular, positive diagonal), ``Q`` an orthogonal 3x3 matrix."""
    q, r = np.linalg.qr(np.asarray(box, dtype=np.float64).T)
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    q, r = q * signs, signs[:, None] * r
    return np.tril(r.T), q.T


class _PotentialEnergy(torch.autograd.Function):
    """``U(positions)`` with the backward pass ``-F * grad``; ``potential`` does the evaluation."""

    @staticmethod
    def forward(ctx, positions, box, potential):
        energy, forces = potential.evaluate(positions.detach(), box.detach())
        ctx.save_for_backward(forces)
        return energy

    @staticmethod
    def backward(ctx, grad):
        (forces,) = ctx.saved_tensors
        return -forces * grad, None, None


class _SystemContext:
    """An OpenMM Context of ``system`` that takes states in a rotated frame (see the module docstring)."""

    def __init__(self, system: openmm.System, integrator: openmm.Integrator, platform: str, threads: int):
        properties = {}
        if platform == "CPU":
            properties["Threads"] = str(int(threads) or torch.get_num_threads())
        self.integrator = integrator
        self.context = openmm.Context(system, integrator, make_platform(platform), properties)
        self.periodic = system.usesPeriodicBoundaryConditions()
        self.n_atoms = system.getNumParticles()

    def _enter(self, positions: torch.Tensor, box: torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
        """Set ``positions`` (nm, ``[N, 3]``) in ``box`` (nm) on the Context; returns them as set
        (nm, in the reduced box's frame) and the rotation ``Q`` from the caller's frame to that
        frame (identity without periodicity)."""
        if positions.shape != (self.n_atoms, 3):
            raise ValueError(f"positions of shape {tuple(positions.shape)}, the System has {self.n_atoms} particles")
        x = positions.detach().double().cpu().numpy()
        rotation = np.eye(3)
        if self.periodic:
            reduced, rotation = reduced_box(box.detach().double().cpu().numpy())
            self.context.setPeriodicBoxVectors(*reduced)
            x = x @ rotation.T
        self.context.setPositions(x)
        return x, rotation


class OpenMMPotential(_SystemContext):
    """``potential(positions [N, 3] nm, box [3, 3] nm) -> U`` (kJ/mol, a 0-d tensor of the
    positions' dtype and device), differentiable with respect to the positions.

    Parameters
    ----------
    system : the OpenMM System (its constraints play no part: positions are evaluated as given)
    platform : OpenMM platform name (default ``"CPU"``: deterministic)
    threads : threads of the CPU platform (default: ``torch.get_num_threads()``, the training's)
    """

    def __init__(self, system: openmm.System, platform: str = "CPU", threads: int = 0):
        super().__init__(system, openmm.VerletIntegrator(0.001), platform, threads)

    def evaluate(self, positions: torch.Tensor, box: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Potential energy (kJ/mol, 0-d) and forces (kJ/mol/nm, ``[N, 3]``) at ``positions`` (nm)
        in ``box`` (nm; ignored for a non-periodic System), as tensors like ``positions``."""
        from openmm_flashmd.train.evaluate import energy_state

        _, rotation = self._enter(positions, box)
        state = energy_state(self.context, getForces=True)
        forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer) @ rotation
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        like = dict(dtype=positions.dtype, device=positions.device)
        return torch.tensor(energy, **like), torch.as_tensor(np.asarray(forces), **like)

    def __call__(self, positions: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        return _PotentialEnergy.apply(positions, box, self)


class OpenMMStateGuess(_SystemContext):
    """What the integrator does between two strides, for a batch of predicted states: the exact
    constraint solve (SHAKE/SETTLE then RATTLE, at the integrator's tolerance) and the Verlet
    guess over ``stride`` (ps) in ``substeps`` substeps of the constrained state (the forces of
    the classes ``fast_forces`` recomputed per substep).

    ``guesser(positions, velocities, box)`` with ``[B, N, 3]`` nm, nm/ps and ``[B, 3, 3]`` nm
    returns the inputs of the next stride, ``(positions, velocities, g, w)``, each ``[B, N, 3]``
    like ``positions``: the state after the constraint solve (its corrections added as
    constants, so gradients pass the solve unchanged; without constraints the state as given)
    and the guess's displacement (nm) and velocities (nm/ps) from it (without gradient).
    """

    def __init__(self, system: openmm.System, stride: float, substeps: int, platform: str = "CPU",
                 threads: int = 0, fast_forces: Sequence[str] = ()):
        self.constrained = system.getNumConstraints() > 0
        super().__init__(system, verlet_guess_integrator(system, stride, substeps, fast_forces), platform, threads)

    def __call__(self, positions: torch.Tensor, velocities: torch.Tensor, box: torch.Tensor):
        out = [np.zeros((positions.shape[0], self.n_atoms, 3)) for _ in range(4)]
        tolerance = self.integrator.getConstraintTolerance()
        for b in range(positions.shape[0]):
            x, rotation = self._enter(positions[b], box[b])
            v = velocities[b].detach().double().cpu().numpy() @ rotation.T
            self.context.setVelocities(v)
            x_c, v_c = x, v
            if self.constrained:
                self.context.applyConstraints(tolerance)
                self.context.applyVelocityConstraints(tolerance)
                state = self.context.getState(getPositions=True, getVelocities=True)
                x_c = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
                v_c = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
            self.integrator.step(1)
            guess = self.integrator.getPerDofVariableByName(GUESS_VARIABLE)
            guess_v = self.integrator.getPerDofVariableByName(GUESS_VELOCITY_VARIABLE)
            for array, value in zip(out, (x_c - x, v_c - v, guess, guess_v)):
                array[b] = np.asarray(value) @ rotation
        dq, dv, g, w = (torch.as_tensor(a, dtype=positions.dtype, device=positions.device) for a in out)
        return positions + dq, velocities + dv, g, w

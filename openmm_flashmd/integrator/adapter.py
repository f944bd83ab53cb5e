"""The staged TorchForce adapter: runs a stride model inside an OpenMM Context.

A ``TorchForce`` only receives positions (and the cell, and global parameters),
yet a stride model needs velocities too. :class:`FlashMDIntegrator` therefore
drives the adapter through consecutive force evaluations of one reserved force
group, selected by the context parameter ``flashmd_stage``:

========  ===========================  ============================================
stage     positions the force receives  what the adapter does / returns as "forces"
========  ===========================  ============================================
0 (idle)  anything                      returns zeros (reporters, barostats, minimiser)
1         x + s v                       stores the probe, returns zeros
2         x                             decodes v = (probe - x) / s, runs the stride
                                        model, returns the displacement Δq (nm)
3         anything                      returns the new velocities v' (nm/ps)
4         x + g                         models with the ``verlet_guess`` input only,
                                        before stage 1: stores the guessed positions
5         x + s w                       stores the guessed velocities; stage 2 decodes
                                        g = stored4 - x and w = (stored5 - x) / s
========  ===========================  ============================================

Here ``s`` is :data:`VELOCITY_PROBE_TIME`. The integrator undoes the probe with
``x = x - s v`` rather than restoring a saved copy, so a platform that wraps a
molecule by a box vector during an evaluation (CUDA does, every few hundred
evaluations, and it also reorders atoms) keeps a consistent ``x``; the decoded
``probe - x`` is reduced to its minimum image, which removes such shifts exactly
as long as ``|s v|`` stays below half the shortest cell height (true for any
velocity below ~50 L nm/ps). The Verlet guess ``g``, ``w`` of
:mod:`openmm_flashmd.integrator.guess` travels the same way. Positions may arrive in float32 (CUDA mixed
precision); the adapter works in float64 and returns the dtype it was given.

A random rotation (proper or improper) of positions, velocities and cell is
applied before the model and undone on its outputs; it is built from four
uniform numbers the integrator draws (``flashmd_rot1..4``), so runs are
reproducible from the integrator's seed and checkpoints.

Every evaluation runs under ``torch.no_grad()`` (:meth:`StrideAdapter.run`).
openmm-torch hands over positions that require grad and runs the (frozen) module in grad
mode; TorchScript's graph executor then accumulated memory in long runs (alanine dipeptide
at 8 fs: about 0.53 MB per stride whenever two runs shared the two cores; a 258-water run
reached 23 GB; the legacy executor: 0.02 MB per stride). Under ``no_grad`` the resident set
stays flat (``benchmarks/memory_watch.py``, ``tests/test_memory.py``).

A stride that fails (NaN, Inf, a particle moving more than ``max_displacement``)
raises nothing inside OpenMM: stage 2 returns a zero displacement and stage 3
returns the sentinel ``code * FAILURE_SENTINEL``, from which the integrator keeps
the state as it was and records the stride; Python then raises.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch

from openmm_flashmd.integrator.settle import settle_solvable

#: Time (ps) by which velocities are scaled when they travel through the position slots.
VELOCITY_PROBE_TIME = 0.01

#: A failed stride returns code * FAILURE_SENTINEL in every velocity slot (nm/ps):
#: far above any physical velocity, and within CUDA's fixed-point force range (~2e9).
FAILURE_SENTINEL = 1.0e8

#: What each failure code means.
FAILURE_REASONS = {
    1: "the velocities entering the stride are NaN or Inf",
    2: "the stride model returned NaN or Inf",
    3: "a particle moved more than max_displacement in one stride; the simulation is unstable",
    4: "the Verlet guess the model starts from is NaN or Inf (the constraint solver failed: forces too large?)",
    8: "the positions after the stride are NaN or Inf once constrained (the constraint solver failed on the "
       "stride's output)",
    9: "the fallback MD after a rejected stride hit NaN positions in the constraint solver (a rejected stride "
       "too far from the state before it; the Context keeps that state)",
    10: "the integrator's step size is not its model's stride (set it back with setStepSize)",
    12: "the stride's output is too far from a rigid motion of its waters for SETTLE (the constraint solver "
        "would return NaN)",
}
#: Failure code of a step whose step size is not the model's stride (set by the integrator program).
STEP_SIZE_MISMATCH = 10
#: Failure code of a stride SETTLE could not constrain (:mod:`openmm_flashmd.integrator.settle`).
SETTLE_FAILURE = 12

#: Context parameters of the stride force, in the order openmm-torch passes them. The
#: integrator's stride counter ``flashmd_step`` travels with them (so it is saved with the
#: Context's State) but the adapter does not read it.
STAGE_PARAMETERS: List[str] = [
    "flashmd_stage",
    "flashmd_step",
    "flashmd_rot1",
    "flashmd_rot2",
    "flashmd_rot3",
    "flashmd_rot4",
]


def rotation_from_uniforms(uniforms: torch.Tensor) -> torch.Tensor:
    """Uniformly distributed orthogonal 3x3 matrix (float64) from four uniforms in [0, 1).

    ``uniforms[0:3]`` give a uniform random unit quaternion (Shoemake 1992);
    ``uniforms[3] < 0.5`` makes the matrix improper (rotation composed with inversion).
    Everything stays in float64 tensors: under TorchScript, ``math`` functions of
    Python floats are evaluated through float32 scalar tensors.
    """
    u = uniforms.to(torch.float64)
    a = torch.sqrt(1.0 - u[0])
    b = torch.sqrt(u[0])
    qx = a * torch.sin(2.0 * math.pi * u[1])
    qy = a * torch.cos(2.0 * math.pi * u[1])
    qz = b * torch.sin(2.0 * math.pi * u[2])
    qw = b * torch.cos(2.0 * math.pi * u[2])
    rot = torch.stack(
        [
            1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw),
            2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw),
            2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy),
        ]
    ).reshape(3, 3)
    if bool(u[3] < 0.5):
        rot = -rot
    return rot


def minimum_image(delta: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Reduce displacement vectors [..., N, 3] (nm) by whole cell vectors (rows of ``box``)."""
    frac = delta @ torch.linalg.inv(box)
    return delta - torch.round(frac) @ box


class StrideAdapter(torch.nn.Module):
    """Stateful wrapper that runs one stride model step by step (see module docstring).

    Parameters
    ----------
    model : scripted stride model (protocol in :mod:`openmm_flashmd.model.protocol`)
    masses : [N] float64, Da
    atomic_numbers : [N] int64
    periodic : whether the system has a cell
    random_rotation : apply a random orthogonal transformation around each stride
    max_displacement : nm; a stride moving any particle further fails (0: no check)
    uses_guess : the model takes the Verlet guess (stages 4 and 5)
    settle_atoms, settle_distances : the System's rigid waters ([K, 3] particle indices and
        [K, 2] nm, :func:`~openmm_flashmd.integrator.settle.settle_clusters`); a stride that
        SETTLE could not constrain fails with :data:`SETTLE_FAILURE`. None: no such check.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        masses: torch.Tensor,
        atomic_numbers: torch.Tensor,
        periodic: bool,
        random_rotation: bool,
        max_displacement: float,
        uses_guess: bool = False,
        settle_atoms: Optional[torch.Tensor] = None,
        settle_distances: Optional[torch.Tensor] = None,
    ):
        super().__init__()
        n = int(masses.shape[0])
        self.model = model if uses_guess else WithoutGuess(model)
        self.uses_guess = uses_guess
        self.periodic = periodic
        self.random_rotation = random_rotation
        self.max_displacement = max_displacement
        self.probe_time = VELOCITY_PROBE_TIME
        self.failure_sentinel = FAILURE_SENTINEL
        self.settle_failure = SETTLE_FAILURE
        self.register_buffer("masses", masses.to(torch.float64))
        self.register_buffer("atomic_numbers", atomic_numbers.to(torch.int64))
        no_settle = settle_atoms is None or settle_distances is None
        self.register_buffer("settle_atoms", torch.zeros(0, 3, dtype=torch.int64) if no_settle else settle_atoms.to(torch.int64))
        self.register_buffer("settle_distances",
                             torch.zeros(0, 2, dtype=torch.float64) if no_settle else settle_distances.to(torch.float64))
        self.register_buffer("probe", torch.zeros(n, 3, dtype=torch.float64))
        self.register_buffer("new_velocities", torch.zeros(n, 3, dtype=torch.float64))
        self.register_buffer("guess_probe", torch.zeros(n, 3, dtype=torch.float64))
        self.register_buffer("guess_velocity_probe", torch.zeros(n, 3, dtype=torch.float64))
        # 2 once stages 4 and 5 stored a guess for the coming stride (models with the guess input)
        self.guess_phase = 0
        # 0 idle, 1 probe stored, 2 outputs ready: each stage acts once per stride, in order,
        # so an evaluation outside the integrator's program (e.g. a getState after a failed
        # stride) returns zeros instead of re-running the model on stale inputs.
        self.phase = 0

    def stride(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        box: torch.Tensor,
        rotation: torch.Tensor,
        guess: torch.Tensor,
        guess_velocities: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One model stride in the rotated frame; returns (Δq nm, v' nm/ps) in the lab frame.
        ``guess`` (nm) and ``guess_velocities`` (nm/ps) are the Verlet guess (zeros for
        models without that input). Callers run it under ``torch.no_grad()``."""
        x = positions @ rotation.T
        v = velocities @ rotation.T
        cell = box @ rotation.T
        g = guess @ rotation.T
        w = guess_velocities @ rotation.T
        new_x, new_v = self.model(x, v, self.masses, self.atomic_numbers, cell, g, w)
        displacement = (new_x.to(torch.float64) - x) @ rotation
        return displacement, new_v.to(torch.float64) @ rotation

    def failure(
        self, velocities_in: torch.Tensor, carried: torch.Tensor, displacement: torch.Tensor,
        new_velocities: torch.Tensor, start: torch.Tensor, reference: torch.Tensor,
    ) -> int:
        """Failure code of a stride (see :data:`FAILURE_REASONS`); 0 when it is sound.
        ``carried``: what the position slots carried, decoded (the velocity probe, then the
        Verlet guess when the model takes it). ``reference`` (nm): the positions the
        constraint solver measures the stride's output against (on the Reference and CPU
        platforms those of its last solve: the positions before the stride, or the end of the
        Verlet guess, which ends with a solve); the stride's output is ``start`` (nm, the
        positions before it) plus ``displacement``."""
        if not bool(torch.isfinite(velocities_in).all()):
            return 1
        if not bool(torch.isfinite(carried).all()):
            return 4
        if not bool(torch.isfinite(displacement).all()) or not bool(torch.isfinite(new_velocities).all()):
            return 2
        if self.max_displacement > 0.0 and float(torch.linalg.norm(displacement, dim=1).max()) > self.max_displacement:
            return 3
        if self.settle_atoms.shape[0] > 0:
            solvable = settle_solvable(reference, start + displacement, self.settle_atoms, self.settle_distances,
                                       self.masses)
            if not bool(solvable.all()):
                return self.settle_failure
        return 0

    def run(
        self,
        positions: torch.Tensor,
        box: torch.Tensor,
        stage: torch.Tensor,
        r1: torch.Tensor,
        r2: torch.Tensor,
        r3: torch.Tensor,
        r4: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One force evaluation, all of it under ``torch.no_grad()`` (module docstring);
        returns (zero energy, "forces")."""
        with torch.no_grad():
            out = self._dispatch(positions, box, int(stage), torch.stack([r1, r2, r3, r4]))
        return out

    def _dispatch(
        self, positions: torch.Tensor, box: torch.Tensor, current: int, uniforms: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Dispatch one force evaluation on stage ``current``; ``uniforms``: the four numbers of
        the random rotation. Returns (zero energy, "forces")."""
        energy = torch.zeros((), dtype=positions.dtype, device=positions.device)
        x = positions.detach().to(torch.float64)  # openmm-torch hands over positions that require grad
        if current == 4:
            self.guess_probe.copy_(x)
            self.guess_phase = 1
            return energy, torch.zeros_like(positions)
        if current == 5 and self.guess_phase == 1:
            self.guess_velocity_probe.copy_(x)
            self.guess_phase = 2
            return energy, torch.zeros_like(positions)
        if current == 1:
            self.probe.copy_(x)
            self.phase = 1
            return energy, torch.zeros_like(positions)
        if current == 2 and self.phase == 1:
            cell = box.detach().to(torch.float64)  # all zeros for non-periodic systems
            # what the position slots carried: the velocity probe, and the guess when stages 4-5 ran
            carried = [self.probe]
            if self.guess_phase == 2:
                carried += [self.guess_probe, self.guess_velocity_probe]
            self.guess_phase = 0
            deltas = torch.stack(carried) - x
            if self.periodic:
                deltas = minimum_image(deltas, cell)  # one cell inversion for all of them
            delta = deltas[0]
            guess = deltas[1] if deltas.shape[0] == 3 else torch.zeros_like(x)
            guess_delta = deltas[2] if deltas.shape[0] == 3 else torch.zeros_like(x)
            velocities = delta / self.probe_time
            if self.random_rotation:
                rotation = rotation_from_uniforms(uniforms).to(x.device)
            else:
                rotation = torch.eye(3, dtype=torch.float64, device=x.device)
            displacement, new_velocities = self.stride(
                x, velocities, cell, rotation, guess, guess_delta / self.probe_time
            )
            code = self.failure(velocities, deltas, displacement, new_velocities, x, x + guess)
            self.phase = 2
            if code != 0:
                # The integrator sees the sentinel, keeps the state and reports the stride.
                self.new_velocities.fill_(code * self.failure_sentinel)
                return energy, torch.zeros_like(positions)
            self.new_velocities.copy_(new_velocities)
            return energy, displacement.to(positions.dtype)
        if current == 3 and self.phase == 2:
            self.phase = 0
            return energy, self.new_velocities.to(positions.dtype)
        return energy, torch.zeros_like(positions)


class WithoutGuess(torch.nn.Module):
    """Gives a stride model without the ``verlet_guess`` input the seven-argument call the
    adapter makes (the guess is ignored)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        masses: torch.Tensor,
        atomic_numbers: torch.Tensor,
        box: torch.Tensor,
        guess: torch.Tensor,
        guess_velocities: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.model(positions, velocities, masses, atomic_numbers, box)


class PeriodicStrideForceModule(torch.nn.Module):
    """TorchForce entry point for periodic systems (openmm-torch passes the cell)."""

    def __init__(self, adapter: StrideAdapter):
        super().__init__()
        self.adapter = adapter

    def forward(
        self,
        positions: torch.Tensor,
        box: torch.Tensor,
        flashmd_stage: torch.Tensor,
        flashmd_step: torch.Tensor,
        flashmd_rot1: torch.Tensor,
        flashmd_rot2: torch.Tensor,
        flashmd_rot3: torch.Tensor,
        flashmd_rot4: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.adapter.run(
            positions, box, flashmd_stage, flashmd_rot1, flashmd_rot2, flashmd_rot3, flashmd_rot4
        )


class NonPeriodicStrideForceModule(torch.nn.Module):
    """TorchForce entry point for non-periodic systems (no cell argument)."""

    def __init__(self, adapter: StrideAdapter):
        super().__init__()
        self.adapter = adapter

    def forward(
        self,
        positions: torch.Tensor,
        flashmd_stage: torch.Tensor,
        flashmd_step: torch.Tensor,
        flashmd_rot1: torch.Tensor,
        flashmd_rot2: torch.Tensor,
        flashmd_rot3: torch.Tensor,
        flashmd_rot4: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        box = torch.zeros(3, 3, dtype=positions.dtype, device=positions.device)
        return self.adapter.run(
            positions, box, flashmd_stage, flashmd_rot1, flashmd_rot2, flashmd_rot3, flashmd_rot4
        )


def build_stride_force(adapter: StrideAdapter, force_group: int):
    """Wrap ``adapter`` in an openmm-torch ``TorchForce`` in ``force_group``."""
    from openmm_flashmd._plugins import torch_force

    entry = PeriodicStrideForceModule(adapter) if adapter.periodic else NonPeriodicStrideForceModule(adapter)
    force = torch_force(torch.jit.script(entry))
    force.setName(STRIDE_FORCE_NAME)
    force.setOutputsForces(True)
    force.setUsesPeriodicBoundaryConditions(adapter.periodic)
    for name in STAGE_PARAMETERS:
        force.addGlobalParameter(name, 0.0)
    force.setForceGroup(force_group)
    return force


#: Name given to the TorchForce that carries the stride model.
STRIDE_FORCE_NAME = "FlashMDStrideForce"

"""Training inputs computed with OpenMM on the data's own System.

:func:`verlet_guesses` runs, for every stored frame, the very program
:class:`~openmm_flashmd.integrator.FlashMDIntegrator` runs before a stride
(:func:`openmm_flashmd.integrator.guess.verlet_guess_integrator`), so a model with the
``verlet_guess`` input is trained on the numbers it will see in a simulation.
:func:`noisy_frames` makes the perturbed, re-constrained copies of frames that noise
injection trains on.
"""

from __future__ import annotations

import openmm_flashmd._plugins  # noqa: F401  (torch before openmm; see NOTES)

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import openmm
from tqdm.auto import tqdm

from openmm_flashmd.data import schema
from openmm_flashmd.data.dataset import TrajectoryData
from openmm_flashmd.integrator.guess import GUESS_VARIABLE, GUESS_VELOCITY_VARIABLE, verlet_guess_integrator
from openmm_flashmd.systems.loading import make_platform


def data_system(data: TrajectoryData) -> openmm.System:
    """The OpenMM System stored with the data (its ``system_xml``)."""
    with schema.open_trajectory_file(data.path, "r") as f:
        return openmm.XmlSerializer.deserialize(schema.read_string(f, "system_xml"))


def data_topology(data: TrajectoryData):
    """The ``openmm.app.Topology`` stored with the data (its ``topology_pdb``)."""
    import io

    from openmm import app

    with schema.open_trajectory_file(data.path, "r") as f:
        return app.PDBFile(io.StringIO(schema.read_string(f, "topology_pdb"))).topology


def verlet_guesses(
    data: TrajectoryData, stride: float, substeps: int, reverse: bool = False,
    segments: Optional[Sequence[int]] = None, platform: str = "CPU", progress: bool = True,
    states: Optional[Tuple[np.ndarray, np.ndarray]] = None, fast_forces: Sequence[str] = (),
) -> Tuple[np.ndarray, np.ndarray]:
    """The Verlet guess over ``stride`` (ps) in ``substeps`` substeps from every frame of
    ``segments`` (indices into ``data``; default all): displacements (nm) and velocities
    (nm/ps), each ``[S, F, N, 3]`` (zeros in other segments).

    With ``reverse`` the velocities are negated first (the start of a time-reversed pair).
    Forces are those of every force in the data's System, constraints are the System's;
    the forces of the classes ``fast_forces`` are recomputed per substep (the model's
    ``guess_fast_forces``).
    ``states`` (positions nm, velocities nm/ps, each ``[S, F, N, 3]``) replaces the data's
    frames, e.g. the noisy copies of :func:`noisy_frames`.
    """
    positions, velocities_in = states if states is not None else (data.positions, data.velocities)
    system = data_system(data)
    if system.getNumParticles() != data.n_atoms:
        raise ValueError(f"{data.path}: its System has {system.getNumParticles()} particles, the frames {data.n_atoms}")
    integrator = verlet_guess_integrator(system, stride, substeps, fast_forces)
    context = openmm.Context(system, integrator, make_platform(platform))
    displacements = np.zeros_like(data.positions)
    velocities = np.zeros_like(data.positions)
    sign = -1.0 if reverse else 1.0
    chosen = range(data.n_segments) if segments is None else [int(s) for s in segments]
    frames = [(s, f) for s in chosen for f in range(data.frames_per_segment)]
    for s, f in tqdm(frames, desc=f"Verlet guesses ({'reversed' if reverse else 'forward'})",
                     disable=not progress, unit="frame", mininterval=2.0):
        if data.periodic:
            context.setPeriodicBoxVectors(*data.box[s, f])
        context.setPositions(positions[s, f])
        context.setVelocities(sign * velocities_in[s, f])
        integrator.step(1)
        displacements[s, f] = integrator.getPerDofVariableByName(GUESS_VARIABLE)
        velocities[s, f] = integrator.getPerDofVariableByName(GUESS_VELOCITY_VARIABLE)
    return displacements, velocities


def pair_guesses(
    data: TrajectoryData, stride: float, substeps: int, time_reversal: bool,
    segments: Optional[Sequence[int]] = None, progress: bool = True,
    states: Optional[Tuple[np.ndarray, np.ndarray]] = None, fast_forces: Sequence[str] = (),
) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """The ``guesses`` argument of :class:`~openmm_flashmd.data.dataset.StridePairs`: forward
    guesses, and with ``time_reversal`` the guesses from negated velocities (of ``states``
    instead of the data's frames when given)."""
    kwargs = dict(segments=segments, progress=progress, states=states, fast_forces=fast_forces)
    out = {"forward": verlet_guesses(data, stride, substeps, **kwargs)}
    if time_reversal:
        out["reverse"] = verlet_guesses(data, stride, substeps, reverse=True, **kwargs)
    return out


def noisy_frames(
    data: TrajectoryData, sigma: float, seed: int, segments: Optional[Sequence[int]] = None,
    platform: str = "CPU", progress: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """One noisy copy of every frame of ``segments`` (default all): positions plus Gaussian
    noise of ``sigma`` nm per component, then the System's position constraints; velocities
    projected on the new constraint directions. Returns (positions nm, velocities nm/ps),
    each ``[S, F, N, 3]`` (the data's frames in other segments).

    Training a stride model to map such inputs to the *unperturbed* future (noise
    injection, as in learned simulators) teaches it to pull states that drifted off the
    data's manifold back, where compounding errors of a simulation put them.
    """
    system = data_system(data)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), make_platform(platform))
    rng = np.random.default_rng(int(seed))
    positions, velocities = data.positions.copy(), data.velocities.copy()
    constrained = system.getNumConstraints() > 0
    chosen = range(data.n_segments) if segments is None else [int(s) for s in segments]
    frames = [(s, f) for s in chosen for f in range(data.frames_per_segment)]
    for s, f in tqdm(frames, desc="noisy frames", disable=not progress, unit="frame", mininterval=2.0):
        positions[s, f] += rng.normal(scale=float(sigma), size=positions[s, f].shape)
        if not constrained:
            continue
        if data.periodic:
            context.setPeriodicBoxVectors(*data.box[s, f])
        context.setPositions(positions[s, f])
        context.applyConstraints(1e-8)
        context.setVelocities(velocities[s, f])
        context.applyVelocityConstraints(1e-8)
        state = context.getState(getPositions=True, getVelocities=True)
        positions[s, f] = state.getPositions(asNumpy=True)._value
        velocities[s, f] = state.getVelocities(asNumpy=True)._value
    return positions, velocities

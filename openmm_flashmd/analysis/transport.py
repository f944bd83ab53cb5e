"""Transport observables over mdtraj trajectories (plain functions).

Units: nm, ps, nm^2/ps (1 nm^2/ps = 1e-2 cm^2/s).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import mdtraj
import numpy as np


def unwrap(trajectory: mdtraj.Trajectory, atoms: Sequence[int]) -> np.ndarray:
    """Positions (nm, ``[frames, len(atoms), 3]``) of ``atoms`` made continuous across
    periodic boundaries: each frame-to-frame displacement is taken as its minimum image.

    Correct as long as no atom moves more than half a box length between frames, which
    holds for frames a few ps apart in liquids. Works for wrapped and unwrapped input and
    for triclinic boxes; a trajectory without a box is returned as it is.
    """
    xyz = trajectory.xyz[:, np.asarray(atoms, dtype=int)].astype(np.float64)
    if trajectory.unitcell_vectors is None or len(xyz) < 2:
        return xyz
    cells = trajectory.unitcell_vectors.astype(np.float64)  # [frames, 3, 3], rows are box vectors
    step = np.diff(xyz, axis=0)
    fractional = np.einsum("fai,fij->faj", step, np.linalg.inv(cells[1:]))
    step -= np.einsum("faj,fji->fai", np.round(fractional), cells[1:])
    return np.concatenate([xyz[:1], xyz[:1] + np.cumsum(step, axis=0)])


def mean_squared_displacement(
    trajectory: mdtraj.Trajectory, atoms: Sequence[int], max_lag: int, remove_drift: bool = True
) -> Tuple[np.ndarray, np.ndarray]:
    """MSD (nm^2) of ``atoms`` for lags 1..``max_lag`` frames, averaged over atoms and all
    time origins. Returns ``(lag_times_ps, msd_nm2)``. ``remove_drift`` subtracts the
    selection's mean displacement per frame (a thermostat does not conserve momentum)."""
    if len(atoms) == 0:
        raise ValueError("no atoms selected")
    if not 1 <= max_lag < trajectory.n_frames:
        raise ValueError(f"max_lag must be between 1 and {trajectory.n_frames - 1} frames, got {max_lag}")
    x = unwrap(trajectory, atoms)
    if remove_drift:
        x = x - x.mean(axis=1, keepdims=True)
    lags = np.arange(1, max_lag + 1)
    msd = np.array([np.mean(np.sum((x[lag:] - x[:-lag]) ** 2, axis=-1)) for lag in lags])
    dt = float(trajectory.time[1] - trajectory.time[0]) if trajectory.n_frames > 1 else 0.0
    return lags * dt, msd


def self_diffusion(
    trajectory: mdtraj.Trajectory, selection: str, fit_ps: Tuple[float, float] = (1.0, 5.0)
) -> float:
    """Self-diffusion coefficient (nm^2/ps) of the atoms matching the mdtraj ``selection``:
    one sixth of the slope of their MSD against lag time, fitted over lags in ``fit_ps``
    (ps; the diffusive regime, after the ballistic start). Frames must be evenly spaced in
    ``trajectory.time`` (ps)."""
    atoms = trajectory.topology.select(selection)
    if len(atoms) == 0:
        raise ValueError(f"selection {selection!r} matches no atoms")
    if trajectory.n_frames < 3:
        raise ValueError("need at least 3 frames")
    dt = float(trajectory.time[1] - trajectory.time[0])
    if not dt > 0 or not np.allclose(np.diff(trajectory.time), dt, rtol=1e-3, atol=1e-6):
        raise ValueError("frames must be evenly spaced in time (trajectory.time, ps)")
    max_lag = int(np.floor(fit_ps[1] / dt + 1e-9))
    if max_lag >= trajectory.n_frames or fit_ps[0] >= fit_ps[1] or fit_ps[0] < dt:
        raise ValueError(f"fit window {fit_ps} ps does not fit a {trajectory.n_frames}-frame trajectory "
                         f"sampled every {dt:g} ps")
    lag_ps, msd = mean_squared_displacement(trajectory, atoms, max_lag)
    window = lag_ps >= fit_ps[0] - 1e-9
    slope = np.polyfit(lag_ps[window], msd[window], 1)[0]
    return float(slope / 6.0)

"""Backbone dihedrals: Ramachandran angles, histograms, divergences, basin populations.

Plain functions over arrays (angles in degrees) and mdtraj trajectories. Conventions:
angles live in ``[-180, 180)`` degrees; 2-D histograms are indexed ``[phi_bin, psi_bin]``
and normalised to sum 1 (probabilities per bin, not densities).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

#: Basins of the alanine-dipeptide Ramachandran plot (degrees), see :func:`basin_populations`.
BASINS: Dict[str, str] = {
    "alpha_R": "phi < 0 and -120 < psi <= 50",
    "beta_PPII": "phi < 0 and not alpha_R (extended: beta and polyproline II)",
    "alpha_L": "phi >= 0 (alpha_L and C7ax)",
}


def wrap_degrees(angles) -> np.ndarray:
    """Angles (degrees) mapped into ``[-180, 180)``."""
    return (np.asarray(angles, dtype=float) + 180.0) % 360.0 - 180.0


def ramachandran(trajectory) -> Tuple[np.ndarray, np.ndarray]:
    """Backbone phi and psi (degrees, in ``[-180, 180)``) of every residue that has both.

    ``trajectory`` is an ``mdtraj.Trajectory``; angles come from ``mdtraj.compute_phi``
    and ``mdtraj.compute_psi`` and are paired by residue (phi's N-CA-C equals psi's
    N-CA-C). Returns two arrays of shape ``[n_frames, n_residues]``; alanine dipeptide
    (ACE-ALA-NME) has one column.
    """
    import mdtraj

    phi_atoms, phi = mdtraj.compute_phi(trajectory)
    psi_atoms, psi = mdtraj.compute_psi(trajectory)
    psi_index = {tuple(atoms[:3]): k for k, atoms in enumerate(psi_atoms)}
    pairs = [(j, psi_index[tuple(atoms[1:])]) for j, atoms in enumerate(phi_atoms) if tuple(atoms[1:]) in psi_index]
    if not pairs:
        raise ValueError("trajectory has no residue with both a phi and a psi backbone dihedral")
    phi_cols = [j for j, _ in pairs]
    psi_cols = [k for _, k in pairs]
    return wrap_degrees(np.degrees(phi[:, phi_cols])), wrap_degrees(np.degrees(psi[:, psi_cols]))


def ramachandran_histogram(phi, psi, bins: int = 36) -> np.ndarray:
    """Normalised 2-D histogram ``[bins, bins]`` (sum 1) of phi/psi (degrees).

    Bins are equal over ``[-180, 180)`` in both angles (10° wide for the default 36),
    indexed ``[phi_bin, psi_bin]``; angles are wrapped first, so 180° counts as -180°.
    An empty input gives all zeros.
    """
    phi = wrap_degrees(phi).ravel()
    psi = wrap_degrees(psi).ravel()
    if phi.shape != psi.shape:
        raise ValueError("phi and psi must have the same number of values")
    edges = np.linspace(-180.0, 180.0, bins + 1)
    hist, _, _ = np.histogram2d(phi, psi, bins=[edges, edges])
    total = hist.sum()
    return hist / total if total > 0 else hist


def jensen_shannon(p, q) -> float:
    """Jensen-Shannon divergence between two histograms, in nats (natural logarithm).

    ``JS = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``; both inputs are
    normalised to sum 1 first (any shape, same shape). Empty bins are handled by
    ``0 log 0 = 0``, so the result is finite: 0 for identical histograms, at most
    ``ln 2 ≈ 0.693`` (histograms without common bins).
    """
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in shape: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("histograms must have positive total weight")
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def _basin_masks(phi, psi) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """Wrapped, flattened φ and ψ (degrees) and the frames of each basin of :data:`BASINS`."""
    phi = wrap_degrees(phi).ravel()
    psi = wrap_degrees(psi).ravel()
    if phi.shape != psi.shape:
        raise ValueError("phi and psi must have the same number of values")
    alpha_r = (phi < 0) & (psi > -120.0) & (psi <= 50.0)
    return phi, psi, {"alpha_R": alpha_r, "beta_PPII": (phi < 0) & ~alpha_r, "alpha_L": phi >= 0}


def basin_populations(phi, psi) -> Dict[str, float]:
    """Fractions of frames in the Ramachandran basins of :data:`BASINS` (they sum to 1).

    ``alpha_R``: phi < 0 and -120° < psi <= 50°; ``beta_PPII`` (extended): phi < 0 and
    not alpha_R; ``alpha_L`` (alpha_L and C7ax): phi >= 0. Angles in degrees, wrapped
    into ``[-180, 180)``; all values of the inputs count (every column of a
    ``[frames, residues]`` array).
    """
    phi, _, masks = _basin_masks(phi, psi)
    if phi.size == 0:
        return {name: math.nan for name in BASINS}
    return {name: float(masks[name].mean()) for name in BASINS}


def basin_statistics(phi, psi) -> Dict[str, Dict[str, float]]:
    """Population and shape of the ``alpha_R`` and ``beta_PPII`` basins of :func:`basin_populations`:
    per basin its fraction of frames and the mean and standard deviation of φ and ψ (degrees) over
    its frames, ψ of ``beta_PPII`` unwrapped into ``(-120°, 240°]`` so that the basin does not split at
    ±180°. NaN statistics for an empty basin."""
    phi, psi, masks = _basin_masks(phi, psi)
    unwrapped = {"alpha_R": psi, "beta_PPII": np.where(psi <= -120.0, psi + 360.0, psi)}
    out: Dict[str, Dict[str, float]] = {}
    for name, psi_basin in unwrapped.items():
        mask = masks[name]
        n = int(mask.sum())
        stats = {"population": float(mask.mean()) if phi.size else math.nan}
        for angle, values in (("phi", phi[mask]), ("psi", psi_basin[mask])):
            stats[f"{angle}_mean"] = float(values.mean()) if n else math.nan
            stats[f"{angle}_sd"] = float(values.std()) if n else math.nan
        out[name] = stats
    return out


def block_bootstrap(
    statistic: Callable[..., object],
    *series,
    n_blocks: int = 20,
    n_resamples: int = 500,
    seed: Optional[int] = 0,
) -> Tuple[Any, Any]:
    """Estimate and standard error of ``statistic(*series)`` by a block bootstrap.

    The frames (axis 0 of every array in ``series``, all of the same length) are cut
    into ``n_blocks`` contiguous blocks; each of ``n_resamples`` resamples draws
    ``n_blocks`` blocks with replacement and concatenates them, keeping the frames of
    all series together. Contiguous blocks keep the correlation between neighbouring
    frames, so the error is honest for correlated time series when blocks are longer
    than the correlation time. ``statistic`` may return a number, an array or a dict of
    numbers (e.g. :func:`basin_populations`).

    Returns ``(value, standard_error)``: the statistic of the full data and the standard
    deviation (ddof=1) of the resampled statistics, in the units of the statistic and of
    the type it returns (floats, arrays or dicts); the error is NaN with fewer than two
    blocks.
    """
    if not series:
        raise ValueError("block_bootstrap needs at least one series")
    arrays = [np.asarray(s) for s in series]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("all series must have the same number of frames")
    full = statistic(*arrays)
    keys = sorted(full) if isinstance(full, dict) else None

    def as_array(result) -> np.ndarray:
        return np.asarray([result[k] for k in keys] if keys is not None else result, dtype=float)

    def restore(array: np.ndarray):
        if keys is not None:
            return {k: float(v) for k, v in zip(keys, array)}
        return float(array) if array.ndim == 0 else array

    value = as_array(full)
    n_blocks = min(int(n_blocks), n)
    if n_blocks < 2:
        return restore(value), restore(np.full_like(value, math.nan))
    blocks = np.array_split(np.arange(n), n_blocks)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(int(n_resamples)):
        index = np.concatenate([blocks[k] for k in rng.integers(0, n_blocks, size=n_blocks)])
        samples.append(as_array(statistic(*(a[index] for a in arrays))))
    error = np.std(np.stack(samples), axis=0, ddof=1)
    return restore(value), restore(error)

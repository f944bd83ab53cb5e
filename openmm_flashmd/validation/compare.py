"""Comparisons of a FlashMD run with reference MD: temperatures, RDFs, density, Ramachandran
statistics and water self-diffusion, as plain functions of recorded series.

Units: K, nm, g/cm^3, nm^2/ps; Jensen-Shannon divergences in nats.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: Bins per angle of the Ramachandran histograms.
RAMACHANDRAN_BINS = 36


def mean_sem(values, blocks: int) -> Dict[str, float]:
    """``{"mean", "sem"}`` of ``values`` from ``blocks`` block averages."""
    from openmm_flashmd.analysis.statistics import block_average

    mean, sem = block_average(values, blocks)
    return {"mean": mean, "sem": sem}


def temperature_summary(series: Dict[str, np.ndarray], blocks: int, target: float,
                        reference: Optional[Dict[str, Dict[str, float]]] = None) -> Dict[str, Dict[str, float]]:
    """Mean ± block SE (K) per key, deviation from ``target`` and from ``reference`` means."""
    out = {}
    for key, values in series.items():
        entry = mean_sem(values, blocks)
        entry["dev_target"] = entry["mean"] - target
        add_deviation_from_reference(entry, (reference or {}).get(key))
        out[key] = entry
    return out


def add_deviation_from_reference(entry: Dict[str, float], reference: Optional[Dict[str, float]]) -> None:
    """Set ``dev_reference`` (mean minus the reference's) and ``dev_reference_sem`` (the two standard
    errors combined; NaN where either is unknown) of a ``{"mean", "sem"}`` entry; nothing without a
    reference mean."""
    if not reference or reference.get("mean") is None or entry.get("mean") is None:
        return
    entry["dev_reference"] = entry["mean"] - reference["mean"]
    sems = (entry.get("sem"), reference.get("sem"))
    entry["dev_reference_sem"] = (math.hypot(*sems) if all(s is not None and math.isfinite(s) for s in sems)
                                  else math.nan)


def density(volumes_nm3, total_mass_da: float) -> np.ndarray:
    """g/cm^3 from box volumes (nm^3) and the total mass (Da)."""
    from openmm_flashmd.analysis.thermo import density as mass_density

    return mass_density(total_mass_da, np.asarray(volumes_nm3))


def density_comparison(flashmd: Dict[str, float], reference: Dict[str, float]) -> Dict[str, float]:
    """Relative difference (%) of two ``{"mean", "sem"}`` densities and its standard error (%)."""
    sems = [s for s in (flashmd["sem"], reference["sem"]) if s is not None and math.isfinite(s)]
    return {"relative_difference_percent": 100.0 * (flashmd["mean"] - reference["mean"]) / reference["mean"],
            "relative_difference_sem_percent": (100.0 * math.hypot(flashmd["sem"], reference["sem"]) / reference["mean"]
                                                if len(sems) == 2 else math.nan)}


def trajectory(topology, positions: Sequence[np.ndarray], boxes: Optional[Sequence[np.ndarray]] = None,
               times: Optional[Sequence[float]] = None):
    """An mdtraj Trajectory from positions [F, N, 3] nm, boxes [F, 3, 3] nm (periodic) and times (ps)."""
    import mdtraj

    traj = mdtraj.Trajectory(np.asarray(positions, dtype=np.float32), mdtraj.Topology.from_openmm(topology))
    if boxes is not None and len(boxes) and np.any(np.asarray(boxes)):
        traj.unitcell_vectors = np.asarray(boxes, dtype=np.float32)
    if times is not None:
        traj.time = np.asarray(times, dtype=float)
    return traj


def rdfs(traj, pairs: List[str], r_max: float) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``{"A-B": (r, g)}`` for each element pair (nm) up to ``r_max``."""
    from openmm_flashmd.analysis.structure import radial_distribution

    out = {}
    for pair in pairs:
        a, b = pair.split("-")
        out[pair] = radial_distribution(traj, a, b, r_max=r_max)
    return out


def rdf_comparison(traj, r_max: float, ref_arrays: Dict[str, np.ndarray]
                   ) -> Tuple[Dict[str, Dict[str, float]], Dict[str, Dict]]:
    """RDFs of ``traj`` for every pair the reference holds (``ref_arrays["rdf_<pair>"]`` on
    ``ref_arrays["rdf_r"]``): ``{pair: {difference_percent, frames}}`` (integrated absolute
    difference; None for a pair the reference never saw within ``r_max``, e.g. two ions of a
    small box) and the curves ``{pair: {"reference MD": g_ref, "FlashMD": g}}``."""
    from openmm_flashmd.analysis.structure import rdf_difference

    pairs = [key[4:] for key in ref_arrays if key.startswith("rdf_") and key != "rdf_r"]
    result, curves = {}, {}
    for pair, (_, g) in rdfs(traj, pairs, r_max).items():
        g_ref = ref_arrays[f"rdf_{pair}"]
        seen = bool(np.any(g_ref > 0))
        result[pair] = {"difference_percent": 100.0 * rdf_difference(ref_arrays["rdf_r"], g, g_ref) if seen else None,
                        "frames": traj.n_frames}
        curves[pair] = {"reference MD": g_ref, "FlashMD": g}
    return result, curves


def backbone_dihedrals(traj) -> Tuple[np.ndarray, np.ndarray]:
    """φ and ψ (degrees) of the first residue that has both, per frame."""
    from openmm_flashmd.analysis.dihedrals import ramachandran

    phi, psi = ramachandran(traj)
    return phi[:, 0], psi[:, 0]


def basins(phi: np.ndarray, psi: np.ndarray, blocks: int) -> Dict[str, Dict[str, float]]:
    """Basin populations (αR, β/PPII, αL) with block-bootstrap standard errors."""
    from openmm_flashmd.analysis.dihedrals import basin_populations, block_bootstrap

    value, sem = block_bootstrap(basin_populations, phi, psi, n_blocks=max(2, 2 * blocks))
    return {k: {"value": value[k], "sem": sem[k]} for k in value}


def ramachandran_js(phi: np.ndarray, psi: np.ndarray, phi_ref: np.ndarray, psi_ref: np.ndarray) -> float:
    """Jensen-Shannon divergence (nats) of two Ramachandran histograms."""
    from openmm_flashmd.analysis.dihedrals import jensen_shannon, ramachandran_histogram

    return jensen_shannon(ramachandran_histogram(phi, psi, RAMACHANDRAN_BINS),
                          ramachandran_histogram(phi_ref, psi_ref, RAMACHANDRAN_BINS))


def window_divergences(phi: np.ndarray, psi: np.ndarray, phi_ref: np.ndarray, psi_ref: np.ndarray,
                       window: int) -> List[float]:
    """Ramachandran JS divergence (nats) of every disjoint window of ``window`` frames of a run
    (φ/ψ in degrees; a last partial window is left out) against the whole reference."""
    from openmm_flashmd.analysis.dihedrals import jensen_shannon, ramachandran_histogram

    if window < 1:
        raise ValueError(f"window must be at least one frame, got {window}")
    reference = ramachandran_histogram(phi_ref, psi_ref, RAMACHANDRAN_BINS)
    return [jensen_shannon(ramachandran_histogram(phi[a:a + window], psi[a:a + window], RAMACHANDRAN_BINS), reference)
            for a in range(0, len(phi) - window + 1, window)]


def diffusion_fit_window(length_ps: float) -> Tuple[float, float]:
    """Lag window (ps) for the self-diffusion fit: 1-5 ps, shrunk for short (test) runs."""
    return min(1.0, length_ps / 10), min(5.0, length_ps / 4)


def water_oxygen_diffusion(topology, times: Sequence[float], positions: Sequence[np.ndarray],
                           boxes: Sequence[np.ndarray], length_ps: float) -> Optional[float]:
    """Self-diffusion coefficient (nm^2/ps) of the water oxygens of evenly spaced frames (the
    first frames up to the first uneven spacing), or None without water or when the run is too
    short for the fit window of :func:`diffusion_fit_window`."""
    from openmm_flashmd.analysis.transport import self_diffusion

    times = np.asarray(times, dtype=float)
    if len(times) < 3:
        return None
    spacing = np.diff(times)
    uneven = np.flatnonzero(~np.isclose(spacing, spacing[0]))
    even = int(uneven[0]) + 1 if len(uneven) else len(times)
    if even < 3:
        return None
    traj = trajectory(topology, positions[:even], boxes[:even], times[:even])
    if len(traj.topology.select("water and element O")) == 0:
        return None
    window = diffusion_fit_window(length_ps)
    dt = float(times[1] - times[0])
    if not (dt <= window[0] < window[1] and window[1] / dt + 1e-9 < even):
        return None
    return self_diffusion(traj, "water and element O", fit_ps=window)


def relative_difference(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    """100 (value - reference) / reference, or None when either is missing."""
    if value is None or reference is None or not reference:
        return None
    return 100.0 * (value - reference) / reference

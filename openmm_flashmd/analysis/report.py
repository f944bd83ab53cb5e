"""Summary report of a FlashMD run: markdown with PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np

from openmm_flashmd.analysis.statistics import block_average


def read_log(path: Path) -> Dict[str, np.ndarray]:
    """Columns of a :class:`FlashMDReporter` CSV log as arrays."""
    table = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
    return {name: np.atleast_1d(table[name]) for name in table.dtype.names}


def _mean_and_error(values: np.ndarray, blocks: int = 4) -> str:
    """``mean ± standard error`` from block averages (error omitted when too short)."""
    mean, error = block_average(values, blocks)
    if np.isnan(error):
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {error:.1f}"


def _plot(path: Path, x: np.ndarray, series: Dict[str, np.ndarray], xlabel: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for label, y in series.items():
        ax.plot(x, y, label=label, lw=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(output_dir: Path, log: Path, trajectory: Path, topology: Path, report: Path) -> Path:
    """Write ``report`` (markdown) and its plots into ``output_dir`` from a run's outputs."""
    output_dir = Path(output_dir)
    columns = read_log(log)
    time = columns["time_ps"]
    lines: List[str] = ["# FlashMD run", ""]
    settings = output_dir / "settings.json"
    if settings.exists():
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in json.loads(settings.read_text()).items()]
        lines.append("")

    series = {"all": columns["temperature_K"]}
    series.update({k[len("temperature_"):-len("_K")]: v for k, v in columns.items()
                   if k.startswith("temperature_") and k != "temperature_K"})
    half = len(time) // 2
    lines += ["## Temperature", "", "Second half of the run (mean ± standard error of 4 blocks):", "",
              "| atoms | T (K) |", "|---|---|"]
    for name, values in series.items():
        lines.append(f"| {name} | {_mean_and_error(values[half:])} |")
    _plot(output_dir / "temperature.png", time, series, "time (ps)", "T (K)")
    lines += ["", "![temperature](temperature.png)", ""]

    _plot(output_dir / "energy.png", time, {"total": columns["total_kjmol"], "potential": columns["potential_kjmol"]},
          "time (ps)", "energy (kJ/mol)")
    strides = int(columns["filter_strides"].sum())
    clamped = int(columns["filter_clamped"].sum())
    lines += ["## Energy", "", "![energy](energy.png)", "",
              f"Energy filter: {strides} strides filtered, {clamped} clamped"
              + (f", mean scale {np.nanmean(columns['filter_scale_mean']):.5f}." if strides else "."), ""]

    lines += _structure_section(output_dir, trajectory, topology)
    report = Path(report)
    report.write_text("\n".join(lines) + "\n")
    return report


def _structure_section(output_dir: Path, trajectory: Path, topology: Path) -> List[str]:
    """O–O RDF of periodic runs with oxygen; pure water is compared with the bundled reference RDF."""
    import mdtraj

    traj = mdtraj.load(str(trajectory), top=str(topology))
    elements = {atom.element.symbol for atom in traj.topology.atoms}
    if traj.unitcell_lengths is None or "O" not in elements or traj.n_frames < 2:
        return []
    from openmm_flashmd.analysis.structure import radial_distribution, rdf_difference, reference_rdf

    r, g = radial_distribution(traj, "O", "O")
    series = {"O–O (this run)": g}
    lines = ["## Structure", "", f"O–O radial distribution from {traj.n_frames} frames.", ""]
    if all(residue.name == "HOH" for residue in traj.topology.residues):
        ref = reference_rdf("water")
        g_ref = np.interp(r, ref["r_nm"], ref["g_OO"], right=np.nan)
        inside = np.isfinite(g_ref)
        series["O–O reference MD"] = g_ref
        difference = rdf_difference(r[inside], g[inside], g_ref[inside])
        lines += [f"Integrated absolute difference from the bundled reference "
                  f"(∫|g − g_ref| dr / ∫g_ref dr, r < {r[inside][-1]:.2f} nm): **{100 * difference:.1f} %**. "
                  f"Reference: {ref['description']} at {ref['temperature_K']:g} K; {ref['source']}.", ""]
    _plot(output_dir / "rdf_OO.png", r, series, "r (nm)", "g(r)")
    return lines + ["![O-O RDF](rdf_OO.png)", ""]

"""Summary report of a FlashMD run: markdown with PNG plots."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from openmm_flashmd.analysis.statistics import standard_error

#: The plots :func:`write_report` writes next to the report.
TEMPERATURE_PLOT, ENERGY_PLOT, RDF_PLOT = "temperature.png", "energy.png", "rdf_OO.png"
REPORT_PLOTS = (TEMPERATURE_PLOT, ENERGY_PLOT, RDF_PLOT)


def read_log(path: Path) -> Dict[str, np.ndarray]:
    """Columns of a :class:`FlashMDReporter` CSV log as arrays."""
    table = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
    return {name: np.atleast_1d(table[name]) for name in table.dtype.names}


def temperature_series(columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The temperature columns (K) of a :func:`read_log` table by name: ``all``, then each element."""
    series = {"all": columns["temperature_K"]}
    series.update({k[len("temperature_"):-len("_K")]: v for k, v in columns.items()
                   if k.startswith("temperature_") and k != "temperature_K"})
    return series


def second_half_statistics(series: Dict[str, np.ndarray]) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Means and standard errors (:func:`standard_error`) of the second half of each series, in
    its units: what the report's temperature table and check use."""
    halves = {name: values[len(values) // 2:] for name, values in series.items()}
    return ({n: float(np.mean(v)) for n, v in halves.items()}, {n: standard_error(v) for n, v in halves.items()})


def _format_mean(mean: float, error: float) -> str:
    """``mean ± standard error`` (the error omitted when NaN: too few samples)."""
    if np.isnan(error):
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {error:.1f}"


def _mean_and_error(values: np.ndarray) -> str:
    """``mean ± standard error`` of a series (:func:`standard_error`)."""
    return _format_mean(float(np.mean(values)), standard_error(values))


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


#: Thresholds of the report's trust checks.
MAX_CLAMPED_FRACTION = 0.01     # energy filter clamps, fraction of filtered strides
MAX_FALLBACK_FRACTION = 0.01    # strides rejected by the monitor and integrated with MD instead
MAX_TEMPERATURE_DEVIATION = 5.0  # K, thermostatted runs, second half, overall and per element
#: A temperature check is judged only where the window's statistical error resolves the
#: threshold: this many standard errors of the mean within MAX_TEMPERATURE_DEVIATION.
TEMPERATURE_CONFIDENCE = 2.0
MAX_RDF_DIFFERENCE = 0.10        # integrated |g - g_ref| / integral g_ref, pure water
MAX_DENSITY_DEVIATION = 0.02     # NpT, second half, relative to the bundled reference density
#: NVE runs: |total-energy drift| per atom, kJ/mol/ps (the blog protocol's goal of issue 15,
#: 5 kJ/mol/ps for 774 atoms, is 0.0065; reference MD on that protocol drifts about 2e-6,
#: benchmarks/results/blog_nve.json)
MAX_NVE_DRIFT_PER_ATOM = 0.005
#: How a trust check's line starts in the report: passed, failed, not judged (run too short).
_MARKS = {True: "- ✅ ", False: "- ❌ ", None: "- ⚠️ "}


def write_report(output_dir: Path, log: Path, trajectory: Path, topology: Path, report: Path,
                 failure: Optional[str] = None) -> Path:
    """Write ``report`` (markdown) and its plots into ``output_dir`` from a run's outputs.

    The report opens with trust checks (each passes or fails with its number): the run
    finished (``failure`` is the error that stopped it, if any), the energy filter rarely
    clamps, the stride monitor rarely falls back to MD, a thermostatted run holds its
    temperature overall and per element, an NVE run conserves its total energy and shares
    its kinetic energy among the elements as it should, an NpT run holds the reference
    density (where the package has one for the system), and a water box has the O–O
    structure of the bundled reference RDF. A temperature check whose window is too short
    for its statistical error to resolve the threshold is marked not judged (⚠️), never passed.
    """
    output_dir = Path(output_dir)
    settings_path = output_dir / "settings.json"
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    checks: List[Tuple[Optional[bool], str]] = [(failure is None, f"run finished ({failure})" if failure else "run finished")]
    rows = len(Path(log).read_text().strip().splitlines()) - 1 if Path(log).exists() else 0
    if rows < 1:
        return _write(report, settings, checks, ["No log rows were written before the run stopped.", ""])
    columns = read_log(log)
    time = columns["time_ps"]
    body: List[str] = []

    series = temperature_series(columns)
    half = len(time) // 2
    means, errors = second_half_statistics(series)
    body += ["## Temperature", "", "Second half of the run (mean ± standard error from the autocorrelation time):", "",
             "| atoms (molecules: their translation, rotation) | T (K) |", "|---|---|"]
    for name in series:
        body.append(f"| {name} | {_format_mean(means[name], errors[name])} |")
    target = settings.get("temperature_K") if settings.get("ensemble") in ("nvt", "npt") else None
    advice: List[str] = []
    window_ps = float(time[-1] - time[half]) if len(time) >= 2 else 0.0
    if target is not None and len(time) >= 2:
        ok, text, advice = temperature_check(means, expected_temperatures(target, list(series), settings),
                                             errors, window_ps)
        checks.append((ok, text))
    elif settings.get("ensemble") == "nve" and len(time) >= 2 and len(series) > 2:
        # no target: each element against what it should read at the run's own overall temperature
        expected = expected_temperatures(means["all"], list(series), settings)
        expected.pop("all")
        if expected:
            ok, text, _ = temperature_check(means, expected, errors, window_ps)  # advice: thermostats
            checks.append((ok, "per element (NVE, at the run's own temperature): " + text))
    _plot(output_dir / TEMPERATURE_PLOT, time, series, "time (ps)", "T (K)")
    body += ["", f"![temperature]({TEMPERATURE_PLOT})", ""] + advice

    _plot(output_dir / ENERGY_PLOT, time, {"total": columns["total_kjmol"], "potential": columns["potential_kjmol"]},
          "time (ps)", "energy (kJ/mol)")
    if settings.get("ensemble") == "nve" and len(time) >= 3:
        checks.append(energy_drift_check(time, columns["total_kjmol"], _atom_count(topology)))
    strides = int(columns["filter_strides"].sum())
    clamped = int(columns["filter_clamped"].sum())
    body += ["## Energy", "", f"![energy]({ENERGY_PLOT})", "",
             f"Energy filter: {strides} strides filtered, {clamped} clamped"
             + (f", mean scale {np.nanmean(columns['filter_scale_mean']):.5f}." if strides else "."), ""]
    if strides:
        checks.append((clamped <= MAX_CLAMPED_FRACTION * strides,
                       f"energy filter clamped at most {100 * MAX_CLAMPED_FRACTION:g} % of strides "
                       f"({100 * clamped / strides:.1f} %)"))

    if "rejected_strides" in columns and columns["monitor_strides"].sum() > 0:
        lines, check = fallback_section(columns)
        body += lines
        checks.append(check)

    if settings.get("ensemble") == "npt" and "density_g_cm3" in columns and len(time) >= 2:
        lines, check = density_section(columns["density_g_cm3"][half:], settings.get("system"))
        body += lines
        if check is not None:
            checks.append(check)

    structure, rdf_check = _structure_section(output_dir, trajectory, topology, settings.get("system"))
    body += structure
    if rdf_check is not None:
        checks.append(rdf_check)

    return _write(report, settings, checks, body)


def fallback_section(columns: Dict[str, np.ndarray]) -> Tuple[List[str], Tuple[bool, str]]:
    """Report lines and trust check of the stride monitor from a log's columns: strides
    monitored, rejected (integrated with MD instead) and why."""
    from openmm_flashmd.integrator.fallback import REJECTION_REASONS

    strides = int(columns["monitor_strides"].sum())
    rejected = int(columns["rejected_strides"].sum())
    share = rejected / strides
    reasons = ", ".join(f"{reason} {int(columns[f'rejected_{reason}'].sum())}"
                        for reason in REJECTION_REASONS.values() if f"rejected_{reason}" in columns
                        and columns[f"rejected_{reason}"].sum() > 0)
    lines = ["## Stride monitor", "",
             f"{strides} strides monitored, {rejected} rejected and integrated with MD instead "
             f"({100 * share:.2f} % of the simulated time)" + (f"; by reason: {reasons}." if reasons else "."), ""]
    if share > MAX_FALLBACK_FRACTION:
        lines += [f"**{100 * share:.1f} % of this run is fallback MD, not the stride model: the model is outside its "
                  "range of validity here, and the speed-up shrinks with every fallback stride.**", ""]
    return lines, (share <= MAX_FALLBACK_FRACTION,
                   f"stride monitor fell back to MD on at most {100 * MAX_FALLBACK_FRACTION:g} % of strides "
                   f"({100 * share:.2f} %)")


def density_section(density: np.ndarray, system: Optional[str]) -> Tuple[List[str], Optional[Tuple[bool, str]]]:
    """Report lines on the second half's density (g/cm³) and, when the package has a reference
    density for ``system``, its trust check (within ``MAX_DENSITY_DEVIATION``)."""
    from openmm_flashmd.systems.references import reference_density

    lines = ["## Density", "", f"Second half: {_mean_and_error(1000 * density)} kg/m³.", ""]
    ref = reference_density(system)
    if ref is None:
        return lines + ["No reference density is bundled for this system.", ""], None
    deviation = float(np.mean(density)) / ref["mean"] - 1
    lines += [f"Reference: {1000 * ref['mean']:.1f} ± {1000 * ref['sem']:.1f} kg/m³ ({ref['source']}).", ""]
    return lines, (abs(deviation) <= MAX_DENSITY_DEVIATION,
                   f"density within {100 * MAX_DENSITY_DEVIATION:g} % of reference MD's {ref['mean']:.4f} g/cm³ "
                   f"({100 * deviation:+.2f} %)")


def _atom_count(topology: Path) -> int:
    from openmm import app

    return app.PDBFile(str(topology)).topology.getNumAtoms()


def energy_drift_check(time: np.ndarray, total: np.ndarray, n_atoms: int) -> Tuple[bool, str]:
    """The NVE trust check: the total energy's linear drift (kJ/mol/ps, fitted over the
    whole run; ``time`` in ps, ``total`` in kJ/mol) per atom within ``MAX_NVE_DRIFT_PER_ATOM``.
    A non-finite energy fails."""
    finite = np.isfinite(total)
    if finite.sum() < len(total) or len(total) < 3:
        return False, "total energy conserved (NVE): the total energy is not finite"
    drift = float(np.polyfit(time, total, 1)[0])
    per_atom = drift / max(n_atoms, 1)
    return (abs(per_atom) <= MAX_NVE_DRIFT_PER_ATOM,
            f"total energy conserved (NVE): drift within {MAX_NVE_DRIFT_PER_ATOM:g} kJ/mol/ps per atom "
            f"({per_atom:+.4f} kJ/mol/ps per atom, {drift:+.1f} kJ/mol/ps for {n_atoms} atoms)")


#: K, the largest standard error with which a temperature within MAX_TEMPERATURE_DEVIATION is judged.
RESOLVING_ERROR = MAX_TEMPERATURE_DEVIATION / TEMPERATURE_CONFIDENCE


def temperature_resolved(error: float) -> bool:
    """Whether a mean temperature with this standard error (K) is judged against
    ``MAX_TEMPERATURE_DEVIATION``: the error is at most :data:`RESOLVING_ERROR`."""
    return error <= RESOLVING_ERROR


def temperature_check(means: Dict[str, float], expected: Dict[str, float],
                      errors: Optional[Dict[str, float]] = None, window_ps: Optional[float] = None
                      ) -> Tuple[Optional[bool], str, List[str]]:
    """The thermostat's trust check from mean temperatures (K) per column (``all`` and
    elements) against what each should read (``expected``, K).

    Fails when any column is off by more than ``MAX_TEMPERATURE_DEVIATION``. Otherwise it
    passes, unless ``errors`` (standard errors of the means, K) say the window cannot resolve
    the threshold (``TEMPERATURE_CONFIDENCE`` errors larger than it): then the verdict is
    None, not judged, and the text gives the run length that would resolve it (from the
    judged window's length ``window_ps``, ps, the second half of the run). Returns
    (verdict, check text, advice lines); the advice explains an overall temperature that
    holds while the elements drift apart."""
    deviations = {n: means[n] - t for n, t in expected.items() if n in means}
    worst_name, worst = max(deviations.items(), key=lambda item: abs(item[1]))
    errors = {n: e for n, e in (errors or {}).items() if n in deviations and np.isfinite(e)}
    largest_error = max(errors.values(), default=0.0)
    ok: Optional[bool] = abs(worst) <= MAX_TEMPERATURE_DEVIATION
    text = (f"temperature within {MAX_TEMPERATURE_DEVIATION:g} K of " + ", ".join(
        f"{n} {t:.0f} K" for n, t in expected.items()) + f" (worst: {worst_name} {worst:+.1f} K")
    if errors:
        text += f"; statistical error of the window up to ±{largest_error:.1f} K"
    text += ")"
    if ok and not temperature_resolved(largest_error):
        ok = None
        text = "not judged, run too short: " + text
        if window_ps:
            needed = 2.0 * window_ps * (largest_error / RESOLVING_ERROR) ** 2
            text += (f"; resolving {MAX_TEMPERATURE_DEVIATION:g} K needs errors within ±{RESOLVING_ERROR:g} K, "
                     f"a run of about {needed:.0f} ps")
    advice: List[str] = []
    if ok is False and abs(deviations.get("all", 0.0)) <= MAX_TEMPERATURE_DEVIATION:
        advice = ["The overall temperature holds but the elements drift apart: the stride model removes more "
                  "kinetic energy from some elements than from others at every stride (the KE ratio in its "
                  "card), and the energy filter restores the total with one common factor. A stronger Langevin "
                  "friction (`--collision-rate`) brings the elements back towards equipartition at the cost of "
                  "dynamics (slower diffusion); the README's friction table measures both.", ""]
    return ok, text, advice


def failed_checks(report: Path) -> List[str]:
    """The trust checks of a report written by :func:`write_report` that failed (their texts)."""
    return _checks_marked(report, False)


def unjudged_checks(report: Path) -> List[str]:
    """The trust checks of a report written by :func:`write_report` that the run was too short
    to judge (their texts): neither passed nor failed."""
    return _checks_marked(report, None)


def _checks_marked(report: Path, verdict: Optional[bool]) -> List[str]:
    mark = _MARKS[verdict]
    return [line[len(mark):] for line in Path(report).read_text().splitlines() if line.startswith(mark)]


def expected_temperatures(target: float, names: List[str], settings: Dict) -> Dict[str, float]:
    """What each temperature column should read at equilibrium (K): ``target`` overall and for
    the molecules' ``translation`` and ``rotation``; per
    element ``target`` too without constraints (equipartition), or with constraints reference
    MD's per-element values scaled to ``target``: the bundled record of a built-in system
    (:mod:`openmm_flashmd.systems.references`), else the cached reference of an
    ``openmm-flashmd validate`` run on the same System (``settings["validation_reference"]``);
    none when there is neither."""
    from openmm_flashmd.systems.references import reference_temperatures

    expected = {"all": target}
    ref = reference_temperatures(settings.get("system")) or _validation_temperatures(settings)
    if not settings.get("constraints"):
        expected.update({n: target for n in names if n not in ("all", "translation", "rotation")})
    elif ref is not None:
        scale = target / ref["measured_temperature_K"]
        expected.update({n: t * scale for n, t in ref.get("temperature_by_element_K", {}).items() if n in names})
    # the molecules' translation and rotation: the thermostat's temperature (equipartition), constraints or not
    expected.update({n: target for n in ("translation", "rotation") if n in names})
    return expected


def _validation_temperatures(settings: Dict) -> Optional[Dict[str, object]]:
    """Overall and per-element mean temperatures (K) of the reference NVT run in the validation
    cache file named by ``settings["validation_reference"]`` (None without one)."""
    path = settings.get("validation_reference")
    if not path or not Path(path).exists():
        return None
    temps = (json.loads(Path(path).read_text()).get("nvt") or {}).get("temperature_K") or {}
    if "all" not in temps:
        return None
    return {"measured_temperature_K": temps["all"]["mean"],
            "temperature_by_element_K": {k: v["mean"] for k, v in temps.items() if k != "all"}}


def _write(report: Path, settings: Dict, checks: List[Tuple[Optional[bool], str]], body: List[str]) -> Path:
    """Settings table, trust checks, then the body; returns the report path."""
    lines: List[str] = ["# FlashMD run", ""]
    if settings:
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in settings.items()]
        lines.append("")
    lines += ["## Can you trust this run?", ""]
    lines += [f"{_MARKS[ok]}{text}" for ok, text in checks]
    if any(ok is False for ok, _ in checks):
        lines += ["", "**At least one check failed: the stride model is outside its range of validity here "
                      "(see its model card). Do not use these results as dynamics of the system.**"]
    elif any(ok is None for ok, _ in checks):
        lines += ["", "**At least one check could not be judged: the run is too short for its statistical "
                      "error to resolve the threshold. Run longer before trusting these results.**"]
    lines.append("")
    report = Path(report)
    report.write_text("\n".join(lines + body) + "\n")
    return report


@contextlib.contextmanager
def _silenced_stdout():
    """Send file descriptor 1 (C-level stdout) to /dev/null inside the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _structure_section(output_dir: Path, trajectory: Path, topology: Path, system: Optional[str] = None
                       ) -> Tuple[List[str], Optional[Tuple[bool, str]]]:
    """O–O RDF of periodic runs with oxygen; pure water is compared with the bundled reference RDF
    of ``system`` (a built-in name; flexible water's for other water boxes). Returns the markdown
    lines and the RDF trust check (None when there is no reference)."""
    import mdtraj

    with _silenced_stdout():  # mdtraj's DCD reader prints "dcdplugin) ..." lines from C
        traj = mdtraj.load(str(trajectory), top=str(topology))
    elements = {atom.element.symbol for atom in traj.topology.atoms}
    if traj.unitcell_lengths is None or "O" not in elements or traj.n_frames < 2:
        return [], None
    from openmm_flashmd.analysis.structure import REFERENCE_RDFS, radial_distribution, rdf_difference, reference_rdf

    r, g = radial_distribution(traj, "O", "O")
    series = {"O–O (this run)": g}
    lines = ["## Structure", "", f"O–O radial distribution from {traj.n_frames} frames.", ""]
    check = None
    if all(residue.name == "HOH" for residue in traj.topology.residues):
        ref = reference_rdf(system if system in REFERENCE_RDFS else "water")
        g_ref = np.interp(r, ref["r_nm"], ref["g_OO"], right=np.nan)
        inside = np.isfinite(g_ref)
        series["O–O reference MD"] = g_ref
        difference = rdf_difference(r[inside], g[inside], g_ref[inside])
        lines += [f"Integrated absolute difference from the bundled reference "
                  f"(∫|g − g_ref| dr / ∫g_ref dr, r < {r[inside][-1]:.2f} nm): **{100 * difference:.1f} %**. "
                  f"Reference: {ref['description']} at {ref['temperature_K']:g} K; {ref['source']}.", ""]
        check = (difference <= MAX_RDF_DIFFERENCE,
                 f"O–O RDF within {100 * MAX_RDF_DIFFERENCE:g} % of the reference ({100 * difference:.1f} %)")
    _plot(output_dir / RDF_PLOT, r, series, "r (nm)", "g(r)")
    return lines + [f"![O-O RDF]({RDF_PLOT})", ""], check

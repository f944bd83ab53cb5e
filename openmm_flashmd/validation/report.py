"""The markdown report of one validation: settings, one-line verdicts, the numbers behind
them (the same rows as the model cards) and the plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from openmm_flashmd.validation.checks import status, verdict_lines, verdicts


def fmt(value, spec: str = ".2f", suffix: str = "") -> str:
    """``value`` formatted with ``spec`` + ``suffix``, or "—" when it is missing (None, NaN, inf)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:{spec}}{suffix}"


def _pm(entry: Optional[Dict], key: str = "mean", spec: str = ".2f") -> str:
    if not entry or entry.get(key) is None:
        return "—"
    sem = entry.get("sem")
    return f"{entry[key]:{spec}} ± {sem:{spec}}" if sem is not None else f"{entry[key]:{spec}}"


def pooled_note(entry: Optional[Dict[str, Any]]) -> str:
    """``" (2 runs, 1200 ps)"`` for an entry pooled from several runs
    (:mod:`~openmm_flashmd.validation.pooling`), else ``""``."""
    if not entry or len(entry.get("runs") or []) < 2:
        return ""
    return f" ({len(entry['runs'])} runs, {entry.get('pooled_length_ps', math.nan):g} ps)"


def _failed(run: Optional[Dict]) -> str:
    return "" if not run or run.get("failed_at_ps") is None else f" (failed at {run['failed_at_ps']:.2f} ps)"


def _fallback(run: Optional[Dict]) -> str:
    """A run's fallback share, e.g. "; fallback MD 2.1 % of strides" (empty without the monitor);
    of all its runs where several were pooled (:mod:`~openmm_flashmd.validation.pooling`)."""
    pooled = [r.get("fallback") for r in (run or {}).get("runs") or []]
    if pooled and all(stats and stats.get("strides") for stats in pooled):
        strides, rejected = sum(s["strides"] for s in pooled), sum(s["rejected"] for s in pooled)
        return f"; fallback MD {fmt(rejected / strides, '.1%')} of {strides} strides"
    stats = (run or {}).get("fallback")
    if not stats or not stats.get("strides"):
        return ""
    return f"; fallback MD {fmt(stats['fallback_fraction'], '.1%')} of {stats['strides']} strides"


def _motion(run: Optional[Dict]) -> str:
    """A run's molecules' temperatures, e.g. "translation 297.3 ± 3.4, rotation 303.8 ± 3.3" ("" without them)."""
    temps = (run or {}).get("molecule_temperature_K") or {}
    return ", ".join(f"{k} {_pm(v, spec='.1f')}" for k, v in temps.items())


def card_rows(record: Dict[str, Any]) -> List[List[str]]:
    """(quantity, value) rows summarising one model's record, for its model card."""
    rows = []
    nvt = record.get("nvt", {})
    for key, label in (("filter", "with filter (O F E O)"), ("no_filter", "without filter (O F O)")):
        run = nvt.get(key)
        if run:
            temps = run.get("temperature_K", {})
            per_element = ", ".join(f"{k} {_pm(v, spec='.1f')}" for k, v in temps.items() if k != "all")
            length = (f"{run['pooled_length_ps']:g} ps in {len(run['runs'])} runs" if len(run.get("runs") or []) > 1
                      else f"{run['completed_ps']:g} ps")
            rows.append([f"NVT {record.get('temperature_K', 300.0):g} K {label}, {length}: T (K)",
                         f"all {_pm(temps.get('all'), spec='.1f')}; {per_element}{_failed(run)}{_fallback(run)}"])
            if _motion(run):
                same = "runs" if len(run.get("runs") or []) > 1 else "run"
                rows.append([f"the same {same}: molecules' translational / rotational T (K)", _motion(run)])
    ref_temps = nvt.get("reference", {}).get("temperature_K", {})
    if ref_temps:
        rows.append(["reference MD, same settings: T (K)",
                     ", ".join(f"{k} {_pm(v, spec='.1f')}" for k, v in ref_temps.items())
                     + (f"; molecules: {_motion(nvt['reference'])}" if _motion(nvt["reference"]) else "")])
    filt = nvt.get("filter", {}).get("filter")
    if filt:
        rows.append(["energy filter", f"mean scale {fmt(filt['mean_scale'], '.4f')}, clamped "
                                      f"{fmt(filt['clamped_fraction'], '.1%')} of {filt['strides']} strides"])
    for pair, entry in (record.get("rdf") or {}).items():
        rows.append([f"{pair} RDF, integrated absolute difference from reference",
                     fmt(entry["difference_percent"], ".1f", " %")])
    npt = record.get("npt")
    if npt:
        rows.append(["NpT 1 bar density (g/cm³): FlashMD / reference",
                     f"{_pm(npt['flashmd'].get('density_g_cm3'), spec='.4f')}{pooled_note(npt['flashmd'])} / "
                     f"{_pm(npt['reference'].get('density_g_cm3'), spec='.4f')}{pooled_note(npt['reference'])} "
                     f"({fmt(npt['flashmd'].get('relative_difference_percent'), '+.2f', ' %')}){_failed(npt['flashmd'])}"])
    rama = record.get("ramachandran")
    if rama:
        rows.append(["Ramachandran JS divergence vs reference (nats)",
                     f"{fmt(rama.get('js_divergence'), '.3f')} (two halves of the reference: "
                     f"{fmt(rama.get('js_reference_halves'), '.3f')})"])
        flashmd = rama["basins"].get("flashmd", {})
        for basin, reference in rama["basins"]["reference"].items():
            rows.append([f"population {basin}: FlashMD / reference",
                         f"{_pm(flashmd.get(basin), 'value', '.3f')} / {_pm(reference, 'value', '.3f')}"])
    nve = record.get("nve")
    if nve:
        rows.append([f"NVE without filter, {nve['completed_ps']:g} ps: T start → end (K)",
                     f"{fmt(nve.get('T_start_K'), '.1f')} → {fmt(nve.get('T_end_K'), '.1f')} "
                     f"({fmt(nve.get('T_drift_K'), '+.1f', ' K')}){_failed(nve)}{_fallback(nve)}"])
    stability = record.get("stability") or {}
    if stability.get("ran"):
        rows.append([f"stability, NVT with filter, {stability['length_ps']:g} ps",
                     ("stable" if stability["stable"] else f"failed at {stability['failed_at_ps']:.2f} ps")
                     + _fallback(stability)])
        temps = stability.get("temperature_K")
        if temps:
            rows.append([f"the stability run after {stability['temperature_from_ps']:g} ps: T (K), deviation from "
                         "reference MD", f"all {_pm(temps.get('all'), spec='.1f')}; " + ", ".join(
                             f"{k} {_pm(v, spec='.1f')} ({fmt(v.get('dev_reference'), '+.1f')})"
                             for k, v in temps.items() if k != "all")
                         + (f"; molecules: {_motion(stability)}" if _motion(stability) else "")])
    cost = record.get("cost")
    if cost:
        rows.append(["wall time per simulated ps: FlashMD / reference MD with the same classical potential (s)",
                     f"{fmt(cost.get('flashmd_s_per_ps'))} / {fmt(cost.get('reference_s_per_ps'))} "
                     f"(speedup {fmt(cost.get('speedup'), '.2f', '×')}; {cost.get('flashmd_source', '')})"])
    return rows


def write_report(result: Dict[str, Any], path: Path) -> Path:
    """Write the markdown report of ``result`` (a validation's JSON) to ``path``; plots are
    referenced by file name (they sit next to the JSON)."""
    checks = verdicts(result)
    failed = [c for c in checks if c["passed"] is False]
    lines = [f"# Validation of {result['model_source']} against reference MD", "",
             "| setting | value |", "|---|---|",
             f"| System | {result['system']} ({result['n_atoms']} atoms) |",
             f"| stride | {1000 * result['stride_ps']:g} fs |",
             f"| temperature | {result['temperature_K']:g} K, Langevin friction {result['collision_rate_per_ps']:g}/ps |",
             f"| lengths | {result['lengths_mode']} (NVT {result['lengths']['nvt_ps']:g} ps FlashMD, "
             f"{result['lengths']['ref_nvt_ps']:g} ps reference MD) |",
             f"| reference MD | {result['reference']['file']} "
             + ("(run now)" if result["reference"]["computed_in_this_run"] else "(cached)") + " |",
             f"| stride monitor | {'on' if result.get('fallback') else 'off'} |", "",
             "## Can you trust this model on this System?", ""]
    lines += verdict_lines(checks)
    lines.append("")
    judged = sum(c["passed"] is not None for c in checks)
    if failed:
        lines += [f"**{len(failed)} of {judged} checks failed: do not use this "
                  "model's dynamics of this System as if they were reference MD's.**", ""]
    unjudged = [c for c in checks if status(c) == "not judged"]
    if unjudged:
        lines += [f"**{len(unjudged)} check(s) not judged: the runs are too short to resolve their thresholds "
                  "(the ⚠️ lines say what each would need).**", ""]
    if result["lengths_mode"] != "full":
        lines += [f"These are {result['lengths_mode']} lengths: the numbers show that the protocol runs, not what the "
                  "model is worth. Run `--lengths full` for a verdict.", ""]
    lines += ["## Numbers", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {quantity} | {value} |" for quantity, value in card_rows(result)]
    lines.append("")
    lines += [f"![{p}]({p})" for p in result.get("plots", [])]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)

"""One-line verdicts of a validation, in the trust vocabulary of ``openmm-flashmd simulate``'s
report (same thresholds, :mod:`openmm_flashmd.analysis.report`): each check passes, fails, is
not judged (a temperature within its threshold that the run is too short to resolve, as in the
report), or is information only."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

from openmm_flashmd.analysis.report import (MAX_CLAMPED_FRACTION, MAX_DENSITY_DEVIATION, MAX_FALLBACK_FRACTION,
                                            MAX_NVE_DRIFT_PER_ATOM, MAX_RDF_DIFFERENCE, MAX_TEMPERATURE_DEVIATION,
                                            RESOLVING_ERROR, temperature_resolved)

#: Ramachandran Jensen-Shannon divergence (nats, 36 x 36 bins) against reference MD.
MAX_RAMACHANDRAN_JS = 0.05
#: Relative difference of the water-oxygen self-diffusion coefficient from reference MD.
MAX_DIFFUSION_DEVIATION = 0.20

#: A check's status (:func:`status`) and its mark in reports.
MARKS = {"passed": "✅", "failed": "❌", "not judged": "⚠️", "information": "ℹ️"}


def status(check: Dict[str, Any]) -> str:
    """``passed``, ``failed``, ``not judged`` (``passed`` None, ``judged`` False) or ``information``."""
    if check["passed"] is not None:
        return "passed" if check["passed"] else "failed"
    return "information" if check.get("judged", True) else "not judged"


def nested_get(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _temperature_check(run: Dict[str, Any], label: str, target: float, name: str = "temperature"
                       ) -> List[Dict[str, Any]]:
    """The overall temperature against ``target`` (K) and each element's against reference MD,
    from a run's ``temperature_K`` summary (means, block standard errors, deviations), and, in a
    System of several molecules, their translation's and rotation's against ``target`` (in
    equilibrium both equal the thermostat's: equipartition) from ``molecule_temperature_K``."""
    temps = run.get("temperature_K") or {}
    out = []
    overall = temps.get("all") or {}
    if _finite(overall.get("dev_target")):
        out.append(_judged_check(name, overall["dev_target"], overall.get("sem"),
                                 f"{label}: overall temperature within {MAX_TEMPERATURE_DEVIATION:g} K of "
                                 f"{target:g} K ({_deviation(overall['dev_target'], overall.get('sem'))})"))
    devs = {k: (v["dev_reference"], v.get("dev_reference_sem")) for k, v in temps.items()
            if k != "all" and _finite(v.get("dev_reference"))}
    if devs:
        out.append(_worst_check(f"{name}_by_element", devs, f"{label}: every element's temperature within "
                                f"{MAX_TEMPERATURE_DEVIATION:g} K of reference MD"))
    motion = {k: (v["dev_target"], v.get("sem")) for k, v in (run.get("molecule_temperature_K") or {}).items()
              if _finite(v.get("dev_target"))}
    if motion:
        out.append(_worst_check(f"{name}_by_motion", motion, f"{label}: the molecules' translation and rotation "
                                f"each within {MAX_TEMPERATURE_DEVIATION:g} K of {target:g} K"))
    return out


def _worst_check(name: str, deviations: Dict[str, Tuple[float, Optional[float]]], text: str) -> Dict[str, Any]:
    """A temperature check of several parts (``{part: (deviation K, standard error K)}``) judged on
    the worst deviation and the largest error; ``text`` is followed by every part's deviation."""
    worst = max(deviations, key=lambda k: abs(deviations[k][0]))
    errors = [e for _, e in deviations.values() if _finite(e)]
    return _judged_check(name, deviations[worst][0], max(errors, default=None),
                         text + " (" + ", ".join(f"{k} {_deviation(*v)}" for k, v in deviations.items()) + ")")


def _deviation(value: float, error: Optional[float]) -> str:
    return f"{value:+.1f} ± {error:.1f} K" if _finite(error) else f"{value:+.1f} K"


def _judged_check(name: str, deviation: float, error: Optional[float], text: str) -> Dict[str, Any]:
    """A temperature check: fails beyond ``MAX_TEMPERATURE_DEVIATION``; within it, passes only
    where the standard error (K) resolves the threshold (``TEMPERATURE_CONFIDENCE`` errors within
    it), otherwise is not judged, as :func:`openmm_flashmd.analysis.report.temperature_check`."""
    passed = abs(deviation) <= MAX_TEMPERATURE_DEVIATION
    if passed and _finite(error) and not temperature_resolved(error):
        return {"check": name, "passed": None, "judged": False,
                "text": f"not judged, run too short: {text}; resolving {MAX_TEMPERATURE_DEVIATION:g} K needs "
                        f"errors within ±{RESOLVING_ERROR:g} K"}
    return _check(name, passed, text)


def _check(name: str, passed: Optional[bool], text: str) -> Dict[str, Any]:
    return {"check": name, "passed": passed, "text": text}


def _failure(run: Optional[Dict[str, Any]]) -> str:
    if not run or run.get("failed_at_ps") is None:
        return ""
    return f"failed at {run['failed_at_ps']:.3g} ps: {run.get('error')}"


def verdicts(result: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The checks of a validation result (:func:`openmm_flashmd.validation.validate`'s JSON):
    ``[{"check", "passed" (True / False / None: not judged or information), "text"}]``; a check
    that is not judged also has ``"judged": False`` (:func:`status`)."""
    checks: List[Dict[str, Any]] = []
    target = float(result.get("temperature_K", 300.0))
    filt = nested_get(result, "nvt", "filter") or {}
    failure = _failure(filt)
    checks.append(_check("stable", not failure, f"NVT with filter ran {filt.get('length_ps', 0):g} ps"
                         + (f" ({failure})" if failure else " without failure")))
    stab = result.get("stability") or {}
    if stab.get("ran"):
        checks.append(_check("stability", bool(stab.get("stable")),
                             f"stability: NVT with filter for {stab.get('length_ps', 0):g} ps "
                             + ("without failure" if stab.get("stable") else f"({_failure(stab) or 'failed'})")))
    checks += _temperature_check(filt, "NVT with filter", target)
    if stab.get("temperature_K"):
        checks += _temperature_check(stab, f"stability run, NVT with filter from {stab.get('temperature_from_ps', 0):g} "
                                           f"to {stab.get('length_ps', 0):g} ps", target, name="stability_temperature")
    no_filter = nested_get(result, "nvt", "no_filter") or {}
    if _failure(no_filter):
        checks.append(_check("stable_without_filter", False, f"NVT without filter {_failure(no_filter)}"))
    checks += _temperature_check(no_filter, "NVT without filter", target)
    clamped = nested_get(filt, "filter", "clamped_fraction")
    if _finite(clamped):
        checks.append(_check("filter", clamped <= MAX_CLAMPED_FRACTION,
                             f"energy filter clamped at most {100 * MAX_CLAMPED_FRACTION:g} % of strides "
                             f"({100 * clamped:.2f} %)"))
    share = nested_get(filt, "fallback", "fallback_fraction")
    if _finite(share):
        checks.append(_check("fallback", share <= MAX_FALLBACK_FRACTION,
                             f"stride monitor fell back to MD on at most {100 * MAX_FALLBACK_FRACTION:g} % of strides "
                             f"({100 * share:.2f} %)"))
    rdf = {pair: v.get("difference_percent") for pair, v in (result.get("rdf") or {}).items()}
    rdf = {pair: v for pair, v in rdf.items() if _finite(v)}
    if rdf:
        worst = max(rdf, key=rdf.get)
        checks.append(_check("rdf", rdf[worst] <= 100 * MAX_RDF_DIFFERENCE,
                             f"RDF of every element pair within {100 * MAX_RDF_DIFFERENCE:g} % of reference MD ("
                             + ", ".join(f"{pair} {v:.1f} %" for pair, v in rdf.items()) + ")"))
    density = nested_get(result, "npt", "flashmd", "relative_difference_percent")
    if _finite(density):
        checks.append(_check("density", abs(density) <= 100 * MAX_DENSITY_DEVIATION,
                             f"NpT density within {100 * MAX_DENSITY_DEVIATION:g} % of reference MD ({density:+.2f} %)"))
    elif _failure(nested_get(result, "npt", "flashmd")):
        checks.append(_check("density", False, f"NpT {_failure(nested_get(result, 'npt', 'flashmd'))}"))
    js = nested_get(result, "ramachandran", "js_divergence")
    if _finite(js):
        floor = nested_get(result, "ramachandran", "js_reference_halves")
        checks.append(_check("ramachandran", js <= MAX_RAMACHANDRAN_JS,
                             f"Ramachandran JS divergence from reference MD at most {MAX_RAMACHANDRAN_JS:g} nats "
                             f"({js:.3f}; reference half against half: "
                             + (f"{floor:.3f})" if _finite(floor) else "—)")))
    diffusion = nested_get(result, "diffusion", "relative_difference_percent")
    if _finite(diffusion):
        checks.append(_check("diffusion", abs(diffusion) <= 100 * MAX_DIFFUSION_DEVIATION,
                             f"water-oxygen self-diffusion within {100 * MAX_DIFFUSION_DEVIATION:g} % of reference MD "
                             f"({diffusion:+.1f} %)"))
    nve = result.get("nve") or {}
    drift = nve.get("energy_drift_kjmol_per_ps_per_atom")
    if _failure(nve):
        checks.append(_check("nve", False, f"NVE without filter {_failure(nve)}"))
    elif _finite(drift):
        checks.append(_check("nve", abs(drift) <= MAX_NVE_DRIFT_PER_ATOM,
                             f"NVE without filter: total-energy drift within {MAX_NVE_DRIFT_PER_ATOM:g} kJ/mol/ps per "
                             f"atom ({drift:+.4f}; T {nve.get('T_start_K', math.nan):.1f} → "
                             f"{nve.get('T_end_K', math.nan):.1f} K)"))
    cost = result.get("cost") or {}
    if _finite(cost.get("flashmd_s_per_ps")) and _finite(cost.get("reference_s_per_ps")):
        speedup = cost["reference_s_per_ps"] / cost["flashmd_s_per_ps"]
        checks.append(_check("cost", None, f"wall time per simulated ps: FlashMD {cost['flashmd_s_per_ps']:.3g} s, "
                                           f"reference MD {cost['reference_s_per_ps']:.3g} s (speed-up {speedup:.2f}×)"))
    return checks


def verdict_lines(checks: List[Dict[str, Any]]) -> List[str]:
    """Markdown list lines, one per check."""
    return [f"- {MARKS[status(c)]} {c['text']}" for c in checks]
